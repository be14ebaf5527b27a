//! A target's health as one state across every shard, and the operational
//! events its changes send.
//!
//! Shards report their attempts on a target ([`Report`]: failures since the
//! last report, a success, changes that died); the registry folds every
//! shard's reports into one [`Health`] per target:
//!
//! - `active` → `failing` once the failures since the last success reach
//!   `FORWARD_FAILING_AFTER` (the circuit breaker opens: one delivery in
//!   flight per shard, probing on the retry schedule);
//! - `failing` → `disabled` once the first of those failures is older than
//!   `FORWARD_DISABLE_AFTER_MS`, with no success since (nothing attempted;
//!   changes are kept `paused`);
//! - a success while failing, or an operator's `enable`, → `active`.
//!
//! An incident runs from the failure streak that made the target failing to
//! its recovery. It sends `target.failing` once, `target.disabled` at most
//! once, and `target.recovered` once; `forward.exhausted` goes out per
//! dead change, at most one event per target per minute (the rest wait for
//! the next). No clock here: times come from the caller.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::change::{ChangeKind, DOC_VERSION};
use crate::identity::sha256_hex;
use crate::retry::positive_var;
use crate::time::format_rfc3339_ms;

crate::stored_enum! {
    /// What `GET /targets` shows of a target's health. `Removed`: no longer
    /// configured, but rows or health of it remain.
    pub enum TargetState {
        Active = "active",
        Failing = "failing",
        Disabled = "disabled",
        Removed = "removed",
    }
}

/// `FORWARD_FAILING_AFTER`: consecutive failed attempts that make a target failing.
pub const DEFAULT_FAILING_AFTER: i64 = 5;
/// `FORWARD_DISABLE_AFTER_MS`: how long a target fails before it is disabled.
pub const DEFAULT_DISABLE_AFTER_MS: i64 = 5 * 24 * 3_600_000;
/// At most one `forward.exhausted` per target in this long.
pub const EXHAUSTED_WINDOW_MS: i64 = 60_000;
/// Changes named in one `forward.exhausted`; its `count` covers every one.
pub const EXHAUSTED_LISTED: usize = 100;

/// When a target becomes failing, then disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub failing_after: i64,
    pub disable_after_ms: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Self { failing_after: DEFAULT_FAILING_AFTER, disable_after_ms: DEFAULT_DISABLE_AFTER_MS }
    }
}

impl Policy {
    /// From the vars' values; an unset or non-positive one is its default.
    pub fn from_vars(failing_after: Option<&str>, disable_after_ms: Option<&str>) -> Self {
        Self {
            failing_after: positive_var(failing_after, DEFAULT_FAILING_AFTER),
            disable_after_ms: positive_var(disable_after_ms, DEFAULT_DISABLE_AFTER_MS),
        }
    }
}

/// A change a shard gave up on (dead-lettered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exhausted {
    pub webhook_id: String,
    pub message_id: String,
    pub kind: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// One shard's attempts on one target since its previous report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Report {
    pub target: String,
    /// The latest success, if any; `failures` all came after it.
    pub succeeded_ms: Option<i64>,
    pub failures: i64,
    pub first_failure_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub exhausted: Vec<Exhausted>,
    /// How many died, of which `exhausted` names the first ones.
    pub exhausted_count: i64,
}

/// One target's health, as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Health {
    pub target: String,
    pub state: TargetState,
    pub since_ms: i64,
    pub consecutive_failures: i64,
    pub first_failure_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub last_success_ms: Option<i64>,
    /// Disabled by an operator rather than by the breaker.
    pub by_hand: bool,
    /// The open incident's first failure, once `target.failing` went out.
    pub incident_ms: Option<i64>,
    pub alerted_disabled: bool,
    /// When the last `forward.exhausted` went out, and what waits for the next.
    pub exhausted_sent_ms: Option<i64>,
    pub exhausted_waiting: Vec<Exhausted>,
    pub exhausted_waiting_count: i64,
}

/// An operational event to send about `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub kind: ChangeKind,
    pub target: String,
    pub at_ms: i64,
    /// The event's own fields. `target.recovered`'s `held` is `null` until
    /// the shards have been asked ([`Alert::set_held`]).
    pub data: Value,
}

/// What one step did: the events to send, and whether the state moved
/// (every shard must then be told).
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    pub alerts: Vec<Alert>,
    pub moved: bool,
}

impl Step {
    fn and(mut self, other: Step) -> Step {
        self.alerts.extend(other.alerts);
        self.moved |= other.moved;
        self
    }
}

