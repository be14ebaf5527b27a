//! `LedgerShard`: one SQLite-backed Durable Object per shard of the ledger.
//!
//! It stores events, identity conflicts and quarantined input for the
//! messages (and content hashes) that map to it. It decides nothing itself:
//! dedup decisions come from the core. It must never acknowledge a write it
//! has not made: replies leave only through the output gate, after the
//! writes they report are durable.

use std::cell::Cell;

use bw_ledger_core::idempotency::{
    decide_begin, BeginDecision, IdemBegin, IdemFinish, IdempotencyRecord, IDEMPOTENCY_TTL_MS,
};
use bw_ledger_core::identity::{decide, DedupDecision};
use bw_ledger_core::list::{count_plan, page_plan, rows_for, ListQuery, ListRow, ShardPage, SqlParam, SqlPlan, ROW_COLUMNS};
use bw_ledger_core::projection::project;
use bw_ledger_core::quarantine::{QuarantineItem, QuarantineRecord, RawEncoding};
use bw_ledger_core::wire::{
    route, EventRecord, IngestBatch, IngestReply, MessageQuery, MessageRecords, QuarantineList, QuarantineQuery,
    StoredConflict, StoredEvent,
};
use serde::Deserialize;
use worker::{console_warn, durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

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
    "CREATE INDEX IF NOT EXISTS events_by_message ON events (message_id, seq)",
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
    "CREATE TABLE IF NOT EXISTS idempotency (
        scope_key TEXT PRIMARY KEY,
        body_hash TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        response TEXT)",
    "CREATE INDEX IF NOT EXISTS idempotency_by_created ON idempotency (created_ms)",
    // One row per (message, recipient): the List Messages projection, kept
    // current in the same transaction as the events it derives from.
    "CREATE TABLE IF NOT EXISTS message_rows (
        message_id TEXT NOT NULL,
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
        PRIMARY KEY (message_id, destination_tn))",
    "CREATE INDEX IF NOT EXISTS rows_by_time ON message_rows (receive_time_ms, message_id, destination_tn)",
    "CREATE INDEX IF NOT EXISTS rows_by_source ON message_rows (source_tn, receive_time_ms)",
    "CREATE INDEX IF NOT EXISTS rows_by_destination ON message_rows (destination_tn, receive_time_ms)",
    "CREATE INDEX IF NOT EXISTS rows_by_status ON message_rows (message_status, receive_time_ms)",
];

#[durable_object]
pub struct LedgerShard {
    sql: SqlStorage,
    schema_ready: Cell<bool>,
}

