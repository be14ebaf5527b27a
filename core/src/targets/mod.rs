//! Webhook targets made through the API (`/targets`), beside those of the
//! `FORWARD_TARGETS` secret: their stored records, the snapshot every shard
//! holds, what a shard delivers with, and what an operator is shown.
//!
//! One object (the registry) keeps the records; every change to them makes
//! a new snapshot version, which it hands to every shard. A shard keeps the
//! newest version it was given, so a change applies to its next delivery
//! attempt, and survives restarts on both sides.
//!
//! - `input`: what `POST` and `PATCH` accept;
//! - `seal`: secrets, generated and sealed at rest;
//! - `pace`: `ratePerSecond` across every shard;
//! - `health`: each target's state (active, failing, disabled) and the
//!   operational events it sends;
//! - `views`: what `GET /targets` and `/metrics` show.

pub mod health;
pub mod input;
pub mod pace;
pub mod seal;
pub mod views;

use serde::{Deserialize, Serialize};

use crate::change::ChangeKind;
use crate::forward::{secret_key, ForwardTarget};
use health::TargetState;
pub use input::{parse_new, parse_patch, NewTarget, TargetPatch};
use seal::Sealer;

/// How long a rotated-out secret still signs (`FORWARD_ROTATION_OVERLAP_MS`).
pub const DEFAULT_ROTATION_OVERLAP_MS: i64 = 24 * 3_600_000;

/// An API-made target as the registry stores it and shards hold it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRecord {
    pub id: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<ChangeKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Disabled (by hand or by the breaker): nothing is attempted; changes
    /// are kept paused. Kept equal to the registry's health state
    /// (`TargetSnapshot::states`), for builds that read only this.
    #[serde(default)]
    pub paused: bool,
    /// Newest first. Every one not expired signs each delivery.
    #[serde(default)]
    pub secrets: Vec<StoredSecret>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl std::fmt::Debug for TargetRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetRecord").field("id", &self.id).field("url", &self.url).finish_non_exhaustive()
    }
}

/// One signing secret, as stored (`seal`); `sealed` is empty in what the
/// registry hands out for display.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSecret {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sealed: String,
    pub created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret").field("created_ms", &self.created_ms).finish_non_exhaustive()
    }
}

impl StoredSecret {
    fn signs_at(&self, now_ms: i64) -> bool {
        self.expires_ms.is_none_or(|at| at > now_ms)
    }
}

impl TargetRecord {
    pub fn new(t: NewTarget, id: String, sealed_secret: String, now_ms: i64) -> Self {
        Self {
            id,
            url: t.url,
            events: t.events,
            rate_per_second: t.rate_per_second,
            description: t.description,
            paused: false,
            secrets: vec![StoredSecret { sealed: sealed_secret, created_ms: now_ms, expires_ms: None }],
            created_ms: now_ms,
            updated_ms: now_ms,
        }
    }

    pub fn apply(&mut self, patch: &TargetPatch, now_ms: i64) {
        if let Some(url) = &patch.url {
            self.url = url.clone();
        }
        if let Some(events) = &patch.events {
            self.events = events.clone();
        }
        if let Some(rate) = patch.rate_per_second {
            self.rate_per_second = rate;
        }
        if let Some(description) = &patch.description {
            self.description = description.clone();
        }
        self.updated_ms = now_ms;
    }

    /// A new secret signs from now; those that signed until now keep
    /// signing for `overlap_ms` (an earlier overlap is never extended), and
    /// expired ones are dropped.
    pub fn rotate(&mut self, sealed_secret: String, now_ms: i64, overlap_ms: i64) {
        let until = now_ms + overlap_ms.max(0);
        self.secrets.retain(|s| s.signs_at(now_ms));
        for s in &mut self.secrets {
            s.expires_ms = Some(s.expires_ms.map_or(until, |at| at.min(until)));
        }
        self.secrets.retain(|s| s.signs_at(now_ms));
        self.secrets.insert(0, StoredSecret { sealed: sealed_secret, created_ms: now_ms, expires_ms: None });
        self.updated_ms = now_ms;
    }

    /// The record with its secrets' values left out.
    pub fn without_secrets(&self) -> Self {
        let mut r = self.clone();
        for s in &mut r.secrets {
            s.sealed.clear();
        }
        r
    }
}

/// What every shard holds: the registry's targets at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TargetSnapshot {
    pub version: i64,
    pub targets: Vec<TargetRecord>,
    /// Every target not active, of either source (`health`).
    #[serde(default)]
    pub states: Vec<StateEntry>,
}

/// A target that is not active, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEntry {
    pub id: String,
    pub state: TargetState,
    pub since_ms: i64,
}

impl TargetSnapshot {
    /// A target's state in this snapshot: active unless listed (or, in a
    /// snapshot from before states, paused).
    pub fn state_of(&self, id: &str) -> TargetState {
        match self.states.iter().find(|s| s.id == id) {
            Some(s) => s.state,
            None if self.targets.iter().any(|t| t.id == id && t.paused) => TargetState::Disabled,
            None => TargetState::Active,
        }
    }
}

/// The registry's answer to `List`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    pub targets: Vec<TargetRecord>,
    pub health: Vec<health::Health>,
}

/// What a registry method did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "value", rename_all = "camelCase")]
pub enum Outcome<T> {
    Done(T),
    NotFound,
    /// The target comes from `FORWARD_TARGETS`, or the id is taken.
    Conflict(String),
}

/// A target made or rotated: the record (without secrets) and the new
/// secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WithSecret {
    pub target: TargetRecord,
    pub secret: String,
}

