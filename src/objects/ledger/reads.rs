//! A ledger shard's reads: a message's records, the list page and count,
//! and the quarantine. Each query sits beside the row type it reads into.

use std::collections::BTreeMap;

use bw_ledger_core::list::{page_plan, ColumnValue, ListQuery, ListRow, SqlParam, SqlPlan};
use bw_ledger_core::media::{MediaLookup, MediaQuery};
use bw_ledger_core::quarantine::{QuarantineBody, QuarantineIndex, QuarantineMeta, QuarantinePageQuery, RawEncoding};
use bw_ledger_core::records::{EventRecord, MessageRecords, StoredConflict, StoredEvent};
use bw_ledger_core::{EventKey, EventKind};
use serde::Deserialize;
use worker::{Result, SqlCursor, SqlStorage, SqlStorageValue};

#[derive(Deserialize)]
struct EventRow {
    seq: i64,
    event_key: String,
    message_id: String,
    #[serde(rename = "type")]
    kind: EventKind,
    recipient: Option<String>,
    time: Option<String>,
    time_ms: Option<i64>,
    error_code: Option<i64>,
    content_hash: String,
    raw: String,
    received_at_ms: i64,
}

impl From<EventRow> for StoredEvent {
    fn from(r: EventRow) -> Self {
        StoredEvent {
            seq: r.seq,
            record: EventRecord {
                event_key: r.event_key,
                message_id: r.message_id,
                kind: r.kind,
                recipient: r.recipient,
                time: r.time,
                time_ms: r.time_ms,
                error_code: r.error_code,
                content_hash: r.content_hash,
                raw: r.raw,
            },
            received_at_ms: r.received_at_ms,
        }
    }
}

/// `[[lo, hi], …]`: the event key ranges of these messages
/// (`EventKey::range_of`), one JSON parameter.
pub fn key_ranges(ids: &[impl AsRef<str>]) -> Result<String> {
    let ranges: Vec<(String, String)> = ids.iter().map(|id| EventKey::range_of(id.as_ref())).collect();
    Ok(serde_json::to_string(&ranges)?)
}

/// The events whose keys fall in the ranges of a `key_ranges` parameter:
/// each range is a seek on the unique index of `event_key` (the ranges
/// drive the join, as `CROSS JOIN` tells SQLite), so no per-message index
/// is kept for this.
pub const EVENTS_IN_RANGES: &str = "FROM json_each(?) AS r CROSS JOIN events AS e
     WHERE e.event_key >= json_extract(r.value, '$[0]') AND e.event_key < json_extract(r.value, '$[1]')";

const EXCEPT_KEYS: &str = " AND e.event_key NOT IN (SELECT value FROM json_each(?))";

/// The stored events of the messages in `ids`, by message in arrival order.
pub fn events_of(sql: &SqlStorage, ids: &[impl AsRef<str>]) -> Result<BTreeMap<String, Vec<StoredEvent>>> {
    events_except(sql, ids, &[])
}

/// The same, without the events whose keys are in `except` (those the
/// caller holds already: a callback's own events, just inserted).
pub fn events_except(
    sql: &SqlStorage,
    ids: &[impl AsRef<str>],
    except: &[&str],
) -> Result<BTreeMap<String, Vec<StoredEvent>>> {
    let mut params = vec![key_ranges(ids)?.into()];
    let filter = if except.is_empty() {
        ""
    } else {
        params.push(serde_json::to_string(except)?.into());
        EXCEPT_KEYS
    };
    let rows: Vec<EventRow> = sql
        .exec(
            &format!(
                "SELECT e.seq, e.event_key, e.message_id, e.type, e.recipient, e.time, e.time_ms, e.error_code,
                   e.content_hash, e.raw, e.received_at_ms {EVENTS_IN_RANGES}{filter} ORDER BY e.seq"
            ),
            params,
        )?
        .to_array()?;
    let mut by_message: BTreeMap<String, Vec<StoredEvent>> = BTreeMap::new();
    for r in rows {
        by_message.entry(r.message_id.clone()).or_default().push(r.into());
    }
    Ok(by_message)
}

#[derive(Deserialize)]
struct ConflictRow {
    event_key: String,
    content_hash: String,
    raw: String,
    received_at_ms: i64,
}

/// A message's events, in arrival order, and its identity conflicts.
pub fn message(sql: &SqlStorage, message_id: &str) -> Result<MessageRecords> {
    let events = events_of(sql, &[message_id])?.remove(message_id).unwrap_or_default();
    let conflicts: Vec<ConflictRow> = sql
        .exec(
            "SELECT event_key, content_hash, raw, received_at_ms FROM event_conflicts
             WHERE message_id = ? ORDER BY received_at_ms, content_hash",
            vec![message_id.into()],
        )?
        .to_array()?;
    Ok(MessageRecords {
        events,
        conflicts: conflicts
            .into_iter()
            .map(|c| StoredConflict {
                event_key: c.event_key,
                content_hash: c.content_hash,
                raw: c.raw,
                received_at_ms: c.received_at_ms,
            })
            .collect(),
        media: super::media::of_message(sql, message_id)?,
    })
}

