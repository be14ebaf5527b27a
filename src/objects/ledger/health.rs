//! A shard's side of target health (`bw_ledger_core::targets::health`):
//! what it tells the registry of its attempts, and the circuit breaker it
//! runs while the registry says a target is failing.
//!
//! Reports are an outbox of their own. A failed attempt, the success that
//! ends a failure streak (or comes while the target is failing), and a row
//! that dies are written in the same transaction as the attempt's outcome
//! (`target_reports`, `exhausted_unreported`); after it commits they are
//! sent to the registry and, once it answered, taken off. A report that
//! could not be sent goes with the next one, or with the alarm's.
//!
//! While a target is failing, at most one delivery to it is in flight from
//! this shard, and after a failure the next starts at the retry schedule's
//! next point counted from the target's first failure (`Schedule::
//! next_point_after`): a probe per step, not a flood, and not later than
//! the schedule however many attempts failed before the breaker opened.

use std::cell::Cell;
use std::collections::BTreeMap;

use bw_ledger_core::outbox::OutboxState;
use bw_ledger_core::retry::Schedule;
use bw_ledger_core::targets::health::{Exhausted, Report, EXHAUSTED_LISTED};
use bw_ledger_core::wire::target_registry;
use serde::Deserialize;
use worker::{Env, Result, SqlStorage};

use super::rows::{state, InFlight, SeqRow};
use super::targets::TargetBook;
use crate::objects::target_registry::registry;
use crate::objects::transaction::Transactions;

/// A report that could not be sent is tried again this much later.
const REPORT_RETRY_MS: i64 = 5_000;
/// A send still running after this long is taken as lost (a call that
/// never returned), so reports never stop for good.
const REPORT_STALE_MS: i64 = 30_000;

/// Why rows of a failing target died without their own last attempt.
pub const EXPIRED_WHILE_FAILING: &str = "the retry window ended while the target was failing";
/// Why a paused row died.
pub const PAUSED_TOO_LONG: &str = "paused for 30 days (the target stayed disabled)";

/// Records a success; true if the registry must hear of it (it ends this
/// shard's failure streak, or the target is failing).
pub(super) fn on_success(sql: &SqlStorage, target: &str, failing: bool, now: i64) -> Result<bool> {
    // Written only when a failure streak ends (or on a target's first
    // success), not on every delivery.
    let ended = sql
        .exec(
            "INSERT INTO target_health (target_id, consecutive_failures, last_success_ms) VALUES (?, 0, ?)
             ON CONFLICT (target_id) DO UPDATE SET consecutive_failures = 0,
               last_success_ms = excluded.last_success_ms WHERE consecutive_failures != 0 RETURNING target_id",
            vec![target.into(), now.into()],
        )?
        .to_array::<TargetRow>()?;
    if ended.is_empty() && !failing {
        return Ok(false);
    }
    sql.exec(
        "INSERT INTO target_reports (target_id, succeeded_ms, failures) VALUES (?, ?, 0)
         ON CONFLICT (target_id) DO UPDATE SET succeeded_ms = excluded.succeeded_ms, failures = 0,
           first_failure_ms = NULL",
        vec![target.into(), now.into()],
    )?;
    Ok(true)
}

/// Records a failed attempt, for `GET /outbox` and for the registry.
pub(super) fn on_failure(sql: &SqlStorage, target: &str, why: &str, now: i64) -> Result<()> {
    sql.exec(
        "INSERT INTO target_health (target_id, last_error, last_error_ms, consecutive_failures)
         VALUES (?, ?, ?, 1)
         ON CONFLICT (target_id) DO UPDATE SET last_error = excluded.last_error,
           last_error_ms = excluded.last_error_ms, consecutive_failures = consecutive_failures + 1",
        vec![target.into(), why.into(), now.into()],
    )?;
    sql.exec(
        "INSERT INTO target_reports (target_id, failures, first_failure_ms, last_error, last_error_ms)
         VALUES (?, 1, ?, ?, ?)
         ON CONFLICT (target_id) DO UPDATE SET failures = failures + 1,
           first_failure_ms = COALESCE(first_failure_ms, excluded.first_failure_ms),
           last_error = excluded.last_error, last_error_ms = excluded.last_error_ms",
        vec![target.into(), now.into(), why.into(), now.into()],
    )?;
    Ok(())
}

/// Rows that just died, for the next report's `forward.exhausted`.
pub(super) fn note_dead(sql: &SqlStorage, seqs: &[SeqRow]) -> Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let list = serde_json::to_string(&seqs.iter().map(|s| s.seq).collect::<Vec<_>>())?;
    sql.exec("INSERT OR IGNORE INTO exhausted_unreported (seq) SELECT value FROM json_each(?)", vec![list.into()])?;
    Ok(())
}

