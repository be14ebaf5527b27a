//! Live subscriptions: who may see which change, and how a subscriber
//! asks. The documents are the forwarding documents (`message.received`,
//! `message.status`) plus `quarantine.item`; delivery is best effort, and a
//! subscriber that missed something resyncs from the list API.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::route::percent_decode;

pub const KIND_QUARANTINE: &str = "quarantine.item";
/// The subprotocol a browser offers (with `token.<token>`) when it cannot
/// put the token in the URL.
pub const SUBPROTOCOL: &str = "bw-ledger";

/// A subscriber's filter and scope, kept with its socket while it sleeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// `None` for the operator; a client key sees only its own numbers.
    pub scope: Option<Vec<String>>,
    pub message_id: Option<String>,
    pub number: Option<String>,
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

/// What `GET /live` was asked: the token (query `token`, or a subprotocol
/// `token.<token>` beside `bw-ledger`) and the filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveRequest {
    pub token: Option<String>,
    pub via_subprotocol: bool,
    pub message_id: Option<String>,
    pub number: Option<String>,
}

pub fn parse_live_request(query: Option<&str>, protocols: Option<&str>) -> LiveRequest {
    let mut r = LiveRequest::default();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).unwrap_or_default();
        match k {
            "token" => r.token = Some(v),
            "messageId" => r.message_id = Some(v),
            "number" => r.number = Some(v),
            _ => {}
        }
    }
    if r.token.is_none() {
        let offered: Vec<&str> = protocols.unwrap_or("").split(',').map(str::trim).collect();
        if offered.contains(&SUBPROTOCOL) {
            if let Some(t) = offered.iter().find_map(|p| p.strip_prefix("token.")) {
                r.token = Some(t.to_owned());
                r.via_subprotocol = true;
            }
        }
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