impl DurableObject for LedgerShard {
    fn new(state: State, _env: Env) -> Self {
        Self { sql: state.storage().sql(), schema_ready: Cell::new(false) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        self.ensure_schema()?;
        let path = req.path();
        match path.as_str() {
            route::INGEST => {
                let batch: IngestBatch = req.json().await?;
                Response::from_json(&self.ingest(batch)?)
            }
            route::MESSAGE => {
                let q: MessageQuery = req.json().await?;
                Response::from_json(&self.message(&q.message_id)?)
            }
            route::QUARANTINE => {
                let q: QuarantineQuery = req.json().await?;
                Response::from_json(&self.quarantine(q.limit)?)
            }
            route::LIST => {
                let q: ListQuery = req.json().await?;
                Response::from_json(&self.list(&q)?)
            }
            route::IDEM_BEGIN => {
                let begin: IdemBegin = req.json().await?;
                Response::from_json(&self.idempotency_begin(begin)?)
            }
            route::IDEM_FINISH => {
                let finish: IdemFinish = req.json().await?;
                self.idempotency_finish(finish)?;
                Response::from_json(&serde_json::json!({}))
            }
            _ => Response::error("unknown shard route", 404),
        }
    }
}

#[derive(Deserialize)]
struct HashRow {
    content_hash: String,
}

#[derive(Deserialize)]
struct RowRecord {
    message_id: String,
    destination_tn: String,
    source_tn: String,
    message_status: String,
    message_direction: String,
    message_type: String,
    segment_count: i64,
    error_code: i64,
    receive_time_ms: i64,
    carrier_name: Option<String>,
    message_length: i64,
    attachment_count: i64,
    recipient_count: i64,
    text: Option<String>,
    media: String,
}

#[derive(Deserialize)]
struct CountRow {
    n: i64,
}

#[derive(Deserialize)]
struct IdempotencyRow {
    body_hash: String,
    created_ms: i64,
    response: Option<String>,
}

#[derive(Deserialize)]
struct EventRow {
    seq: i64,
    event_key: String,
    message_id: String,
    #[serde(rename = "type")]
    kind: String,
    recipient: Option<String>,
    time: Option<String>,
    time_ms: Option<i64>,
    error_code: Option<i64>,
    content_hash: String,
    raw: String,
    received_at_ms: i64,
}

#[derive(Deserialize)]
struct ConflictRow {
    event_key: String,
    content_hash: String,
    raw: String,
    received_at_ms: i64,
}

#[derive(Deserialize)]
struct QuarantineRow {
    content_hash: String,
    raw: String,
    raw_encoding: String,
    reason: String,
    first_seen_ms: i64,
    last_seen_ms: i64,
    seen_count: i64,
}

impl LedgerShard {
    fn ensure_schema(&self) -> Result<()> {
        if !self.schema_ready.get() {
            for stmt in SCHEMA {
                self.sql.exec(stmt, None)?;
            }
            self.schema_ready.set(true);
        }
        Ok(())
    }

    /// Stores a batch exactly once per event identity.
    ///
    /// Atomic by construction: there is no `await` between the first read
    /// and the last write, so no other request can interleave (input gate),
    /// and the reply is held until these writes are durable (output gate).
    /// If a statement fails midway, the caller gets an error and answers 5xx;
    /// Bandwidth's retry then finds the rows already written as duplicates.
    fn ingest(&self, batch: IngestBatch) -> Result<IngestReply> {
        let mut reply = IngestReply::default();
        let now = batch.received_at_ms;
        let mut touched: Vec<String> = Vec::new();
        for ev in batch.events {
            let stored: Vec<HashRow> = self
                .sql
                .exec("SELECT content_hash FROM events WHERE event_key = ?", vec![ev.event_key.clone().into()])?
                .to_array()?;
            match decide(stored.first().map(|r| r.content_hash.as_str()), &ev.content_hash) {
                DedupDecision::Insert => {
                    self.insert_event(&ev, now)?;
                    reply.stored += 1;
                    if !touched.contains(&ev.message_id) {
                        touched.push(ev.message_id.clone());
                    }
                }
                DedupDecision::Duplicate => reply.duplicates += 1,
                DedupDecision::Conflict => {
                    console_warn!(
                        "event identity conflict: message {} type {} already stored with other content; kept aside",
                        ev.message_id,
                        ev.kind
                    );
                    self.sql.exec(
                        "INSERT INTO event_conflicts (event_key, content_hash, message_id, raw, received_at_ms)
                         VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        vec![ev.event_key.into(), ev.content_hash.into(), ev.message_id.into(), ev.raw.into(), now.into()],
                    )?;
                    reply.conflicts += 1;
                }
            }
        }
        for q in batch.quarantine {
            self.sql.exec(
                "INSERT INTO quarantine (content_hash, raw, raw_encoding, reason, first_seen_ms, last_seen_ms, seen_count)
                 VALUES (?, ?, ?, ?, ?, ?, 1)
                 ON CONFLICT (content_hash) DO UPDATE SET
                   seen_count = seen_count + 1, last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms)",
                vec![
                    q.content_hash.into(),
                    q.raw.into(),
                    encoding_name(q.raw_encoding).into(),
                    q.reason.into(),
                    now.into(),
                    now.into(),
                ],
            )?;
            reply.quarantined += 1;
        }
        for message_id in touched {
            self.refresh_rows(&message_id)?;
        }
        Ok(reply)
    }

