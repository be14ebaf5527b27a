//! The send proxy's request rules, mirroring Bandwidth's Create Message.
//!
//! A body that passes becomes a [`ValidSend`]: typed sender and recipients
//! plus the exact JSON to forward. Code holding a `ValidSend` never checks
//! again. Every failed rule is reported at once, per field, in Bandwidth's
//! `request-validation` shape, and nothing is sent upstream.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::time::parse_rfc3339_ms;

pub const MAX_RECIPIENTS: usize = 10;
pub const MAX_TEXT_CHARS: usize = 2048;
pub const MAX_MEDIA_URL_CHARS: usize = 4096;
/// Media URLs per send: Bandwidth's MMS carries a few files, and each URL
/// is a download the media archive makes, so a lifted key cannot queue
/// thousands of them.
pub const MAX_MEDIA_PER_SEND: usize = 10;
pub const MAX_TAG_CHARS: usize = 1024;
pub const MAX_SENDER_ID_CHARS: usize = 11;
/// Largest send body accepted; Bandwidth's own bodies are a few KiB.
pub const MAX_SEND_BODY: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldError {
    pub field_name: String,
    pub description: String,
}

/// An E.164 number: `+`, a non-zero digit, at most 15 digits in all.
pub fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else { return false };
    (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// An alphanumeric sender ID: 1 to 11 letters, digits or spaces, at least one letter.
pub fn is_sender_id(s: &str) -> bool {
    let n = s.chars().count();
    (1..=MAX_SENDER_ID_CHARS).contains(&n)
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ')
        && s.chars().any(|c| c.is_ascii_alphabetic())
        && s.trim() == s
}

/// Which of Bandwidth's send endpoints a body is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Create Message: `POST /users/{accountId}/messages`.
    Message,
    /// Create Multi-Channel Message: `POST /users/{accountId}/messages/multiChannel`.
    MultiChannel,
}

impl Endpoint {
    /// The path under `/users/{accountId}/`.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Message => "messages",
            Endpoint::MultiChannel => "messages/multiChannel",
        }
    }
}

/// Who a send goes out as: one for a message, one per `channelList` entry
/// of a multi-channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub from: String,
    pub application_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidSend {
    pub endpoint: Endpoint,
    /// Every sender the message may go out as, in order.
    pub senders: Vec<Sender>,
    pub to: Vec<String>,
    /// The body to forward: only Bandwidth's fields, `applicationId` filled.
    pub body: Value,
    /// `"optOutOverride": true`: the operator sends past an opt-out. Not
    /// Bandwidth's field, so never in `body`.
    pub opt_out_override: bool,
}

/// Validates a send body at time `now_ms`. `default_application_id` fills a
/// missing `applicationId`. Every broken rule is reported, not only the first.
pub fn validate_send(
    body: &[u8],
    now_ms: i64,
    default_application_id: Option<&str>,
) -> Result<ValidSend, Vec<FieldError>> {
    let obj = body_object(body)?;
    let mut v = SendCheck::new(&obj);
    v.application_id(default_application_id);
    let to = v.recipients();
    let from = v.from();
    let has_text = v.text();
    let has_media = v.media();
    if !has_text && !has_media && !v.errors.iter().any(|e| e.field_name.starts_with("media") || e.field_name == "text")
    {
        v.fail("text", "Either `text` or `media` must be present.");
    }
    v.tag();
    v.priority();
    v.expiration(now_ms);
    let application_id = v.out.get("applicationId").and_then(Value::as_str).map(str::to_owned);
    match (v.errors.is_empty(), from, application_id) {
        (true, Some(from), Some(application_id)) => {
            let opt_out_override = v.opt_out_override();
            let senders = vec![Sender { from, application_id }];
            Ok(ValidSend { endpoint: Endpoint::Message, senders, to, body: Value::Object(v.out), opt_out_override })
        }
        _ => Err(v.errors),
    }
}

/// A send body as a JSON object, or the one error that it is not.
pub(crate) fn body_object(body: &[u8]) -> Result<Map<String, Value>, Vec<FieldError>> {
    let not_object = || vec![field_error("body", "The request body must be a JSON object.")];
    match serde_json::from_slice(body).map_err(|_| not_object())? {
        Value::Object(obj) => Ok(obj),
        _ => Err(not_object()),
    }
}

pub(crate) fn field_error(field: &str, description: &str) -> FieldError {
    FieldError { field_name: field.to_owned(), description: description.to_owned() }
}

/// One send body under validation: the fields kept for Bandwidth, and every
/// rule broken so far.
pub(crate) struct SendCheck<'a> {
    pub(crate) obj: &'a Map<String, Value>,
    pub(crate) errors: Vec<FieldError>,
    pub(crate) out: Map<String, Value>,
}

impl<'a> SendCheck<'a> {
    pub(crate) fn new(obj: &'a Map<String, Value>) -> Self {
        Self { obj, errors: Vec::new(), out: Map::new() }
    }

    /// A field's value; SDKs may send null for unset optional fields, which
    /// counts as absent.
    pub(crate) fn get(&self, k: &str) -> Option<&Value> {
        self.obj.get(k).filter(|v| !v.is_null())
    }

    pub(crate) fn fail(&mut self, field: &str, description: &str) {
        self.errors.push(field_error(field, description));
    }

