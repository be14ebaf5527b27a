//! Parsing Bandwidth callback bodies into typed events, keeping every byte.
//!
//! A callback body is a JSON array of events (a lone object is accepted too).
//! Parsing never fails as a whole: elements we can identify become
//! [`CallbackEvent`]s, everything else becomes a [`Rejected`] item bound for
//! the quarantine. Nothing authenticated is ever dropped here.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Largest callback body accepted (1 MiB). Bandwidth callbacks are a few KiB.
pub const MAX_CALLBACK_BODY: usize = 1024 * 1024;

/// The type of the event the send proxy records on `202 Accepted`.
pub const ACCEPTED_TYPE: &str = "message-accepted";

/// The event types Bandwidth sends today, plus whatever it adds tomorrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Ours, not Bandwidth's: the send proxy got `202 Accepted`. Carries the
    /// message as Bandwidth echoed it, text included.
    MessageAccepted,
    MessageReceived,
    MessageSending,
    MessageSent,
    MessageDelivered,
    MessageFailed,
    MessageRead,
    SuggestionResponse,
    RequestedLocationResponse,
    /// A type we do not model yet: stored as received, never dropped.
    Unknown(String),
}

/// Each known kind's name, once: `parse` and `as_str` both come from here.
macro_rules! event_kinds {
    ($($variant:ident = $name:expr,)*) => {
        impl EventKind {
            pub fn parse(s: &str) -> Self {
                $(if s == $name {
                    return Self::$variant;
                })*
                Self::Unknown(s.to_owned())
            }

            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $name,)*
                    Self::Unknown(s) => s,
                }
            }
        }
    };
}

event_kinds! {
    MessageAccepted = ACCEPTED_TYPE,
    MessageReceived = "message-received",
    MessageSending = "message-sending",
    MessageSent = "message-sent",
    MessageDelivered = "message-delivered",
    MessageFailed = "message-failed",
    MessageRead = "message-read",
    SuggestionResponse = "suggestion-response",
    RequestedLocationResponse = "requested-location-response",
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for EventKind {
    fn from(name: &str) -> Self {
        Self::parse(name)
    }
}

/// By name, as Bandwidth sends it and a shard stores it (`type`).
impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&<std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?))
    }
}

impl EventKind {
    /// Inbound events carry a customer's message (or reply) to one of our numbers.
    pub fn is_inbound(&self) -> bool {
        matches!(self, Self::MessageReceived | Self::SuggestionResponse | Self::RequestedLocationResponse)
    }
}

/// One identified Bandwidth event, with every field, modelled or not.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackEvent {
    pub kind: EventKind,
    pub message_id: String,
    /// Top-level `to`: the recipient this event is about.
    pub recipient: Option<String>,
    /// Top-level `time`, as sent.
    pub time: Option<String>,
    pub error_code: Option<i64>,
    /// The element parsed, for reading fields.
    pub raw: Value,
    /// The element's exact JSON text as received: what is stored.
    pub raw_json: String,
}

/// The nested `message` object of an event as Bandwidth sent it.
pub fn message_of(event: &Value) -> Option<&Map<String, Value>> {
    event.get("message")?.as_object()
}

impl CallbackEvent {
    /// The nested `message` object (always present on a parsed event).
    pub fn message(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        message_of(&self.raw).unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    pub fn time_ms(&self) -> Option<i64> {
        self.time.as_deref().and_then(crate::time::parse_rfc3339_ms)
    }
}

/// An input that could not be read as an event, kept for the quarantine.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The exact bytes: the whole body, or one array element re-serialised.
    pub raw: Vec<u8>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedCallback {
    pub events: Vec<CallbackEvent>,
    pub rejected: Vec<Rejected>,
}

/// Splits an authenticated callback body into events and quarantine items.
/// Each event keeps its exact JSON text, so nothing Bandwidth sent is
/// reformatted or rounded on its way into storage.
#[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
pub fn parse_callback_body(body: &[u8]) -> ParsedCallback {
    let whole =
        |reason: String| ParsedCallback { events: Vec::new(), rejected: vec![Rejected { raw: body.to_vec(), reason }] };
    let top: &RawValue = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return whole(format!("body is not JSON: {e}")),
    };
    let text = top.get().trim_start();
    if text.starts_with('[') {
        let items: Vec<&RawValue> = match serde_json::from_str(text) {
            Ok(items) => items,
            Err(e) => return whole(format!("body is not a JSON array: {e}")),
        };
        let mut out = ParsedCallback::default();
        for (i, item) in items.into_iter().enumerate() {
            match parse_event(item.get()) {
                Ok(ev) => out.events.push(ev),
                Err(why) => out
                    .rejected
                    .push(Rejected { raw: item.get().as_bytes().to_vec(), reason: format!("element {i}: {why}") }),
            }
        }
        out
    } else if text.starts_with('{') {
        match parse_event(top.get()) {
            Ok(ev) => ParsedCallback { events: vec![ev], rejected: Vec::new() },
            Err(why) => whole(why),
        }
    } else {
        whole("body is JSON but neither an event array nor an event object".into())
    }
}

