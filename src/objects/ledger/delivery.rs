//! Delivering a ledger shard's outbox rows to their targets (off every ack
//! path, from the alarm), and pruning finished rows. Rows are queued by
//! ingest, in the same commit as the events that caused them; `outbox.rs`
//! has the operations over them. States are `OutboxState`'s names.
//!
//! `next_attempt_ms` is a row's next action: its next attempt while pending
//! (or the end of its lease while an attempt runs), and the time it finished
//! once delivered or dead, from which pruning counts.
//!
//! The alarm never depends on work that outlives it: before the handler
//! returns, the alarm is set for the earliest deliverable row (a leased row
//! counts at its lease's end) or pruning time. Deliveries run in `waitUntil`,
//! which does not keep the object alive; if it is evicted mid-delivery, the
//! lease ends and the row is sent again with the same webhook-id.

use std::rc::Rc;
use std::time::Duration;

use bw_ledger_core::forward::{webhook_headers, DELIVERY_TIMEOUT_MS};
use bw_ledger_core::media::MediaStatus;
use bw_ledger_core::outbox::OutboxState;
use bw_ledger_core::retry::Schedule;
use bw_ledger_core::targets::Target;
use serde::Deserialize;
use worker::{Env, Result, SqlStorage, Storage};

use super::health::{self, Reporter};
use super::pacing::{wait_turn, Turn};
use super::rows::{state, InFlight, SeqRow, MAX_IN_FLIGHT};
use crate::clock::{jitter, now_ms};
use crate::fetch::{fetch_status_with_timeout, FetchFailure};
use crate::objects::transaction::Transactions;

/// Deliveries in flight to one target at once, so that a target that hangs
/// never holds every connection.
const MAX_IN_FLIGHT_PER_TARGET: u32 = 2;
/// Due rows looked at per alarm round.
const DUE_WINDOW: u32 = 256;
/// A started delivery holds its row this long past the delivery timeout.
const DELIVERY_LEASE_SLACK_MS: i64 = 5_000;
/// Why a row of a target no longer configured is dead.
pub const REMOVED: &str = "the target is no longer configured";
/// Dead rows are kept this long, unless replayed.
pub const KEEP_DEAD_MS: i64 = 30 * 24 * 3_600_000;
/// Delivered rows are kept this long by default (`FORWARD_KEEP_DELIVERED_MS`).
pub const DEFAULT_KEEP_DELIVERED_MS: i64 = 7 * 24 * 3_600_000;
/// Finished rows deleted per statement.
const PRUNE_BATCH: u32 = 500;
/// When an alarm round leaves due rows waiting (every connection busy), it
/// looks again this much later rather than at once; a delivery that
/// finishes re-arms it sooner.
const BUSY_RECHECK_MS: i64 = 250;

#[derive(Deserialize)]
pub struct OutboxRow {
    seq: i64,
    webhook_id: String,
    target_id: String,
    payload: String,
    attempts: i64,
    window_start_ms: i64,
}

#[derive(Deserialize)]
struct NextRow {
    next: Option<i64>,
}

/// The earliest-due deliverable row: pending, of a target not blocked
/// (disabled, or failing and not due for a probe: `health::gates`), and the
/// oldest pending row of its (target, message), so per-message order holds.
/// Rows waiting behind an older one are not due, whatever their own time
/// says. Parameters: pending, pending, the blocked targets' ids as a JSON
/// list.
const HEAD: &str = "state = ? AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.target_id = o.target_id
    AND p.message_id = o.message_id AND p.state = ? AND p.seq < o.seq)
    AND o.target_id NOT IN (SELECT value FROM json_each(?))";

/// What a delivery needs, owned, so it can outlive the alarm that started it.
#[derive(Clone)]
pub struct Deliveries {
    pub sql: SqlStorage,
    pub storage: Rc<Storage>,
    pub env: Env,
    pub txn: Transactions,
    pub targets: Rc<super::targets::TargetBook>,
    pub schedule: Schedule,
    pub keep_delivered_ms: i64,
    pub in_flight: Rc<InFlight>,
    pub reporter: Rc<Reporter>,
}

