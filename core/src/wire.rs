//! The Worker <-> ledger shard protocol, defined once for both sides.
//!
//! Each shard method is a route constant plus a request and reply type; the
//! Worker and the Durable Object both use these, so no URL or field name is
//! spelled twice. A change to a stored record's JSON is a migration: the
//! tests pin the exact shape.

use serde::{Deserialize, Serialize};

use crate::event::CallbackEvent;
use crate::identity::{content_hash, EventKey};
use crate::quarantine::{QuarantineItem, QuarantineRecord};

pub mod route {
    /// POST `Vec<`[`super::IngestBatch`]`>` -> `Vec<`[`super::IngestReply`]`>`, one
    /// reply per batch in order: a group of callbacks stored in one call
    /// (see [`crate::group`]).
    pub const INGEST: &str = "/ingest";
    /// POST [`super::MessageQuery`] -> [`super::MessageRecords`].
    pub const MESSAGE: &str = "/message";
    /// POST [`super::QuarantineQuery`] -> `Vec<QuarantineItem>`.
    pub const QUARANTINE: &str = "/quarantine";
    /// POST [`crate::idempotency::IdemBegin`] -> [`crate::idempotency::BeginDecision`].
    pub const IDEM_BEGIN: &str = "/idempotency/begin";
    /// POST [`crate::idempotency::IdemFinish`] -> `{}`.
    pub const IDEM_FINISH: &str = "/idempotency/finish";
    /// POST [`crate::list::ListQuery`] -> [`crate::list::ShardPage`].
    pub const LIST: &str = "/list";
    /// POST `{}` -> `Vec<`[`crate::forward::TargetStats`]`>`.
    pub const OUTBOX_STATS: &str = "/outbox/stats";
    /// POST [`super::DeadQuery`] -> `Vec<`[`crate::forward::OutboxItem`]`>`.
    pub const OUTBOX_DEAD: &str = "/outbox/dead";
    /// POST [`crate::forward::ReplayRequest`] -> [`super::ReplayReply`].
    pub const OUTBOX_REPLAY: &str = "/outbox/replay";
    /// POST `{}` -> `{}`: a subscriber is listening, publish again (a ledger shard).
    pub const LIVE_ON: &str = "/live-on";
    /// GET with `Upgrade: websocket` and `?sub=<Subscription JSON>` (the live hub).
    pub const LIVE_SUBSCRIBE: &str = "/subscribe";
    /// POST `Vec<serde_json::Value>` -> `{"sent": n, "subscribers": n}` (the live hub).
    pub const LIVE_PUBLISH: &str = "/publish";
    /// POST `{}` -> [`crate::oauth::TokenOutcome`] (the token broker object).
    pub const TOKEN: &str = "/token";
}

/// One event, ready to store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub event_key: String,
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub recipient: Option<String>,
    pub time: Option<String>,
    pub time_ms: Option<i64>,
    pub error_code: Option<i64>,
    pub content_hash: String,
    /// The event's JSON text exactly as received, every field kept.
    pub raw: String,
}

impl EventRecord {
    pub fn from_event(ev: &CallbackEvent) -> Self {
        Self {
            event_key: EventKey::of(ev).as_str().to_owned(),
            message_id: ev.message_id.clone(),
            kind: ev.kind.as_str().to_owned(),
            recipient: ev.recipient.clone(),
            time: ev.time.clone(),
            time_ms: ev.time_ms(),
            error_code: ev.error_code,
            content_hash: content_hash(&ev.raw),
            raw: ev.raw_json.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IngestBatch {
    pub received_at_ms: i64,
    pub events: Vec<EventRecord>,
    pub quarantine: Vec<QuarantineRecord>,
}

/// What a shard did with a batch. Everything counted here is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IngestReply {
    pub stored: u32,
    pub duplicates: u32,
    pub conflicts: u32,
    pub quarantined: u32,
}

impl IngestReply {
    pub fn merge(self, o: Self) -> Self {
        Self {
            stored: self.stored + o.stored,
            duplicates: self.duplicates + o.duplicates,
            conflicts: self.conflicts + o.conflicts,
            quarantined: self.quarantined + o.quarantined,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQuery {
    pub message_id: String,
}

/// A stored event row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// Arrival order within the shard.
    pub seq: i64,
    #[serde(flatten)]
    pub record: EventRecord,
    pub received_at_ms: i64,
}

/// A rejected rewrite of an existing event identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredConflict {
    pub event_key: String,
    pub content_hash: String,
    pub raw: String,
    pub received_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MessageRecords {
    pub events: Vec<StoredEvent>,
    pub conflicts: Vec<StoredConflict>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineQuery {
    pub limit: u32,
}

pub type QuarantineList = Vec<QuarantineItem>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadQuery {
    pub target: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReply {
    pub replayed: u32,
}