/// An element is an event when it has a string `type` and a `message.id`:
/// the id is what the ledger shards and attaches on.
fn parse_event(raw: &str) -> Result<CallbackEvent, String> {
    let item: Value = serde_json::from_str(raw).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(obj) = item.as_object() else {
        return Err("not a JSON object".into());
    };
    let kind = match obj.get("type") {
        Some(Value::String(t)) if !t.trim().is_empty() => EventKind::parse(t),
        _ => return Err("missing string field `type`".into()),
    };
    let message_id = match obj.get("message").and_then(|m| m.get("id")) {
        Some(Value::String(id)) if !id.trim().is_empty() && id.len() <= 256 => id.clone(),
        _ => return Err("missing string field `message.id`".into()),
    };
    let recipient = obj.get("to").and_then(Value::as_str).map(str::to_owned);
    let time = obj.get("time").and_then(Value::as_str).map(str::to_owned);
    let error_code = exact_int(obj.get("errorCode"), "errorCode")?;
    // Read by the projection into the list's `segment_count` column.
    exact_int(obj.get("message").and_then(|m| m.get("segmentCount")), "message.segmentCount")?;
    Ok(CallbackEvent { kind, message_id, recipient, time, error_code, raw_json: raw.trim().to_owned(), raw: item })
}

/// The largest integer a JavaScript number holds exactly (2^53 - 1).
/// Storage hands integers to the runtime as JS numbers, so a modelled
/// number outside this range would be stored rounded and fail to read back.
pub const MAX_EXACT_INT: i64 = (1 << 53) - 1;

/// A modelled numeric field: absent or null, or an integer (a numeric
/// string is tolerated) that a JS number holds exactly. Anything else makes
/// the element malformed, so it is quarantined alone, byte for byte.
/// Unmodelled numbers are never read: they stay exact in the stored text.
fn exact_int(value: Option<&Value>, field: &str) -> Result<Option<i64>, String> {
    let n = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) if s.trim().parse::<f64>().is_ok() => None,
            Err(_) => return Err(format!("`{field}` is not a number")),
        },
        Some(_) => return Err(format!("`{field}` is not a number")),
    };
    match n {
        Some(n) if (-MAX_EXACT_INT..=MAX_EXACT_INT).contains(&n) => Ok(Some(n)),
        _ => Err(format!("`{field}` is not an integer within ±(2^53 - 1), so it cannot be stored exactly")),
    }
}

/// The ledger event for a send that Bandwidth answered `202 Accepted`, built
/// from the message Bandwidth echoed back. It is stored like any callback
/// event, so a callback that arrived first and this record never overwrite
/// each other: both are rows, and the projection merges them.
pub fn accepted_event(accepted_body: &[u8]) -> Result<CallbackEvent, String> {
    accepted_event_with(accepted_body, false)
}

/// As [`accepted_event`]; `opt_out_override` records that the operator
/// sent past an opt-out (`"optOutOverride": true` on the event).
pub fn accepted_event_with(accepted_body: &[u8], opt_out_override: bool) -> Result<CallbackEvent, String> {
    let message: Value = serde_json::from_slice(accepted_body).map_err(|e| format!("202 body is not JSON: {e}"))?;
    let time = message.get("time").cloned().unwrap_or(Value::Null);
    let mut raw = serde_json::json!({
        "type": ACCEPTED_TYPE,
        "time": time,
        "description": "Accepted by Bandwidth through the send proxy",
        "message": message,
    });
    if opt_out_override {
        raw["optOutOverride"] = Value::Bool(true);
    }
    parse_event(&raw.to_string())
}
