//! Domain core of the Bandwidth Messaging v2 edge ledger.
//!
//! Owns everything that can be decided without a runtime: parsing Bandwidth
//! callbacks, event identity and dedup decisions, shard choice, the status
//! projection, authentication checks and the error vocabulary of the API.
//!
//! It must never depend on `worker`, read a clock or draw randomness: the
//! Worker glue passes times and configuration in, so every rule here runs
//! natively under `cargo test` and on wasm32 under `wasm-bindgen-test`.

pub mod auth;
pub mod change;
pub mod channel;
pub mod client;
pub mod error;
pub mod event;
pub mod forward;
pub mod group;
pub mod idempotency;
pub mod identity;
pub mod ingest;
pub mod lifecycle;
pub mod limits;
pub mod list;
pub mod live;
pub mod media;
pub mod metrics;
pub mod multichannel;
pub mod oauth;
pub mod optout;
pub mod outbox;
pub mod percent;
pub mod projection;
pub mod quarantine;
pub mod records;
pub mod redact;
pub mod retry;
pub mod route;
pub mod send;
pub mod shard;
pub mod stats;
pub mod status;
pub mod stored;
pub mod targets;
pub mod time;
pub mod wire;

pub use error::ApiError;
pub use event::{parse_callback_body, CallbackEvent, EventKind, ParsedCallback};
pub use identity::{content_hash, EventKey};
