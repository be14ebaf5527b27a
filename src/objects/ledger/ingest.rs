//! A ledger shard's write path: a group of callbacks stored in one
//! transaction, each event once per identity, with the list rows, outbox
//! rows and live documents they imply. The dedup and projection rules are
//! the core's; this file runs them against SQLite.

use std::collections::BTreeMap;

use bw_ledger_core::forward::changes;
use bw_ledger_core::identity::{decide, DedupDecision};
use bw_ledger_core::list::{receive_time_ms, rows_for, ColumnValue, ListRow, INSERT_ROW, ROW_COLUMNS};
use bw_ledger_core::live::quarantine_doc;
use bw_ledger_core::projection::project;
use bw_ledger_core::quarantine::QuarantineRecord;
use bw_ledger_core::records::{EventRecord, MessageRecords, StoredEvent};
use bw_ledger_core::status::RecipientState;
use bw_ledger_core::wire::{IngestBatch, IngestReply};
use serde::Deserialize;
use worker::{Result, SqlStorageValue};

use crate::objects::live_hub::publish;

use super::reads;
use super::shard::LedgerShard;

#[derive(Deserialize)]
struct HashRow {
    content_hash: String,
}

#[derive(Deserialize)]
struct SeenRow {
    seen_count: i64,
}

/// What storing one callback did: its reply, outbox rows and media jobs
/// queued, and documents for live subscribers.
type Stored = (IngestReply, u32, Vec<serde_json::Value>);

