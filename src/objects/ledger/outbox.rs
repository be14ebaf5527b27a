//! A ledger shard's transactional outbox: delivering due rows to their
//! targets (off every ack path, from the alarm), and the operations over it
//! (counts, dead letters, replay). Rows are queued by ingest, in the same
//! commit as the events that caused them. States are `OutboxState`'s names.

use std::rc::Rc;
use std::time::Duration;

use bw_ledger_core::forward::{
    merge_stats, webhook_headers, ForwardTarget, OutboxItem, OutboxState, ReplayRequest, Schedule, TargetStats,
    DELIVERY_TIMEOUT_MS,
};
use bw_ledger_core::wire::DeadQuery;
use serde::Deserialize;
use worker::{console_error, console_warn, Result, SqlStorage, SqlStorageValue, Storage};

use crate::clock::{jitter, now_ms};
use crate::upstream::{fetch_with_timeout, FetchFailure};

/// Outbox rows started per alarm round; more rounds follow at once.
pub const DELIVERY_BATCH: u32 = 64;
/// A started delivery holds its row this long past the delivery timeout.
const DELIVERY_LEASE_SLACK_MS: i64 = 5_000;

fn state(s: OutboxState) -> SqlStorageValue {
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
    pub targets: Rc<Vec<ForwardTarget>>,
    pub schedule: Schedule,
}

impl Deliveries {
    /// The due head row of each (target, message), leased for one delivery.
    pub fn lease_due(&self, now: i64) -> Result<Vec<OutboxRow>> {
        let heads: Vec<OutboxRow> = self
            .sql
            .exec(
                "SELECT seq, webhook_id, target_id, payload, attempts, window_start_ms FROM outbox o
                 WHERE state = ? AND next_attempt_ms <= ?
                   AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.target_id = o.target_id
                       AND p.message_id = o.message_id AND p.state = ? AND p.seq < o.seq)
                 ORDER BY seq LIMIT ?",
                vec![
                    state(OutboxState::Pending),
                    now.into(),
                    state(OutboxState::Pending),
                    i64::from(DELIVERY_BATCH).into(),
                ],
            )?
            .to_array()?;
        let lease_until = now + DELIVERY_TIMEOUT_MS as i64 + DELIVERY_LEASE_SLACK_MS;
        // One statement, so the leases are taken all or none.
        let seqs = serde_json::to_string(&heads.iter().map(|h| h.seq).collect::<Vec<_>>())?;
        self.sql.exec(
            "UPDATE outbox SET next_attempt_ms = ? WHERE seq IN (SELECT value FROM json_each(?))",
            vec![lease_until.into(), seqs.into()],
        )?;
        Ok(heads)
    }

    /// Re-arms the alarm when none is set but rows are pending. Before the
    /// schema exists there is nothing to re-arm, and the query fails quietly.
    pub async fn rearm_if_lost(self) {
        if let Ok(None) = self.storage.get_alarm().await {
            let _ = self.reschedule().await;
        }
    }

    /// Sets the alarm for the earliest pending row, if any.
    pub async fn reschedule(&self) -> Result<()> {
        let next: Vec<NextRow> = self
            .sql
            .exec("SELECT MIN(next_attempt_ms) AS next FROM outbox WHERE state = ?", vec![state(OutboxState::Pending)])?
            .to_array()?;
        if let Some(at) = next.first().and_then(|n| n.next) {
            self.storage.set_alarm((at - now_ms()).max(0)).await?;
        }
        Ok(())
    }

    pub async fn deliver_and_record(self, h: OutboxRow) {
        let outcome = self.deliver(&h).await;
        if let Err(e) = self.record(&h, outcome) {
            console_error!("outbox: outcome of {} could not be recorded (it will be retried): {e}", h.webhook_id);
        }
        if let Err(e) = self.reschedule().await {
            console_error!("outbox: alarm could not be rescheduled: {e}");
        }
    }

    fn record(&self, h: &OutboxRow, outcome: std::result::Result<(), String>) -> Result<()> {
        let now = now_ms();
        let attempts = h.attempts + 1;
        match outcome {
            Ok(()) => self.sql.exec(
                "UPDATE outbox SET state = ?, attempts = ?, delivered_ms = ?, last_error = NULL WHERE seq = ?",
                vec![state(OutboxState::Delivered), attempts.into(), now.into(), h.seq.into()],
            )?,
            Err(why) => {
                let next_state = OutboxState::after_failure(&self.schedule, h.window_start_ms, now);
                let next = now + self.schedule.backoff_ms(attempts as u32, jitter());
                if next_state == OutboxState::Dead {
                    console_warn!("outbox: {} to {} dead after {attempts} attempts: {why}", h.webhook_id, h.target_id);
                }
                self.sql.exec(
                    "UPDATE outbox SET state = ?, attempts = ?, next_attempt_ms = ?, last_error = ? WHERE seq = ?",
                    vec![state(next_state), attempts.into(), next.into(), why.into(), h.seq.into()],
                )?
            }
        };
        Ok(())
    }

    /// Posts one outbox row to its target, signed per Standard Webhooks.
    async fn deliver(&self, row: &OutboxRow) -> std::result::Result<(), String> {
        let Some(target) = self.targets.iter().find(|t| t.id == row.target_id) else {
            return Err("target is no longer configured".into());
        };
        let key = target.key().ok_or("target secret is not whsec_<base64>")?;
        let headers = webhook_headers(&key, &row.webhook_id, now_ms() / 1000, &row.payload);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let req = crate::http::post(&target.url, &headers, &row.payload)
            .map_err(|e| format!("request could not be built: {e}"))?;
        match fetch_with_timeout(req, Duration::from_millis(DELIVERY_TIMEOUT_MS)).await {
            Ok(reply) if (200..300).contains(&reply.status) => Ok(()),
            Ok(reply) => Err(format!("target answered {}", reply.status)),
            Err(FetchFailure::Timeout) => Err(format!("no answer within {DELIVERY_TIMEOUT_MS} ms")),
            Err(FetchFailure::Network(e)) => Err(format!("network: {e}")),
        }
    }
}

