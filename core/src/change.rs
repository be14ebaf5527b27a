//! What the outbox carries: a change, its kind and its document's version.
//! Every module that produces changes (forwarding, media, opt-outs) builds
//! on this one, and none of them on another.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const DOC_VERSION: u32 = 1;
crate::stored_enum! {
    /// What a forwarded change reports: its document's `type`, the
    /// outbox's `kind` column, and what a target names in `events`.
    pub enum ChangeKind {
        Received = "message.received",
        Status = "message.status",
        /// Sent once every media file of a message is settled.
        Media = "message.media",
        /// An opt-out that changed (`crate::optout`).
        OptOut = "optout.changed",
        /// Operational events about the targets themselves
        /// (`crate::targets::health`): sent only to targets that name them.
        TargetFailing = "target.failing",
        TargetDisabled = "target.disabled",
        TargetRecovered = "target.recovered",
        ForwardExhausted = "forward.exhausted",
    }
}

impl ChangeKind {
    /// An event about forwarding itself, not about messages: a target
    /// whose `events` is absent ("everything") does not get these.
    pub const fn is_operational(self) -> bool {
        matches!(self, Self::TargetFailing | Self::TargetDisabled | Self::TargetRecovered | Self::ForwardExhausted)
    }
}

/// One change to forward, with its stable webhook id and its document.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub webhook_id: String,
    pub kind: ChangeKind,
    pub message_id: String,
    pub doc: Value,
}

/// A change queued into a ledger shard's outbox from elsewhere (the opt-out
/// book's `optout.changed`, the target registry's operational events), with
/// its stable webhook id (`wire::ledger::QueueChanges`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedChange {
    pub webhook_id: String,
    pub kind: ChangeKind,
    pub message_id: String,
    pub doc: Value,
    /// For this target only (an operational event, whose document differs
    /// per target); otherwise every target that wants the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}