    /// Rewrites a message's list rows from all its events (still inside the
    /// ingest's synchronous section, so rows and events commit together).
    fn refresh_rows(&self, message_id: &str) -> Result<()> {
        let records = self.message(message_id)?;
        let first_received = records.events.iter().map(|e| e.received_at_ms).min().unwrap_or(0);
        let Some(view) = project(message_id, &records) else { return Ok(()) };
        self.sql.exec("DELETE FROM message_rows WHERE message_id = ?", vec![message_id.into()])?;
        for row in rows_for(&view, first_received) {
            self.sql.exec(
                &format!("INSERT INTO message_rows ({ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                vec![
                    row.message_id.into(),
                    row.destination_tn.into(),
                    row.source_tn.into(),
                    row.message_status.into(),
                    row.message_direction.into(),
                    row.message_type.into(),
                    row.segment_count.into(),
                    row.error_code.into(),
                    row.receive_time_ms.into(),
                    row.carrier_name.into(),
                    row.message_length.into(),
                    row.attachment_count.into(),
                    row.recipient_count.into(),
                    row.text.into(),
                    serde_json::to_string(&row.media)?.into(),
                ],
            )?;
        }
        Ok(())
    }

    fn run(&self, plan: SqlPlan) -> Result<worker::SqlCursor> {
        let params = plan
            .params
            .into_iter()
            .map(|p| match p {
                SqlParam::Int(i) => i.into(),
                SqlParam::Text(t) => t.into(),
            })
            .collect::<Vec<worker::SqlStorageValue>>();
        self.sql.exec(&plan.sql, params)
    }

