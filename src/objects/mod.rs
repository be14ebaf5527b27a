//! The Durable Objects: ledger shards, the live hub, the OAuth token broker,
//! the client keys' guards, the opt-out book, the webhook target registry
//! and pacers, the shard map, and the one way their writes run all or nothing.

pub mod idempotency;
pub mod key_guard;
pub mod ledger;
pub mod live_hub;
pub mod opt_outs;
pub mod shard_map;
pub mod target_pacer;
pub mod target_registry;
pub mod token_broker;
pub mod transaction;
