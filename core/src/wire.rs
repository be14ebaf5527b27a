//! The protocol between the Worker and its Durable Objects, defined once
//! for both sides.
//!
//! Each object method is a type implementing [`Method`]: its path, its
//! request type and its reply type. The caller names the method, never a
//! reply type, so it cannot read an answer as the wrong shape; the object
//! dispatches on the same types. Methods are grouped by the object that
//! serves them. A change to a method's JSON is a protocol change, and a
//! change to a stored record's JSON is a migration: the tests pin both.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::event::CallbackEvent;
use crate::identity::{content_hash, EventKey};
use crate::quarantine::QuarantineRecord;

/// One method of one Durable Object: `POST PATH` with a JSON `Request`,
/// answered with a JSON `Reply`.
pub trait Method {
    const PATH: &'static str;
    type Request: Serialize + DeserializeOwned;
    type Reply: Serialize + DeserializeOwned;
}

/// An empty request or reply: `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Empty {}

macro_rules! methods {
    ($($(#[$doc:meta])* $name:ident = $path:literal: $req:ty => $reply:ty;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name;
        impl $crate::wire::Method for $name {
            const PATH: &'static str = $path;
            type Request = $req;
            type Reply = $reply;
        }
    )*};
}

/// Methods of a ledger shard (`LedgerShard`).
pub mod ledger {
    use super::*;
    use crate::idempotency;
    use crate::lifecycle;
    use crate::list::{ListQuery, ShardPage};
    use crate::outbox::{OutboxItem, ReplayRequest, TargetStats};

    methods! {
        /// A group of callbacks stored in one call and one commit, one reply
        /// per batch in order (see [`crate::group`]).
        Ingest = "/ingest": Vec<IngestBatch> => Vec<IngestReply>;
        /// A message's events and identity conflicts.
        Message = "/message": MessageQuery => MessageRecords;
        /// A page of the shard's quarantine, most recently seen first,
        /// without bodies, and how many items it holds.
        QuarantineIndex = "/quarantine/index": crate::quarantine::QuarantinePageQuery => crate::quarantine::QuarantineIndex;
        /// The raw bodies of these quarantine items (by content hash).
        QuarantineBodies = "/quarantine/bodies": Vec<String> => Vec<crate::quarantine::QuarantineBody>;
        /// Reads a send's idempotency record as earlier builds kept it.
        IdemPeek = "/idempotency/peek": idempotency::IdemPeek => Option<idempotency::IdempotencyRecord>;
        /// One shard's page and count of a list query.
        List = "/list": ListQuery => ShardPage;
        /// Outbox counts per target.
        OutboxStats = "/outbox/stats": Empty => Vec<TargetStats>;
        /// Dead-lettered outbox items.
        OutboxDead = "/outbox/dead": DeadQuery => Vec<OutboxItem>;
        /// Queues outbox items again, keeping their webhook ids.
        OutboxReplay = "/outbox/replay": ReplayRequest => ReplayReply;
        /// A live subscriber is listening: publish again.
        LiveOn = "/live-on": Empty => Empty;
        /// One batch of retention (`crate::lifecycle`).
        Sweep = "/sweep": lifecycle::SweepRequest => lifecycle::SweepReply;
        /// One batch of an erasure by number.
        Erase = "/erase": lifecycle::EraseRequest => lifecycle::EraseReply;
        /// One page of an export.
        Export = "/export": lifecycle::ExportQuery => lifecycle::ExportPage;
        /// Recipient outcomes by hour and error codes (`crate::stats`).
        Outcomes = "/outcomes": crate::stats::OutcomeQuery => crate::stats::ShardOutcomes;
        /// The shard's figures for `GET /metrics`.
        Metrics = "/metrics": Empty => crate::metrics::ShardMetrics;
        /// One archived media file's row and its message's numbers.
        Media = "/media": crate::media::MediaQuery => crate::media::MediaLookup;
        /// Queues changes from elsewhere (the opt-out book) into the
        /// outbox, once per webhook id; answers the rows queued.
        QueueChanges = "/queue-changes": Vec<QueuedChange> => u32;
    }
}

/// Methods of the opt-out book (`OptOutBook`, one object).
pub mod opt_outs {
    use super::*;
    use crate::optout::{
        CheckReply, CheckRequest, Counts as OptOutCounts, HistoryEntry, ListPage, ListQuery, OperatorChange,
        RecordRequest, Recorded,
    };

    methods! {
        /// Records a callback's opt-outs and opt-ins, each event once.
        Record = "/record": RecordRequest => Recorded;
        /// The numbers of a send that may not be texted from its `from`.
        Check = "/check": CheckRequest => CheckReply;
        /// The operator's opt-out or lift; `None`: nothing to change.
        Operator = "/operator": OperatorChange => Option<HistoryEntry>;
        /// A page of the opt-outs in force.
        List = "/list": ListQuery => ListPage;
        /// A number's audit trail, oldest first.
        History = "/history": NumberQuery => Vec<HistoryEntry>;
        /// Erasure: the number's clear text goes, its suppression stays.
        Erase = "/erase": NumberQuery => u32;
        /// Opt-outs in force by scope.
        Counts = "/counts": Empty => OptOutCounts;
    }
}

/// A request naming one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumberQuery {
    pub number: String,
}

