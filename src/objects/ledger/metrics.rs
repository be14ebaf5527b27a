//! A shard's figures for `GET /metrics` (`bw_ledger_core::metrics`), all
//! read at scrape time. The one kept figure is the count of events ever
//! stored: a checkpoint row (`counters`, name `events`) holds the count and
//! the highest `seq` counted, so a scrape reads only newer events.

use std::collections::BTreeMap;

use bw_ledger_core::metrics::ShardMetrics;
use bw_ledger_core::stats::{OutcomeQuery, ShardOutcomes};
use serde::Deserialize;
use worker::{Result, SqlStorage};

#[derive(Deserialize)]
struct Checkpoint {
    value: i64,
    seq: i64,
}

#[derive(Deserialize)]
struct NewRows {
    n: i64,
    m: Option<i64>,
}

#[derive(Deserialize)]
struct Group {
    k: String,
    n: i64,
}

#[derive(Deserialize)]
struct OutboxGroup {
    target_id: String,
    state: String,
    n: i64,
}

#[derive(Deserialize)]
struct Sum {
    n: Option<i64>,
}

/// The `counters` row that checkpoints the count of stored events.
const EVENTS_COUNTER: &str = "events";

fn checkpoint_row(sql: &SqlStorage) -> Result<Checkpoint> {
    let rows: Vec<Checkpoint> =
        sql.exec("SELECT value, seq FROM counters WHERE name = ?", vec![EVENTS_COUNTER.into()])?.to_array()?;
    Ok(rows.into_iter().next().unwrap_or(Checkpoint { value: 0, seq: 0 }))
}

fn save(sql: &SqlStorage, value: i64, seq: i64) -> Result<()> {
    sql.exec(
        "INSERT INTO counters (name, value, seq) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, seq = excluded.seq",
        vec![EVENTS_COUNTER.into(), value.into(), seq.into()],
    )?;
    Ok(())
}

/// Counts the events stored since the checkpoint into it; returns the
/// count of events ever stored. Writes one row, only when it moved.
pub fn count_stored(sql: &SqlStorage) -> Result<i64> {
    let cp = checkpoint_row(sql)?;
    let new: Vec<NewRows> =
        sql.exec("SELECT COUNT(*) AS n, MAX(seq) AS m FROM events WHERE seq > ?", vec![cp.seq.into()])?.to_array()?;
    match new.first() {
        Some(NewRows { n, m: Some(m) }) if *n > 0 => {
            save(sql, cp.value + n, *m)?;
            Ok(cp.value + n)
        }
        _ => Ok(cp.value),
    }
}

/// Before events are deleted: count what is new, so nothing deleted goes
/// uncounted. After: `after_delete`.
pub fn before_delete(sql: &SqlStorage) -> Result<()> {
    count_stored(sql).map(|_| ())
}

/// After events were deleted: SQLite gives a new row the highest `seq` + 1,
/// so once the newest events are gone, `seq`s already counted come back.
/// The checkpoint's `seq` drops to the highest left: every row above it is
/// then new.
pub fn after_delete(sql: &SqlStorage) -> Result<()> {
    let cp = checkpoint_row(sql)?;
    let max: Vec<Sum> = sql.exec("SELECT MAX(seq) AS n FROM events", None)?.to_array()?;
    let top = max.first().and_then(|r| r.n).unwrap_or(0);
    if top < cp.seq {
        save(sql, cp.value, top)?;
    }
    Ok(())
}

/// The shard's figures; `duplicates` is its in-memory count.
pub fn collect(sql: &SqlStorage, duplicates: i64) -> Result<ShardMetrics> {
    let stored = count_stored(sql)?;
    let groups = |q: &str| -> Result<BTreeMap<String, i64>> {
        let rows: Vec<Group> = sql.exec(q, None)?.to_array()?;
        Ok(rows.into_iter().map(|g| (g.k, g.n)).collect())
    };
    let sum = |q: &str| -> Result<i64> {
        let rows: Vec<Sum> = sql.exec(q, None)?.to_array()?;
        Ok(rows.first().and_then(|s| s.n).unwrap_or(0))
    };
    let outbox: Vec<OutboxGroup> =
        sql.exec("SELECT target_id, state, COUNT(*) AS n FROM outbox GROUP BY target_id, state", None)?.to_array()?;
    Ok(ShardMetrics {
        stored,
        duplicates,
        conflicts: sum("SELECT COUNT(*) AS n FROM event_conflicts")?,
        quarantined: sum("SELECT SUM(seen_count) AS n FROM quarantine")?,
        recipients: groups("SELECT state AS k, COUNT(*) AS n FROM message_rows GROUP BY state")?,
        outbox: outbox.into_iter().map(|o| (o.target_id, o.state, o.n)).collect(),
        media: groups("SELECT status AS k, COUNT(*) AS n FROM media GROUP BY status")?,
    })
}

#[derive(Deserialize)]
struct HourRow {
    h: i64,
    k: String,
    n: i64,
}

#[derive(Deserialize)]
struct CodeRow {
    c: i64,
    n: i64,
}

/// Recipients from `from_ms` on, by hour and status, and their error codes
/// (`GET /stats/outcomes`); the time index bounds what is read.
pub fn outcomes(sql: &SqlStorage, q: &OutcomeQuery) -> Result<ShardOutcomes> {
    let hours: Vec<HourRow> = sql
        .exec(
            "SELECT (receive_time_ms / 3600000) * 3600000 AS h, state AS k, COUNT(*) AS n FROM message_rows
             WHERE receive_time_ms >= ? GROUP BY h, state",
            vec![q.from_ms.into()],
        )?
        .to_array()?;
    let codes: Vec<CodeRow> = sql
        .exec(
            "SELECT error_code AS c, COUNT(*) AS n FROM message_rows
             WHERE receive_time_ms >= ? AND error_code != 0 GROUP BY error_code",
            vec![q.from_ms.into()],
        )?
        .to_array()?;
    Ok(ShardOutcomes {
        hours: hours.into_iter().map(|r| (r.h, r.k, r.n)).collect(),
        error_codes: codes.into_iter().map(|r| (r.c, r.n)).collect(),
    })
}