    pub(crate) fn failed(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field_name == field)
    }

    pub(crate) fn keep(&mut self, field: &str, value: Value) {
        self.out.insert(field.into(), value);
    }

    /// `"optOutOverride": true`: not Bandwidth's field, never kept.
    pub(crate) fn opt_out_override(&self) -> bool {
        self.get("optOutOverride").and_then(Value::as_bool).unwrap_or(false)
    }

    /// A string field, if present; anything else present is an error.
    pub(crate) fn string(&mut self, k: &str) -> Option<String> {
        match self.get(k) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.fail(k, &format!("`{k}` must be a string."));
                None
            }
        }
    }

    pub(crate) fn application_id(&mut self, default: Option<&str>) {
        match self.string("applicationId").or_else(|| default.map(str::to_owned)) {
            Some(id) if !id.trim().is_empty() => self.keep("applicationId", Value::String(id)),
            _ if self.failed("applicationId") => {}
            _ => self.fail("applicationId", "`applicationId` is required (none is configured as a default)."),
        }
    }

    /// `to`: 1 to `MAX_RECIPIENTS` distinct E.164 numbers.
    pub(crate) fn recipients(&mut self) -> Vec<String> {
        let mut to: Vec<String> = Vec::new();
        match self.get("to").cloned() {
            Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_RECIPIENTS => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(n) if is_e164(n) && to.iter().any(|t| t == n) => {
                            self.fail(&format!("to[{i}]"), &format!("Duplicate recipient {n}."))
                        }
                        Some(n) if is_e164(n) => to.push(n.to_owned()),
                        _ => {
                            self.fail(&format!("to[{i}]"), "Each recipient must be an E.164 number, like +15554443333.")
                        }
                    }
                }
            }
            Some(Value::Array(items)) if !items.is_empty() => {
                self.fail("to", &format!("At most {MAX_RECIPIENTS} recipients are allowed; got {}.", items.len()))
            }
            _ => self.fail("to", "`to` must be a list of 1 to 10 E.164 numbers."),
        }
        if !to.is_empty() {
            self.keep("to", Value::Array(to.iter().cloned().map(Value::String).collect()));
        }
        to
    }

    pub(crate) fn from(&mut self) -> Option<String> {
        let from = self.string("from");
        match &from {
            Some(f) if is_e164(f) || is_sender_id(f) => self.keep("from", Value::String(f.clone())),
            Some(_) => self.fail(
                "from",
                "`from` must be an E.164 number or an alphanumeric sender ID of at most 11 characters with at least one letter.",
            ),
            None if self.failed("from") => {}
            None => self.fail("from", "`from` is required."),
        }
        from
    }

    /// `text`; true when it is present and not empty.
    fn text(&mut self) -> bool {
        let Some(t) = self.string("text") else { return false };
        if t.chars().count() > MAX_TEXT_CHARS {
            self.fail("text", &format!("`text` must be at most {MAX_TEXT_CHARS} characters."));
        } else {
            self.keep("text", Value::String(t.clone()));
        }
        !t.is_empty()
    }

    /// `media`: at most `MAX_MEDIA_PER_SEND` http(s) URLs; true when any.
    fn media(&mut self) -> bool {
        let mut media = Vec::new();
        match self.get("media").cloned() {
            None => {}
            Some(Value::Array(items)) if items.len() > MAX_MEDIA_PER_SEND => self
                .fail("media", &format!("At most {MAX_MEDIA_PER_SEND} media URLs are allowed; got {}.", items.len())),
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(u) if u.chars().count() > MAX_MEDIA_URL_CHARS => self.fail(
                            &format!("media[{i}]"),
                            &format!("Each media URL must be at most {MAX_MEDIA_URL_CHARS} characters."),
                        ),
                        Some(u) if u.starts_with("https://") || u.starts_with("http://") => media.push(u.to_owned()),
                        _ => self.fail(&format!("media[{i}]"), "Each media entry must be an http(s) URL."),
                    }
                }
            }
            Some(_) => self.fail("media", "`media` must be a list of URLs."),
        }
        if !media.is_empty() {
            self.keep("media", Value::Array(media.into_iter().map(Value::String).collect()));
            return true;
        }
        false
    }

    pub(crate) fn tag(&mut self) {
        if let Some(tag) = self.string("tag") {
            if tag.chars().count() > MAX_TAG_CHARS {
                self.fail("tag", &format!("`tag` must be at most {MAX_TAG_CHARS} characters."));
            } else {
                self.keep("tag", Value::String(tag));
            }
        }
    }

    pub(crate) fn priority(&mut self) {
        if let Some(p) = self.string("priority") {
            if p == "default" || p == "high" {
                self.keep("priority", Value::String(p));
            } else {
                self.fail("priority", "`priority` must be `default` or `high`.");
            }
        }
    }

    pub(crate) fn expiration(&mut self, now_ms: i64) {
        let Some(exp) = self.string("expiration") else { return };
        match parse_rfc3339_ms(&exp) {
            Some(ms) if ms > now_ms => self.keep("expiration", Value::String(exp)),
            Some(_) => self.fail("expiration", "`expiration` must be in the future."),
            None => self.fail("expiration", "`expiration` must be an RFC 3339 date-time, like 2026-12-01T12:00:00Z."),
        }
    }
}
