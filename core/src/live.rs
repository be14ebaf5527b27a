//! Live subscriptions: who may see which change, and how a subscriber
//! asks. The documents are the forwarding documents (`message.received`,
//! `message.status`) plus `quarantine.item`; delivery is best effort, and a
//! subscriber that missed something resyncs from the list API.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::ClientKey;
use crate::identity::sha256_hex;
use crate::percent::percent_decode;

pub const KIND_QUARANTINE: &str = "quarantine.item";
/// The subprotocol a client offers, with `token.<token>` beside it: the
/// only way `GET /live` takes a token.
pub const SUBPROTOCOL: &str = "bw-ledger";

/// Sockets one client key may hold open at once, unless
/// `LIVE_MAX_SOCKETS_PER_KEY` says otherwise.
pub const DEFAULT_MAX_SOCKETS_PER_KEY: u32 = 10;

/// Reads `LIVE_MAX_SOCKETS_PER_KEY` (at least 1; default 10).
pub fn max_sockets_per_key(raw: Option<&str>) -> u32 {
    raw.and_then(|v| v.trim().parse::<u32>().ok()).filter(|n| *n > 0).unwrap_or(DEFAULT_MAX_SOCKETS_PER_KEY)
}

/// A subscriber's filter and scope, kept with its socket while it sleeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// `None` for the operator; a client key sees only its own numbers.
    pub scope: Option<Vec<String>>,
    pub message_id: Option<String>,
    pub number: Option<String>,
    /// The client key that opened it (`None`: the API token), checked
    /// against `CLIENT_KEYS` while the socket lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyBinding>,
}

/// Which key a socket was opened with: its id, and a fingerprint of its
/// digest (never the digest itself, which travels in the hub's URL and
/// sits in the socket's attachment), so a rotated key is told apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyBinding {
    pub id: String,
    pub fingerprint: String,
}

impl KeyBinding {
    pub fn of(key: &ClientKey) -> Self {
        Self { id: key.id.clone(), fingerprint: fingerprint(key) }
    }

    /// The hub's tag for this key's sockets, to count them.
    pub fn tag(&self) -> String {
        format!("key:{}", self.id)
    }
}

fn fingerprint(key: &ClientKey) -> String {
    sha256_hex(key.key_sha256.as_bytes())[..16].to_owned()
}

impl Subscription {
    /// Whether the key that opened this socket still grants it: the same id
    /// and digest in `keys`, with the same numbers. A removed or rotated key,
    /// or one whose numbers changed, loses its sockets.
    pub fn still_granted(&self, keys: &[ClientKey]) -> bool {
        let Some(bound) = &self.key else { return true };
        keys.iter().any(|k| {
            k.id == bound.id && fingerprint(k) == bound.fingerprint && self.scope.as_ref() == Some(&k.allowed_from)
        })
    }
}

fn numbers(doc: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    for key in ["from", "recipient"] {
        if let Some(n) = doc.get(key).and_then(Value::as_str) {
            out.push(n);
        }
    }
    if let Some(to) = doc.get("to").and_then(Value::as_array) {
        out.extend(to.iter().filter_map(Value::as_str));
    }
    out
}

impl Subscription {
    /// Whether this subscriber gets `doc`.
    pub fn wants(&self, doc: &Value) -> bool {
        let kind = doc.get("type").and_then(Value::as_str).unwrap_or("");
        if kind == KIND_QUARANTINE {
            // Raw input may belong to anyone: operators only.
            return self.scope.is_none() && self.message_id.is_none() && self.number.is_none();
        }
        let nums = numbers(doc);
        if let Some(scope) = &self.scope {
            if !nums.iter().any(|n| scope.iter().any(|s| s == n)) {
                return false;
            }
        }
        if let Some(id) = &self.message_id {
            if doc.get("messageId").and_then(Value::as_str) != Some(id.as_str()) {
                return false;
            }
        }
        if let Some(number) = &self.number {
            if !nums.contains(&number.as_str()) {
                return false;
            }
        }
        true
    }
}

/// What `GET /live` was asked: the token, only ever as a subprotocol
/// `token.<token>` beside `bw-ledger` (a query string lands in request
/// logs), and the filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveRequest {
    pub token: Option<String>,
    /// A `token` in the query string: refused, whatever else was offered.
    pub token_in_query: bool,
    pub message_id: Option<String>,
    pub number: Option<String>,
}

pub fn parse_live_request(query: Option<&str>, protocols: Option<&str>) -> LiveRequest {
    let mut r = LiveRequest::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).unwrap_or_default();
        match k {
            "token" => r.token_in_query = true,
            "messageId" => r.message_id = Some(v),
            "number" => r.number = Some(v),
            _ => {}
        }
    }
    let offered: Vec<&str> = protocols.unwrap_or("").split(',').map(str::trim).collect();
    if offered.contains(&SUBPROTOCOL) {
        r.token = offered.iter().find_map(|p| p.strip_prefix("token.")).map(str::to_owned);
    }
    r
}

/// The live document for a newly quarantined input.
pub fn quarantine_doc(content_hash: &str, reason: &str, first_seen_ms: i64) -> Value {
    serde_json::json!({
        "type": KIND_QUARANTINE,
        "contentHash": content_hash,
        "reason": reason,
        "firstSeen": crate::time::format_rfc3339_ms(first_seen_ms),
    })
}
