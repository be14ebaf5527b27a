//! `LedgerShard`: one SQLite-backed Durable Object per shard of the ledger.
//!
//! It stores events, identity conflicts and quarantined input for the
//! messages (and content hashes) that map to it. It decides nothing itself:
//! dedup decisions come from the core. It must never acknowledge a write it
//! has not made: replies leave only through the output gate, after the
//! writes they report are durable.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bw_ledger_core::idempotency::{
    decide_begin, BeginDecision, IdemBegin, IdemFinish, IdempotencyRecord, IDEMPOTENCY_TTL_MS,
};
use bw_ledger_core::identity::{decide, DedupDecision};
use bw_ledger_core::list::{
    count_plan, page_plan, rows_for, ListQuery, ListRow, ShardPage, SqlParam, SqlPlan, ROW_COLUMNS,
};
use bw_ledger_core::projection::project;
use bw_ledger_core::quarantine::{QuarantineItem, QuarantineRecord, RawEncoding};
use bw_ledger_core::wire::{
    route, EventRecord, IngestBatch, MessageQuery, MessageRecords, QuarantineList, QuarantineQuery, StoredConflict,
    StoredEvent,
};
use std::time::Duration;

use bw_ledger_core::forward::{
    changes, merge_stats, parse_targets, sign, Change, ForwardTarget, OutboxItem, ReplayRequest, Schedule, TargetStats,
    DELIVERY_TIMEOUT_MS,
};
use bw_ledger_core::live::quarantine_doc;
use bw_ledger_core::status::RecipientState;
use bw_ledger_core::wire::{DeadQuery, IngestReply, ReplayReply};
use serde::Deserialize;
use worker::{
    console_error, console_warn, durable_object, Date, DurableObject, Env, Request, Response, Result, SqlStorage,
    State, Storage,
};

use crate::config::{FORWARD_GIVE_UP_MS, FORWARD_RETRY_BASE_MS, FORWARD_RETRY_MAX_MS, FORWARD_TARGETS};
use crate::transaction::Transactions;
use crate::upstream::{fetch_with_timeout, FetchFailure};

/// Outbox rows started per alarm round; more rounds follow at once.
const DELIVERY_BATCH: u32 = 64;
/// A started delivery holds its row this long past the delivery timeout.
const DELIVERY_LEASE_SLACK_MS: i64 = 5_000;

fn now_ms() -> i64 {
    Date::now().as_millis() as i64
}

/// Uniform in [0, 1), for retry jitter; 0.5 if the source fails.
fn jitter() -> f64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

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
        state TEXT NOT NULL,
        flags TEXT NOT NULL,
        PRIMARY KEY (message_id, destination_tn))",
    "CREATE INDEX IF NOT EXISTS rows_by_time ON message_rows (receive_time_ms, message_id, destination_tn)",
    "CREATE INDEX IF NOT EXISTS rows_by_source ON message_rows (source_tn, receive_time_ms)",
    "CREATE INDEX IF NOT EXISTS rows_by_destination ON message_rows (destination_tn, receive_time_ms)",
    "CREATE INDEX IF NOT EXISTS rows_by_status ON message_rows (message_status, receive_time_ms)",
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
];

#[durable_object]
pub struct LedgerShard {
    state: State,
    env: Env,
    sql: SqlStorage,
    storage: Rc<Storage>,
    /// Every write a request makes runs in one of these: all or nothing.
    txn: Transactions,
    schema_ready: Cell<bool>,
    /// Whether live subscribers may be listening; starts true, cleared when
    /// the hub reports none, set again by the hub's `LIVE_ON`.
    live: Rc<crate::live::LiveSwitch>,
    /// Forwarding targets and schedule, read once per object instance.
    targets: Rc<Vec<ForwardTarget>>,
    schedule: Schedule,
}