impl Deliveries {
    /// Due head rows, as many as the connection limits allow, each leased
    /// for one delivery and counted in flight.
    pub fn lease_due(&self, now: i64) -> Result<Vec<OutboxRow>> {
        let gates = health::gates(&self.sql, &self.targets, &self.in_flight, &self.schedule, now)?;
        let due: Vec<OutboxRow> = self
            .sql
            .exec(
                &format!(
                    "SELECT seq, webhook_id, target_id, payload, attempts, window_start_ms FROM outbox o
                     WHERE {HEAD} AND next_attempt_ms <= ? ORDER BY next_attempt_ms, seq LIMIT ?"
                ),
                vec![
                    state(OutboxState::Pending),
                    state(OutboxState::Pending),
                    gates.blocked_json().into(),
                    now.into(),
                    i64::from(DUE_WINDOW).into(),
                ],
            )?
            .to_array()?;
        let mut heads = Vec::new();
        for row in due {
            if self.in_flight.total() >= MAX_IN_FLIGHT {
                break;
            }
            // A failing target's circuit breaker: one probe at a time.
            let limit = if gates.failing.contains(&row.target_id) { 1 } else { MAX_IN_FLIGHT_PER_TARGET };
            if self.in_flight.of(&row.target_id) < limit {
                self.in_flight.start(&row.target_id);
                heads.push(row);
            }
        }
        let lease_until = now + DELIVERY_TIMEOUT_MS as i64 + DELIVERY_LEASE_SLACK_MS;
        // One statement, so the leases are taken all or none.
        let seqs = serde_json::to_string(&heads.iter().map(|h| h.seq).collect::<Vec<_>>())?;
        if let Err(e) = self.sql.exec(
            "UPDATE outbox SET next_attempt_ms = ? WHERE seq IN (SELECT value FROM json_each(?))",
            vec![lease_until.into(), seqs.into()],
        ) {
            for h in &heads {
                self.in_flight.finish(&h.target_id);
            }
            return Err(e);
        }
        Ok(heads)
    }

    /// Deletes finished rows past their keep time, a bounded batch per
    /// state, and ends paused rows kept their longest; returns how many
    /// were deleted.
    pub fn prune(&self, now: i64) -> Result<u32> {
        self.txn.atomically(|| health::expire_paused(&self.sql, now, PRUNE_BATCH))?;
        let mut pruned = 0;
        for (s, keep) in [(OutboxState::Delivered, self.keep_delivered_ms), (OutboxState::Dead, KEEP_DEAD_MS)] {
            let gone = self
                .sql
                .exec(
                    "DELETE FROM outbox WHERE seq IN
                       (SELECT seq FROM outbox WHERE state = ? AND next_attempt_ms <= ? LIMIT ?) RETURNING seq",
                    vec![state(s), (now - keep).into(), i64::from(PRUNE_BATCH).into()],
                )?
                .to_array::<SeqRow>()?;
            pruned += gone.len() as u32;
        }
        Ok(pruned)
    }

    /// Re-arms the alarm when none is set, or when the one set is long
    /// overdue (it fired and its handler never set the next), if anything is
    /// waiting. Before the schema exists there is nothing to re-arm, and the
    /// query fails quietly.
    pub async fn rearm_if_lost(self) {
        let stale_before = now_ms() - DELIVERY_TIMEOUT_MS as i64;
        match self.storage.get_alarm().await {
            Ok(Some(at)) if at >= stale_before => {}
            Ok(_) => {
                let _ = self.reschedule(false).await;
            }
            Err(_) => {}
        }
    }

