//! The Durable Objects: ledger shards, the live hub, the OAuth token broker,
//! and the one way their writes run all or nothing.

pub mod ledger;
pub mod live_hub;
pub mod token_broker;
pub mod transaction;
