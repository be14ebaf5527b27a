//! A ledger shard's side of the data lifecycle (`bw_ledger_core::lifecycle`):
//! retention and erasure in bounded batches, each batch one transaction,
//! the tombstones that keep erased messages from coming back, and export
//! pages.
//!
//! A message is found through its list rows (`message_rows`, indexed by
//! time, sender and recipient), or, when it has no recipient, through
//! `unlisted`, and deleted from every table that holds it:
//! events, identity conflicts, list rows, outbox rows and media (its R2
//! objects through the trash).

use std::collections::BTreeMap;

use bw_ledger_core::lifecycle::{
    number_needle, raw_mentions, EraseReply, EraseRequest, ExportPage, ExportQuery, ExportedMessage, SweepReply,
    SweepRequest,
};
use bw_ledger_core::quarantine::RawEncoding;
use bw_ledger_core::records::{EventRecord, MessageRecords, StoredConflict};
use serde::Deserialize;
use worker::{Result, SqlStorage};

use super::reads;
use super::shard::LedgerShard;

#[derive(Deserialize)]
struct IdRow {
    message_id: String,
}

#[derive(Deserialize)]
struct TimedIdRow {
    t: i64,
    message_id: String,
}

#[derive(Deserialize)]
struct TargetRow {
    id: String,
}

#[derive(Deserialize)]
struct CutoffRow {
    cutoff_ms: Option<i64>,
}

#[derive(Deserialize)]
struct FlagRow {
    e: i64,
}

#[derive(Deserialize)]
struct QuarantineRaw {
    content_hash: String,
    raw: String,
}

fn ids_json(ids: &[String]) -> Result<String> {
    Ok(serde_json::to_string(ids)?)
}

/// Deletes these messages from every table that holds them; their archived
/// media goes to the trash (`media::empty_trash` deletes it from R2).
fn delete_messages(sql: &SqlStorage, ids_list: &[String]) -> Result<()> {
    let ids = ids_json(ids_list)?;
    super::metrics::before_delete(sql)?;
    super::media::trash_messages(sql, &ids)?;
    sql.exec(
        &format!("DELETE FROM events WHERE seq IN (SELECT e.seq {})", reads::EVENTS_IN_RANGES),
        vec![reads::key_ranges(ids_list)?.into()],
    )?;
    for table in ["event_conflicts", "message_rows", "unlisted"] {
        sql.exec(
            &format!("DELETE FROM {table} WHERE message_id IN (SELECT value FROM json_each(?))"),
            vec![ids.clone().into()],
        )?;
    }
    // The outbox is indexed by (target, message): find its targets with a
    // loose index scan, then delete through the index, never by a scan.
    let targets: Vec<TargetRow> = sql
        .exec(
            "WITH RECURSIVE t(id) AS (
               SELECT MIN(target_id) FROM outbox
               UNION ALL SELECT (SELECT MIN(target_id) FROM outbox WHERE target_id > t.id) FROM t WHERE t.id IS NOT NULL)
             SELECT id FROM t WHERE id IS NOT NULL",
            None,
        )?
        .to_array()?;
    for target in targets {
        sql.exec(
            "DELETE FROM outbox WHERE target_id = ? AND message_id IN (SELECT value FROM json_each(?))",
            vec![target.id.into(), ids.clone().into()],
        )?;
    }
    super::metrics::after_delete(sql)?;
    Ok(())
}

impl LedgerShard {
    /// One batch of retention, in one transaction; see [`SweepRequest`].
    pub(super) fn sweep(&self, req: &SweepRequest) -> Result<SweepReply> {
        let mut reply = SweepReply::default();
        if let Some(cutoff) = req.cutoff_ms {
            let ids: Vec<TimedIdRow> = self
                .sql
                .exec(
                    "SELECT receive_time_ms AS t, message_id FROM message_rows WHERE receive_time_ms < ?
                     UNION SELECT receive_time_ms, message_id FROM unlisted WHERE receive_time_ms < ?
                     ORDER BY 1, 2 LIMIT ?",
                    vec![cutoff.into(), cutoff.into(), i64::from(req.limit).into()],
                )?
                .to_array()?;
            let ids: Vec<String> = ids.into_iter().map(|r| r.message_id).collect();
            delete_messages(&self.sql, &ids)?;
            reply.purged = ids.len() as u32;
            reply.more = ids.len() as u32 >= req.limit;
            // Saved send answers and quarantined bodies hold numbers and
            // text too; they are kept no longer than the messages.
            self.sql.exec("DELETE FROM idempotency WHERE created_ms < ?", vec![cutoff.into()])?;
            self.sql.exec(
                "DELETE FROM quarantine WHERE content_hash IN
                   (SELECT content_hash FROM quarantine WHERE last_seen_ms < ? ORDER BY last_seen_ms LIMIT ?)",
                vec![cutoff.into(), i64::from(req.limit).into()],
            )?;
        }
        self.prune_tombstones(req.now_ms)?;
        if reply.more && req.continue_by_alarm {
            self.sql.exec(
                "INSERT INTO sweep (id, cutoff_ms) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET cutoff_ms = excluded.cutoff_ms",
                vec![req.cutoff_ms.into()],
            )?;
        } else if !reply.more {
            self.sql.exec("DELETE FROM sweep", None)?;
        }
        Ok(reply)
    }

