//! A ledger shard's media archive (`bw_ledger_core::media`).
//!
//! Ingest queues one job per media URL of a new inbound message or accepted
//! send, in the commit that stores the event (`queue_media`). The alarm
//! leases due jobs and runs them off every ack path (`archiver.rs`): each is
//! fetched (Bandwidth's credentials only for a callback's file in the
//! account's media, `CredentialChain`), stored in
//! the R2 bucket `MEDIA` with its type, size and SHA-256, and recorded. When
//! the last file of a message is settled, the `message.media` forward is
//! queued in the same transaction. Leases work as the outbox's do: a job
//! whose attempt died with its object is tried again when its lease ends,
//! and a file already in R2 is recorded from R2 without fetching it again.
//!
//! Deleting a message (retention, erasure) moves its R2 keys to
//! `media_trash` in the same transaction; `empty_trash` deletes the objects
//! and then the keys, so an R2 failure leaves the key to try again.

use std::collections::BTreeMap;

use bw_ledger_core::identity::sha256_hex;
use bw_ledger_core::media::{lane_of, name_of, urls_to_archive, MediaRecord, MediaStatus};
use bw_ledger_core::records::EventRecord;
use serde::Deserialize;
use worker::{Env, Result, SqlStorage};

use crate::config::MEDIA;

use super::shard::LedgerShard;

/// R2 keys deleted per round.
const TRASH_BATCH: i64 = 100;

pub(super) fn status(s: MediaStatus) -> worker::SqlStorageValue {
    s.as_str().into()
}

#[derive(Deserialize)]
pub(super) struct MediaRow {
    message_id: String,
    path: String,
    source_url: String,
    status: MediaStatus,
    content_type: Option<String>,
    size: Option<i64>,
    sha256: Option<String>,
    last_error: Option<String>,
}

impl From<MediaRow> for MediaRecord {
    fn from(r: MediaRow) -> Self {
        MediaRecord {
            message_id: r.message_id,
            path: r.path,
            source_url: r.source_url,
            status: r.status,
            content_type: r.content_type,
            size: r.size,
            sha256: r.sha256,
            last_error: r.last_error,
        }
    }
}

/// A message's media rows.
pub(super) fn of_message(sql: &SqlStorage, message_id: &str) -> Result<Vec<MediaRecord>> {
    Ok(of_messages(sql, &serde_json::to_string(&[message_id])?)?.remove(message_id).unwrap_or_default())
}

/// The media rows of the messages in `ids_json` (a JSON array), by message.
pub(super) fn of_messages(sql: &SqlStorage, ids_json: &str) -> Result<BTreeMap<String, Vec<MediaRecord>>> {
    let rows: Vec<MediaRow> = sql
        .exec(
            "SELECT message_id, path, source_url, status, content_type, size, sha256, last_error
             FROM media WHERE message_id IN (SELECT value FROM json_each(?))",
            vec![ids_json.into()],
        )?
        .to_array()?;
    let mut by_message: BTreeMap<String, Vec<MediaRecord>> = BTreeMap::new();
    for r in rows {
        by_message.entry(r.message_id.clone()).or_default().push(r.into());
    }
    Ok(by_message)
}

#[derive(Deserialize)]
struct KeyRow {
    r2_key: String,
}

impl LedgerShard {
    /// Queues an archive job per media URL of a newly stored event; returns
    /// how many were new. A URL that cannot be archived (not http(s)) is
    /// recorded as failed at once, so the message shows why.
    #[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
    pub(super) fn queue_media(&self, ev: &EventRecord, now: i64) -> Result<u32> {
        let urls = urls_to_archive(&ev.kind, &ev.raw);
        let mut queued = 0;
        for url in urls {
            let (path, state, error) = match name_of(&url, &self.api_base) {
                Ok(name) => (name.path, MediaStatus::Pending, None),
                Err(why) => (format!("invalid/{}", &sha256_hex(url.as_bytes())[..16]), MediaStatus::Failed, Some(why)),
            };
            let lane = lane_of(&ev.kind, &url);
            let written = self.sql.exec(
                "INSERT INTO media (message_id, path, source_url, status, attempts, window_start_ms, next_attempt_ms,
                   last_error, lane)
                 VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                vec![
                    ev.message_id.clone().into(),
                    path.into(),
                    url.into(),
                    status(state),
                    now.into(),
                    now.into(),
                    error.into(),
                    lane.into(),
                ],
            )?;
            if written.rows_written() > 0 && state == MediaStatus::Pending {
                queued += 1;
            }
        }
        Ok(queued)
    }
}

/// Moves the R2 keys of these messages' files to the trash and deletes
/// their media rows (part of deleting the messages).
pub(super) fn trash_messages(sql: &SqlStorage, ids_json: &str) -> Result<()> {
    // `object_key`: the message id, a slash, the name.
    sql.exec(
        "INSERT INTO media_trash (r2_key)
           SELECT message_id || '/' || path FROM media WHERE message_id IN (SELECT value FROM json_each(?))
         ON CONFLICT DO NOTHING",
        vec![ids_json.into()],
    )?;
    sql.exec("DELETE FROM media WHERE message_id IN (SELECT value FROM json_each(?))", vec![ids_json.into()])?;
    Ok(())
}

/// Deletes trashed files from R2, a batch at a time, then their keys;
/// returns how many. Keys stay when R2 fails, for the next round.
pub(super) async fn empty_trash(env: &Env, sql: &SqlStorage) -> Result<u32> {
    let mut deleted = 0;
    loop {
        let keys: Vec<KeyRow> =
            sql.exec("SELECT r2_key FROM media_trash LIMIT ?", vec![TRASH_BATCH.into()])?.to_array()?;
        if keys.is_empty() {
            return Ok(deleted);
        }
        let keys: Vec<String> = keys.into_iter().map(|k| k.r2_key).collect();
        if let Ok(bucket) = env.bucket(MEDIA) {
            bucket.delete_multiple(keys.clone()).await?;
        }
        sql.exec(
            "DELETE FROM media_trash WHERE r2_key IN (SELECT value FROM json_each(?))",
            vec![serde_json::to_string(&keys)?.into()],
        )?;
        deleted += keys.len() as u32;
        if (keys.len() as i64) < TRASH_BATCH {
            return Ok(deleted);
        }
    }
}