/// After a failed probe: the failing target's rows on this shard whose
/// retry window has ended die now, rather than wait for a probe each.
pub(super) fn expire_failing(sql: &SqlStorage, target: &str, schedule: &Schedule, now: i64) -> Result<()> {
    let dead = sql
        .exec(
            "UPDATE outbox SET state = ?, next_attempt_ms = ?, last_error = COALESCE(last_error, ?)
             WHERE target_id = ? AND state = ? AND window_start_ms <= ? RETURNING seq",
            vec![
                state(OutboxState::Dead),
                now.into(),
                EXPIRED_WHILE_FAILING.into(),
                target.into(),
                state(OutboxState::Pending),
                (now - schedule.give_up_ms).into(),
            ],
        )?
        .to_array::<SeqRow>()?;
    note_dead(sql, &dead)
}

/// Paused rows kept their longest: dead, a bounded batch at a time. A
/// paused row's `next_attempt_ms` is when that is.
pub(super) fn expire_paused(sql: &SqlStorage, now: i64, batch: u32) -> Result<()> {
    let dead = sql
        .exec(
            "UPDATE outbox SET state = ?, next_attempt_ms = ?, last_error = ? WHERE seq IN
               (SELECT seq FROM outbox WHERE state = ? AND next_attempt_ms <= ? LIMIT ?) RETURNING seq",
            vec![
                state(OutboxState::Dead),
                now.into(),
                PAUSED_TOO_LONG.into(),
                state(OutboxState::Paused),
                now.into(),
                i64::from(batch).into(),
            ],
        )?
        .to_array::<SeqRow>()?;
    note_dead(sql, &dead)
}

#[derive(Deserialize)]
struct TargetRow {
    #[allow(dead_code)]
    target_id: String,
}

#[derive(Deserialize)]
struct StreakRow {
    target_id: String,
    consecutive_failures: i64,
    last_error_ms: Option<i64>,
}

impl StreakRow {
    /// When this shard may probe again: at once if its last attempt
    /// succeeded.
    fn probe_at(&self, since_ms: i64, schedule: &Schedule) -> i64 {
        match self.last_error_ms {
            Some(at) if self.consecutive_failures > 0 => schedule.next_point_after(since_ms, at),
            _ => 0,
        }
    }
}

/// Which targets no row may be leased for now, when a failing one's next
/// probe may start, and which are failing (one delivery at a time).
pub(super) struct Gates {
    pub blocked: Vec<String>,
    pub next_probe: Option<i64>,
    pub failing: Vec<String>,
}

impl Gates {
    pub fn blocked_json(&self) -> String {
        serde_json::to_string(&self.blocked).unwrap_or_else(|_| "[]".into())
    }
}

/// Disabled targets, and failing ones with a delivery in flight from here
/// or whose next probe is not due yet.
pub(super) fn gates(
    sql: &SqlStorage,
    book: &TargetBook,
    in_flight: &InFlight,
    schedule: &Schedule,
    now: i64,
) -> Result<Gates> {
    let failing = book.failing();
    let ids = failing.iter().map(|(id, _)| id.clone()).collect();
    let mut gates = Gates { blocked: book.paused(), next_probe: None, failing: ids };
    if failing.is_empty() {
        return Ok(gates);
    }
    let streaks: Vec<StreakRow> = sql
        .exec(
            "SELECT target_id, consecutive_failures, last_error_ms FROM target_health
             WHERE target_id IN (SELECT value FROM json_each(?))",
            vec![serde_json::to_string(&gates.failing)?.into()],
        )?
        .to_array()?;
    for (id, since) in failing {
        let probe_at = streaks.iter().find(|s| s.target_id == id).map_or(0, |s| s.probe_at(since, schedule));
        if in_flight.of(&id) > 0 {
            gates.blocked.push(id);
        } else if probe_at > now {
            gates.next_probe = Some(gates.next_probe.map_or(probe_at, |p| p.min(probe_at)));
            gates.blocked.push(id);
        }
    }
    Ok(gates)
}

#[derive(Deserialize)]
struct ReportRow {
    target_id: String,
    succeeded_ms: Option<i64>,
    failures: i64,
    first_failure_ms: Option<i64>,
    last_error: Option<String>,
    last_error_ms: Option<i64>,
}

#[derive(Deserialize)]
struct DeadRow {
    seq: i64,
    target_id: Option<String>,
    webhook_id: Option<String>,
    message_id: Option<String>,
    kind: Option<String>,
    attempts: Option<i64>,
    last_error: Option<String>,
}

/// Dead rows read per report.
const DEAD_PER_REPORT: i64 = 1_000;

