//! The Durable Objects: ledger shards, the live hub, the OAuth token broker,
//! the client keys' guards, the opt-out book, and the one way their writes run all or nothing.

pub mod idempotency;
pub mod key_guard;
pub mod ledger;
pub mod live_hub;
pub mod opt_outs;
pub mod token_broker;
pub mod transaction;