    /// One shard's page and count for a list query planned by the core.
    fn list(&self, q: &ListQuery) -> Result<ShardPage> {
        let rows: Vec<RowRecord> = self.run(page_plan(q))?.to_array()?;
        let counts: Vec<CountRow> = self.run(count_plan(q))?.to_array()?;
        let rows = rows
            .into_iter()
            .map(|r| {
                Ok(ListRow {
                    message_id: r.message_id,
                    destination_tn: r.destination_tn,
                    source_tn: r.source_tn,
                    message_status: r.message_status,
                    message_direction: r.message_direction,
                    message_type: r.message_type,
                    segment_count: r.segment_count,
                    error_code: r.error_code,
                    receive_time_ms: r.receive_time_ms,
                    carrier_name: r.carrier_name,
                    message_length: r.message_length,
                    attachment_count: r.attachment_count,
                    recipient_count: r.recipient_count,
                    text: r.text,
                    media: serde_json::from_str(&r.media)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ShardPage { rows, total: counts.first().map_or(0, |c| c.n) })
    }

    fn insert_event(&self, ev: &EventRecord, now: i64) -> Result<()> {
        self.sql.exec(
            "INSERT INTO events (event_key, message_id, type, recipient, time, time_ms, error_code, content_hash, raw, received_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                ev.event_key.clone().into(),
                ev.message_id.clone().into(),
                ev.kind.clone().into(),
                ev.recipient.clone().into(),
                ev.time.clone().into(),
                ev.time_ms.into(),
                ev.error_code.into(),
                ev.content_hash.clone().into(),
                ev.raw.clone().into(),
                now.into(),
            ],
        )?;
        Ok(())
    }

    fn message(&self, message_id: &str) -> Result<MessageRecords> {
        let events: Vec<EventRow> = self
            .sql
            .exec(
                "SELECT seq, event_key, message_id, type, recipient, time, time_ms, error_code, content_hash, raw, received_at_ms
                 FROM events WHERE message_id = ? ORDER BY seq",
                vec![message_id.into()],
            )?
            .to_array()?;
        let conflicts: Vec<ConflictRow> = self
            .sql
            .exec(
                "SELECT event_key, content_hash, raw, received_at_ms FROM event_conflicts
                 WHERE message_id = ? ORDER BY received_at_ms, content_hash",
                vec![message_id.into()],
            )?
            .to_array()?;
        Ok(MessageRecords {
            events: events
                .into_iter()
                .map(|r| StoredEvent {
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
                })
                .collect(),
            conflicts: conflicts
                .into_iter()
                .map(|c| StoredConflict {
                    event_key: c.event_key,
                    content_hash: c.content_hash,
                    raw: c.raw,
                    received_at_ms: c.received_at_ms,
                })
                .collect(),
        })
    }

    fn quarantine(&self, limit: u32) -> Result<QuarantineList> {
        let rows: Vec<QuarantineRow> = self
            .sql
            .exec(
                "SELECT content_hash, raw, raw_encoding, reason, first_seen_ms, last_seen_ms, seen_count
                 FROM quarantine ORDER BY last_seen_ms DESC, content_hash LIMIT ?",
                vec![i64::from(limit).into()],
            )?
            .to_array()?;
        Ok(rows
            .into_iter()
            .map(|r| QuarantineItem {
                record: QuarantineRecord {
                    content_hash: r.content_hash,
                    raw: r.raw,
                    raw_encoding: if r.raw_encoding == "base64" { RawEncoding::Base64 } else { RawEncoding::Utf8 },
                    reason: r.reason,
                },
                first_seen_ms: r.first_seen_ms,
                last_seen_ms: r.last_seen_ms,
                seen_count: r.seen_count,
            })
            .collect())
    }
}

impl LedgerShard {
    /// Claims or reads an idempotency key. Atomic like `ingest`: no await
    /// between the read and the write, so of concurrent duplicates exactly
    /// one gets `Proceed`.
    fn idempotency_begin(&self, begin: IdemBegin) -> Result<BeginDecision> {
        self.sql.exec(
            "DELETE FROM idempotency WHERE created_ms < ?",
            vec![(begin.now_ms - IDEMPOTENCY_TTL_MS).into()],
        )?;
        let rows: Vec<IdempotencyRow> = self
            .sql
            .exec(
                "SELECT body_hash, created_ms, response FROM idempotency WHERE scope_key = ?",
                vec![begin.scope_key.clone().into()],
            )?
            .to_array()?;
        let existing = match rows.into_iter().next() {
            None => None,
            Some(r) => Some(IdempotencyRecord {
                body_hash: r.body_hash,
                created_ms: r.created_ms,
                response: r.response.as_deref().map(serde_json::from_str).transpose()?,
            }),
        };
        let decision = decide_begin(existing.as_ref(), &begin.body_hash, begin.now_ms);
        if decision == BeginDecision::Proceed {
            self.sql.exec(
                "INSERT INTO idempotency (scope_key, body_hash, created_ms, response) VALUES (?, ?, ?, NULL)
                 ON CONFLICT (scope_key) DO UPDATE SET
                   body_hash = excluded.body_hash, created_ms = excluded.created_ms, response = NULL",
                vec![begin.scope_key.into(), begin.body_hash.into(), begin.now_ms.into()],
            )?;
        }
        Ok(decision)
    }

    /// Saves the outcome for replay, or releases the key for a safe retry.
    fn idempotency_finish(&self, finish: IdemFinish) -> Result<()> {
        match finish.response {
            Some(resp) => self.sql.exec(
                "UPDATE idempotency SET response = ? WHERE scope_key = ?",
                vec![serde_json::to_string(&resp)?.into(), finish.scope_key.into()],
            )?,
            None => self.sql.exec("DELETE FROM idempotency WHERE scope_key = ?", vec![finish.scope_key.into()])?,
        };
        Ok(())
    }
}

fn encoding_name(e: RawEncoding) -> &'static str {
    match e {
        RawEncoding::Utf8 => "utf8",
        RawEncoding::Base64 => "base64",
    }
}

