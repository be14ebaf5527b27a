//! Rebuilding a message from its stored events: content, one status per
//! recipient, and the timeline.
//!
//! The projection is a pure fold over the event set with the transition
//! table of [`crate::status`]: it ignores arrival order, so any permutation
//! of the same events yields the same view. On top of the table:
//! - the timeline keeps both events when `failed` and `delivered` arrive for
//!   one recipient, and marks the contradiction;
//! - MMS and group `delivered` is only a handoff to Bandwidth's network;
//! - error 9902 means the delivery receipt expired: delivery is unknown.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::EventKind;
use crate::media::{ArchivedMedia, MediaRecord};
use crate::records::{MessageRecords, StoredConflict, StoredEvent};
use crate::status::next;
pub use crate::status::RecipientState;
use crate::time::format_rfc3339_ms;

/// Bandwidth's error code for "delivery receipt expired".
pub const RECEIPT_EXPIRED: i64 = 9902;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusFlag {
    /// MMS or group `delivered`: reached Bandwidth's network, not the handset.
    NetworkHandoffOnly,
    /// Error 9902: the receipt expired, delivery is unknown.
    ReceiptExpired,
    /// Both `failed` and `delivered`/`read` arrived; `failed` was kept.
    Contradiction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientStatus {
    pub number: String,
    pub status: RecipientState,
    pub error_code: Option<i64>,
    pub description: Option<String>,
    pub flags: Vec<StatusFlag>,
    /// Event time of the event that set the status.
    pub updated_at: Option<String>,
}

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
}

struct Parsed<'a> {
    stored: &'a StoredEvent,
    kind: EventKind,
    raw: Value,
}

impl Parsed<'_> {
    fn message(&self) -> Option<&Map<String, Value>> {
        self.raw.get("message").and_then(Value::as_object)
    }
    fn msg_str(&self, field: &str) -> Option<String> {
        self.message()?.get(field)?.as_str().map(str::to_owned)
    }
    fn msg_strings(&self, field: &str) -> Vec<String> {
        match self.message().and_then(|m| m.get(field)) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }
    /// The length of `message.text`, and whether it or `message.media`
    /// has content, read in place (this runs for every event on every
    /// callback of the message).
    fn text_len(&self) -> usize {
        self.message().and_then(|m| m.get("text")?.as_str()).map_or(0, str::len)
    }
    fn has_content(&self) -> bool {
        self.text_len() > 0
            || self.message().and_then(|m| m.get("media")?.as_array()).is_some_and(|a| a.iter().any(Value::is_string))
    }
    /// Order key: event time (else arrival time), then fields that do not
    /// depend on arrival, so that events stamped with the same time sort the
    /// same way in any arrival order; the arrival sequence breaks what is left.
    fn order(&self) -> (i64, &str, Option<&str>, &str, i64) {
        let r = &self.stored.record;
        (
            r.time_ms.unwrap_or(self.stored.received_at_ms),
            r.kind.as_str(),
            r.recipient.as_deref(),
            r.content_hash.as_str(),
            self.stored.seq,
        )
    }
}