impl LedgerShard {
    /// Stores a group of callbacks (one batch each), each in a transaction of
    /// its own, all in the one commit of this call; answers a reply per
    /// batch. Then arms the alarm for any outbox rows queued and publishes
    /// the live documents, off the ack path.
    ///
    /// One transaction per callback, not per group: a transaction is a
    /// savepoint inside workerd's implicit transaction, and SQLite journals
    /// every page a savepoint changes; past 64 KiB (a group of a few new
    /// messages) that journal spills to a temporary file on disk, which cost
    /// a tenth of ingest throughput (docs/decisions/0002). One callback's pages
    /// stay in memory. If one fails, the call fails: what the callbacks
    /// before it stored is complete and stays (their retry finds duplicates),
    /// and nothing of the failed one remains.
    pub(super) async fn ingest(&self, batches: &[IngestBatch]) -> Result<Vec<IngestReply>> {
        let mut replies = Vec::with_capacity(batches.len());
        let (mut queued, mut live, mut failure) = (0, Vec::new(), None);
        for batch in batches {
            match self.txn.atomically(|| self.store_batch(batch)) {
                Ok((reply, q, l)) => {
                    self.duplicates.set(self.duplicates.get() + i64::from(reply.duplicates));
                    replies.push(reply);
                    queued += q;
                    live.extend(l);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if !live.is_empty() && self.live.is_on() {
            // After the commit: outgoing requests wait behind the output gate.
            self.state.wait_until(publish(self.env.clone(), live, self.live.clone()));
        }
        if queued > 0 {
            // Deliver off the ack path: the alarm runs after this reply.
            self.storage.set_alarm(0).await?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(replies),
        }
    }

    /// Stores one callback's batch, each event exactly once per identity.
    ///
    /// Atomic: there is no `await` between the first read and the last
    /// write, so no other request can interleave (input gate); the caller
    /// runs it inside `transactionSync`, so a statement failing midway rolls
    /// back everything before it and the caller answers 5xx; and the reply
    /// is held until these writes are durable (output gate).
    ///
    /// Values are bound per row: a whole group as one JSON parameter hits
    /// SQLite's 2 MB string limit with large events (docs/decisions/0001).
    #[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
    fn store_batch(&self, batch: &IngestBatch) -> Result<Stored> {
        let mut reply = IngestReply::default();
        // The messages the callback names, each once.
        let mut touched: Vec<&str> = Vec::new();
        let now = batch.received_at_ms;
        let erased = self.erased_among(&batch.events, now)?;
        let mut media_jobs = 0;
        // The events this callback inserted: the projection below takes
        // them from here, not back from SQLite.
        let mut inserted: Vec<&EventRecord> = Vec::new();
        for ev in &batch.events {
            if erased.contains(&ev.message_id) {
                reply.erased += 1;
                continue;
            }
            let decision = self.store_event(ev, now)?;
            if decision == DedupDecision::Insert {
                media_jobs += self.queue_media(ev, now)?;
                inserted.push(ev);
            }
            // Every message the callback names gets its derived state
            // checked, duplicates included: a message whose events exist
            // is always listed (see `refresh_rows`).
            if !touched.contains(&ev.message_id.as_str()) {
                touched.push(&ev.message_id);
            }
            match decision {
                DedupDecision::Insert => reply.stored += 1,
                DedupDecision::Duplicate => reply.duplicates += 1,
                DedupDecision::Conflict => reply.conflicts += 1,
            }
        }
        let mut live = Vec::new();
        for q in &batch.quarantine {
            live.extend(self.quarantine(q, now)?);
            reply.quarantined += 1;
        }
        let (queued, docs) =
            if touched.is_empty() { (0, Vec::new()) } else { self.refresh_rows(&touched, &inserted, now)? };
        live.extend(docs);
        // Media jobs are alarm work like outbox rows: counted together.
        Ok((reply, queued + media_jobs, live))
    }

    /// Stores one event, or finds it a duplicate, or keeps it aside as a
    /// conflict. The insert comes first: a new event (the common case) costs
    /// one statement; only an existing identity is read back. A copy that
    /// rode in the same group finds the first one here.
    #[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
    fn store_event(&self, ev: &EventRecord, now: i64) -> Result<DedupDecision> {
        if self.insert_event(ev, now)? {
            return Ok(DedupDecision::Insert);
        }
        let stored: Vec<HashRow> = self
            .sql
            .exec("SELECT content_hash FROM events WHERE event_key = ?", vec![ev.event_key.clone().into()])?
            .to_array()?;
        let decision = decide(stored.first().map(|r| r.content_hash.as_str()), &ev.content_hash);
        if decision == DedupDecision::Conflict {
            crate::log::log_warn!(
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
        }
        Ok(decision)
    }

    /// Quarantines one item (again: a repeat counts, never duplicates); the
    /// live document when it is new.
    fn quarantine(&self, q: &QuarantineRecord, now: i64) -> Result<Option<serde_json::Value>> {
        let seen: Vec<SeenRow> = self
            .sql
            .exec(
                "INSERT INTO quarantine (content_hash, raw, raw_encoding, reason, first_seen_ms, last_seen_ms, seen_count)
                 VALUES (?, ?, ?, ?, ?, ?, 1)
                 ON CONFLICT (content_hash) DO UPDATE SET
                   seen_count = seen_count + 1, last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms)
                 RETURNING seen_count",
                vec![
                    q.content_hash.clone().into(),
                    q.raw.clone().into(),
                    q.raw_encoding.as_str().into(),
                    q.reason.clone().into(),
                    now.into(),
                    now.into(),
                ],
            )?
            .to_array()?;
        Ok(seen.first().is_some_and(|s| s.seen_count == 1).then(|| quarantine_doc(&q.content_hash, &q.reason, now)))
    }

    /// Brings the list rows of these messages in line with all their
    /// events, and queues an outbox row (and a live document) for each
    /// recipient whose normalized status moved from what the rows said.
    /// Every message's rows are compared with what its events say and left
    /// alone if they agree, so a healthy duplicate costs reads only, while
    /// one whose rows were lost (or never written) rebuilds them and the
    /// forwards they imply. Runs in the ingest's transaction: events,
    /// rows and outbox commit together or not at all. Returns the outbox
    /// rows queued (at `now`) and the live documents.
    ///
    /// `inserted` are the events this transaction has just stored: they are
    /// taken as they are, and only the messages' other events are read. A
    /// message with no other event is new to this shard, so it has no list
    /// row (rows exist only beside their events: erasure and retention
    /// remove both together) and its rows are neither read nor cleared.
    #[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
    fn refresh_rows(&self, ids: &[&str], inserted: &[&EventRecord], now: i64) -> Result<(u32, Vec<serde_json::Value>)> {
        let keys: Vec<&str> = inserted.iter().map(|e| e.event_key.as_str()).collect();
        let mut events = reads::events_except(&self.sql, ids, &keys)?;
        let known: Vec<&str> = ids.iter().copied().filter(|id| events.contains_key(*id)).collect();
        // Changes feed the outbox and live subscribers.
        let targets = self.targets.current();
        let want_changes = !targets.is_empty() || self.live.is_on();
        // The stored rows are read for every message the shard knew: an
        // update writes only the columns that changed
        // (`ListRow::changed_since`), and reads cost a thousandth of writes.
        let mut previous: BTreeMap<String, Vec<ListRow>> = BTreeMap::new();
        if !known.is_empty() {
            let stored = reads::list_rows(self.sql.exec(
                &format!("SELECT {ROW_COLUMNS} FROM message_rows WHERE message_id IN (SELECT value FROM json_each(?))"),
                vec![serde_json::to_string(&known)?.into()],
            )?)?;
            for row in stored {
                previous.entry(row.message_id.clone()).or_default().push(row);
            }
        }
        let mut queued = 0;
        let mut docs = Vec::new();
        for &message_id in ids {
            let new_here = !events.contains_key(message_id);
            let records = MessageRecords {
                events: with_inserted(events.remove(message_id).unwrap_or_default(), message_id, inserted, now),
                conflicts: Vec::new(),
                media: Vec::new(),
            };
            let first_received = records.events.iter().map(|e| e.received_at_ms).min().unwrap_or(0);
            let Some(view) = project(message_id, &records) else { continue };
            let mut fresh = rows_for(&view, first_received);
            let mut before = previous.remove(message_id).unwrap_or_default();
            if fresh.is_empty() {
                self.keep_unlisted(message_id, receive_time_ms(&view, first_received))?;
            } else if before.is_empty() && !new_here {
                // A message that had no recipient may have gained one.
                self.sql.exec("DELETE FROM unlisted WHERE message_id = ?", vec![message_id.into()])?;
            }
            fresh.sort_by(|a, b| a.destination_tn.cmp(&b.destination_tn));
            before.sort_by(|a, b| a.destination_tn.cmp(&b.destination_tn));
            if fresh == before {
                continue;
            }
            if want_changes {
                let states: Vec<(String, RecipientState)> =
                    before.iter().map(|r| (r.destination_tn.clone(), r.state)).collect();
                let found = changes(&states, &view);
                queued += super::outbox::queue(&self.sql, &targets, &found, now)?;
                docs.extend(found.into_iter().map(|c| c.doc));
            }
            self.write_rows(&fresh, &before)?;
        }
        Ok((queued, docs))
    }

    /// Records a message no list row holds (it has no recipient), so that
    /// retention, erasure and export still find it; writes only when new or
    /// when its time moved.
    fn keep_unlisted(&self, message_id: &str, receive_time_ms: i64) -> Result<()> {
        self.sql.exec(
            "INSERT INTO unlisted (message_id, receive_time_ms) VALUES (?, ?)
             ON CONFLICT (message_id) DO UPDATE SET receive_time_ms = excluded.receive_time_ms
             WHERE receive_time_ms != excluded.receive_time_ms",
            vec![message_id.into(), receive_time_ms.into()],
        )?;
        Ok(())
    }

    /// Brings a message's stored list rows (`before`) to `fresh`: inserts
    /// new recipients' rows, updates only the changed columns of the others,
    /// and deletes rows no event supports any more.
    #[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
    fn write_rows(&self, fresh: &[ListRow], before: &[ListRow]) -> Result<()> {
        for row in fresh {
            let key = vec![row.message_id.clone().into(), row.destination_tn.clone().into()];
            match before.iter().find(|b| b.destination_tn == row.destination_tn) {
                None => {
                    let params: Vec<SqlStorageValue> = row.values().into_iter().map(|(_, v)| sql_value(v)).collect();
                    self.sql.exec(INSERT_ROW, params)?;
                }
                Some(b) => {
                    let changed = row.changed_since(b);
                    if changed.is_empty() {
                        continue;
                    }
                    let set: Vec<String> = changed.iter().map(|(c, _)| format!("{c} = ?")).collect();
                    let mut params: Vec<SqlStorageValue> = changed.into_iter().map(|(_, v)| sql_value(v)).collect();
                    params.extend(key);
                    self.sql.exec(
                        &format!(
                            "UPDATE message_rows SET {} WHERE message_id = ? AND destination_tn = ?",
                            set.join(", ")
                        ),
                        params,
                    )?;
                }
            }
        }
        for gone in before.iter().filter(|b| !fresh.iter().any(|f| f.destination_tn == b.destination_tn)) {
            self.sql.exec(
                "DELETE FROM message_rows WHERE message_id = ? AND destination_tn = ?",
                vec![gone.message_id.clone().into(), gone.destination_tn.clone().into()],
            )?;
        }
        Ok(())
    }

    /// Inserts the event unless its identity is already stored; true if inserted.
    #[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
    fn insert_event(&self, ev: &EventRecord, now: i64) -> Result<bool> {
        let inserted = self.sql.exec(
            "INSERT INTO events (event_key, message_id, type, recipient, time, time_ms, error_code, content_hash, raw,
                received_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (event_key) DO NOTHING",
            vec![
                ev.event_key.clone().into(),
                ev.message_id.clone().into(),
                ev.kind.as_str().into(),
                ev.recipient.clone().into(),
                ev.time.clone().into(),
                ev.time_ms.into(),
                ev.error_code.into(),
                ev.content_hash.clone().into(),
                ev.raw.clone().into(),
                now.into(),
            ],
        )?;
        // A statement without result rows has run to completion on `exec`;
        // an ignored conflict writes nothing. (Reading a RETURNING row
        // instead costs a JS array per event.)
        Ok(inserted.rows_written() > 0)
    }
}

/// A message's stored events followed by those of `inserted` that are its
/// own, in the order they were inserted (after every stored one, as their
/// sequence numbers in the table are).
fn with_inserted(
    mut stored: Vec<StoredEvent>,
    message_id: &str,
    inserted: &[&EventRecord],
    now: i64,
) -> Vec<StoredEvent> {
    let after = stored.last().map_or(0, |e| e.seq);
    let own = inserted.iter().filter(|e| e.message_id == message_id);
    stored.extend(own.enumerate().map(|(i, e)| StoredEvent {
        seq: after + 1 + i as i64,
        record: (*e).clone(),
        received_at_ms: now,
    }));
    stored
}

fn sql_value(v: ColumnValue) -> SqlStorageValue {
    match v {
        ColumnValue::Int(n) => n.into(),
        ColumnValue::Text(t) => t.into(),
        ColumnValue::Null => SqlStorageValue::Null,
    }
}
