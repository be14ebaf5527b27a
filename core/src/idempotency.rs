//! `Idempotency-Key` for sends: a small state machine per (client, key).
//!
//! Bandwidth has no idempotency of its own, so a retried POST can send a
//! message twice. The first request with a key claims it (in flight); a
//! finished send saves its response, which later requests with the same
//! key and body get back without a second upstream call. The same key with
//! another body is refused. Records live 24 hours.
//!
//! Records are kept by the client key's guard (`KeyGuard`, one object per
//! key, since a key's scope is its own), which decides the claim and the
//! key's rate and quota in one call. Earlier builds kept them in the ledger
//! shards: for the first 24 hours of a guard's records (`read_through`),
//! a claim also looks there, so a retry across the upgrade never sends twice.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 60 * 60 * 1000;
pub const MAX_KEY_LEN: usize = 255;

/// Validates an `Idempotency-Key` header value.
pub fn parse_key(raw: &str) -> Result<String, ApiError> {
    let ok = !raw.is_empty() && raw.len() <= MAX_KEY_LEN && raw.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} printable ASCII characters without spaces."
        )))
    }
}

/// A saved upstream answer, replayed for retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedResponse {
    pub status: u16,
    pub body: String,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
}

/// What a shard holds for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyRecord {
    pub body_hash: String,
    pub created_ms: i64,
    /// `None` while the first request is still in flight.
    pub response: Option<SavedResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "decision")]
pub enum BeginDecision {
    /// The key is ours: call upstream, then complete or release it.
    Proceed,
    /// Another request with this key is still being sent.
    InFlight,
    /// Already sent: answer with the saved response.
    Replay { response: SavedResponse },
    /// The key was used with a different body.
    Mismatch,
}

/// Decides a new request's fate. A `Proceed` means the caller must write a
/// fresh in-flight record (replacing an expired one) in the same step.
pub fn decide_begin(existing: Option<&IdempotencyRecord>, body_hash: &str, now_ms: i64) -> BeginDecision {
    match existing {
        None => BeginDecision::Proceed,
        Some(r) if now_ms - r.created_ms >= IDEMPOTENCY_TTL_MS => BeginDecision::Proceed,
        Some(r) if r.body_hash != body_hash => BeginDecision::Mismatch,
        Some(IdempotencyRecord { response: None, .. }) => BeginDecision::InFlight,
        Some(IdempotencyRecord { response: Some(resp), .. }) => BeginDecision::Replay { response: resp.clone() },
    }
}

/// Whether an outcome is saved for replay. Upstream 4xx (429 included)
/// means Bandwidth did not take the message, so the key is released and a
/// retry may send. Anything else (accepted, 5xx, timeout, network failure)
/// may have sent it, so it is saved: a retry must never send again.
pub fn saves_outcome(status: u16) -> bool {
    !(400..500).contains(&status)
}

/// A key guard's claim: the idempotency key and the send it would admit,
/// decided in one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardClaim {
    pub begin: IdemBegin,
    pub ask: crate::limits::Ask,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimReply {
    pub decision: BeginDecision,
    /// When `decision` is `Proceed`: whether the key's limits admit the
    /// send. A refused send's claim is already released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<crate::limits::Verdict>,
    /// The guard has kept records for less than a day: look for the key in
    /// the shards too (`IdemPeek`).
    #[serde(default)]
    pub read_through: bool,
}

/// Saves the outcome (or releases the key) and gives back `refund`
/// recipients of a send Bandwidth did not take, in one guard call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardFinish {
    pub finish: IdemFinish,
    #[serde(default)]
    pub refund: u32,
    pub now_ms: i64,
}

/// Whether a guard that started keeping records at `since_ms` still reads
/// the shards' older ones: for one record lifetime.
pub fn reads_through(since_ms: i64, now_ms: i64) -> bool {
    now_ms - since_ms < IDEMPOTENCY_TTL_MS
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdemBegin {
    pub scope_key: String,
    pub body_hash: String,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdemFinish {
    pub scope_key: String,
    /// `Some` saves the response; `None` releases the key.
    pub response: Option<SavedResponse>,
}

/// `IdemPeek`: the record of a key, if the shard holds one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdemPeek {
    pub scope_key: String,
}

/// The key as stored: scoped to the client, so keys of different clients
/// never collide.
pub fn scope_key(client_id: &str, key: &str) -> String {
    serde_json::json!([client_id, key]).to_string()
}