    /// The cutoff of a sweep left to the alarm, if one is pending.
    pub(super) fn pending_sweep(&self) -> Result<Option<Option<i64>>> {
        let rows: Vec<CutoffRow> = self.sql.exec("SELECT cutoff_ms FROM sweep WHERE id = 1", None)?.to_array()?;
        Ok(rows.into_iter().next().map(|r| r.cutoff_ms))
    }

    /// One batch of an erasure, in one transaction; see [`EraseRequest`].
    pub(super) fn erase(&self, req: &EraseRequest) -> Result<EraseReply> {
        let ids: Vec<IdRow> = self
            .sql
            .exec(
                "SELECT message_id FROM message_rows WHERE source_tn = ?
                 UNION SELECT message_id FROM message_rows WHERE destination_tn = ? LIMIT ?",
                vec![req.number.clone().into(), req.number.clone().into(), i64::from(req.limit).into()],
            )?
            .to_array()?;
        let mut ids: Vec<String> = ids.into_iter().map(|r| r.message_id).collect();
        let needle = number_needle(&req.number);
        if (ids.len() as u32) < req.limit {
            ids.extend(self.unlisted_mentioning(needle)?);
        }
        delete_messages(&self.sql, &ids)?;
        for id in &ids {
            self.sql.exec(
                "INSERT INTO erased (message_id, erased_ms) VALUES (?, ?)
                 ON CONFLICT (message_id) DO UPDATE SET erased_ms = excluded.erased_ms",
                vec![id.clone().into(), req.now_ms.into()],
            )?;
        }
        if !ids.is_empty() {
            self.tombstones.set(Some(true));
        }
        // Saved send answers that name the number.
        self.sql.exec("DELETE FROM idempotency WHERE instr(response, ?) > 0", vec![needle.into()])?;
        // Quarantined bodies that contain it: text ones in SQL, the rest
        // (kept as base64 because they were not UTF-8) decoded here.
        let text: Vec<serde::de::IgnoredAny> = self
            .sql
            .exec(
                "DELETE FROM quarantine WHERE raw_encoding = ? AND instr(raw, ?) > 0 RETURNING content_hash",
                vec![RawEncoding::Utf8.as_str().into(), needle.into()],
            )?
            .to_array()?;
        let mut quarantined = text.len() as u32;
        let binary: Vec<QuarantineRaw> = self
            .sql
            .exec(
                "SELECT content_hash, raw FROM quarantine WHERE raw_encoding != ?",
                vec![RawEncoding::Utf8.as_str().into()],
            )?
            .to_array()?;
        for q in binary {
            if raw_mentions(&q.raw, RawEncoding::Base64, needle) {
                self.sql.exec("DELETE FROM quarantine WHERE content_hash = ?", vec![q.content_hash.into()])?;
                quarantined += 1;
            }
        }
        Ok(EraseReply { erased: ids.len() as u32, quarantined, more: ids.len() as u32 >= req.limit })
    }

    /// Messages with no recipient (no list row) whose events mention the
    /// number anywhere. They are rare (an event without `to`), so each
    /// erasure reads their events.
    fn unlisted_mentioning(&self, needle: &str) -> Result<Vec<String>> {
        let unlisted: Vec<IdRow> = self.sql.exec("SELECT message_id FROM unlisted", None)?.to_array()?;
        let ids: Vec<String> = unlisted.into_iter().map(|r| r.message_id).collect();
        Ok(reads::events_of(&self.sql, &ids)?
            .into_iter()
            .filter(|(_, events)| events.iter().any(|e| e.record.raw.contains(needle)))
            .map(|(id, _)| id)
            .collect())
    }

