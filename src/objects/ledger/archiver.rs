//! The media archive's fetching (`media.rs` queues the jobs): the alarm
//! leases due jobs, lane by lane, and each attempt runs off every ack path,
//! is stored in R2 and recorded, then re-arms the alarm.
//!
//! Jobs wait in lanes (`media::lane_of`): the files of Bandwidth's callbacks
//! in their own, leased before forwarding and before any send's media, so
//! no send can delay them; a send's files in one lane per origin, at most
//! one attempt per origin at a time, so a host that never answers holds
//! one connection and only its own files.

use std::collections::HashMap;
use std::rc::Rc;

use bw_ledger_core::identity::sha256_hex;
use bw_ledger_core::media::{
    content_type, media_change, next_state, object_key, Attempt, CredentialChain, CredentialScope, MediaRecord,
    MediaStatus, FETCH_TIMEOUT_MS, INBOUND_LANE,
};
use bw_ledger_core::retry::Schedule;
use serde::Deserialize;
use worker::{Env, HttpMetadata, Result, SqlStorage};

use crate::clock::{jitter, now_ms};
use crate::config::MEDIA;
use crate::objects::transaction::Transactions;
use crate::upstream::download_media;

use super::delivery::Deliveries;
use super::media::{of_message, status};
use super::rows::InFlight;
use super::shard::LedgerShard;

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

impl LedgerShard {
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
    targets: Rc<super::targets::TargetBook>,
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
        if media.iter().any(|m| m.status == MediaStatus::Pending) {
            return Ok(0);
        }
        media.sort_by(|a, b| a.path.cmp(&b.path));
        let views: Vec<_> = media.iter().map(MediaRecord::view).collect();
        super::outbox::queue(&self.sql, &self.targets.current(), &[media_change(&job.message_id, &views)], now)
    }
}
