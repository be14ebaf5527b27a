//! A ledger shard's tables and indexes, created on first use.

use bw_ledger_core::event::EventKind;
use bw_ledger_core::media::{lane_of, MediaStatus, INBOUND_LANE};
use serde::Deserialize;
use worker::{Result, SqlStorage};

use super::list_rows::{self, Layout};
use super::media::status;
use super::reads;
use crate::objects::transaction::Transactions;

/// Schema, applied idempotently on first use. Changing a table is a
/// migration: add statements, never edit these.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        event_key TEXT NOT NULL UNIQUE,
        message_id TEXT NOT NULL,
        type TEXT NOT NULL,
        recipient TEXT,
        time TEXT,
        time_ms INTEGER,
        error_code INTEGER,
        content_hash TEXT NOT NULL,
        raw TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL)",
    // A message's events are found through the unique index on `event_key`
    // (`reads::EVENTS_IN_RANGES`); this index cost a row written per event.
    "DROP INDEX IF EXISTS events_by_message",
    "CREATE TABLE IF NOT EXISTS event_conflicts (
        event_key TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        message_id TEXT NOT NULL,
        raw TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        PRIMARY KEY (event_key, content_hash))",
    "CREATE INDEX IF NOT EXISTS conflicts_by_message ON event_conflicts (message_id)",
    "CREATE TABLE IF NOT EXISTS quarantine (
        content_hash TEXT PRIMARY KEY,
        raw TEXT NOT NULL,
        raw_encoding TEXT NOT NULL,
        reason TEXT NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        last_seen_ms INTEGER NOT NULL,
        seen_count INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS quarantine_by_last_seen ON quarantine (last_seen_ms)",
    crate::objects::idempotency::CREATE_TABLE,
    "CREATE INDEX IF NOT EXISTS idempotency_by_created ON idempotency (created_ms)",
    // The transactional outbox: one row per (target, change), written in the
    // same synchronous section as the event that caused it.
    "CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY,
        webhook_id TEXT NOT NULL,
        target_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        window_start_ms INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT,
        delivered_ms INTEGER,
        UNIQUE (target_id, webhook_id))",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_ms)",
    "CREATE INDEX IF NOT EXISTS outbox_by_message ON outbox (target_id, message_id, state, seq)",
    // Per target: the last failed attempt and the failures since the last
    // success, for GET /outbox.
    "CREATE TABLE IF NOT EXISTS target_health (
        target_id TEXT PRIMARY KEY,
        last_error TEXT,
        last_error_ms INTEGER,
        consecutive_failures INTEGER NOT NULL,
        last_success_ms INTEGER) WITHOUT ROWID",
    // Per target: what this shard has not yet told the registry of its
    // attempts (`health.rs`), written only on a failure, or on the success
    // that ends a failure streak or a failing state.
    "CREATE TABLE IF NOT EXISTS target_reports (
        target_id TEXT PRIMARY KEY,
        succeeded_ms INTEGER,
        failures INTEGER NOT NULL,
        first_failure_ms INTEGER,
        last_error TEXT,
        last_error_ms INTEGER) WITHOUT ROWID",
    // Outbox rows that died, not yet reported (`forward.exhausted`).
    "CREATE TABLE IF NOT EXISTS exhausted_unreported (seq INTEGER PRIMARY KEY)",
    // The registry's API-made targets at the newest version handed to this
    // shard (`targets.rs`): one row.
    "CREATE TABLE IF NOT EXISTS api_targets (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL,
        snapshot TEXT NOT NULL)",
    // Erased messages: their ids for 25 hours, so Bandwidth's retries are
    // answered without storing them again (see `lifecycle`).
    "CREATE TABLE IF NOT EXISTS erased (
        message_id TEXT PRIMARY KEY,
        erased_ms INTEGER NOT NULL) WITHOUT ROWID",
    // The media archive (`media.rs`): one job per media file of a message,
    // named by `path` under its message; `next_attempt_ms` is the next try
    // while pending (or, while `leased`, the end of a running attempt's lease).
    "CREATE TABLE IF NOT EXISTS media (
        message_id TEXT NOT NULL,
        path TEXT NOT NULL,
        source_url TEXT NOT NULL,
        status TEXT NOT NULL,
        content_type TEXT,
        size INTEGER,
        sha256 TEXT,
        attempts INTEGER NOT NULL,
        window_start_ms INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL,
        leased INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        PRIMARY KEY (message_id, path)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS media_due ON media (status, next_attempt_ms)",
    // R2 keys of deleted messages' files, until R2 has deleted them.
    "CREATE TABLE IF NOT EXISTS media_trash (r2_key TEXT PRIMARY KEY) WITHOUT ROWID",
    // Kept figures for GET /metrics (`metrics.rs`): the count of events ever
    // stored, checkpointed at scrape time.
    "CREATE TABLE IF NOT EXISTS counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL,
        seq INTEGER NOT NULL) WITHOUT ROWID",
    // Messages with no recipient (an event without `to`, an unknown type):
    // no list row finds them, so retention, erasure and export find them here.
    "CREATE TABLE IF NOT EXISTS unlisted (
        message_id TEXT PRIMARY KEY,
        receive_time_ms INTEGER NOT NULL) WITHOUT ROWID",
    // A retention sweep the alarm continues, batch by batch.
    "CREATE TABLE IF NOT EXISTS sweep (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        cutoff_ms INTEGER)",
];

/// Applies the schema; every statement is idempotent. Then the list rows'
/// table (`list_rows`), which a shard of an older build moves to the
/// current layout: says where that stands.
pub fn ensure(sql: &SqlStorage, txn: &Transactions) -> Result<Layout> {
    for stmt in SCHEMA {
        sql.exec(stmt, None)?;
    }
    txn.atomically(|| ensure_lanes(sql))?;
    list_rows::ensure(sql, txn)
}

#[derive(Deserialize)]
struct TableSql {
    sql: String,
}

/// Gives the media table its `lane` column (shards of builds before lanes).
/// Pending jobs of messages that came in a callback (`message-received`)
/// join the inbound lane; every other pending job stays in a send's lane,
/// fetched without credentials. Settled jobs never run again.
fn ensure_lanes(sql: &SqlStorage) -> Result<()> {
    let table: Vec<TableSql> =
        sql.exec("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'media'", None)?.to_array()?;
    if table.first().is_none_or(|t| t.sql.contains(" lane ")) {
        return Ok(());
    }
    // Earlier jobs of sends: a send's lane, of no origin in particular
    // (a DDL default cannot be a bound parameter).
    sql.exec(
        &format!(
            "ALTER TABLE media ADD COLUMN lane TEXT NOT NULL DEFAULT '{}'",
            lane_of(&EventKind::MessageAccepted, "")
        ),
        None,
    )?;
    let pending: Vec<IdRow> = sql
        .exec("SELECT DISTINCT message_id FROM media WHERE status = ?", vec![status(MediaStatus::Pending)])?
        .to_array()?;
    let ids: Vec<String> = pending.into_iter().map(|r| r.message_id).collect();
    let inbound: Vec<String> = reads::events_of(sql, &ids)?
        .into_iter()
        .filter(|(_, events)| events.iter().any(|e| e.record.kind == EventKind::MessageReceived))
        .map(|(id, _)| id)
        .collect();
    sql.exec(
        "UPDATE media SET lane = ? WHERE status = ? AND message_id IN (SELECT value FROM json_each(?))",
        vec![INBOUND_LANE.into(), status(MediaStatus::Pending), serde_json::to_string(&inbound)?.into()],
    )?;
    Ok(())
}

#[derive(Deserialize)]
struct IdRow {
    message_id: String,
}
