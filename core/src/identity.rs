//! Event identity and dedup decisions.
//!
//! Bandwidth delivers at least once and retries for 24 hours, so the same
//! event can arrive many times, even concurrently. An event's identity is
//! (message id, type, recipient `to`, `time`, `errorCode`); its content is the
//! SHA-256 of its canonical JSON. Same identity and content is a retry; same
//! identity with other content is a conflict, kept aside and never merged.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::CallbackEvent;

/// The identity of one Bandwidth event, as stored (a JSON array, so that no
/// separator inside an id can make two identities collide).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey(String);

impl EventKey {
    pub fn of(ev: &CallbackEvent) -> Self {
        let tuple = serde_json::json!([ev.message_id, ev.kind.as_str(), ev.recipient, ev.time, ev.error_code,]);
        Self(tuple.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The range `[lo, hi)` that holds exactly the keys of `message_id`'s
    /// events, in byte order (SQLite's BINARY collation): every key starts
    /// with the JSON of the id and a comma, and `-` follows `,`. So the
    /// unique index on the key finds a message's events, and no second
    /// index (a row written per event) is needed.
    pub fn range_of(message_id: &str) -> (String, String) {
        let id = Value::String(message_id.to_owned()).to_string();
        (format!("[{id},"), format!("[{id}-"))
    }
}

/// What to do with an incoming event, given what the shard already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupDecision {
    /// First sighting: store it.
    Insert,
    /// A retry of what we have: store nothing, answer success.
    Duplicate,
    /// Same identity, different content: record as a conflict, keep the original.
    Conflict,
}

/// `stored_hash` is the content hash held for the same [`EventKey`], if any.
pub fn decide(stored_hash: Option<&str>, incoming_hash: &str) -> DedupDecision {
    match stored_hash {
        None => DedupDecision::Insert,
        Some(h) if h == incoming_hash => DedupDecision::Duplicate,
        Some(_) => DedupDecision::Conflict,
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// Content hash of a JSON value: SHA-256 of its canonical form, so that key
/// order and whitespace in a retry do not make it look different.
pub fn content_hash(value: &Value) -> String {
    let mut buf = String::new();
    write_canonical(value, &mut buf);
    sha256_hex(buf.as_bytes())
}

/// Canonical JSON: object keys sorted, no insignificant whitespace. Written
/// out by hand so that it holds whatever serde_json features are enabled.
pub fn canonical_json(value: &Value) -> String {
    let mut buf = String::new();
    write_canonical(value, &mut buf);
    buf
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::String(text) => write_string(text, out),
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A JSON string exactly as serde_json writes it: text that needs no
/// escape (almost every key and value in a callback) is copied as it is,
/// anything else goes through serde_json. Stored hashes depend on this
/// being byte-identical to serde_json's output.
fn write_string(text: &str, out: &mut String) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&Value::String(text.to_owned()).to_string());
    }
}