/// The registry's requests naming a target (`wire::target_registry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetId {
    pub id: String,
}

/// `PATCH /targets/{id}`, as the registry takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PatchRequest {
    pub id: String,
    pub patch: TargetPatch,
}

/// `enable` (`paused: false`) or `disable` (`true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PausedRequest {
    pub id: String,
    pub paused: bool,
}

/// A target as a shard delivers to it, from either source.
#[derive(Clone)]
pub struct Target {
    pub id: String,
    pub url: String,
    pub events: Option<Vec<ChangeKind>>,
    pub rate_per_second: Option<u32>,
    pub state: TargetState,
    /// Since when it is in that state (0: active as far as known).
    pub since_ms: i64,
    /// HMAC keys and until when each signs; or why there are none.
    keys: Result<Vec<SigningKey>, String>,
    /// Sent without a signature (the alert webhook with no secret).
    unsigned: bool,
}

/// An HMAC key, and until when it signs (`None`: until rotated out).
type SigningKey = (Vec<u8>, Option<i64>);

impl Target {
    /// Disabled: nothing is attempted, its changes are kept paused.
    pub fn paused(&self) -> bool {
        self.state == TargetState::Disabled
    }

    pub fn failing(&self) -> bool {
        self.state == TargetState::Failing
    }

    pub fn wants(&self, kind: ChangeKind) -> bool {
        match &self.events {
            Some(e) => e.contains(&kind),
            None => !kind.is_operational(),
        }
    }

    /// The keys that sign a delivery made at `now_ms`.
    pub fn keys_at(&self, now_ms: i64) -> Result<Vec<Vec<u8>>, String> {
        let keys = self.keys.as_ref().map_err(Clone::clone)?;
        let live: Vec<Vec<u8>> =
            keys.iter().filter(|(_, until)| until.is_none_or(|at| at > now_ms)).map(|(k, _)| k.clone()).collect();
        if live.is_empty() && !self.unsigned {
            return Err("the target has no signing secret".into());
        }
        Ok(live)
    }

    pub fn from_config(t: &ForwardTarget) -> Self {
        Self {
            id: t.id.clone(),
            url: t.url.clone(),
            events: t.events.as_ref().map(|e| e.iter().filter_map(|k| ChangeKind::parse(k)).collect()),
            rate_per_second: t.rate_per_second,
            state: TargetState::Active,
            since_ms: 0,
            keys: t.keys().map(|k| k.into_iter().map(|k| (k, None)).collect()).ok_or("malformed secret".into()),
            unsigned: false,
        }
    }

    /// The `ALERT_WEBHOOK_URL` target: operational events only, signed when
    /// `ALERT_WEBHOOK_SECRET` is set.
    pub fn alert_webhook(url: &str, secret: Option<&str>) -> Self {
        let keys = match secret {
            Some(s) => {
                secret_key(s).map(|k| vec![(k, None)]).ok_or("ALERT_WEBHOOK_SECRET is not whsec_<base64>".into())
            }
            None => Ok(Vec::new()),
        };
        Self {
            id: ALERT_WEBHOOK_ID.into(),
            url: url.to_owned(),
            events: Some(ChangeKind::ALL.iter().copied().filter(|k| k.is_operational()).collect()),
            rate_per_second: None,
            state: TargetState::Active,
            since_ms: 0,
            unsigned: secret.is_none(),
            keys,
        }
    }

    pub fn from_record(r: &TargetRecord, sealer: Option<&Sealer>) -> Self {
        let keys = r
            .secrets
            .iter()
            .map(|s| {
                let secret = seal::open(sealer, &r.id, &s.sealed)?;
                let key = secret_key(&secret).ok_or("a stored secret is not whsec_<base64>")?;
                Ok((key, s.expires_ms))
            })
            .collect();
        Self {
            id: r.id.clone(),
            url: r.url.clone(),
            events: r.events.clone(),
            rate_per_second: r.rate_per_second,
            state: if r.paused { TargetState::Disabled } else { TargetState::Active },
            since_ms: 0,
            keys,
            unsigned: false,
        }
    }
}

/// The id under which `ALERT_WEBHOOK_URL` is a target (taken by no other).
pub const ALERT_WEBHOOK_ID: &str = "alert-webhook";

/// Every target a shard delivers to: the configured ones (and the alert
/// webhook), then the API's (an API target whose id a configured one took
/// later is left out), each in its state in `snapshot`.
pub fn runtime(
    config: &[ForwardTarget],
    alert: Option<&Target>,
    snapshot: &TargetSnapshot,
    sealer: Option<&Sealer>,
) -> Vec<Target> {
    let mut all: Vec<Target> = config.iter().map(Target::from_config).collect();
    all.extend(alert.cloned());
    for r in &snapshot.targets {
        if !all.iter().any(|c| c.id == r.id) {
            all.push(Target::from_record(r, sealer));
        }
    }
    for t in &mut all {
        t.state = snapshot.state_of(&t.id);
        t.since_ms = snapshot.states.iter().find(|s| s.id == t.id).map_or(0, |s| s.since_ms);
    }
    all
}

/// The 409 for changing a `FORWARD_TARGETS` target (or the alert
/// webhook) through the API.
pub fn config_conflict(id: &str) -> String {
    if id == ALERT_WEBHOOK_ID {
        return format!(
            "Target `{id}` is the ALERT_WEBHOOK_URL variable (\"source\": \"alert\"): change that to change it."
        );
    }
    format!(
        "Target `{id}` comes from the FORWARD_TARGETS secret (\"source\": \"config\"): edit that secret to change it."
    )
}
