//! What the outbox carries: a change, its kind and its document's version.
//! Every module that produces changes (forwarding, media, opt-outs) builds
//! on this one, and none of them on another.

use serde_json::Value;

pub const DOC_VERSION: u32 = 1;
pub const KIND_RECEIVED: &str = "message.received";
pub const KIND_STATUS: &str = "message.status";
/// The forwarded kind sent once every media file of a message is settled.
pub const KIND_MEDIA: &str = "message.media";
/// An opt-out that changed (`crate::optout`).
pub const KIND_OPTOUT: &str = "optout.changed";
/// Every kind a target may name in `events`.
pub const FORWARDED_KINDS: [&str; 4] = [KIND_RECEIVED, KIND_STATUS, KIND_MEDIA, KIND_OPTOUT];
/// One change to forward, with its stable webhook id and its document.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub webhook_id: String,
    pub kind: &'static str,
    pub message_id: String,
    pub doc: Value,
}
