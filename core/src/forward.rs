//! Forwarding the normalized truth downstream: what counts as a change,
//! the versioned document sent for it, and Standard Webhooks signing.
//!
//! A change is a recipient's normalized status moving (or an inbound
//! message arriving), found by comparing a message's recipients before and
//! after an event is stored. A retried duplicate changes nothing, and a
//! `delivered` after `failed` changes nothing (the table keeps `failed`), so
//! downstream hears one outcome per recipient. No clock or randomness here:
//! times and jitter come from the caller.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

use crate::change::DOC_VERSION;
use crate::change::{Change, ChangeKind};
use crate::identity::sha256_hex;
use crate::projection::{MessageView, RecipientStatus};
use crate::status::RecipientState;

/// The highest `ratePerSecond` a target may have.
pub const RATE_MAX: u32 = 1_000;

/// A delivery counts only if the target answers 2xx within this time.
pub const DELIVERY_TIMEOUT_MS: u64 = 10_000;

/// One configured downstream target (secret `FORWARD_TARGETS`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct ForwardTarget {
    pub id: String,
    pub url: String,
    /// Standard Webhooks secret: `whsec_` and base64.
    #[serde(default)]
    pub secret: Option<String>,
    /// Several secrets at once, for rotation without downtime: every
    /// delivery is signed with each, newest first (Standard Webhooks).
    #[serde(default)]
    pub secrets: Option<Vec<String>>,
    /// Normalized kinds to send; all when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Deliveries per second at most, across every shard (`targets::pace`).
    #[serde(default, rename = "ratePerSecond")]
    pub rate_per_second: Option<u32>,
}

impl std::fmt::Debug for ForwardTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardTarget").field("id", &self.id).field("url", &self.url).finish_non_exhaustive()
    }
}

impl ForwardTarget {
    /// The HMAC keys (the base64 after `whsec_`) of `secrets`, or of
    /// `secret`; `None` if there are none or any is malformed.
    pub fn keys(&self) -> Option<Vec<Vec<u8>>> {
        let secrets: Vec<&String> = match (&self.secrets, &self.secret) {
            (Some(list), _) => list.iter().collect(),
            (None, Some(one)) => vec![one],
            (None, None) => Vec::new(),
        };
        let keys: Option<Vec<Vec<u8>>> = secrets.into_iter().map(|s| secret_key(s)).collect();
        keys.filter(|k| !k.is_empty())
    }
}

/// The HMAC key of a `whsec_` secret; `None` if malformed.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix("whsec_")?).ok().filter(|k| !k.is_empty())
}

/// Parses and checks `FORWARD_TARGETS`; empty or absent means no targets.
pub fn parse_targets(json: Option<&str>) -> Result<Vec<ForwardTarget>, String> {
    let Some(json) = json.filter(|j| !j.trim().is_empty()) else { return Ok(Vec::new()) };
    let targets: Vec<ForwardTarget> =
        serde_json::from_str(json).map_err(|e| format!("FORWARD_TARGETS is not a JSON list of targets: {e}"))?;
    for t in &targets {
        if !(t.url.starts_with("https://") || t.url.starts_with("http://")) {
            return Err(format!("FORWARD_TARGETS: target {:?} needs an http(s) url", t.id));
        }
        if t.keys().is_none() {
            return Err(format!(
                "FORWARD_TARGETS: target {:?} needs a \"secret\" (or \"secrets\") of the form whsec_<base64>",
                t.id
            ));
        }
        if t.rate_per_second.is_some_and(|r| !(1..=RATE_MAX).contains(&r)) {
            return Err(format!("FORWARD_TARGETS: target {:?} needs a ratePerSecond from 1 to 1000", t.id));
        }
        if let Some(kinds) = &t.events {
            if let Some(k) = kinds.iter().find(|k| ChangeKind::parse(k).is_none()) {
                return Err(format!("FORWARD_TARGETS: target {:?} names an unknown event kind {k:?}", t.id));
            }
        }
    }
    let mut ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    if ids.len() != targets.len() {
        return Err("FORWARD_TARGETS: target ids must be unique".into());
    }
    Ok(targets)
}

