//! The list rows' table, `message_rows`: one row per (message, recipient),
//! the List Messages projection. It is a `WITHOUT ROWID` table keyed by the
//! two, so a new row costs its row and its filter indexes, with no separate
//! key index (Cloudflare bills each entry written).
//!
//! Shards written by earlier builds hold a rowid table with that separate
//! index. Such a shard changes layout while it serves: on first use it
//! renames the old table `message_rows_v1`, creates the new one as
//! `message_rows_v2`, and puts a view named `message_rows` over both, with
//! triggers that send every write to the new table. Every statement of the
//! shard reads and writes `message_rows` unchanged, and a row is in exactly
//! one of the two tables at any time. The alarm then moves the old rows
//! over, a batch per wake, each batch one transaction; after the last one
//! the view, the triggers and the old table go, and the new table takes the
//! name. Moving a row costs what inserting it does, once.

use bw_ledger_core::list::ROW_COLUMNS;
use serde::Deserialize;
use worker::{Result, SqlStorage};

use crate::objects::transaction::Transactions;

/// The columns and key, as every layout of the table has them.
const COLUMNS: &str = "message_id TEXT NOT NULL,
    destination_tn TEXT NOT NULL,
    source_tn TEXT NOT NULL,
    message_status TEXT NOT NULL,
    message_direction TEXT NOT NULL,
    message_type TEXT NOT NULL,
    segment_count INTEGER NOT NULL,
    error_code INTEGER NOT NULL,
    receive_time_ms INTEGER NOT NULL,
    carrier_name TEXT,
    message_length INTEGER NOT NULL,
    attachment_count INTEGER NOT NULL,
    recipient_count INTEGER NOT NULL,
    text TEXT,
    media TEXT NOT NULL,
    state TEXT NOT NULL,
    flags TEXT NOT NULL,
    channel TEXT,
    read_time_ms INTEGER,
    PRIMARY KEY (message_id, destination_tn)";

/// Columns later builds added, and their types: a table of an earlier
/// build gains them (null) on first use (`add_columns`). Never edit; append.
const ADDED: &[(&str, &str)] = &[("channel", "TEXT"), ("read_time_ms", "INTEGER")];

/// The old layout while its rows move, and the new one until it is named.
const OLD: &str = "message_rows_v1";
const NEW: &str = "message_rows_v2";

/// Rows moved per alarm while a shard changes layout, unless configured.
pub const DEFAULT_MOVE_BATCH: i64 = 1000;

/// Where the list rows stand in this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Current,
    /// Rows of the old layout are still to move (`move_batch`).
    Moving,
}

#[derive(Deserialize)]
struct MasterRow {
    #[serde(rename = "type")]
    kind: String,
    sql: Option<String>,
}

/// Creates the table, or starts moving an older layout's rows into it;
/// first, a table of an earlier build gains the columns added since.
pub fn ensure(sql: &SqlStorage, txn: &Transactions) -> Result<Layout> {
    let found: Vec<MasterRow> =
        sql.exec("SELECT type, sql FROM sqlite_master WHERE name = 'message_rows'", None)?.to_array()?;
    match found.first() {
        None => {
            create(sql, "message_rows")?;
            Ok(Layout::Current)
        }
        Some(m) if m.kind == "view" => {
            if missing(m).is_some() {
                txn.atomically(|| add_columns_while_moving(sql))?;
            }
            Ok(Layout::Moving)
        }
        Some(m) if m.sql.as_deref().is_some_and(|s| s.contains("WITHOUT ROWID")) => {
            add_columns(sql, "message_rows", m)?;
            create(sql, "message_rows")?;
            Ok(Layout::Current)
        }
        Some(m) => {
            txn.atomically(|| {
                add_columns(sql, "message_rows", m)?;
                start_moving(sql)
            })?;
            Ok(Layout::Moving)
        }
    }
}

/// The first column of `ADDED` that the table or view `m` lacks, if any.
fn missing(m: &MasterRow) -> Option<usize> {
    let text = m.sql.as_deref().unwrap_or_default();
    ADDED.iter().position(|(name, _)| !text.contains(&format!("{name} ")) && !text.contains(&format!("{name},")))
}

/// Adds the columns of `ADDED` that `table` (as `m` describes it) lacks.
/// Each is nullable with no default, so SQLite adds it without rewriting a
/// row: no row is written.
fn add_columns(sql: &SqlStorage, table: &str, m: &MasterRow) -> Result<()> {
    let Some(first) = missing(m) else { return Ok(()) };
    for (name, kind) in &ADDED[first..] {
        sql.exec(&format!("ALTER TABLE {table} ADD COLUMN {name} {kind}"), None)?;
    }
    Ok(())
}

/// A shard an earlier build left mid-move: both tables gain the added
/// columns, and the view and its triggers are made again over them.
fn add_columns_while_moving(sql: &SqlStorage) -> Result<()> {
    for table in [OLD, NEW] {
        let found: Vec<MasterRow> =
            sql.exec("SELECT type, sql FROM sqlite_master WHERE name = ?", vec![table.into()])?.to_array()?;
        if let Some(m) = found.first() {
            add_columns(sql, table, m)?;
        }
    }
    // Dropping the view drops its triggers.
    sql.exec("DROP VIEW message_rows", None)?;
    view_and_triggers(sql)
}