    /// When this object next has work: the earliest deliverable row or media
    /// attempt, the earliest finished row's pruning time, or now while a
    /// sweep, R2 deletions or moving list rows (`list_rows`) are pending.
    fn next_action(&self) -> Result<Option<i64>> {
        let now = now_ms();
        let gates = health::gates(&self.sql, &self.targets, &self.in_flight, &self.schedule, now)?;
        let head: Vec<NextRow> = self
            .sql
            .exec(
                &format!("SELECT next_attempt_ms AS next FROM outbox o WHERE {HEAD} ORDER BY next_attempt_ms LIMIT 1"),
                vec![state(OutboxState::Pending), state(OutboxState::Pending), gates.blocked_json().into()],
            )?
            .to_array()?;
        let mut next = head.first().and_then(|n| n.next);
        // A failing target's next probe, and reports still to send.
        for at in [gates.next_probe, self.reporter.due(&self.sql, now)?].into_iter().flatten() {
            next = Some(next.map_or(at, |n: i64| n.min(at)));
        }
        // The next media attempt (or the end of a running one's lease).
        let media: Vec<NextRow> = self
            .sql
            .exec(
                "SELECT MIN(next_attempt_ms) AS next FROM media WHERE status = ?",
                vec![MediaStatus::Pending.as_str().into()],
            )?
            .to_array()?;
        if let Some(at) = media.first().and_then(|n| n.next) {
            next = Some(next.map_or(at, |n: i64| n.min(at)));
        }
        // A retention sweep left to the alarm, files to delete from R2, and
        // list rows still to move are work due now.
        let sweeping: Vec<NextRow> = self
            .sql
            .exec(
                &format!(
                    "SELECT 0 AS next FROM sweep UNION ALL SELECT 0 FROM (SELECT 1 FROM media_trash LIMIT 1)
                     UNION ALL {}",
                    super::list_rows::move_pending()
                ),
                None,
            )?
            .to_array()?;
        if !sweeping.is_empty() {
            next = Some(next.map_or(now_ms(), |n: i64| n.min(now_ms())));
        }
        // Paused rows' `next_attempt_ms` is when they have been kept their longest.
        let kept = [
            (OutboxState::Delivered, self.keep_delivered_ms),
            (OutboxState::Dead, KEEP_DEAD_MS),
            (OutboxState::Paused, 0),
        ];
        for (s, keep) in kept {
            let finished: Vec<NextRow> = self
                .sql
                .exec("SELECT MIN(next_attempt_ms) AS next FROM outbox WHERE state = ?", vec![state(s)])?
                .to_array()?;
            if let Some(at) = finished.first().and_then(|n| n.next) {
                next = Some(next.map_or(at + keep, |n: i64| n.min(at + keep)));
            }
        }
        Ok(next)
    }

    /// Sets the alarm for the next outbox work, if any. From the alarm
    /// handler, work already due (rows waiting for a free connection, or
    /// more to prune) is looked at again shortly, never at once: an alarm
    /// set at once from its own handler re-fires with nothing to do.
    pub async fn reschedule(&self, from_alarm: bool) -> Result<()> {
        let Some(at) = self.next_action()? else { return Ok(()) };
        let now = now_ms();
        let at = if from_alarm { at.max(now + BUSY_RECHECK_MS) } else { at.max(now) };
        self.storage.set_alarm(at - now).await?;
        Ok(())
    }

    pub async fn deliver_and_record(self, h: OutboxRow) {
        // The target as it is now: a change made through the API applies
        // to the next attempt.
        let target = self.targets.find(&h.target_id);
        if let Some(rate) = target.as_ref().and_then(|t| t.rate_per_second) {
            if let Turn::Later(at) = wait_turn(&self.env, &h.target_id, rate).await {
                self.in_flight.finish(&h.target_id);
                if let Err(e) = self.defer(&h, at) {
                    crate::log::log_error!("outbox: {} could not be deferred (its lease ends): {e}", h.webhook_id);
                }
                if let Err(e) = self.reschedule(false).await {
                    crate::log::log_error!("outbox: alarm could not be rescheduled: {e}");
                }
                return;
            }
        }
        let recorded = match &target {
            Some(t) => {
                let outcome = self.deliver(t, &h).await;
                self.in_flight.finish(&h.target_id);
                self.txn.atomically(|| self.record(&h, outcome, t.failing()))
            }
            // Not configured any more: dead at once (replayable if it comes
            // back), and no failure of a target.
            None => {
                self.in_flight.finish(&h.target_id);
                self.txn.atomically(|| self.record_removed(&h)).map(|()| false)
            }
        };
        // The alarm first: a report to the registry waits on a round trip,
        // and an instance that ends meanwhile must still retry on time.
        if let Err(e) = self.reschedule(false).await {
            crate::log::log_error!("outbox: alarm could not be rescheduled: {e}");
        }
        match recorded {
            Ok(true) => {
                if !self.reporter.flush(&self.env, &self.sql, &self.txn, now_ms()).await {
                    // Not sent: the alarm comes back for it.
                    let _ = self.reschedule(false).await;
                }
            }
            Ok(false) => {}
            Err(e) => crate::log::log_error!(
                "outbox: outcome of {} could not be recorded (it will be retried): {e}",
                h.webhook_id
            ),
        }
    }

