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

pub use crate::change::QueuedChange;
use crate::quarantine::QuarantineRecord;
use crate::records::{EventRecord, MessageRecords};

/// A kind of Durable Object: the `wrangler.toml` binding its objects are
/// reached through. Each object's name within it is the kind's own rule
/// (`NAME` for a single object, a function for one object per key).
pub trait Object {
    const BINDING: &'static str;
}

/// One method of one Durable Object: `POST PATH` with a JSON `Request`,
/// answered with a JSON `Reply`, served by an object of kind `Object`.
pub trait Method {
    type Object: Object;
    const PATH: &'static str;
    type Request: Serialize + DeserializeOwned;
    type Reply: Serialize + DeserializeOwned;
}

/// An empty request or reply: `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Empty {}

/// Declares methods served by objects of kind `$object`, one type each,
/// and `Call`, the enum of them that the object's dispatch matches on
/// exhaustively: a method with no handler does not compile. A path names
/// exactly one method. (The Worker's test build declares its test methods
/// with it, beside the objects they test.)
#[macro_export]
macro_rules! methods {
    (object = $object:ty; $($(#[$doc:meta])* $name:ident = $path:literal: $req:ty => $reply:ty;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $name;
            impl $crate::wire::Method for $name {
                type Object = $object;
                const PATH: &'static str = $path;
                type Request = $req;
                type Reply = $reply;
            }
        )*
        /// Every one of these methods.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Call {
            $($name,)*
        }
        impl Call {
            pub const ALL: &'static [Call] = &[$(Call::$name,)*];
            /// The method at `path`, if any.
            pub fn from_path(path: &str) -> Option<Self> {
                match path {
                    $($path => Some(Call::$name),)*
                    _ => None,
                }
            }
            pub fn path(self) -> &'static str {
                match self {
                    $(Call::$name => $path,)*
                }
            }
        }
    };
}

/// Declares an object kind, `Object`, reached through the binding
/// `$binding`, and its methods (see [`methods!`]).
macro_rules! object {
    (binding = $binding:literal; $($methods:tt)*) => {
        /// This kind of object.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct Object;
        impl $crate::wire::Object for Object {
            const BINDING: &'static str = $binding;
        }
        $crate::methods! { object = Object; $($methods)* }
    };
}

/// Methods of a ledger shard (`LedgerShard`).
pub mod ledger {
    use super::*;
    use crate::idempotency;
    use crate::lifecycle;
    use crate::list::{ListQuery, ShardPage};
    use crate::outbox::{OutboxItem, ReplayRequest, TargetStats};

    object! {
        binding = "LEDGER";
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
        /// The registry's targets at a version; an older one than the
        /// shard holds is ignored (`crate::targets`).
        Targets = "/targets": crate::targets::TargetSnapshot => Empty;
        /// Deletes dead-lettered outbox items of a target.
        OutboxDiscard = "/outbox/discard": crate::outbox::DiscardRequest => DiscardReply;
    }

    /// Shard `index`'s object name (`crate::shard` picks the index).
    pub use crate::shard::shard_name as name;
}

/// Methods of the shard map (`ShardMap`, one object): the shard layout in
/// force, recorded once (`crate::shard`).
pub mod shard_map {
    use crate::shard::{Ask, Layouts};

    object! {
        binding = "SHARD_MAP";
        /// The layout in force, recording the asker's count as that layout
        /// if none is yet, or as a request if it differs.
        Resolve = "/resolve": Ask => Layouts;
    }

    /// The one map's object name.
    pub const NAME: &str = "shard-map";
}

/// Methods of the opt-out book (`OptOutBook`, one object).
pub mod opt_outs {
    use super::*;
    use crate::optout::{
        CheckReply, CheckRequest, Counts as OptOutCounts, HistoryEntry, ListPage, ListQuery, OperatorChange,
        RecordRequest, Recorded,
    };

    object! {
        binding = "OPT_OUTS";
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

    /// The one book's object name.
    pub const NAME: &str = "opt-outs";
}

/// A request naming one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumberQuery {
    pub number: String,
}

/// Methods of the target registry (`TargetRegistry`, one object): the
/// targets made through the API (`crate::targets`).
pub mod target_registry {
    use super::*;
    use crate::targets::health::Report as AttemptReport;
    use crate::targets::{Listing, NewTarget, Outcome, TargetRecord, WithSecret};
    pub use crate::targets::{PatchRequest, PausedRequest, TargetId};

    object! {
        binding = "TARGET_REGISTRY";
        /// Every API-made target, without its secrets' values, and every
        /// target's health.
        List = "/list": Empty => Listing;
        /// Makes a target and its first secret.
        Create = "/create": NewTarget => Outcome<WithSecret>;
        /// Changes a target's url, events, rate or description.
        Patch = "/patch": PatchRequest => Outcome<TargetRecord>;
        /// A new secret; the old ones sign on for the overlap.
        Rotate = "/rotate": TargetId => Outcome<WithSecret>;
        /// Disables or enables a target of either source.
        SetPaused = "/paused": PausedRequest => Outcome<Empty>;
        /// Removes a target; shards dead-letter its pending forwards.
        Delete = "/delete": TargetId => Outcome<Empty>;
        /// A shard's attempts since its last report, per target.
        Report = "/report": Vec<AttemptReport> => Empty;
        /// Hands over what waits: the newest version to every shard of
        /// every layout (the shard map asks when it records a layout).
        Settle = "/settle": Empty => Empty;
    }

    /// The one registry's object name.
    pub const NAME: &str = "targets";
}

/// Methods of a target's pacer (`TargetPacer`, one object per paced target).
pub mod target_pacer {
    use crate::targets::pace::{Slot as SlotReply, SlotRequest};

    object! {
        binding = "TARGET_PACER";
        /// A send time that keeps the target's rate (`crate::targets::pace`).
        Slot = "/slot": SlotRequest => SlotReply;
    }

    /// Target `id`'s pacer: a digest, as for key guards.
    pub fn name(id: &str) -> String {
        format!("pace-{}", &crate::identity::sha256_hex(id.as_bytes())[..32])
    }
}

/// Methods of the live hub (`LiveHub`).
pub mod live_hub {
    use super::*;

    object! {
        binding = "LIVE";
        /// Changes to send to the subscribers that want them.
        Publish = "/publish": Vec<serde_json::Value> => Published;
    }

    /// The one hub's object name.
    pub const NAME: &str = "live-hub";

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

    object! {
        binding = "TOKENS";
        /// A fresh access token, fetched once for any number of callers.
        Token = "/token": TokenRequest => TokenOutcome;
    }

    /// The one broker's object name.
    pub const NAME: &str = "bandwidth-oauth";

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

    object! {
        binding = "KEY_GUARD";
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

    /// Key `key_id`'s guard: a digest, since a key id may hold any
    /// character and the name travels in a URL.
    pub fn name(key_id: &str) -> String {
        format!("key-{}", &crate::identity::sha256_hex(key_id.as_bytes())[..32])
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadQuery {
    pub target: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DiscardReply {
    pub discarded: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReply {
    pub replayed: u32,
}