    fn prune_tombstones(&self, now_ms: i64) -> Result<()> {
        self.sql.exec("DELETE FROM erased WHERE erased_ms < ?", vec![(now_ms - self.tombstone_ms).into()])?;
        self.tombstones.set(Some(self.any_tombstones()?));
        Ok(())
    }

    fn any_tombstones(&self) -> Result<bool> {
        let any: Vec<FlagRow> = self.sql.exec("SELECT EXISTS (SELECT 1 FROM erased) AS e", None)?.to_array()?;
        Ok(any.first().is_some_and(|r| r.e != 0))
    }

    /// The messages among `events` erased within `ERASURE_TOMBSTONE_DAYS`:
    /// their callbacks, retried or first sent late, are answered, not
    /// stored. A shard with no tombstones (the common case) reads nothing.
    #[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
    pub(super) fn erased_among(&self, events: &[EventRecord], now_ms: i64) -> Result<Vec<String>> {
        let known = match self.tombstones.get() {
            Some(known) => known,
            None => {
                let known = self.any_tombstones()?;
                self.tombstones.set(Some(known));
                known
            }
        };
        if !known || events.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = events.iter().map(|e| e.message_id.as_str()).collect();
        let rows: Vec<IdRow> = self
            .sql
            .exec(
                "SELECT message_id FROM erased WHERE message_id IN (SELECT value FROM json_each(?)) AND erased_ms >= ?",
                vec![serde_json::to_string(&ids)?.into(), (now_ms - self.tombstone_ms).into()],
            )?
            .to_array()?;
        Ok(rows.into_iter().map(|r| r.message_id).collect())
    }
}

#[derive(Deserialize)]
struct ConflictRow {
    message_id: String,
    event_key: String,
    content_hash: String,
    raw: String,
    received_at_ms: i64,
}

/// One page of this shard's messages in the window, oldest first.
pub fn export_page(sql: &SqlStorage, q: &ExportQuery) -> Result<ExportPage> {
    let (after_t, after_id) = q.after.clone().unwrap_or((i64::MIN, String::new()));
    let page: Vec<TimedIdRow> = sql
        .exec(
            "SELECT receive_time_ms AS t, message_id FROM message_rows
             WHERE receive_time_ms >= ?1 AND receive_time_ms < ?2 AND (receive_time_ms, message_id) > (?3, ?4)
             UNION SELECT receive_time_ms, message_id FROM unlisted
             WHERE receive_time_ms >= ?1 AND receive_time_ms < ?2 AND (receive_time_ms, message_id) > (?3, ?4)
             ORDER BY 1, 2 LIMIT ?5",
            vec![
                q.from_ms.unwrap_or(i64::MIN).into(),
                q.to_ms.unwrap_or(i64::MAX).into(),
                after_t.into(),
                after_id.into(),
                i64::from(q.limit).into(),
            ],
        )?
        .to_array()?;
    let ids: Vec<String> = page.iter().map(|r| r.message_id.clone()).collect();
    let ids_json = ids_json(&ids)?;
    let mut events = reads::events_of(sql, &ids)?;
    let mut media = super::media::of_messages(sql, &ids_json)?;
    let conflict_rows: Vec<ConflictRow> = sql
        .exec(
            "SELECT message_id, event_key, content_hash, raw, received_at_ms FROM event_conflicts
             WHERE message_id IN (SELECT value FROM json_each(?)) ORDER BY received_at_ms, content_hash",
            vec![ids_json.into()],
        )?
        .to_array()?;
    let mut conflicts: BTreeMap<String, Vec<StoredConflict>> = BTreeMap::new();
    for c in conflict_rows {
        conflicts.entry(c.message_id).or_default().push(StoredConflict {
            event_key: c.event_key,
            content_hash: c.content_hash,
            raw: c.raw,
            received_at_ms: c.received_at_ms,
        });
    }
    let next = (page.len() as u32 >= q.limit).then(|| page.last().map(|r| (r.t, r.message_id.clone()))).flatten();
    let messages = page
        .into_iter()
        .map(|r| ExportedMessage {
            records: MessageRecords {
                events: events.remove(&r.message_id).unwrap_or_default(),
                conflicts: conflicts.remove(&r.message_id).unwrap_or_default(),
                media: media.remove(&r.message_id).unwrap_or_default(),
            },
            message_id: r.message_id,
            time_ms: r.t,
        })
        .collect();
    Ok(ExportPage { messages, next })
}