impl Default for Health {
    fn default() -> Self {
        Self {
            target: String::new(),
            state: TargetState::Active,
            since_ms: 0,
            consecutive_failures: 0,
            first_failure_ms: None,
            last_error: None,
            last_error_ms: None,
            last_success_ms: None,
            by_hand: false,
            incident_ms: None,
            alerted_disabled: false,
            exhausted_sent_ms: None,
            exhausted_waiting: Vec::new(),
            exhausted_waiting_count: 0,
        }
    }
}

impl Health {
    pub fn new(target: &str, now_ms: i64) -> Self {
        Self { target: target.to_owned(), since_ms: now_ms, ..Self::default() }
    }

    fn alert(&self, kind: ChangeKind, at_ms: i64, data: Value) -> Alert {
        Alert { kind, target: self.target.clone(), at_ms, data }
    }

    /// Folds one shard's report in.
    pub fn apply(&mut self, r: &Report, policy: &Policy, now_ms: i64) -> Step {
        let mut step = Step::default();
        if let Some(ok) = r.succeeded_ms {
            self.last_success_ms = Some(self.last_success_ms.map_or(ok, |t| t.max(ok)));
            self.consecutive_failures = 0;
            self.first_failure_ms = None;
            // A straggler finishing after the target was disabled does not enable it.
            if self.state == TargetState::Failing {
                step = step.and(self.recover(now_ms));
            }
        }
        if r.failures > 0 {
            self.consecutive_failures += r.failures;
            self.first_failure_ms = self.first_failure_ms.or(r.first_failure_ms).or(Some(now_ms));
            if r.last_error_ms >= self.last_error_ms {
                self.last_error.clone_from(&r.last_error);
                self.last_error_ms = r.last_error_ms;
            }
            if self.state == TargetState::Active && self.consecutive_failures >= policy.failing_after {
                step = step.and(self.fail(now_ms));
            }
        }
        self.note_exhausted(&r.exhausted, r.exhausted_count.max(r.exhausted.len() as i64));
        step.and(self.tick(policy, now_ms))
    }

    fn fail(&mut self, now_ms: i64) -> Step {
        let since = self.first_failure_ms.unwrap_or(now_ms);
        self.state = TargetState::Failing;
        self.since_ms = since;
        let mut step = Step { alerts: Vec::new(), moved: true };
        if self.incident_ms.is_none() {
            self.incident_ms = Some(since);
            let data = json!({
                "consecutiveFailures": self.consecutive_failures,
                "firstFailureAt": format_rfc3339_ms(since),
                "lastError": self.last_error,
                "lastErrorAt": self.last_error_ms.map(format_rfc3339_ms),
            });
            step.alerts.push(self.alert(ChangeKind::TargetFailing, now_ms, data));
        }
        step
    }

    /// Back to active; closes the incident, if one is open.
    fn recover(&mut self, now_ms: i64) -> Step {
        self.state = TargetState::Active;
        self.since_ms = now_ms;
        self.by_hand = false;
        self.alerted_disabled = false;
        let mut step = Step { alerts: Vec::new(), moved: true };
        if let Some(start) = self.incident_ms.take() {
            let data =
                json!({ "downSince": format_rfc3339_ms(start), "downForMs": (now_ms - start).max(0), "held": null });
            step.alerts.push(self.alert(ChangeKind::TargetRecovered, now_ms, data));
        }
        step
    }

    /// Time-driven moves: disabling a target failing for too long, and
    /// sending the `forward.exhausted` that waited out its minute.
    pub fn tick(&mut self, policy: &Policy, now_ms: i64) -> Step {
        let mut step = Step::default();
        if self.state == TargetState::Failing && now_ms - self.since_ms >= policy.disable_after_ms {
            let failing_since = self.since_ms;
            self.state = TargetState::Disabled;
            self.since_ms = now_ms;
            step.moved = true;
            if !self.alerted_disabled {
                self.alerted_disabled = true;
                let data = json!({
                    "failingSince": format_rfc3339_ms(failing_since),
                    "consecutiveFailures": self.consecutive_failures,
                    "lastError": self.last_error,
                    "lastErrorAt": self.last_error_ms.map(format_rfc3339_ms),
                });
                step.alerts.push(self.alert(ChangeKind::TargetDisabled, now_ms, data));
            }
        }
        let waited = self.exhausted_sent_ms.is_none_or(|t| now_ms - t >= EXHAUSTED_WINDOW_MS);
        if waited && self.exhausted_waiting_count > 0 {
            let listed = std::mem::take(&mut self.exhausted_waiting);
            let count = std::mem::take(&mut self.exhausted_waiting_count);
            step.alerts.push(self.exhausted(listed, count, now_ms));
        }
        step
    }

