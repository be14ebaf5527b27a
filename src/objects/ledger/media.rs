//! A ledger shard's media archive (`bw_ledger_core::media`).
//!
//! Ingest queues one job per media URL of a new inbound message or accepted
//! send, in the commit that stores the event (`queue_media`). The alarm
//! leases due jobs and runs them off every ack path (`Archiver`): each is
//! fetched (Bandwidth's credentials only for a callback's file in the
//! account's media, `CredentialChain`), stored in
//! the R2 bucket `MEDIA` with its type, size and SHA-256, and recorded. When
//! the last file of a message is settled, the `message.media` forward is
//! queued in the same transaction. Leases work as the outbox's do: a job
//! whose attempt died with its object is tried again when its lease ends,
//! and a file already in R2 is recorded from R2 without fetching it again.
//!
//! Jobs wait in lanes (`media::lane_of`): the files of Bandwidth's callbacks
//! in their own, leased before forwarding and before any send's media, so
//! no send can delay them; a send's files in one lane per origin, at most
//! one attempt per origin at a time, so a host that never answers holds
//! one connection and only its own files.
//!
//! Deleting a message (retention, erasure) moves its R2 keys to
//! `media_trash` in the same transaction; `empty_trash` deletes the objects
//! and then the keys, so an R2 failure leaves the key to try again.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use bw_ledger_core::forward::{ForwardTarget, Schedule};
use bw_ledger_core::identity::sha256_hex;
use bw_ledger_core::media::{
    content_type, lane_of, media_change, name_of, next_state, object_key, urls_to_archive, Attempt, CredentialChain,
    CredentialScope, MediaRecord, MediaStatus, FETCH_TIMEOUT_MS, INBOUND_LANE,
};
use bw_ledger_core::wire::EventRecord;
use serde::Deserialize;
use worker::{Env, HttpMetadata, Result, SqlStorage};

use crate::clock::{jitter, now_ms};
use crate::config::MEDIA;
use crate::objects::transaction::Transactions;
use crate::upstream::download_media;

use super::delivery::{Deliveries, InFlight};
use super::LedgerShard;

/// The in-flight counters of media fetches start with this (not a target
/// id: targets cannot hold a NUL), followed by the job's lane.
const IN_FLIGHT_PREFIX: &str = "\u{0}media:";
/// Inbound fetches in flight from one object at once, out of its six
/// connections, so forwarding always has connections left.
const MAX_INBOUND_IN_FLIGHT: u32 = 2;
/// Fetches of sends' media in flight at once, one per origin at most.
const MAX_SENT_IN_FLIGHT: u32 = 2;
/// Due lanes of sends' media looked at per alarm round.
const SENT_LANES_WINDOW: i64 = 64;
/// A started attempt holds its job this long past the fetch timeout.
const LEASE_SLACK_MS: i64 = 10_000;
/// R2 keys deleted per round.
const TRASH_BATCH: i64 = 100;

fn status(s: MediaStatus) -> worker::SqlStorageValue {
    s.as_str().into()
}

#[derive(Deserialize)]
pub struct MediaJob {
    message_id: String,
    path: String,
    source_url: String,
    attempts: i64,
    window_start_ms: i64,
    lane: String,
}

impl MediaJob {
    fn in_flight_key(&self) -> String {
        format!("{IN_FLIGHT_PREFIX}{}", self.lane)
    }
}

/// Which due jobs an alarm round leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// The files of Bandwidth's callbacks (leased first).
    Inbound,
    /// The files sends named, one per origin.
    Sent,
}

