//! The stored records of a message: its events as a shard keeps them, and
//! the identity conflicts it refused. The projection, retention and the
//! protocol all read these; they depend on nothing above them.

use serde::{Deserialize, Serialize};

use crate::event::{CallbackEvent, EventKind};
use crate::identity::{content_hash, EventKey};

/// One event, ready to store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub event_key: String,
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
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
            kind: ev.kind.clone(),
            recipient: ev.recipient.clone(),
            time: ev.time.clone(),
            time_ms: ev.time_ms(),
            error_code: ev.error_code,
            content_hash: content_hash(&ev.raw),
            raw: ev.raw_json.clone(),
        }
    }
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
    /// The message's media archive jobs (`crate::media`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<crate::media::MediaRecord>,
}