impl DurableObject for LedgerShard {
    fn new(state: State, env: Env) -> Self {
        let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
        let targets = parse_targets(var(FORWARD_TARGETS).as_deref()).unwrap_or_else(|why| {
            // Ingest must never fail over forwarding config: log it loudly.
            console_error!("config: {why}; forwarding is off until it is fixed");
            Vec::new()
        });
        let schedule = Schedule::from_vars(
            var(FORWARD_RETRY_BASE_MS).as_deref(),
            var(FORWARD_RETRY_MAX_MS).as_deref(),
            var(FORWARD_GIVE_UP_MS).as_deref(),
        );
        let txn = match Transactions::of(&state) {
            Ok(txn) => txn,
            // The runtime gives every object its storage; `State::storage`
            // in the worker crate unwraps this same call.
            Err(e) => panic!("LedgerShard without storage: {e}"),
        };
        let shard = Self {
            txn,
            sql: state.storage().sql(),
            storage: Rc::new(state.storage()),
            state,
            env,
            schema_ready: Cell::new(false),
            live: crate::live::LiveSwitch::new(),
            targets: Rc::new(targets),
            schedule,
        };
        // A crash while an alarm runs can lose it; whenever the object wakes
        // up, re-arm it if outbox rows are still waiting.
        shard.state.wait_until(shard.deliveries().rearm_if_lost());
        shard
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        self.ensure_schema()?;
        let path = req.path();
        match path.as_str() {
            route::INGEST => {
                // A group of callbacks (see bw_ledger_core::group): stored in
                // one synchronous section, so one commit covers them all.
                let batches: Vec<IngestBatch> = crate::http::body_json(&mut req).await?;
                let (replies, queued, live) = self.txn.atomically(|| self.ingest_group(batches))?;
                if !live.is_empty() && self.live.is_on() {
                    // Off the ack path, and after the commit: outgoing
                    // requests wait behind the output gate.
                    self.state.wait_until(crate::live::publish(self.env.clone(), live, self.live.clone()));
                }
                if queued > 0 {
                    // Deliver off the ack path: the alarm runs after this reply.
                    self.storage.set_alarm(0).await?;
                }
                Response::from_json(&replies)
            }
            route::OUTBOX_STATS => Response::from_json(&self.outbox_stats()?),
            route::LIVE_ON => {
                self.live.turn_on();
                Response::from_json(&serde_json::json!({}))
            }
            route::OUTBOX_DEAD => {
                let q: DeadQuery = crate::http::body_json(&mut req).await?;
                Response::from_json(&self.outbox_dead(&q)?)
            }
            route::OUTBOX_REPLAY => {
                let r: ReplayRequest = crate::http::body_json(&mut req).await?;
                let replayed = self.txn.atomically(|| self.outbox_replay(&r))?;
                if replayed > 0 {
                    self.storage.set_alarm(0).await?;
                }
                Response::from_json(&ReplayReply { replayed })
            }
            route::MESSAGE => {
                let q: MessageQuery = crate::http::body_json(&mut req).await?;
                Response::from_json(&self.message(&q.message_id)?)
            }
            route::QUARANTINE => {
                let q: QuarantineQuery = crate::http::body_json(&mut req).await?;
                Response::from_json(&self.quarantine(q.limit)?)
            }
            route::LIST => {
                let q: ListQuery = crate::http::body_json(&mut req).await?;
                Response::from_json(&self.list(&q)?)
            }
            route::IDEM_BEGIN => {
                let begin: IdemBegin = crate::http::body_json(&mut req).await?;
                Response::from_json(&self.txn.atomically(|| self.idempotency_begin(begin))?)
            }
            route::IDEM_FINISH => {
                let finish: IdemFinish = crate::http::body_json(&mut req).await?;
                self.txn.atomically(|| self.idempotency_finish(finish))?;
                Response::from_json(&serde_json::json!({}))
            }
            #[cfg(feature = "test-hooks")]
            crate::test_hooks::SHARD_ROUTE => {
                let q: crate::test_hooks::ShardSql = crate::http::body_json(&mut req).await?;
                Response::from_json(&crate::test_hooks::run(&self.sql, q)?)
            }
            _ => Response::error("unknown shard route", 404),
        }
    }

    /// Starts delivering due outbox rows, off every ack path. Each row is
    /// leased (its next attempt pushed past the delivery timeout) and then
    /// delivered on its own: it records its outcome and reschedules the alarm
    /// when it finishes, so a target that hangs holds only its own rows. If
    /// the object dies mid-delivery the lease expires and the row is sent
    /// again, with the same webhook-id.
    async fn alarm(&self) -> Result<Response> {
        self.ensure_schema()?;
        let deliveries = self.deliveries();
        let now = now_ms();
        let heads = deliveries.lease_due(now)?;
        let full = heads.len() as u32 == DELIVERY_BATCH;
        for head in heads {
            self.state.wait_until(deliveries.clone().deliver_and_record(head));
        }
        if full {
            self.storage.set_alarm(0).await?;
        } else {
            deliveries.reschedule().await?;
        }
        Response::ok("")
    }
}

