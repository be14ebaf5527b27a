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
pub mod ledger;

/// Methods of the shard map (`ShardMap`, one object): the shard layouts,
/// appended, never edited (`crate::shard`).
pub mod shard_map;

/// Methods of the opt-out book (`OptOutBook`, one object).
pub mod opt_outs;

/// A request naming one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NumberQuery {
    pub number: String,
}

/// Methods of the target registry (`TargetRegistry`, one object): the
/// targets made through the API (`crate::targets`).
pub mod target_registry;

/// Methods of a target's pacer (`TargetPacer`, one object per paced target).
pub mod target_pacer;

/// Methods of the live hub (`LiveHub`).
pub mod live_hub;

/// Methods of the OAuth token broker (`TokenBroker`).
pub mod token_broker;

/// Methods of a client key's guard (`KeyGuard`, one object per key id).
pub mod key_guard;

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
