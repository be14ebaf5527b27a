//! The forwarding outbox's records and the operations over them: a row's
//! state, per-target counts and health for `GET /outbox`, dead letters, and
//! replay. What is forwarded, and how it is signed, is `forward`'s.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::change::ChangeKind;
use crate::retry::Schedule;

crate::stored_enum! {
    /// Where an outbox row is in its life; stored by name in its `state`
    /// column. `Pending` rows are attempted (and retried) until they are
    /// `Delivered`, or `Dead` once the schedule gives up; a replay makes a
    /// row `Pending` again. `Paused` rows belong to a disabled target: never
    /// attempted, they wait for it to be enabled (then `Pending`, with a new
    /// retry window), for at most [`KEEP_PAUSED_MS`].
    pub enum OutboxState {
        Pending = "pending",
        Delivered = "delivered",
        Dead = "dead",
        Paused = "paused",
    }
}

/// A paused row is kept this long (from when it was paused or queued),
/// then dead.
pub const KEEP_PAUSED_MS: i64 = 30 * 24 * 3_600_000;

impl OutboxState {
    /// The state after a failed attempt of a row first queued at
    /// `window_start_ms`.
    pub fn after_failure(schedule: &Schedule, window_start_ms: i64, now_ms: i64) -> Self {
        if schedule.gives_up(window_start_ms, now_ms) {
            Self::Dead
        } else {
            Self::Pending
        }
    }
}

/// Per-target counts reported by `GET /outbox`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TargetStats {
    pub target: String,
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
    /// Held for a disabled target.
    #[serde(default)]
    pub paused: i64,
    pub oldest_pending_ms: Option<i64>,
    /// The last failed attempt's reason and time.
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_error_ms: Option<i64>,
    /// Failed attempts since the last success (summed over shards: each
    /// counts its own since its own last success).
    #[serde(default)]
    pub consecutive_failures: i64,
}

impl TargetStats {
    /// One count of a shard's `GROUP BY target, state`.
    pub fn of_state(target: String, state: OutboxState, n: i64, oldest_ms: Option<i64>) -> Self {
        let mut s = Self { target, ..Self::default() };
        match state {
            OutboxState::Pending => {
                s.pending = n;
                s.oldest_pending_ms = oldest_ms;
            }
            OutboxState::Delivered => s.delivered = n,
            OutboxState::Dead => s.dead = n,
            OutboxState::Paused => s.paused = n,
        }
        s
    }
}

/// `GET /outbox`: the totals, with the oldest pending row's age at `now_ms`.
pub fn stats_view(stats: &[TargetStats], now_ms: i64) -> Value {
    let targets: Vec<Value> = stats
        .iter()
        .map(|t| {
            serde_json::json!({
                "target": t.target, "pending": t.pending, "delivered": t.delivered, "dead": t.dead,
                "paused": t.paused,
                "oldestPendingAgeMs": t.oldest_pending_ms.map(|ms| (now_ms - ms).max(0)),
                "lastError": t.last_error,
                "lastErrorAt": t.last_error_ms.map(crate::time::format_rfc3339_ms),
                "consecutiveFailures": t.consecutive_failures,
            })
        })
        .collect();
    serde_json::json!({ "targets": targets })
}

/// Merges the shards' dead letters: oldest first (ties by webhook id), at
/// most `limit`.
pub fn merge_dead(lists: Vec<Vec<OutboxItem>>, limit: usize) -> Vec<OutboxItem> {
    let mut items: Vec<OutboxItem> = lists.into_iter().flatten().collect();
    items.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.webhook_id.cmp(&b.webhook_id)));
    items.truncate(limit);
    items
}

/// Adds one shard's stats into the totals.
pub fn merge_stats(total: &mut Vec<TargetStats>, shard: Vec<TargetStats>) {
    for s in shard {
        match total.iter_mut().find(|t| t.target == s.target) {
            Some(t) => {
                t.pending += s.pending;
                t.delivered += s.delivered;
                t.dead += s.dead;
                t.paused += s.paused;
                t.oldest_pending_ms = match (t.oldest_pending_ms, s.oldest_pending_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if s.last_error_ms > t.last_error_ms {
                    t.last_error_ms = s.last_error_ms;
                    t.last_error = s.last_error;
                }
                t.consecutive_failures += s.consecutive_failures;
            }
            None => total.push(s),
        }
    }
    total.sort_by(|a, b| a.target.cmp(&b.target));
}

/// An outbox row as listed by `GET /outbox/dead`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxItem {
    pub webhook_id: String,
    pub target: String,
    pub message_id: String,
    pub kind: ChangeKind,
    pub state: OutboxState,
    pub attempts: i64,
    pub created_ms: i64,
    pub last_error: Option<String>,
}

/// `POST /outbox/replay`: a target, and either a time range (on when the
/// rows were first queued) or a list of webhook ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayRequest {
    pub target: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// Another target to deliver them to instead (a deleted target's dead
    /// letters, replayed elsewhere). Checked to exist by the Worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub into: Option<String>,
    /// Filled in by the Worker.
    #[serde(default)]
    pub now_ms: i64,
}

/// `POST /outbox/discard`: a target's dead letters, all or these ids,
/// deleted for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscardRequest {
    pub target: String,
    #[serde(default)]
    pub ids: Option<Vec<String>>,
}

impl ReplayRequest {
    /// `{"target"}` alone: every dead item of the target.
    pub fn all_dead(&self) -> bool {
        self.ids.is_none() && self.from.is_none() && self.to.is_none()
    }

    pub fn validate(&self) -> Result<(Option<i64>, Option<i64>), String> {
        let t = |v: &Option<String>, name: &str| match v {
            None => Ok(None),
            Some(s) => {
                crate::time::parse_rfc3339_ms(s).map(Some).ok_or(format!("`{name}` must be an RFC 3339 date-time"))
            }
        };
        Ok((t(&self.from, "from")?, t(&self.to, "to")?))
    }
}