/// The changes between a message's recipients before (`previous`: number
/// and normalized state) and after (`view`) new events were stored.
pub fn changes(previous: &[(String, RecipientState)], view: &MessageView) -> Vec<Change> {
    let mut out = Vec::new();
    for r in &view.recipients {
        let before = previous.iter().find(|(n, _)| *n == r.number).map(|(_, s)| *s);
        if before == Some(r.status) {
            continue;
        }
        // The event that carries the new state, as Bandwidth sent it.
        let event = view
            .timeline
            .iter()
            .filter(|t| t.recipient.as_deref() == Some(r.number.as_str()))
            .find(|t| RecipientState::from_kind(&t.kind) == Some(r.status))
            .or_else(|| view.timeline.first())
            .map(|t| t.event.clone())
            .unwrap_or(Value::Null);
        let (kind, doc) = if r.status == RecipientState::Received {
            let doc = serde_json::json!({
                "type": ChangeKind::Received,
                "version": DOC_VERSION,
                "messageId": view.message_id,
                "from": view.from,
                "to": view.to,
                "recipient": r.number,
                "text": view.text,
                "media": view.media,
                "time": r.updated_at.clone().or_else(|| view.time.clone()),
                "event": event,
            });
            (ChangeKind::Received, doc)
        } else {
            let doc = serde_json::json!({
                "type": ChangeKind::Status,
                "version": DOC_VERSION,
                "messageId": view.message_id,
                "recipient": r.number,
                "previousStatus": before,
                "status": r.status,
                "flags": r.flags,
                "errorCode": r.error_code,
                "description": r.description,
                "time": r.updated_at,
                "from": r.sent_from().or(view.from.as_deref()),
                "event": event,
            });
            (ChangeKind::Status, doc)
        };
        let mut doc = doc;
        add_multi_channel(&mut doc, view, r);
        let identity = serde_json::json!([view.message_id, r.number, kind, r.status]).to_string();
        let webhook_id = format!("msg_{}", &sha256_hex(identity.as_bytes())[..32]);
        doc["webhookId"] = Value::String(webhook_id.clone());
        out.push(Change { webhook_id, kind, message_id: view.message_id.clone(), doc });
    }
    out
}

/// The Multi-Channel facts of a change, present only when known (so an
/// SMS/MMS document is as it always was): the channel that carried it and
/// when it was read; for a rich reply, the suggestion (`text`,
/// `postbackData`) or location, and the message it answers.
fn add_multi_channel(doc: &mut Value, view: &MessageView, r: &RecipientStatus) {
    let fields = [
        ("channel", r.channel.map(|c| Value::String(c.as_str().to_owned()))),
        ("readTime", r.read_time.clone().map(Value::String)),
        ("pairedMessageId", view.paired_message_id.clone().map(Value::String)),
        ("suggestionResponse", view.suggestion_response.clone()),
        ("locationResponse", view.location_response.clone()),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            doc[name] = v;
        }
    }
}

/// `webhook-signature` for Standard Webhooks: `v1,` and the base64 of
/// HMAC-SHA256 over `{id}.{timestamp}.{body}`.
pub fn sign(key: &[u8], webhook_id: &str, timestamp_secs: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{webhook_id}.{timestamp_secs}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The Standard Webhooks headers of one delivery attempt, signed now with
/// every key: `webhook-signature` holds one `v1,` signature per key, space
/// separated, so a receiver verifying with any of them accepts it.
pub fn webhook_headers(
    keys: &[Vec<u8>],
    webhook_id: &str,
    timestamp_secs: i64,
    payload: &str,
) -> Vec<(&'static str, String)> {
    let signatures: Vec<String> = keys.iter().map(|k| sign(k, webhook_id, timestamp_secs, payload)).collect();
    let mut headers = vec![
        ("Content-Type", "application/json".to_owned()),
        ("webhook-id", webhook_id.to_owned()),
        ("webhook-timestamp", timestamp_secs.to_string()),
    ];
    // No keys: an unsigned target (the alert webhook without a secret).
    if !signatures.is_empty() {
        headers.push(("webhook-signature", signatures.join(" ")));
    }
    headers
}