#[derive(Deserialize)]
struct QuarantineRow {
    content_hash: String,
    raw_bytes: i64,
    raw_encoding: RawEncoding,
    reason: String,
    first_seen_ms: i64,
    last_seen_ms: i64,
    seen_count: i64,
}

/// A page of the quarantine, most recently seen first, after the cursor,
/// without bodies (their sizes only), and the count of items held.
pub fn quarantine_index(sql: &SqlStorage, q: &QuarantinePageQuery) -> Result<QuarantineIndex> {
    let (t, hash) = q.after.as_ref().map_or((i64::MAX, String::new()), |c| (c.last_seen_ms, c.content_hash.clone()));
    let rows: Vec<QuarantineRow> = sql
        .exec(
            "SELECT content_hash, length(CAST(raw AS BLOB)) AS raw_bytes, raw_encoding, reason, first_seen_ms,
               last_seen_ms, seen_count
             FROM quarantine WHERE last_seen_ms < ?1 OR (last_seen_ms = ?1 AND content_hash > ?2)
             ORDER BY last_seen_ms DESC, content_hash LIMIT ?3",
            vec![t.into(), hash.into(), i64::from(q.limit).into()],
        )?
        .to_array()?;
    let count: Vec<CountRow> = sql.exec("SELECT COUNT(*) AS n FROM quarantine", None)?.to_array()?;
    Ok(QuarantineIndex {
        count: count.first().map_or(0, |c| c.n.max(0) as u64),
        items: rows
            .into_iter()
            .map(|r| QuarantineMeta {
                content_hash: r.content_hash,
                raw_bytes: r.raw_bytes.max(0) as u64,
                raw_encoding: r.raw_encoding,
                reason: r.reason,
                first_seen_ms: r.first_seen_ms,
                last_seen_ms: r.last_seen_ms,
                seen_count: r.seen_count,
            })
            .collect(),
    })
}

/// The stored bodies of these quarantine items.
pub fn quarantine_bodies(sql: &SqlStorage, hashes: &[String]) -> Result<Vec<QuarantineBody>> {
    sql.exec(
        "SELECT content_hash AS contentHash, raw FROM quarantine WHERE content_hash IN (SELECT value FROM json_each(?))",
        vec![serde_json::to_string(hashes)?.into()],
    )?
    .to_array()
}

/// The list rows a `SELECT {ROW_COLUMNS}` found, read by position (the
/// columns' order is `ListRow`'s, defined once in the core).
pub(super) fn list_rows(cursor: SqlCursor) -> Result<Vec<ListRow>> {
    cursor
        .raw()
        .map(|values| {
            let values = values?.into_iter().map(column_value).collect();
            ListRow::from_values(values).map_err(|e| worker::Error::RustError(format!("a stored list row: {e}")))
        })
        .collect()
}

fn column_value(v: SqlStorageValue) -> ColumnValue {
    match v {
        SqlStorageValue::Integer(n) => ColumnValue::Int(n),
        SqlStorageValue::Float(f) => ColumnValue::Int(f as i64),
        SqlStorageValue::String(s) => ColumnValue::Text(s),
        SqlStorageValue::Boolean(b) => ColumnValue::Int(i64::from(b)),
        SqlStorageValue::Null | SqlStorageValue::Blob(_) => ColumnValue::Null,
    }
}

#[derive(Deserialize)]
struct CountRow {
    n: i64,
}

/// Runs a statement the core planned, binding its parameters.
pub(crate) fn run(sql: &SqlStorage, plan: SqlPlan) -> Result<SqlCursor> {
    let params = plan
        .params
        .into_iter()
        .map(|p| match p {
            SqlParam::Int(i) => i.into(),
            SqlParam::Text(t) => t.into(),
        })
        .collect::<Vec<worker::SqlStorageValue>>();
    sql.exec(&plan.sql, params)
}

/// One shard's page for a list query planned by the core.
pub fn list_page(sql: &SqlStorage, q: &ListQuery) -> Result<Vec<ListRow>> {
    list_rows(run(sql, page_plan(q))?)
}

/// One shard's count of the rows a list query matches (`count_plan`).
pub fn list_count(sql: &SqlStorage, plan: SqlPlan) -> Result<i64> {
    let counts: Vec<CountRow> = run(sql, plan)?.to_array()?;
    Ok(counts.first().map_or(0, |c| c.n))
}

#[derive(Deserialize)]
struct NumbersRow {
    source_tn: String,
    destination_tn: String,
}

/// One media file's row, and its message's numbers (sender and every
/// recipient), for `GET /media/...`.
pub fn media(sql: &SqlStorage, q: &MediaQuery) -> Result<MediaLookup> {
    let item = super::media::of_message(sql, &q.message_id)?.into_iter().find(|m| m.path == q.path);
    if item.is_none() {
        return Ok(MediaLookup::default());
    }
    let rows: Vec<NumbersRow> = sql
        .exec(
            "SELECT source_tn, destination_tn FROM message_rows WHERE message_id = ?",
            vec![q.message_id.clone().into()],
        )?
        .to_array()?;
    let mut numbers: Vec<String> = rows.into_iter().flat_map(|r| [r.source_tn, r.destination_tn]).collect();
    numbers.sort();
    numbers.dedup();
    Ok(MediaLookup { item, numbers })
}