/// What is waiting to be reported, and the dead rows' seqs it covers.
fn pending(sql: &SqlStorage) -> Result<(Vec<Report>, Vec<i64>)> {
    let rows: Vec<ReportRow> = sql
        .exec(
            "SELECT target_id, succeeded_ms, failures, first_failure_ms, last_error, last_error_ms FROM target_reports",
            None,
        )?
        .to_array()?;
    let mut reports: BTreeMap<String, Report> = BTreeMap::new();
    for r in rows {
        let report = Report {
            target: r.target_id.clone(),
            succeeded_ms: r.succeeded_ms,
            failures: r.failures,
            first_failure_ms: r.first_failure_ms,
            last_error: r.last_error,
            last_error_ms: r.last_error_ms,
            ..Report::default()
        };
        reports.insert(r.target_id, report);
    }
    // A row replayed or pruned since it died is still counted, not named.
    let dead: Vec<DeadRow> = sql
        .exec(
            "SELECT e.seq, o.target_id, o.webhook_id, o.message_id, o.kind, o.attempts, o.last_error
             FROM exhausted_unreported e LEFT JOIN outbox o ON o.seq = e.seq ORDER BY e.seq LIMIT ?",
            vec![DEAD_PER_REPORT.into()],
        )?
        .to_array()?;
    let seqs = dead.iter().map(|d| d.seq).collect();
    for d in dead {
        let Some(target) = d.target_id else { continue };
        let report = reports.entry(target.clone()).or_insert_with(|| Report { target, ..Report::default() });
        report.exhausted_count += 1;
        if report.exhausted.len() < EXHAUSTED_LISTED {
            report.exhausted.push(Exhausted {
                webhook_id: d.webhook_id.unwrap_or_default(),
                message_id: d.message_id.unwrap_or_default(),
                kind: d.kind.unwrap_or_default(),
                attempts: d.attempts.unwrap_or_default(),
                last_error: d.last_error,
            });
        }
    }
    Ok((reports.into_values().collect(), seqs))
}

/// Takes what the registry has now heard off the reports. What was
/// recorded meanwhile stays: failures are subtracted, and a success is
/// cleared only if it is the one sent.
fn sent(sql: &SqlStorage, reports: &[Report], seqs: &[i64]) -> Result<()> {
    for r in reports {
        sql.exec(
            "UPDATE target_reports SET failures = MAX(0, failures - ?),
               succeeded_ms = CASE WHEN succeeded_ms IS ? THEN NULL ELSE succeeded_ms END WHERE target_id = ?",
            vec![r.failures.into(), r.succeeded_ms.into(), r.target.clone().into()],
        )?;
    }
    sql.exec("DELETE FROM target_reports WHERE failures = 0 AND succeeded_ms IS NULL", None)?;
    sql.exec(
        "DELETE FROM exhausted_unreported WHERE seq IN (SELECT value FROM json_each(?))",
        vec![serde_json::to_string(seqs)?.into()],
    )?;
    Ok(())
}

/// One report in flight per instance; reports recorded meanwhile go next.
#[derive(Default)]
pub struct Reporter {
    /// When the send in flight started (0: none).
    running_since: Cell<i64>,
    again: Cell<bool>,
    /// After a failed send: not before then (0: now).
    retry_at: Cell<i64>,
}

impl Reporter {
    /// When the alarm should come back to send what waits (if anything does).
    pub(super) fn due(&self, sql: &SqlStorage, now: i64) -> Result<Option<i64>> {
        let waiting: Vec<TargetRow> = sql
            .exec(
                "SELECT target_id FROM target_reports UNION ALL
                 SELECT '' FROM (SELECT 1 FROM exhausted_unreported LIMIT 1) LIMIT 1",
                None,
            )?
            .to_array()?;
        Ok((!waiting.is_empty() && !self.running(now)).then(|| self.retry_at.get().max(now)))
    }

    fn running(&self, now: i64) -> bool {
        let since = self.running_since.get();
        since > 0 && now - since < REPORT_STALE_MS
    }

    /// Sends what waits to the registry, until nothing does; false if a
    /// send failed (it is retried after [`REPORT_RETRY_MS`]).
    pub(super) async fn flush(&self, env: &Env, sql: &SqlStorage, txn: &Transactions, now: i64) -> bool {
        if self.running(now) {
            self.again.set(true);
            return true;
        }
        if self.retry_at.get() > now {
            return false;
        }
        let mut sent = true;
        loop {
            self.running_since.set(crate::clock::now_ms());
            self.again.set(false);
            match self.send_once(env, sql, txn).await {
                Ok(()) => self.retry_at.set(0),
                Err(e) => {
                    crate::log::log_warn!("targets: attempts not yet reported to the registry (retrying): {e}");
                    self.retry_at.set(crate::clock::now_ms() + REPORT_RETRY_MS);
                    sent = false;
                    break;
                }
            }
            if !self.again.get() {
                break;
            }
        }
        self.running_since.set(0);
        sent
    }

    async fn send_once(&self, env: &Env, sql: &SqlStorage, txn: &Transactions) -> std::result::Result<(), String> {
        let (reports, seqs) = pending(sql).map_err(|e| e.to_string())?;
        if reports.is_empty() && seqs.is_empty() {
            return Ok(());
        }
        registry::<target_registry::Report>(env, &reports).await.map_err(|e| e.to_string())?;
        txn.atomically(|| sent(sql, &reports, &seqs)).map_err(|e| e.to_string())?;
        if seqs.len() as i64 == DEAD_PER_REPORT {
            self.again.set(true);
        }
        Ok(())
    }
}