#[derive(Deserialize)]
struct StatsRow {
    target_id: String,
    state: String,
    n: i64,
    oldest: Option<i64>,
}

/// Counts per target and state.
pub fn stats(sql: &SqlStorage) -> Result<Vec<TargetStats>> {
    let rows: Vec<StatsRow> = sql
        .exec(
            "SELECT target_id, state, COUNT(*) AS n, MIN(created_ms) AS oldest FROM outbox GROUP BY target_id, state",
            None,
        )?
        .to_array()?;
    let mut stats: Vec<TargetStats> = Vec::new();
    for r in rows {
        let Some(s) = OutboxState::parse(&r.state) else { continue };
        merge_stats(&mut stats, vec![TargetStats::of_state(r.target_id, s, r.n, r.oldest)]);
    }
    Ok(stats)
}

#[derive(Deserialize)]
struct OutboxItemRow {
    webhook_id: String,
    target_id: String,
    message_id: String,
    kind: String,
    attempts: i64,
    created_ms: i64,
    last_error: Option<String>,
}

/// Dead rows, oldest first, of one target or all.
pub fn dead(sql: &SqlStorage, q: &DeadQuery) -> Result<Vec<OutboxItem>> {
    let mut params = vec![state(OutboxState::Dead)];
    let cond = match &q.target {
        Some(t) => {
            params.push(t.clone().into());
            "AND target_id = ?"
        }
        None => "",
    };
    params.push(i64::from(q.limit).into());
    let rows: Vec<OutboxItemRow> = sql
        .exec(
            &format!(
                "SELECT webhook_id, target_id, message_id, kind, attempts, created_ms, last_error
                 FROM outbox WHERE state = ? {cond} ORDER BY seq LIMIT ?"
            ),
            params,
        )?
        .to_array()?;
    Ok(rows
        .into_iter()
        .map(|r| OutboxItem {
            webhook_id: r.webhook_id,
            target: r.target_id,
            message_id: r.message_id,
            kind: r.kind,
            state: OutboxState::Dead,
            attempts: r.attempts,
            created_ms: r.created_ms,
            last_error: r.last_error,
        })
        .collect())
}

/// Queues rows again, keeping their webhook ids; returns how many.
pub fn replay(sql: &SqlStorage, r: &ReplayRequest) -> Result<u32> {
    let (from, to) = r.validate().map_err(worker::Error::RustError)?;
    let mut conds = vec!["target_id = ?".to_string()];
    let mut params: Vec<SqlStorageValue> =
        vec![state(OutboxState::Pending), r.now_ms.into(), r.now_ms.into(), r.target.clone().into()];
    if let Some(ids) = &r.ids {
        // One parameter however many ids: SQLite caps bound parameters.
        conds.push("webhook_id IN (SELECT value FROM json_each(?))".into());
        params.push(serde_json::to_string(ids)?.into());
    }
    if let Some(from) = from {
        conds.push("created_ms >= ?".into());
        params.push(from.into());
    }
    if let Some(to) = to {
        conds.push("created_ms <= ?".into());
        params.push(to.into());
    }
    let written = sql
        .exec(
            &format!(
                "UPDATE outbox SET state = ?, attempts = 0, next_attempt_ms = ?, window_start_ms = ?,
                   last_error = NULL WHERE {} RETURNING seq",
                conds.join(" AND ")
            ),
            params,
        )?
        .to_array::<SeqRow>()?;
    Ok(written.len() as u32)
}