/// A change queued into a ledger shard's outbox from elsewhere (the
/// opt-out book), with its stable webhook id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedChange {
    pub webhook_id: String,
    pub kind: String,
    pub message_id: String,
    pub doc: serde_json::Value,
}

/// Methods of the live hub (`LiveHub`).
pub mod live_hub {
    use super::*;

    methods! {
        /// Changes to send to the subscribers that want them.
        Publish = "/publish": Vec<serde_json::Value> => Published;
    }

    /// Not a JSON method: `GET` with `Upgrade: websocket` and
    /// `?sub=<Subscription JSON>&subprotocol=<bool>`.
    pub const SUBSCRIBE_PATH: &str = "/subscribe";

    /// What the hub did with a publish.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
    pub struct Published {
        pub sent: u32,
        pub subscribers: u32,
    }
}

/// Methods of the OAuth token broker (`TokenBroker`).
pub mod token_broker {
    use super::*;
    use crate::oauth::TokenOutcome;

    methods! {
        /// A fresh access token, fetched once for any number of callers.
        Token = "/token": TokenRequest => TokenOutcome;
    }

    /// `rejected`: a token Bandwidth answered 401 to; the broker drops it
    /// (if it still holds it) before answering, so no caller gets it again.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    pub struct TokenRequest {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub rejected: Option<String>,
    }
}

/// Methods of a client key's guard (`KeyGuard`, one object per key id).
pub mod key_guard {
    use super::*;
    use crate::limits::{GuardRequest, KeyState, Verdict};

    methods! {
        /// Admits or refuses a send or read, or counts a refusal.
        Admit = "/admit": GuardRequest => Verdict;
        /// Claims an idempotency key and admits its send, in one step.
        Claim = "/claim": crate::idempotency::GuardClaim => crate::idempotency::ClaimReply;
        /// Saves a send's outcome (or releases its key), with any refund.
        Finish = "/finish": crate::idempotency::GuardFinish => Empty;
        /// Deletes the saved answers that mention a number (erasure).
        Erase = "/erase": crate::lifecycle::EraseRequest => crate::lifecycle::EraseReply;
        /// Deletes saved answers past retention or their 24 hours.
        Sweep = "/sweep": crate::lifecycle::SweepRequest => crate::lifecycle::SweepReply;
        /// The key's counters.
        Usage = "/usage": Empty => KeyState;
        /// On the registry guard ([`REGISTRY_NAME`]): this key's guard may
        /// keep saved answers, so erasure and retention must visit it.
        Register = "/register": GuardName => Empty;
        /// On the registry guard: every key id ever registered.
        Registered = "/registered": Empty => Vec<String>;
    }

    /// The object name of the guard that lists every guard that may hold
    /// saved send answers, whether or not its key is still configured.
    /// (Key guards are named `key-` and 32 hex digits.)
    pub const REGISTRY_NAME: &str = "key-registry";

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct GuardName {
        pub key_id: String,
    }
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
    /// Events of erased messages (tombstoned), answered but not stored.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub erased: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl IngestReply {
    pub fn merge(self, o: Self) -> Self {
        Self {
            stored: self.stored + o.stored,
            duplicates: self.duplicates + o.duplicates,
            conflicts: self.conflicts + o.conflicts,
            quarantined: self.quarantined + o.quarantined,
            erased: self.erased + o.erased,
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
    /// The message's media archive jobs (`crate::media`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<crate::media::MediaRecord>,
}

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
