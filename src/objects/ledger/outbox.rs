//! The operations over a ledger shard's outbox (API token): counts and
//! health per target, dead letters, and replay. Delivery is `delivery.rs`.

use bw_ledger_core::change::{Change, ChangeKind};
use bw_ledger_core::outbox::{
    merge_stats, DiscardRequest, OutboxItem, OutboxState, ReplayRequest, TargetStats, KEEP_PAUSED_MS,
};
use bw_ledger_core::targets::Target;
use bw_ledger_core::wire::{DeadQuery, QueuedChange};
use serde::Deserialize;
use worker::{Result, SqlStorage, SqlStorageValue};

use super::rows::{state, SeqRow};

#[derive(Deserialize)]
struct StatsRow {
    target_id: String,
    state: OutboxState,
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
        merge_stats(&mut stats, vec![TargetStats::of_state(r.target_id, r.state, r.n, r.oldest)]);
    }
    let health: Vec<HealthRow> = sql
        .exec("SELECT target_id, last_error, last_error_ms, consecutive_failures FROM target_health", None)?
        .to_array()?;
    for h in health {
        merge_stats(
            &mut stats,
            vec![TargetStats {
                target: h.target_id,
                last_error: h.last_error,
                last_error_ms: h.last_error_ms,
                consecutive_failures: h.consecutive_failures,
                ..TargetStats::default()
            }],
        );
    }
    Ok(stats)
}

#[derive(Deserialize)]
struct HealthRow {
    target_id: String,
    last_error: Option<String>,
    last_error_ms: Option<i64>,
    consecutive_failures: i64,
}

#[derive(Deserialize)]
struct OutboxItemRow {
    webhook_id: String,
    target_id: String,
    message_id: String,
    kind: ChangeKind,
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

/// Queues rows again, keeping their webhook ids; returns how many. The
/// target alone replays every dead row of it.
pub fn replay(sql: &SqlStorage, r: &ReplayRequest) -> Result<u32> {
    let (from, to) = r.validate().map_err(worker::Error::RustError)?;
    let mut conds = vec!["target_id = ?".to_string()];
    // Into another target, a row whose webhook id that target already has
    // stays where it is (`OR IGNORE`): it is never sent there twice.
    let into = r.into.clone().unwrap_or_else(|| r.target.clone());
    let mut params: Vec<SqlStorageValue> =
        vec![into.into(), state(OutboxState::Pending), r.now_ms.into(), r.now_ms.into(), r.target.clone().into()];
    if r.all_dead() {
        conds.push("state = ?".into());
        params.push(state(OutboxState::Dead));
    }
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
                "UPDATE OR IGNORE outbox SET target_id = ?, state = ?, attempts = 0, next_attempt_ms = ?,
                   window_start_ms = ?, last_error = NULL WHERE {} RETURNING seq",
                conds.join(" AND ")
            ),
            params,
        )?
        .to_array::<SeqRow>()?;
    Ok(written.len() as u32)
}

/// Deletes a target's dead rows, all or those of `ids`; returns how many.
pub fn discard(sql: &SqlStorage, r: &DiscardRequest) -> Result<u32> {
    let mut params: Vec<SqlStorageValue> = vec![r.target.clone().into(), state(OutboxState::Dead)];
    let only = match &r.ids {
        Some(ids) => {
            params.push(serde_json::to_string(ids)?.into());
            "AND webhook_id IN (SELECT value FROM json_each(?))"
        }
        None => "",
    };
    let gone = sql
        .exec(&format!("DELETE FROM outbox WHERE target_id = ? AND state = ? {only} RETURNING seq"), params)?
        .to_array::<SeqRow>()?;
    Ok(gone.len() as u32)
}

/// One outbox row per (change, interested target); returns how many.
/// Queues changes another object hands over (the opt-out book's
/// `optout.changed`, the registry's operational events), once per (target,
/// webhook id) however often the hand-over is retried. Only kinds
/// forwarded from elsewhere are taken.
pub(super) fn queue_handed_over(
    sql: &SqlStorage,
    targets: &[Target],
    handed: &[QueuedChange],
    now: i64,
) -> Result<u32> {
    let mut queued = 0;
    for h in handed {
        if h.kind != ChangeKind::OptOut && !h.kind.is_operational() {
            return Err(worker::Error::RustError(format!("{} is not a kind handed over to the outbox", h.kind)));
        }
        let change = Change {
            webhook_id: h.webhook_id.clone(),
            kind: h.kind,
            message_id: h.message_id.clone(),
            doc: h.doc.clone(),
        };
        let only: Vec<Target>;
        let to = match &h.target {
            Some(id) => {
                only = targets.iter().filter(|t| t.id == *id).cloned().collect();
                &only[..]
            }
            None => targets,
        };
        queued += queue(sql, to, std::slice::from_ref(&change), now)?;
    }
    Ok(queued)
}

#[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
pub(super) fn queue(sql: &SqlStorage, targets: &[Target], found: &[Change], now: i64) -> Result<u32> {
    let mut queued = 0;
    for change in found {
        let payload = change.doc.to_string();
        for target in targets.iter().filter(|t| t.wants(change.kind)) {
            // A disabled target's changes are kept paused, their longest.
            let (held, next) = match target.paused() {
                true => (OutboxState::Paused, now + KEEP_PAUSED_MS),
                false => (OutboxState::Pending, now),
            };
            let written = sql
                .exec(
                    "INSERT INTO outbox (webhook_id, target_id, message_id, kind, payload, state, attempts,
                        created_ms, window_start_ms, next_attempt_ms)
                     VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING seq",
                    vec![
                        change.webhook_id.clone().into(),
                        target.id.clone().into(),
                        change.message_id.clone().into(),
                        change.kind.as_str().into(),
                        payload.clone().into(),
                        held.as_str().into(),
                        now.into(),
                        now.into(),
                        next.into(),
                    ],
                )?
                .to_array::<SeqRow>()?;
            // Counted from RETURNING: rows_written also counts index writes.
            queued += written.len() as u32;
        }
    }
    Ok(queued)
}