/// What a delivery needs, owned, so it can outlive the alarm that started it.
#[derive(Clone)]
struct Deliveries {
    sql: SqlStorage,
    storage: Rc<Storage>,
    targets: Rc<Vec<ForwardTarget>>,
    schedule: Schedule,
}

impl Deliveries {
    /// The due head row of each (target, message), leased for one delivery.
    fn lease_due(&self, now: i64) -> Result<Vec<OutboxRow>> {
        let heads: Vec<OutboxRow> = self
            .sql
            .exec(
                "SELECT seq, webhook_id, target_id, payload, attempts, window_start_ms FROM outbox o
                 WHERE state = 'pending' AND next_attempt_ms <= ?
                   AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.target_id = o.target_id
                       AND p.message_id = o.message_id AND p.state = 'pending' AND p.seq < o.seq)
                 ORDER BY seq LIMIT ?",
                vec![now.into(), i64::from(DELIVERY_BATCH).into()],
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
    async fn rearm_if_lost(self) {
        if let Ok(None) = self.storage.get_alarm().await {
            let _ = self.reschedule().await;
        }
    }

    /// Sets the alarm for the earliest pending row, if any.
    async fn reschedule(&self) -> Result<()> {
        let next: Vec<NextRow> = self
            .sql
            .exec("SELECT MIN(next_attempt_ms) AS next FROM outbox WHERE state = 'pending'", None)?
            .to_array()?;
        if let Some(at) = next.first().and_then(|n| n.next) {
            self.storage.set_alarm((at - now_ms()).max(0)).await?;
        }
        Ok(())
    }

    async fn deliver_and_record(self, h: OutboxRow) {
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
                "UPDATE outbox SET state = 'delivered', attempts = ?, delivered_ms = ?, last_error = NULL WHERE seq = ?",
                vec![attempts.into(), now.into(), h.seq.into()],
            )?,
            Err(why) => {
                let dead = self.schedule.gives_up(h.window_start_ms, now);
                let next = now + self.schedule.backoff_ms(attempts as u32, jitter());
                if dead {
                    console_warn!("outbox: {} to {} dead after {attempts} attempts: {why}", h.webhook_id, h.target_id);
                }
                self.sql.exec(
                    "UPDATE outbox SET state = ?, attempts = ?, next_attempt_ms = ?, last_error = ? WHERE seq = ?",
                    vec![if dead { "dead" } else { "pending" }.into(), attempts.into(), next.into(), why.into(), h.seq.into()],
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
        let timestamp = now_ms() / 1000;
        let (timestamp_text, signature) = (timestamp.to_string(), sign(&key, &row.webhook_id, timestamp, &row.payload));
        let headers = [
            ("Content-Type", "application/json"),
            ("webhook-id", row.webhook_id.as_str()),
            ("webhook-timestamp", timestamp_text.as_str()),
            ("webhook-signature", signature.as_str()),
        ];
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
struct HashRow {
    content_hash: String,
}

#[derive(Deserialize)]
struct OutboxRow {
    seq: i64,
    webhook_id: String,
    target_id: String,
    payload: String,
    attempts: i64,
    window_start_ms: i64,
}

#[derive(Deserialize)]
struct SeenRow {
    seen_count: i64,
}

#[derive(Deserialize)]
struct SeqRow {
    #[allow(dead_code)]
    seq: i64,
}

#[derive(Deserialize)]
struct NextRow {
    next: Option<i64>,
}

#[derive(Deserialize)]
struct StatsRow {
    target_id: String,
    state: String,
    n: i64,
    oldest: Option<i64>,
}

#[derive(Deserialize)]
struct OutboxItemRow {
    webhook_id: String,
    target_id: String,
    message_id: String,
    kind: String,
    state: String,
    attempts: i64,
    created_ms: i64,
    last_error: Option<String>,
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
    state: String,
    flags: String,
}

impl RowRecord {
    fn into_list_row(self) -> Result<ListRow> {
        Ok(ListRow {
            message_id: self.message_id,
            destination_tn: self.destination_tn,
            source_tn: self.source_tn,
            message_status: self.message_status,
            message_direction: self.message_direction,
            message_type: self.message_type,
            segment_count: self.segment_count,
            error_code: self.error_code,
            receive_time_ms: self.receive_time_ms,
            carrier_name: self.carrier_name,
            message_length: self.message_length,
            attachment_count: self.attachment_count,
            recipient_count: self.recipient_count,
            text: self.text,
            media: serde_json::from_str(&self.media)?,
            state: self.state,
            flags: serde_json::from_str(&self.flags)?,
        })
    }
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
    fn deliveries(&self) -> Deliveries {
        Deliveries {
            sql: self.sql.clone(),
            storage: self.storage.clone(),
            targets: self.targets.clone(),
            schedule: self.schedule,
        }
    }

    fn ensure_schema(&self) -> Result<()> {
        if !self.schema_ready.get() {
            for stmt in SCHEMA {
                self.sql.exec(stmt, None)?;
            }
            self.schema_ready.set(true);
        }
        Ok(())
    }

    /// Stores a group of batches (one per callback), each event exactly once
    /// per identity, and answers one reply per batch.
    ///
    /// Atomic by construction: there is no `await` between the first read
    /// and the last write, so no other request can interleave (input gate),
    /// and the reply is held until these writes are durable (output gate):
    /// the whole group is one commit. If a statement fails midway, the caller
    /// gets an error and answers 5xx; Bandwidth's retry then finds the rows
    /// already written as duplicates.
    ///
    /// Values are bound per row. Statements taking the whole group as one
    /// JSON parameter were tried: they measured no faster, and a parameter
    /// or an aggregate holding large events hits SQLite's 2 MB string limit
    /// (a second 900 KB event of one message failed with SQLITE_TOOBIG).
    fn ingest_group(&self, batches: Vec<IngestBatch>) -> Result<(Vec<IngestReply>, u32, Vec<serde_json::Value>)> {
        let mut replies = vec![IngestReply::default(); batches.len()];
        let mut touched: Vec<(&str, i64)> = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            let now = batch.received_at_ms;
            let reply = &mut replies[i];
            for ev in &batch.events {
                // Try the insert first: a new event (the common case) costs
                // one statement; only an existing identity is read back. A
                // copy that rode in the same group finds the first one here.
                let decision = if self.insert_event(ev, now)? {
                    DedupDecision::Insert
                } else {
                    let stored: Vec<HashRow> = self
                        .sql
                        .exec("SELECT content_hash FROM events WHERE event_key = ?", vec![ev.event_key.clone().into()])?
                        .to_array()?;
                    decide(stored.first().map(|r| r.content_hash.as_str()), &ev.content_hash)
                };
                // Every message the group names gets its derived state
                // checked, duplicates included: a message whose events exist
                // is always listed (see `refresh_rows`).
                if !touched.iter().any(|(m, _)| *m == ev.message_id) {
                    touched.push((&ev.message_id, now));
                }
                match decision {
                    DedupDecision::Insert => reply.stored += 1,
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
                            vec![
                                ev.event_key.clone().into(),
                                ev.content_hash.clone().into(),
                                ev.message_id.clone().into(),
                                ev.raw.clone().into(),
                                now.into(),
                            ],
                        )?;
                        reply.conflicts += 1;
                    }
                }
            }
        }
        let mut live = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            let now = batch.received_at_ms;
            for q in &batch.quarantine {
                let seen: Vec<SeenRow> = self.sql.exec(
                    "INSERT INTO quarantine (content_hash, raw, raw_encoding, reason, first_seen_ms, last_seen_ms, seen_count)
                     VALUES (?, ?, ?, ?, ?, ?, 1)
                     ON CONFLICT (content_hash) DO UPDATE SET
                       seen_count = seen_count + 1, last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms)
                     RETURNING seen_count",
                    vec![
                        q.content_hash.clone().into(),
                        q.raw.clone().into(),
                        encoding_name(q.raw_encoding).into(),
                        q.reason.clone().into(),
                        now.into(),
                        now.into(),
                    ],
                )?.to_array()?;
                if seen.first().is_some_and(|s| s.seen_count == 1) {
                    live.push(quarantine_doc(&q.content_hash, &q.reason, now));
                }
                replies[i].quarantined += 1;
            }
        }
        let (queued, docs) = if touched.is_empty() { (0, Vec::new()) } else { self.refresh_rows(&touched)? };
        live.extend(docs);
        Ok((replies, queued, live))
    }

    /// Brings the list rows of these messages in line with all their
    /// events, and queues an outbox row (and a live document) for each
    /// recipient whose normalized status moved from what the rows said.
    /// Rows that already agree are left alone, so a duplicate costs reads
    /// only, while one whose message lost its rows (or never got them)
    /// rebuilds them and the forwards they imply. Runs in the ingest's
    /// transaction: events, rows and outbox commit together or not at all.
    /// `touched` pairs each message with the time it was touched. Returns
    /// the outbox rows queued and the live documents.
    fn refresh_rows(&self, touched: &[(&str, i64)]) -> Result<(u32, Vec<serde_json::Value>)> {
        let ids = serde_json::to_string(&touched.iter().map(|(m, _)| m).collect::<Vec<_>>())?;
        let mut events = self.events_of(&ids)?;
        let stored: Vec<RowRecord> = self
            .sql
            .exec(
                &format!("SELECT {ROW_COLUMNS} FROM message_rows WHERE message_id IN (SELECT value FROM json_each(?))"),
                vec![ids.into()],
            )?
            .to_array()?;
        let mut previous: BTreeMap<String, Vec<ListRow>> = BTreeMap::new();
        for r in stored {
            let row = r.into_list_row()?;
            previous.entry(row.message_id.clone()).or_default().push(row);
        }
        let mut queued = 0;
        let mut docs = Vec::new();
        let mut stale = Vec::new();
        let mut rows = Vec::new();
        for (message_id, now) in touched {
            let records =
                MessageRecords { events: events.remove(*message_id).unwrap_or_default(), conflicts: Vec::new() };
            let first_received = records.events.iter().map(|e| e.received_at_ms).min().unwrap_or(0);
            let Some(view) = project(message_id, &records) else { continue };
            let mut fresh = rows_for(&view, first_received);
            let mut before = previous.remove(*message_id).unwrap_or_default();
            fresh.sort_by(|a, b| a.destination_tn.cmp(&b.destination_tn));
            before.sort_by(|a, b| a.destination_tn.cmp(&b.destination_tn));
            if fresh == before {
                continue;
            }
            // Changes feed the outbox and live subscribers; skip the work
            // when neither is there.
            let found = if self.targets.is_empty() && !self.live.is_on() {
                Vec::new()
            } else {
                let before: Vec<(String, RecipientState)> = before
                    .iter()
                    .filter_map(|r| RecipientState::parse(&r.state).map(|s| (r.destination_tn.clone(), s)))
                    .collect();
                changes(&before, &view)
            };
            queued += self.queue_forwards(&found, *now)?;
            docs.extend(found.into_iter().map(|c| c.doc));
            stale.push(*message_id);
            rows.extend(fresh);
        }
        if stale.is_empty() {
            return Ok((queued, docs));
        }
        self.sql.exec(
            "DELETE FROM message_rows WHERE message_id IN (SELECT value FROM json_each(?))",
            vec![serde_json::to_string(&stale)?.into()],
        )?;
        for row in rows {
            self.sql.exec(
                &format!("INSERT INTO message_rows ({ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
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
                    row.state.into(),
                    serde_json::to_string(&row.flags)?.into(),
                ],
            )?;
        }
        Ok((queued, docs))
    }

    /// One outbox row per (change, interested target); returns how many.
    fn queue_forwards(&self, found: &[Change], now: i64) -> Result<u32> {
        let mut queued = 0;
        for change in found {
            let payload = change.doc.to_string();
            for target in self.targets.iter().filter(|t| t.wants(change.kind)) {
                let written = self
                    .sql
                    .exec(
                        "INSERT INTO outbox (webhook_id, target_id, message_id, kind, payload, state, attempts,
                            created_ms, window_start_ms, next_attempt_ms)
                         VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING seq",
                        vec![
                            change.webhook_id.clone().into(),
                            target.id.clone().into(),
                            change.message_id.clone().into(),
                            change.kind.into(),
                            payload.clone().into(),
                            now.into(),
                            now.into(),
                            now.into(),
                        ],
                    )?
                    .to_array::<SeqRow>()?;
                // Counted from RETURNING: rows_written also counts index writes.
                queued += written.len() as u32;
            }
        }
        Ok(queued)
    }

    /// The stored events of the messages in `ids` (a JSON array of ids), by
    /// message in arrival order.
    fn events_of(&self, ids: &str) -> Result<BTreeMap<String, Vec<StoredEvent>>> {
        let rows: Vec<EventRow> = self
            .sql
            .exec(
                "SELECT seq, event_key, message_id, type, recipient, time, time_ms, error_code, content_hash, raw, received_at_ms
                 FROM events WHERE message_id IN (SELECT value FROM json_each(?)) ORDER BY seq",
                vec![ids.into()],
            )?
            .to_array()?;
        let mut by_message: BTreeMap<String, Vec<StoredEvent>> = BTreeMap::new();
        for r in rows {
            by_message.entry(r.message_id.clone()).or_default().push(stored_event(r));
        }
        Ok(by_message)
    }

    fn outbox_stats(&self) -> Result<Vec<TargetStats>> {
        let rows: Vec<StatsRow> = self
            .sql
            .exec(
                "SELECT target_id, state, COUNT(*) AS n, MIN(created_ms) AS oldest FROM outbox GROUP BY target_id, state",
                None,
            )?
            .to_array()?;
        let mut stats: Vec<TargetStats> = Vec::new();
        for r in rows {
            let one = TargetStats {
                target: r.target_id,
                pending: if r.state == "pending" { r.n } else { 0 },
                delivered: if r.state == "delivered" { r.n } else { 0 },
                dead: if r.state == "dead" { r.n } else { 0 },
                oldest_pending_ms: if r.state == "pending" { r.oldest } else { None },
            };
            merge_stats(&mut stats, vec![one]);
        }
        Ok(stats)
    }

    fn outbox_dead(&self, q: &DeadQuery) -> Result<Vec<OutboxItem>> {
        let (cond, mut params): (&str, Vec<worker::SqlStorageValue>) = match &q.target {
            Some(t) => ("AND target_id = ?", vec![t.clone().into()]),
            None => ("", Vec::new()),
        };
        params.push(i64::from(q.limit).into());
        let rows: Vec<OutboxItemRow> = self
            .sql
            .exec(
                &format!(
                    "SELECT webhook_id, target_id, message_id, kind, state, attempts, created_ms, last_error
                     FROM outbox WHERE state = 'dead' {cond} ORDER BY seq LIMIT ?"
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
                state: r.state,
                attempts: r.attempts,
                created_ms: r.created_ms,
                last_error: r.last_error,
            })
            .collect())
    }

    /// Queues rows again, keeping their webhook ids; returns how many.
    fn outbox_replay(&self, r: &ReplayRequest) -> Result<u32> {
        let (from, to) = r.validate().map_err(worker::Error::RustError)?;
        let mut conds = vec!["target_id = ?".to_string()];
        let mut params: Vec<worker::SqlStorageValue> = vec![r.now_ms.into(), r.now_ms.into(), r.target.clone().into()];
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
        let written = self
            .sql
            .exec(
                &format!(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = ?, window_start_ms = ?,
                       last_error = NULL WHERE {} RETURNING seq",
                    conds.join(" AND ")
                ),
                params,
            )?
            .to_array::<SeqRow>()?;
        Ok(written.len() as u32)
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
        let rows = rows.into_iter().map(RowRecord::into_list_row).collect::<Result<Vec<_>>>()?;
        Ok(ShardPage { rows, total: counts.first().map_or(0, |c| c.n) })
    }

    /// Inserts the event unless its identity is already stored; true if inserted.
    fn insert_event(&self, ev: &EventRecord, now: i64) -> Result<bool> {
        let inserted = self.sql.exec(
            "INSERT INTO events (event_key, message_id, type, recipient, time, time_ms, error_code, content_hash, raw,
                received_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (event_key) DO NOTHING RETURNING seq",
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
        Ok(!inserted.to_array::<SeqRow>()?.is_empty())
    }

    /// A message's events, in arrival order, and its identity conflicts.
    fn message(&self, message_id: &str) -> Result<MessageRecords> {
        let events = self.events_of(&serde_json::to_string(&[message_id])?)?.remove(message_id).unwrap_or_default();
        let conflicts: Vec<ConflictRow> = self
            .sql
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
        self.sql
            .exec("DELETE FROM idempotency WHERE created_ms < ?", vec![(begin.now_ms - IDEMPOTENCY_TTL_MS).into()])?;
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

fn stored_event(r: EventRow) -> StoredEvent {
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

fn encoding_name(e: RawEncoding) -> &'static str {
    match e {
        RawEncoding::Utf8 => "utf8",
        RawEncoding::Base64 => "base64",
    }
}