    /// A paced row waits until `at`, with no attempt counted.
    fn defer(&self, h: &OutboxRow, at: i64) -> Result<()> {
        self.sql.exec(
            "UPDATE outbox SET next_attempt_ms = ? WHERE seq = ? AND state = ?",
            vec![at.into(), h.seq.into(), state(OutboxState::Pending)],
        )?;
        Ok(())
    }

    fn record_removed(&self, h: &OutboxRow) -> Result<()> {
        self.sql.exec(
            "UPDATE outbox SET state = ?, next_attempt_ms = ?, last_error = ? WHERE seq = ? AND state = ?",
            vec![state(OutboxState::Dead), now_ms().into(), REMOVED.into(), h.seq.into(), state(OutboxState::Pending)],
        )?;
        Ok(())
    }

    /// Records an attempt's outcome on its row and for its target's health
    /// (`health`); true if the registry is to hear of it. A row no longer
    /// pending (its target was deleted while the attempt ran) keeps its state.
    fn record(&self, h: &OutboxRow, outcome: std::result::Result<(), String>, failing: bool) -> Result<bool> {
        let now = now_ms();
        let attempts = h.attempts + 1;
        let why = match outcome {
            Ok(()) => {
                self.sql.exec(
                    "UPDATE outbox SET state = ?, attempts = ?, delivered_ms = ?, next_attempt_ms = ?,
                       last_error = NULL WHERE seq = ? AND state = ?",
                    vec![
                        state(OutboxState::Delivered),
                        attempts.into(),
                        now.into(),
                        now.into(),
                        h.seq.into(),
                        state(OutboxState::Pending),
                    ],
                )?;
                return health::on_success(&self.sql, &h.target_id, failing, now);
            }
            Err(why) => why,
        };
        let next_state = OutboxState::after_failure(&self.schedule, h.window_start_ms, now);
        let next = match next_state {
            OutboxState::Pending => now + self.schedule.backoff_ms(attempts as u32, jitter()),
            // Finished now: pruning counts from here.
            _ => now,
        };
        let changed = self
            .sql
            .exec(
                "UPDATE outbox SET state = ?, attempts = ?, next_attempt_ms = ?, last_error = ?
                 WHERE seq = ? AND state = ? RETURNING seq",
                vec![
                    state(next_state),
                    attempts.into(),
                    next.into(),
                    why.clone().into(),
                    h.seq.into(),
                    state(OutboxState::Pending),
                ],
            )?
            .to_array::<SeqRow>()?;
        if next_state == OutboxState::Dead && !changed.is_empty() {
            crate::log::log_warn!("outbox: {} to {} dead after {attempts} attempts: {why}", h.webhook_id, h.target_id);
            health::note_dead(&self.sql, &changed)?;
        }
        health::on_failure(&self.sql, &h.target_id, &why, now)?;
        if failing {
            health::expire_failing(&self.sql, &h.target_id, &self.schedule, now)?;
        }
        Ok(true)
    }

    /// Posts one outbox row to its target, signed per Standard Webhooks.
    async fn deliver(&self, target: &Target, row: &OutboxRow) -> std::result::Result<(), String> {
        let now = now_ms();
        let keys = target.keys_at(now)?;
        let headers = webhook_headers(&keys, &row.webhook_id, now / 1000, &row.payload);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let req = crate::http::post(&target.url, &headers, &row.payload)
            .map_err(|e| format!("request could not be built: {e}"))?;
        match fetch_status_with_timeout(req, Duration::from_millis(DELIVERY_TIMEOUT_MS)).await {
            Ok(status) if (200..300).contains(&status) => Ok(()),
            Ok(status) => Err(format!("target answered {status}")),
            Err(FetchFailure::Timeout) => Err(format!("no answer within {DELIVERY_TIMEOUT_MS} ms")),
            Err(FetchFailure::Network(e)) => Err(format!("network: {e}")),
        }
    }
}
