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

#[derive(Debug, Clone, PartialEq)]
pub struct ValidSend {
    pub application_id: String,
    pub from: String,
    pub to: Vec<String>,
    /// The body to forward: only Bandwidth's fields, `applicationId` filled.
    pub body: Value,
    /// `"optOutOverride": true`: the operator sends past an opt-out. Not
    /// Bandwidth's field, so never in `body`.
    pub opt_out_override: bool,
}

/// Validates a send body at time `now_ms`. `default_application_id` fills a
/// missing `applicationId`.
pub fn validate_send(
    body: &[u8],
    now_ms: i64,
    default_application_id: Option<&str>,
) -> Result<ValidSend, Vec<FieldError>> {
    let err = |field: &str, description: &str| FieldError {
        field_name: field.to_owned(),
        description: description.to_owned(),
    };
    let value: Value =
        serde_json::from_slice(body).map_err(|_| vec![err("body", "The request body must be a JSON object.")])?;
    let Value::Object(obj) = value else {
        return Err(vec![err("body", "The request body must be a JSON object.")]);
    };
    // SDKs may send null for unset optional fields: treat null as absent.
    let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let mut errors = Vec::new();
    let mut out = Map::new();

    let string_field = |k: &str, errors: &mut Vec<FieldError>| -> Option<String> {
        match get(k) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errors.push(err(k, &format!("`{k}` must be a string.")));
                None
            }
        }
    };

    // applicationId
    match string_field("applicationId", &mut errors).or_else(|| default_application_id.map(str::to_owned)) {
        Some(id) if !id.trim().is_empty() => {
            out.insert("applicationId".into(), Value::String(id));
        }
        _ if errors.iter().any(|e| e.field_name == "applicationId") => {}
        _ => errors.push(err("applicationId", "`applicationId` is required (none is configured as a default).")),
    }

    // to
    let mut to = Vec::new();
    match get("to") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_RECIPIENTS => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(n) if is_e164(n) => {
                        if to.iter().any(|t: &String| t == n) {
                            errors.push(err(&format!("to[{i}]"), &format!("Duplicate recipient {n}.")));
                        } else {
                            to.push(n.to_owned());
                        }
                    }
                    _ => errors
                        .push(err(&format!("to[{i}]"), "Each recipient must be an E.164 number, like +15554443333.")),
                }
            }
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            errors.push(err("to", &format!("At most {MAX_RECIPIENTS} recipients are allowed; got {}.", items.len())))
        }
        _ => errors.push(err("to", "`to` must be a list of 1 to 10 E.164 numbers.")),
    }
    if !to.is_empty() {
        out.insert("to".into(), Value::Array(to.iter().cloned().map(Value::String).collect()));
    }

    // from
    let from = string_field("from", &mut errors);
    match &from {
        Some(f) if is_e164(f) || is_sender_id(f) => {
            out.insert("from".into(), Value::String(f.clone()));
        }
        Some(_) => errors.push(err(
            "from",
            "`from` must be an E.164 number or an alphanumeric sender ID of at most 11 characters with at least one letter.",
        )),
        None if errors.iter().any(|e| e.field_name == "from") => {}
        None => errors.push(err("from", "`from` is required.")),
    }

    // text
    let text = string_field("text", &mut errors);
    if let Some(t) = &text {
        if t.chars().count() > MAX_TEXT_CHARS {
            errors.push(err("text", &format!("`text` must be at most {MAX_TEXT_CHARS} characters.")));
        } else {
            out.insert("text".into(), Value::String(t.clone()));
        }
    }

    // media
    let mut media = Vec::new();
    match get("media") {
        None => {}
        Some(Value::Array(items)) if items.len() > MAX_MEDIA_PER_SEND => errors
            .push(err("media", &format!("At most {MAX_MEDIA_PER_SEND} media URLs are allowed; got {}.", items.len()))),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(u) if u.chars().count() > MAX_MEDIA_URL_CHARS => errors.push(err(
                        &format!("media[{i}]"),
                        &format!("Each media URL must be at most {MAX_MEDIA_URL_CHARS} characters."),
                    )),
                    Some(u) if u.starts_with("https://") || u.starts_with("http://") => media.push(u.to_owned()),
                    _ => errors.push(err(&format!("media[{i}]"), "Each media entry must be an http(s) URL.")),
                }
            }
        }
        Some(_) => errors.push(err("media", "`media` must be a list of URLs.")),
    }
    if !media.is_empty() {
        out.insert("media".into(), Value::Array(media.iter().cloned().map(Value::String).collect()));
    }
    let has_text = text.as_deref().is_some_and(|t| !t.is_empty());
    if !has_text
        && media.is_empty()
        && !errors.iter().any(|e| e.field_name.starts_with("media") || e.field_name == "text")
    {
        errors.push(err("text", "Either `text` or `media` must be present."));
    }

    // tag
    if let Some(tag) = string_field("tag", &mut errors) {
        if tag.chars().count() > MAX_TAG_CHARS {
            errors.push(err("tag", &format!("`tag` must be at most {MAX_TAG_CHARS} characters.")));
        } else {
            out.insert("tag".into(), Value::String(tag));
        }
    }

    // priority
    if let Some(p) = string_field("priority", &mut errors) {
        if p == "default" || p == "high" {
            out.insert("priority".into(), Value::String(p));
        } else {
            errors.push(err("priority", "`priority` must be `default` or `high`."));
        }
    }

    // expiration
    if let Some(exp) = string_field("expiration", &mut errors) {
        match parse_rfc3339_ms(&exp) {
            Some(ms) if ms > now_ms => {
                out.insert("expiration".into(), Value::String(exp));
            }
            Some(_) => errors.push(err("expiration", "`expiration` must be in the future.")),
            None => {
                errors.push(err("expiration", "`expiration` must be an RFC 3339 date-time, like 2026-12-01T12:00:00Z."))
            }
        }
    }

    let application_id = out.get("applicationId").and_then(Value::as_str).map(str::to_owned);
    match (errors.is_empty(), from, application_id) {
        (true, Some(from), Some(application_id)) => {
            let opt_out_override = get("optOutOverride").and_then(Value::as_bool).unwrap_or(false);
            Ok(ValidSend { application_id, from, to, body: Value::Object(out), opt_out_override })
        }
        _ => Err(errors),
    }
}