/// The table and its indexes, if missing. Each secondary index entry of a
/// `WITHOUT ROWID` table holds the key, so the status index also answers a
/// status-and-recipient filter (page and count) without reading a row.
fn create(sql: &SqlStorage, table: &str) -> Result<()> {
    for stmt in [
        format!("CREATE TABLE IF NOT EXISTS {table} ({COLUMNS}) WITHOUT ROWID"),
        format!("CREATE INDEX IF NOT EXISTS list_by_time ON {table} (receive_time_ms, message_id, destination_tn)"),
        format!("CREATE INDEX IF NOT EXISTS list_by_source ON {table} (source_tn, receive_time_ms)"),
        format!("CREATE INDEX IF NOT EXISTS list_by_destination ON {table} (destination_tn, receive_time_ms)"),
        format!("CREATE INDEX IF NOT EXISTS list_by_status ON {table} (message_status, receive_time_ms)"),
    ] {
        sql.exec(&stmt, None)?;
    }
    Ok(())
}

/// Renames the old table, creates the new one, and puts the view and its
/// triggers in place, in one transaction.
fn start_moving(sql: &SqlStorage) -> Result<()> {
    sql.exec(&format!("ALTER TABLE message_rows RENAME TO {OLD}"), None)?;
    create(sql, NEW)?;
    view_and_triggers(sql)
}

/// The view `message_rows` over both layouts, and its triggers.
fn view_and_triggers(sql: &SqlStorage) -> Result<()> {
    let new_values = ROW_COLUMNS.split(", ").map(|c| format!("NEW.{c}")).collect::<Vec<_>>().join(", ");
    let same_key = "message_id = OLD.message_id AND destination_tn = OLD.destination_tn";
    for stmt in [
        format!(
            "CREATE VIEW message_rows AS SELECT {ROW_COLUMNS} FROM {OLD} UNION ALL SELECT {ROW_COLUMNS} FROM {NEW}"
        ),
        // A new row goes to the new table.
        format!(
            "CREATE TRIGGER message_rows_insert INSTEAD OF INSERT ON message_rows BEGIN
               INSERT INTO {NEW} ({ROW_COLUMNS}) VALUES ({new_values});
             END"
        ),
        // An updated row moves first if it has not yet, then changes there.
        format!(
            "CREATE TRIGGER message_rows_update INSTEAD OF UPDATE ON message_rows BEGIN
               INSERT INTO {NEW} ({ROW_COLUMNS}) SELECT {ROW_COLUMNS} FROM {OLD} WHERE {same_key};
               DELETE FROM {OLD} WHERE {same_key};
               UPDATE {NEW} SET ({ROW_COLUMNS}) = ({new_values}) WHERE {same_key};
             END"
        ),
        format!(
            "CREATE TRIGGER message_rows_delete INSTEAD OF DELETE ON message_rows BEGIN
               DELETE FROM {OLD} WHERE {same_key};
               DELETE FROM {NEW} WHERE {same_key};
             END"
        ),
    ] {
        sql.exec(&stmt, None)?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct Remaining {
    remaining: i64,
}

/// Moves up to `batch` rows of the old layout, oldest first; after the
/// last, puts the new table in the view's place. Returns whether rows
/// remain. Run it inside a transaction: a batch moves whole or not at all.
pub fn move_batch(sql: &SqlStorage, batch: i64) -> Result<bool> {
    let oldest = format!("SELECT rowid FROM {OLD} ORDER BY rowid LIMIT ?");
    sql.exec(
        &format!("INSERT INTO {NEW} ({ROW_COLUMNS}) SELECT {ROW_COLUMNS} FROM {OLD} WHERE rowid IN ({oldest})"),
        vec![batch.into()],
    )?;
    sql.exec(&format!("DELETE FROM {OLD} WHERE rowid IN ({oldest})"), vec![batch.into()])?;
    let left: Vec<Remaining> =
        sql.exec(&format!("SELECT EXISTS (SELECT 1 FROM {OLD}) AS remaining"), None)?.to_array()?;
    if left.first().is_some_and(|l| l.remaining == 1) {
        return Ok(true);
    }
    for stmt in [
        "DROP TRIGGER message_rows_insert".to_owned(),
        "DROP TRIGGER message_rows_update".to_owned(),
        "DROP TRIGGER message_rows_delete".to_owned(),
        "DROP VIEW message_rows".to_owned(),
        format!("DROP TABLE {OLD}"),
        format!("ALTER TABLE {NEW} RENAME TO message_rows"),
    ] {
        sql.exec(&stmt, None)?;
    }
    Ok(false)
}

/// A query with a row (`next`: 0) while a move is still to make, for the
/// alarm's schedule.
pub fn move_pending() -> String {
    format!("SELECT 0 AS next FROM sqlite_master WHERE name = '{OLD}'")
}