    fn exhausted(&mut self, listed: Vec<Exhausted>, count: i64, now_ms: i64) -> Alert {
        self.exhausted_sent_ms = Some(now_ms);
        self.alert(ChangeKind::ForwardExhausted, now_ms, json!({ "count": count, "changes": listed }))
    }

    /// Dead changes wait for the next `forward.exhausted`: at once
    /// ([`Health::tick`]) unless one went out less than a minute ago. It
    /// names the first [`EXHAUSTED_LISTED`] and counts them all.
    fn note_exhausted(&mut self, dead: &[Exhausted], count: i64) {
        let room = EXHAUSTED_LISTED.saturating_sub(self.exhausted_waiting.len());
        self.exhausted_waiting.extend(dead.iter().take(room).cloned());
        self.exhausted_waiting_count += count;
    }

    /// `POST /targets/{id}/enable`.
    pub fn enable(&mut self, now_ms: i64) -> Step {
        self.consecutive_failures = 0;
        self.first_failure_ms = None;
        match self.state {
            TargetState::Active => Step::default(),
            _ => self.recover(now_ms),
        }
    }

    /// `POST /targets/{id}/disable`: by hand, no event. An open incident
    /// stays open, and `enable` closes it.
    pub fn disable(&mut self, now_ms: i64) -> Step {
        if self.state == TargetState::Disabled {
            return Step::default();
        }
        self.state = TargetState::Disabled;
        self.since_ms = now_ms;
        self.by_hand = true;
        Step { alerts: Vec::new(), moved: true }
    }

    /// When [`Health::tick`] next has something to do.
    pub fn next_due(&self, policy: &Policy) -> Option<i64> {
        let disable = (self.state == TargetState::Failing).then(|| self.since_ms + policy.disable_after_ms);
        let exhausted =
            (self.exhausted_waiting_count > 0).then(|| self.exhausted_sent_ms.map_or(0, |t| t + EXHAUSTED_WINDOW_MS));
        match (disable, exhausted) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Alert {
    /// The event's webhook id, made once when the alert is (its `held` is
    /// filled in later).
    pub fn webhook_id(&self) -> String {
        let identity = json!([self.target, self.kind, self.at_ms, self.data]).to_string();
        format!("op_{}", &sha256_hex(identity.as_bytes())[..32])
    }

    /// `target.recovered`: how many changes were held (pending or paused)
    /// when the target recovered.
    pub fn set_held(&mut self, held: i64) {
        self.data["held"] = held.into();
    }

    pub fn needs_held(&self) -> bool {
        self.kind == ChangeKind::TargetRecovered && self.data["held"].is_null()
    }

    /// The Standard Webhooks document a target receives, under the webhook
    /// id the alert got when it was made.
    pub fn doc(&self, webhook_id: &str) -> Value {
        let mut doc = json!({
            "type": self.kind, "version": DOC_VERSION, "webhookId": webhook_id,
            "target": self.target, "time": format_rfc3339_ms(self.at_ms),
        });
        if let (Some(doc), Some(data)) = (doc.as_object_mut(), self.data.as_object()) {
            doc.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        doc
    }

    /// The one-line text of a Slack-format alert (`ALERT_FORMAT=slack`).
    pub fn slack_text(&self) -> String {
        let d = &self.data;
        let s = |k: &str| d[k].as_str().unwrap_or("unknown").to_owned();
        let t = &self.target;
        match self.kind {
            ChangeKind::TargetFailing => format!(
                "bw-ledger: webhook target `{t}` is failing: {} consecutive failed attempts since {}. Last error: {}",
                d["consecutiveFailures"],
                s("firstFailureAt"),
                s("lastError")
            ),
            ChangeKind::TargetDisabled => format!(
                "bw-ledger: webhook target `{t}` is disabled after failing since {}. Its changes are paused until \
                 POST /targets/{t}/enable. Last error: {}",
                s("failingSince"),
                s("lastError")
            ),
            ChangeKind::TargetRecovered => format!(
                "bw-ledger: webhook target `{t}` recovered after {} s down; {} held changes are being delivered.",
                d["downForMs"].as_i64().unwrap_or(0) / 1000,
                d["held"]
            ),
            _ => format!(
                "bw-ledger: {} change(s) to webhook target `{t}` were given up on (dead letters; \
                 POST /outbox/replay sends them again).",
                d["count"]
            ),
        }
    }
}