/// Projects stored records into a message view; `None` when there are none.
pub fn project(message_id: &str, records: &MessageRecords) -> Option<MessageView> {
    let mut events: Vec<Parsed> = records
        .events
        .iter()
        .map(|s| Parsed {
            stored: s,
            kind: s.record.kind.clone(),
            raw: serde_json::from_str(&s.record.raw).unwrap_or(Value::Null),
        })
        .collect();
    // Canonical order makes every "first of" choice below independent of
    // arrival order.
    events.sort_by(|a, b| a.order().cmp(&b.order()));

    // Content: the richest message object seen. Status callbacks carry
    // empty text, so prefer events with text or media, then inbound ones.
    let richest = events
        .iter()
        .max_by_key(|e| (e.has_content(), e.kind.is_inbound(), e.text_len(), std::cmp::Reverse(e.order())))?;
    let first_str = |field: &str| events.iter().find_map(|e| e.msg_str(field));
    let to = events.iter().map(|e| e.msg_strings("to")).find(|t| !t.is_empty()).unwrap_or_default();
    let media = richest.msg_strings("media");
    let direction = first_str("direction");
    let is_group = to.len() > 1;
    let is_mms = !media.is_empty() || events.iter().any(|e| !e.msg_strings("media").is_empty());

    let recipients = project_recipients(&events, &to, direction.as_deref(), is_group || is_mms);
    let mut view = MessageView {
        message_id: message_id.to_owned(),
        direction,
        from: first_str("from"),
        to,
        owner: first_str("owner"),
        application_id: first_str("applicationId"),
        text: richest.msg_str("text"),
        archived_media: archived_media(&records.media, &media),
        media,
        tag: first_str("tag"),
        segment_count: events.iter().find_map(|e| e.message()?.get("segmentCount")?.as_i64()),
        priority: first_str("priority"),
        time: first_str("time"),
        recipients,
        timeline: Vec::new(),
        conflicts: records.conflicts.iter().map(conflict_entry).collect(),
    };
    // Last, the timeline takes each parsed event over (no copy of its JSON).
    let contradicted: Vec<&str> = view
        .recipients
        .iter()
        .filter(|r| r.flags.contains(&StatusFlag::Contradiction))
        .map(|r| r.number.as_str())
        .collect();
    let timeline = events
        .into_iter()
        .map(|e| {
            let recipient = e.stored.record.recipient.clone();
            let contradicted = matches!(e.kind, EventKind::MessageDelivered | EventKind::MessageRead)
                && recipient.as_deref().is_some_and(|r| contradicted.contains(&r));
            TimelineEntry {
                kind: e.stored.record.kind.clone(),
                time: e.stored.record.time.clone(),
                recipient,
                error_code: e.stored.record.error_code,
                received_at: format_rfc3339_ms(e.stored.received_at_ms),
                contradicted,
                event: e.raw,
            }
        })
        .collect();
    view.timeline = timeline;
    Some(view)
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

fn project_recipients(
    events: &[Parsed],
    to: &[String],
    direction: Option<&str>,
    handoff_only: bool,
) -> Vec<RecipientStatus> {
    // Every listed recipient of an outbound message starts as accepted:
    // an event exists, so Bandwidth accepted the message.
    let mut numbers: Vec<String> = if direction == Some("out") { to.to_vec() } else { Vec::new() };
    for e in events {
        if RecipientState::from_kind(&e.kind).is_some() {
            if let Some(r) = &e.stored.record.recipient {
                if !numbers.contains(r) {
                    numbers.push(r.clone());
                }
            }
        }
    }
    numbers.sort();

    numbers
        .into_iter()
        .map(|number| {
            let mine: Vec<(&Parsed, RecipientState)> = events
                .iter()
                .filter(|e| e.stored.record.recipient.as_deref() == Some(number.as_str()))
                .filter_map(|e| RecipientState::from_kind(&e.kind).map(|s| (e, s)))
                .collect();
            // Fold the transition table; the event that set the final state
            // is the earliest one carrying it (events are in canonical order).
            let status = mine.iter().map(|(_, s)| *s).reduce(next).unwrap_or(RecipientState::Accepted);
            let winner = mine.iter().find(|(_, s)| *s == status);
            let mut flags = Vec::new();
            if status == RecipientState::Failed
                && mine.iter().any(|(_, s)| matches!(s, RecipientState::Delivered | RecipientState::Read))
            {
                flags.push(StatusFlag::Contradiction);
            }
            if status == RecipientState::Delivered && handoff_only {
                flags.push(StatusFlag::NetworkHandoffOnly);
            }
            let error_code = winner.and_then(|(e, _)| e.stored.record.error_code);
            if mine.iter().any(|(e, _)| e.stored.record.error_code == Some(RECEIPT_EXPIRED)) {
                flags.push(StatusFlag::ReceiptExpired);
            }
            RecipientStatus {
                number,
                status,
                error_code,
                description: winner.and_then(|(e, _)| e.raw.get("description")?.as_str().map(str::to_owned)),
                flags,
                updated_at: winner.and_then(|(e, _)| e.stored.record.time.clone()),
            }
        })
        .collect()
}