#[derive(Deserialize)]
pub(super) struct MediaRow {
    message_id: String,
    path: String,
    source_url: String,
    status: String,
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
struct TableSql {
    sql: String,
}

/// Gives the media table its `lane` column (shards of builds before lanes).
/// Pending jobs of messages that came in a callback (`message-received`)
/// join the inbound lane; every other pending job stays in a send's lane,
/// fetched without credentials. Settled jobs never run again.
pub(super) fn ensure_lanes(sql: &SqlStorage) -> Result<()> {
    let table: Vec<TableSql> =
        sql.exec("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'media'", None)?.to_array()?;
    if table.first().is_none_or(|t| t.sql.contains(" lane ")) {
        return Ok(());
    }
    sql.exec("ALTER TABLE media ADD COLUMN lane TEXT NOT NULL DEFAULT 'out:'", None)?;
    let pending: Vec<IdRow> = sql
        .exec("SELECT DISTINCT message_id FROM media WHERE status = ?", vec![status(MediaStatus::Pending)])?
        .to_array()?;
    let ids: Vec<String> = pending.into_iter().map(|r| r.message_id).collect();
    let inbound: Vec<String> = super::reads::events_of(sql, &ids)?
        .into_iter()
        .filter(|(_, events)| events.iter().any(|e| e.record.kind == "message-received"))
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

#[derive(Deserialize)]
struct KeyRow {
    r2_key: String,
}

impl LedgerShard {
    /// Queues an archive job per media URL of a newly stored event; returns
    /// how many were new. A URL that cannot be archived (not http(s)) is
    /// recorded as failed at once, so the message shows why.
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

    pub(super) fn archiver(&self) -> Archiver {
        Archiver {
            sql: self.sql.clone(),
            txn: self.txn.clone(),
            env: self.env.clone(),
            in_flight: self.in_flight.clone(),
            schedule: self.media_schedule,
            targets: self.targets.clone(),
            scope: self.media_scope.clone(),
        }
    }
}

/// What an archive attempt needs, owned, so it can outlive the alarm.
#[derive(Clone)]
pub struct Archiver {
    sql: SqlStorage,
    txn: Transactions,
    env: Env,
    in_flight: Rc<InFlight>,
    schedule: Schedule,
    targets: Rc<Vec<ForwardTarget>>,
    /// Where Bandwidth's credentials may go; `None`: nowhere.
    scope: Option<Rc<CredentialScope>>,
}

impl Archiver {
    /// Due jobs of `lanes`, as many as their limits and the free
    /// connections allow, each leased for one attempt.
    pub fn lease_due(&self, lanes: Lanes, now: i64) -> Result<Vec<MediaJob>> {
        let due = match lanes {
            Lanes::Inbound => {
                let free = MAX_INBOUND_IN_FLIGHT
                    .saturating_sub(self.in_flight.of(&format!("{IN_FLIGHT_PREFIX}{INBOUND_LANE}")))
                    .min(self.in_flight.free());
                if free == 0 {
                    return Ok(Vec::new());
                }
                self.sql
                    .exec(
                        "SELECT message_id, path, source_url, attempts, window_start_ms, lane FROM media
                         WHERE status = ? AND next_attempt_ms <= ? AND lane = ? ORDER BY next_attempt_ms LIMIT ?",
                        vec![status(MediaStatus::Pending), now.into(), INBOUND_LANE.into(), i64::from(free).into()],
                    )?
                    .to_array::<MediaJob>()?
            }
            Lanes::Sent => {
                let running = self.in_flight.of_prefix(IN_FLIGHT_PREFIX)
                    - self.in_flight.of(&format!("{IN_FLIGHT_PREFIX}{INBOUND_LANE}"));
                let free = MAX_SENT_IN_FLIGHT.saturating_sub(running).min(self.in_flight.free()) as usize;
                if free == 0 {
                    return Ok(Vec::new());
                }
                // The earliest due job of each origin's lane; an origin with
                // an attempt running waits for it.
                let heads: Vec<MediaJob> = self
                    .sql
                    .exec(
                        "SELECT message_id, path, source_url, attempts, window_start_ms, lane FROM (
                           SELECT *, ROW_NUMBER() OVER (PARTITION BY lane ORDER BY next_attempt_ms) AS rn FROM media
                           WHERE status = ? AND next_attempt_ms <= ? AND lane != ?)
                         WHERE rn = 1 ORDER BY next_attempt_ms LIMIT ?",
                        vec![status(MediaStatus::Pending), now.into(), INBOUND_LANE.into(), SENT_LANES_WINDOW.into()],
                    )?
                    .to_array()?;
                heads.into_iter().filter(|j| self.in_flight.of(&j.in_flight_key()) == 0).take(free).collect()
            }
        };
        let lease_until = now + FETCH_TIMEOUT_MS as i64 + LEASE_SLACK_MS;
        for job in &due {
            self.sql.exec(
                "UPDATE media SET next_attempt_ms = ?, leased = 1 WHERE message_id = ? AND path = ?",
                vec![lease_until.into(), job.message_id.clone().into(), job.path.clone().into()],
            )?;
            self.in_flight.start(&job.in_flight_key());
        }
        Ok(due)
    }

    /// Ends the leases of attempts that ran in an earlier instance of this
    /// object: there is only ever one instance, so they died with it.
    /// Returns how many jobs are due again. Pending jobs are few (settled
    /// ones are not pending), and the due index finds them.
    pub fn release_dead_leases(&self, now: i64) -> Result<u32> {
        let released = self.sql.exec(
            "UPDATE media SET leased = 0, next_attempt_ms = ?
             WHERE status = ? AND next_attempt_ms > ? AND leased = 1",
            vec![now.into(), status(MediaStatus::Pending), now.into()],
        )?;
        Ok(released.rows_written() as u32)
    }

    /// Runs one attempt and records it, then re-arms the alarm.
    pub async fn archive_and_record(self, job: MediaJob, deliveries: Deliveries) {
        let attempt = self.attempt(&job).await;
        self.in_flight.finish(&job.in_flight_key());
        match self.txn.atomically(|| self.record(&job, &attempt)) {
            Ok(_) => {}
            Err(e) => crate::log::log_error!(
                "media: outcome for {} could not be recorded (it will be retried): {e}",
                job.path
            ),
        }
        if let Err(e) = deliveries.reschedule(false).await {
            crate::log::log_error!("media: alarm could not be rescheduled: {e}");
        }
    }

    async fn attempt(&self, job: &MediaJob) -> Attempt {
        let bucket = match self.env.bucket(MEDIA) {
            Ok(b) => b,
            Err(_) => return Attempt::Retry(format!("no R2 bucket is bound as {MEDIA}")),
        };
        let key = object_key(&job.message_id, &job.path);
        // Stored by an attempt that died before recording it: never fetched again.
        match bucket.head(key.clone()).await {
            Ok(Some(obj)) => {
                if let Some(sha256) = obj.custom_metadata().ok().and_then(|m| m.get("sha256").cloned()) {
                    let content_type = obj.http_metadata().content_type.unwrap_or_default();
                    return Attempt::Archived { content_type, size: obj.size(), sha256 };
                }
            }
            Ok(None) => {}
            Err(e) => return Attempt::Retry(format!("R2: {e}")),
        }
        let from_callback = job.lane == INBOUND_LANE;
        let chain = CredentialChain::new(from_callback, self.scope.as_deref());
        let (body, served_type) = match download_media(&self.env, chain, &job.source_url).await {
            Ok(got) => got,
            Err(attempt) => return attempt,
        };
        let sha256 = sha256_hex(&body);
        let size = body.len() as u64;
        let content_type = content_type(served_type.as_deref(), &job.path);
        let metadata = HttpMetadata {
            content_type: Some(content_type.clone()),
            content_language: None,
            content_disposition: None,
            content_encoding: None,
            cache_control: None,
            cache_expiry: None,
        };
        let custom =
            HashMap::from([("sha256".to_owned(), sha256.clone()), ("source".to_owned(), job.source_url.clone())]);
        match bucket.put(key, body).http_metadata(metadata).custom_metadata(custom).execute().await {
            Ok(_) => Attempt::Archived { content_type, size, sha256 },
            Err(e) => Attempt::Retry(format!("R2: {e}")),
        }
    }

    /// Records an attempt on its job. When it settles the message's last
    /// pending file, queues the `message.media` forward; returns the outbox
    /// rows queued. A job deleted meanwhile (erasure, retention) sends its
    /// stored file to the trash.
    fn record(&self, job: &MediaJob, attempt: &Attempt) -> Result<u32> {
        let now = now_ms();
        let attempts = job.attempts + 1;
        let (next, at) = next_state(&self.schedule, attempt, attempts as u32, job.window_start_ms, now, jitter());
        let (content_type, size, sha256, error) = match attempt {
            Attempt::Archived { content_type, size, sha256 } => {
                (Some(content_type.clone()), Some(*size as i64), Some(sha256.clone()), None)
            }
            Attempt::Retry(why) | Attempt::Fail(why) => (None, None, None, Some(why.clone())),
        };
        if next == MediaStatus::Failed {
            crate::log::log_warn!(
                "media: {} of message {} failed after {attempts} attempts: {:?}",
                job.path,
                job.message_id,
                error
            );
        }
        let updated = self.sql.exec(
            "UPDATE media SET status = ?, attempts = ?, next_attempt_ms = ?, content_type = ?, size = ?, sha256 = ?,
               last_error = ?, leased = 0 WHERE message_id = ? AND path = ? AND status = ?",
            vec![
                status(next),
                attempts.into(),
                at.into(),
                content_type.into(),
                size.into(),
                sha256.into(),
                error.into(),
                job.message_id.clone().into(),
                job.path.clone().into(),
                status(MediaStatus::Pending),
            ],
        )?;
        if updated.rows_written() == 0 {
            if matches!(attempt, Attempt::Archived { .. }) {
                self.sql.exec(
                    "INSERT INTO media_trash (r2_key) VALUES (?) ON CONFLICT DO NOTHING",
                    vec![object_key(&job.message_id, &job.path).into()],
                )?;
            }
            return Ok(0);
        }
        if next == MediaStatus::Pending {
            return Ok(0);
        }
        // The message's files: while any is pending, its forward waits.
        let mut media: Vec<MediaRecord> = of_message(&self.sql, &job.message_id)?;
        if media.iter().any(|m| MediaStatus::parse(&m.status) == Some(MediaStatus::Pending)) {
            return Ok(0);
        }
        media.sort_by(|a, b| a.path.cmp(&b.path));
        let views: Vec<_> = media.iter().map(MediaRecord::view).collect();
        super::outbox::queue(&self.sql, &self.targets, &[media_change(&job.message_id, &views)], now)
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
