//! One stored event of a message, parsed for the projection.

use serde_json::{Map, Value};

use crate::channel::entry_text;
use crate::event::{message_of, EventKind};
use crate::records::StoredEvent;

pub(super) struct Parsed<'a> {
    pub stored: &'a StoredEvent,
    pub kind: EventKind,
    pub raw: Value,
    /// A rich reply stored under the message it answers (its tied copy).
    pub reply_of_other: bool,
}

impl Parsed<'_> {
    pub(super) fn message(&self) -> Option<&Map<String, Value>> {
        message_of(&self.raw)
    }
    pub(super) fn msg_str(&self, field: &str) -> Option<String> {
        self.message()?.get(field)?.as_str().map(str::to_owned)
    }
    pub(super) fn msg_strings(&self, field: &str) -> Vec<String> {
        match self.message().and_then(|m| m.get(field)) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }
    /// The length of the event's text (`text`), and whether it or
    /// `message.media` has content, read in place (this runs for every
    /// event on every callback of the message).
    pub(super) fn text_len(&self) -> usize {
        self.text().map_or(0, str::len)
    }
    /// `message.text`; when that is empty or absent, a reply's suggestion
    /// text, its `content.text`, or the first text of a multi-channel
    /// send's `channelList`.
    pub(super) fn text(&self) -> Option<&str> {
        let m = self.message()?;
        let own = m.get("text").and_then(Value::as_str);
        if own.is_some_and(|t| !t.is_empty()) {
            return own;
        }
        let nested = |f: &str| m.get(f)?.get("text")?.as_str().filter(|t| !t.is_empty());
        nested("suggestionResponse")
            .or_else(|| nested("content"))
            .or_else(|| m.get("channelList")?.as_array()?.iter().find_map(entry_text))
            .or(own)
    }
    pub(super) fn has_content(&self) -> bool {
        self.text_len() > 0
            || self.message().and_then(|m| m.get("media")?.as_array()).is_some_and(|a| a.iter().any(Value::is_string))
    }
    /// Order key: event time (else arrival time), then fields that do not
    /// depend on arrival, so that events stamped with the same time sort the
    /// same way in any arrival order; the arrival sequence breaks what is left.
    pub(super) fn order(&self) -> (i64, &str, Option<&str>, &str, i64) {
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
