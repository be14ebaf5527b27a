//! Rebuilding a message from its stored events: content, one status per
//! recipient, and the timeline.
//!
//! The projection is a pure fold over the event set with the transition
//! table of [`crate::status`]: it ignores arrival order, so any permutation
//! of the same events yields the same view. On top of the table:
//! - the timeline keeps both events when `failed` and `delivered` arrive for
//!   one recipient, and marks the contradiction;
//! - MMS and group `delivered` is only a handoff to Bandwidth's network;
//! - error 9902 means the delivery receipt expired: delivery is unknown;
//! - a Multi-Channel message folds each channel's attempt on its own
//!   (`recipients`), and a rich reply tied to the message (`crate::channel`)
//!   shows in its timeline, never in its content or recipients.

mod parsed;
mod recipients;

use serde::Serialize;
use serde_json::Value;

use crate::channel::{channel_order, paired_message_id, Channel};
use crate::event::EventKind;
use crate::media::{ArchivedMedia, MediaRecord};
use crate::records::{MessageRecords, StoredConflict};
pub use crate::status::RecipientState;
use crate::time::format_rfc3339_ms;
use parsed::Parsed;
use recipients::{project_recipients, Shape};
pub use recipients::{ChannelAttempt, RecipientStatus, StatusFlag, RECEIPT_EXPIRED};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub time: Option<String>,
    pub recipient: Option<String>,
    pub error_code: Option<i64>,
    pub received_at: String,
    /// This `delivered`/`read` contradicts a `failed` for the same recipient.
    pub contradicted: bool,
    /// A rich reply to this message: the reply's own message id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_message_id: Option<String>,
    pub event: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConflictEntry {
    pub event_key: Value,
    pub content_hash: String,
    pub received_at: String,
    pub event: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub message_id: String,
    pub direction: Option<String>,
    pub from: Option<String>,
    pub to: Vec<String>,
    pub owner: Option<String>,
    pub application_id: Option<String>,
    pub text: Option<String>,
    pub media: Vec<String>,
    pub tag: Option<String>,
    pub segment_count: Option<i64>,
    pub priority: Option<String>,
    /// Bandwidth's own `message.time`: when it accepted the message.
    pub time: Option<String>,
    pub recipients: Vec<RecipientStatus>,
    pub timeline: Vec<TimelineEntry>,
    pub conflicts: Vec<ConflictEntry>,
    /// The archive of `media` (`crate::media`): one entry per file, in the
    /// order of `media`, each served by this Worker under `/media/`.
    pub archived_media: Vec<ArchivedMedia>,
    /// A Multi-Channel send's `channelList`, as Bandwidth accepted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_list: Option<Value>,
    /// A rich reply: the message it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired_message_id: Option<String>,
    /// A `suggestion-response`: the suggestion's `text` and `postbackData`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion_response: Option<Value>,
    /// A `requested-location-response`: its `latitude` and `longitude`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_response: Option<Value>,
}

