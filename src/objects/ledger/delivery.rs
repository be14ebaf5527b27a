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

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bw_ledger_core::forward::{webhook_headers, DELIVERY_TIMEOUT_MS};
use bw_ledger_core::media::MediaStatus;
use bw_ledger_core::outbox::OutboxState;
use bw_ledger_core::retry::Schedule;
use bw_ledger_core::targets::Target;
use serde::Deserialize;
use worker::{Env, Result, SqlStorage, SqlStorageValue, Storage};

use super::pacing::{wait_turn, Turn};
use crate::clock::{jitter, now_ms};
use crate::fetch::{fetch_status_with_timeout, FetchFailure};
use crate::objects::transaction::Transactions;

/// Deliveries in flight from one object at once: a Durable Object has six
/// simultaneous outgoing connections.
const MAX_IN_FLIGHT: u32 = 6;
/// Deliveries in flight to one target at once, so that a target that hangs
/// never holds every connection.
const MAX_IN_FLIGHT_PER_TARGET: u32 = 2;
/// Due rows looked at per alarm round.
const DUE_WINDOW: u32 = 256;
/// A started delivery holds its row this long past the delivery timeout.
const DELIVERY_LEASE_SLACK_MS: i64 = 5_000;
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

/// Deliveries in flight from this object instance, per target (and media
/// fetches, in a lane of their own, `media.rs`). In memory:
/// after an eviction nothing is in flight, and leases cover what was.
#[derive(Default)]
pub struct InFlight(RefCell<HashMap<String, u32>>);

impl InFlight {
    fn total(&self) -> u32 {
        self.0.borrow().values().sum()
    }
    /// Connections left for new work.
    pub fn free(&self) -> u32 {
        MAX_IN_FLIGHT.saturating_sub(self.total())
    }
    pub fn of(&self, lane: &str) -> u32 {
        self.0.borrow().get(lane).copied().unwrap_or(0)
    }
    /// In flight in every lane whose name starts with `prefix`.
    pub fn of_prefix(&self, prefix: &str) -> u32 {
        self.0.borrow().iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, n)| n).sum()
    }
    pub fn start(&self, lane: &str) {
        *self.0.borrow_mut().entry(lane.to_owned()).or_default() += 1;
    }
    pub fn finish(&self, lane: &str) {
        if let Some(n) = self.0.borrow_mut().get_mut(lane) {
            *n = n.saturating_sub(1);
        }
    }
}

pub(super) fn state(s: OutboxState) -> SqlStorageValue {
    s.as_str().into()
}

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

/// The earliest-due deliverable row: pending, of a target that is not
/// paused, and the oldest pending row of its (target, message), so
/// per-message order holds. Rows waiting behind an older one are not due,
/// whatever their own time says. Parameters: pending, pending, the paused
/// targets' ids as a JSON list.
const HEAD: &str = "state = ? AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.target_id = o.target_id
    AND p.message_id = o.message_id AND p.state = ? AND p.seq < o.seq)
    AND o.target_id NOT IN (SELECT value FROM json_each(?))";

/// A row of a statement's `RETURNING seq`, counted.
#[derive(Deserialize)]
pub(super) struct SeqRow {
    #[allow(dead_code)]
    seq: i64,
}

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
}

impl Deliveries {
    /// Due head rows, as many as the connection limits allow, each leased
    /// for one delivery and counted in flight.
    pub fn lease_due(&self, now: i64) -> Result<Vec<OutboxRow>> {
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
                    self.targets.paused_json().into(),
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
            if self.in_flight.of(&row.target_id) < MAX_IN_FLIGHT_PER_TARGET {
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
    /// state; returns how many.
    pub fn prune(&self, now: i64) -> Result<u32> {
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
        let head: Vec<NextRow> = self
            .sql
            .exec(
                &format!("SELECT next_attempt_ms AS next FROM outbox o WHERE {HEAD} ORDER BY next_attempt_ms LIMIT 1"),
                vec![state(OutboxState::Pending), state(OutboxState::Pending), self.targets.paused_json().into()],
            )?
            .to_array()?;
        let mut next = head.first().and_then(|n| n.next);
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
        for (s, keep) in [(OutboxState::Delivered, self.keep_delivered_ms), (OutboxState::Dead, KEEP_DEAD_MS)] {
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
        let outcome = self.deliver(target.as_ref(), &h).await;
        self.in_flight.finish(&h.target_id);
        if let Err(e) = self.txn.atomically(|| self.record(&h, outcome)) {
            crate::log::log_error!(
                "outbox: outcome of {} could not be recorded (it will be retried): {e}",
                h.webhook_id
            );
        }
        if let Err(e) = self.reschedule(false).await {
            crate::log::log_error!("outbox: alarm could not be rescheduled: {e}");
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

    /// Records an attempt's outcome on its row and on its target's health.
    /// A row no longer pending (its target was deleted while the attempt
    /// ran) keeps its state.
    fn record(&self, h: &OutboxRow, outcome: std::result::Result<(), String>) -> Result<()> {
        let now = now_ms();
        let attempts = h.attempts + 1;
        match outcome {
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
                // Written only when a failure streak ends (or on a target's
                // first success), not on every delivery.
                self.sql.exec(
                    "INSERT INTO target_health (target_id, consecutive_failures, last_success_ms) VALUES (?, 0, ?)
                     ON CONFLICT (target_id) DO UPDATE SET consecutive_failures = 0,
                       last_success_ms = excluded.last_success_ms WHERE consecutive_failures != 0",
                    vec![h.target_id.clone().into(), now.into()],
                )?;
            }
            Err(why) => {
                let next_state = OutboxState::after_failure(&self.schedule, h.window_start_ms, now);
                let next = match next_state {
                    OutboxState::Pending => now + self.schedule.backoff_ms(attempts as u32, jitter()),
                    // Finished now: pruning counts from here.
                    _ => now,
                };
                if next_state == OutboxState::Dead {
                    crate::log::log_warn!(
                        "outbox: {} to {} dead after {attempts} attempts: {why}",
                        h.webhook_id,
                        h.target_id
                    );
                }
                self.sql.exec(
                    "UPDATE outbox SET state = ?, attempts = ?, next_attempt_ms = ?, last_error = ?
                     WHERE seq = ? AND state = ?",
                    vec![
                        state(next_state),
                        attempts.into(),
                        next.into(),
                        why.clone().into(),
                        h.seq.into(),
                        state(OutboxState::Pending),
                    ],
                )?;
                self.sql.exec(
                    "INSERT INTO target_health (target_id, last_error, last_error_ms, consecutive_failures)
                     VALUES (?, ?, ?, 1)
                     ON CONFLICT (target_id) DO UPDATE SET last_error = excluded.last_error,
                       last_error_ms = excluded.last_error_ms, consecutive_failures = consecutive_failures + 1",
                    vec![h.target_id.clone().into(), why.into(), now.into()],
                )?;
            }
        }
        Ok(())
    }

    /// Posts one outbox row to its target, signed per Standard Webhooks.
    async fn deliver(&self, target: Option<&Target>, row: &OutboxRow) -> std::result::Result<(), String> {
        let Some(target) = target else {
            return Err("target is no longer configured".into());
        };
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