/// Projects stored records into a message view; `None` when there are none.
pub fn project(message_id: &str, records: &MessageRecords) -> Option<MessageView> {
    let mut events: Vec<Parsed> = records
        .events
        .iter()
        .map(|s| {
            let raw: Value = serde_json::from_str(&s.record.raw).unwrap_or(Value::Null);
            let own_id = raw.get("message").and_then(|m| m.get("id")).and_then(Value::as_str);
            let reply_of_other = own_id.is_some_and(|id| id != message_id);
            Parsed { stored: s, kind: s.record.kind.clone(), raw, reply_of_other }
        })
        .collect();
    if events.is_empty() {
        return None;
    }
    // Canonical order makes every "first of" choice below independent of
    // arrival order.
    events.sort_by(|a, b| a.order().cmp(&b.order()));
    // The message's own events; tied replies only join the timeline.
    let own: Vec<&Parsed> = events.iter().filter(|e| !e.reply_of_other).collect();

    // Content: the richest message object seen. Status callbacks carry
    // empty text, so prefer events with text or media, then inbound ones.
    let richest =
        own.iter().max_by_key(|e| (e.has_content(), e.kind.is_inbound(), e.text_len(), std::cmp::Reverse(e.order())));
    let first_str = |field: &str| own.iter().find_map(|e| e.msg_str(field));
    let first_object =
        |field: &str| own.iter().find_map(|e| e.message()?.get(field).filter(|v| v.is_object()).cloned());
    let to = own.iter().map(|e| e.msg_strings("to")).find(|t| !t.is_empty()).unwrap_or_default();
    let media = richest.map(|r| r.msg_strings("media")).unwrap_or_default();
    let direction = first_str("direction");
    let is_group = to.len() > 1;
    let is_mms = !media.is_empty() || own.iter().any(|e| !e.msg_strings("media").is_empty());
    let channel_list = own.iter().find_map(|e| e.message()?.get("channelList").filter(|v| v.is_array()).cloned());
    let order: Vec<Channel> = channel_list.as_ref().map(channel_order).unwrap_or_default();
    let shape = Shape { to: &to, direction: direction.as_deref(), handoff_only: is_group || is_mms, order: &order };
    let recipients = project_recipients(&own, &shape);
    let mut view = MessageView {
        message_id: message_id.to_owned(),
        direction,
        from: first_str("from"),
        to,
        owner: first_str("owner"),
        application_id: first_str("applicationId"),
        text: richest.and_then(|r| r.text().map(str::to_owned)),
        archived_media: archived_media(&records.media, &media),
        media,
        tag: first_str("tag"),
        segment_count: own.iter().find_map(|e| e.message()?.get("segmentCount")?.as_i64()),
        priority: first_str("priority"),
        time: first_str("time"),
        recipients,
        timeline: Vec::new(),
        conflicts: records.conflicts.iter().map(conflict_entry).collect(),
        channel_list,
        paired_message_id: own.iter().find_map(|e| paired_message_id(&e.raw).map(str::to_owned)),
        suggestion_response: first_object("suggestionResponse"),
        location_response: first_object("locationResponse"),
    };
    drop(own);
    view.timeline = timeline(events, &view.recipients);
    Some(view)
}

/// Last, the timeline takes each parsed event over (no copy of its JSON).
fn timeline(events: Vec<Parsed>, recipients: &[RecipientStatus]) -> Vec<TimelineEntry> {
    let contradicted: Vec<&str> =
        recipients.iter().filter(|r| r.flags.contains(&StatusFlag::Contradiction)).map(|r| r.number.as_str()).collect();
    events
        .into_iter()
        .map(|e| {
            let recipient = e.stored.record.recipient.clone();
            let contradicted = !e.reply_of_other
                && matches!(e.kind, EventKind::MessageDelivered | EventKind::MessageRead)
                && recipient.as_deref().is_some_and(|r| contradicted.contains(&r));
            let reply_message_id = if e.reply_of_other { e.msg_str("id") } else { None };
            TimelineEntry {
                kind: e.stored.record.kind.clone(),
                time: e.stored.record.time.clone(),
                recipient,
                error_code: e.stored.record.error_code,
                received_at: format_rfc3339_ms(e.stored.received_at_ms),
                contradicted,
                reply_message_id,
                event: e.raw,
            }
        })
        .collect()
}

/// The archive entries, in the order their source URLs have in `media`.
fn archived_media(records: &[MediaRecord], media: &[String]) -> Vec<ArchivedMedia> {
    let mut out: Vec<&MediaRecord> = records.iter().collect();
    out.sort_by_key(|r| (media.iter().position(|u| *u == r.source_url).unwrap_or(usize::MAX), r.path.as_str()));
    out.into_iter().map(MediaRecord::view).collect()
}

fn conflict_entry(c: &StoredConflict) -> ConflictEntry {
    ConflictEntry {
        event_key: serde_json::from_str(&c.event_key).unwrap_or(Value::Null),
        content_hash: c.content_hash.clone(),
        received_at: format_rfc3339_ms(c.received_at_ms),
        event: serde_json::from_str(&c.raw).unwrap_or(Value::Null),
    }
}
