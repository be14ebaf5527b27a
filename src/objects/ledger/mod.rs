//! `LedgerShard`: one SQLite-backed Durable Object per shard of the ledger.
//!
//! It stores the events, identity conflicts and quarantined input of the
//! messages (and content hashes) that map to it, with what derives from
//! them: list rows, outbox rows, live documents. The rules (dedup, the
//! projection, what counts as a change) are `bw_ledger_core`'s; the shard
//! runs them against SQLite. It must never acknowledge a write it has not
//! made: every write runs in one transaction (all or nothing), and replies
//! leave only through the output gate, after the writes are durable.
//!
//! This file is the table of contents: the object's methods
//! (`bw_ledger_core::wire::ledger`, one arm each of an exhaustive match)
//! and its alarm.
//! - `shard`: the object's state, which the files below add methods to;
//! - `schema`: tables and indexes; `list_rows`: the list rows' table, and
//!   moving an older layout's rows into it;
//! - `ingest`: the write path;
//! - `reads`: messages, list pages, the quarantine;
//! - `delivery`: delivering and pruning the outbox (the alarm's work);
//! - `outbox`: the operations over the outbox;
//! - `targets`: the targets delivered to, and their hand-over;
//! - `health`: reporting attempts to the registry, and the circuit breaker;
//! - the send proxy's idempotency records of earlier builds, read only
//!   (`objects::idempotency`);
//! - `lifecycle`: retention, erasure (and its tombstones), export;
//! - `media`: the media archive's jobs and trash; `archiver`: fetching
//!   them into R2, lane by lane;
//! - `metrics`: the figures of `GET /metrics`;
//! - `test_methods`: the e2e suite's methods, only in the test build.

mod archiver;
mod delivery;
mod health;
mod ingest;
mod lifecycle;
mod list_rows;
mod media;
mod metrics;
mod outbox;
mod pacing;
mod reads;
mod rows;
mod schema;
mod shard;
mod targets;
#[cfg(feature = "test-hooks")]
pub(crate) mod test_methods;

use bw_ledger_core::lifecycle::{SweepRequest, BATCH};
use bw_ledger_core::list::{count_plan, ListQuery, ShardPage};
use bw_ledger_core::wire::{ledger, DiscardReply, Empty, ReplayReply};
use worker::{DurableObject, Env, Request, Response, Result, State};

use crate::clock::now_ms;
use crate::object_call::{reply, request};
use archiver::Lanes;
pub use shard::LedgerShard;

impl DurableObject for LedgerShard {
    fn new(state: State, env: Env) -> Self {
        let shard = Self::from_env(state, env);
        // A crash while an alarm runs can lose it; whenever the object wakes
        // up, re-arm it if outbox rows are still waiting. Media attempts of
        // an earlier instance died with it: they are due again now, not when
        // their leases would have ended. (This runs before any event reaches
        // the new instance; before the schema exists it finds nothing.)
        let (deliveries, released) = (shard.deliveries(), shard.archiver().release_dead_leases(now_ms()));
        if released.is_ok_and(|n| n > 0) {
            shard.state.wait_until(async move {
                let _ = deliveries.reschedule(false).await;
            });
        } else {
            shard.state.wait_until(deliveries.rearm_if_lost());
        }
        shard
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if self.ensure_schema()? {
            // Rows of an older layout to move: the alarm does it, a batch
            // per wake, between requests.
            self.deliveries().reschedule(false).await?;
        }
        let path = req.path();
        let Some(call) = ledger::Call::from_path(&path) else {
            #[cfg(feature = "test-hooks")]
            if let Some(call) = test_methods::Call::from_path(&path) {
                return test_methods::serve(self, call, req).await;
            }
            return Response::error("unknown shard method", 404);
        };
        #[cfg(feature = "test-hooks")]
        self.requests.set(self.requests.get() + 1);
        self.serve(call, &mut req).await
    }

    /// Prunes finished outbox rows and starts delivering due ones, off every
    /// ack path. Each row is leased (its next attempt pushed past the
    /// delivery timeout) and delivered on its own, within the connection
    /// limits (`delivery`), recording its outcome and re-arming the alarm when
    /// it finishes, so a target that hangs holds only its own rows and
    /// connections. Before returning, the alarm is set for the next work
    /// (see `Deliveries::reschedule`): nothing waits on a delivery finishing.
    async fn alarm(&self) -> Result<Response> {
        self.ensure_schema()?;
        let deliveries = self.deliveries();
        let now = now_ms();
        deliveries.prune(now)?;
        // Inbound media first: no forward and no send's media delays it.
        let archiver = self.archiver();
        for job in archiver.lease_due(Lanes::Inbound, now)? {
            self.state.wait_until(archiver.clone().archive_and_record(job, deliveries.clone()));
        }
        for head in deliveries.lease_due(now)? {
            self.state.wait_until(deliveries.clone().deliver_and_record(head));
        }
        // Attempts not yet reported (a send that failed, or an instance
        // that ended before it could).
        if deliveries.reporter.due(&self.sql, now)?.is_some_and(|at| at <= now) {
            let d = deliveries.clone();
            self.state.wait_until(async move {
                if !d.reporter.flush(&d.env, &d.sql, &d.txn, now).await {
                    let _ = d.reschedule(false).await;
                }
            });
        }
        for job in archiver.lease_due(Lanes::Sent, now)? {
            self.state.wait_until(archiver.clone().archive_and_record(job, deliveries.clone()));
        }
        if let Err(e) = media::empty_trash(&self.env, &self.sql).await {
            crate::log::log_error!("media: deleted files not yet removed from R2 (next alarm retries): {e}");
        }
        // A retention sweep left to the alarm: one batch per wake, so
        // callbacks run between batches (`reschedule` comes back for more).
        if let Some(cutoff_ms) = self.pending_sweep()? {
            let batch = SweepRequest { cutoff_ms, now_ms: now, limit: BATCH, continue_by_alarm: true };
            self.txn.atomically(|| self.sweep(&batch))?;
        }
        // Likewise a change of the list rows' layout: one batch per wake.
        if self.rows_moving.get() {
            let more = self.txn.atomically(|| list_rows::move_batch(&self.sql, self.move_batch))?;
            self.rows_moving.set(more);
        }
        deliveries.reschedule(true).await?;
        Response::ok("")
    }
}

impl LedgerShard {
    /// Every method of `bw_ledger_core::wire::ledger`, one arm each.
    async fn serve(&self, call: ledger::Call, req: &mut Request) -> Result<Response> {
        use ledger::Call as C;
        match call {
            // A group of callbacks (see bw_ledger_core::group): one
            // transaction each, one commit for all.
            C::Ingest => reply::<ledger::Ingest>(&self.ingest(&request::<ledger::Ingest>(req).await?).await?),
            C::Message => {
                let q = request::<ledger::Message>(req).await?;
                reply::<ledger::Message>(&reads::message(&self.sql, &q.message_id)?)
            }
            C::QueueChanges => {
                let handed = request::<ledger::QueueChanges>(req).await?;
                let queued = self
                    .txn
                    .atomically(|| outbox::queue_handed_over(&self.sql, &self.targets.current(), &handed, now_ms()))?;
                self.wake_if(queued > 0).await?;
                reply::<ledger::QueueChanges>(&queued)
            }
            C::QuarantineIndex => {
                let q = request::<ledger::QuarantineIndex>(req).await?;
                reply::<ledger::QuarantineIndex>(&reads::quarantine_index(&self.sql, &q)?)
            }
            C::QuarantineBodies => {
                let hashes = request::<ledger::QuarantineBodies>(req).await?;
                reply::<ledger::QuarantineBodies>(&reads::quarantine_bodies(&self.sql, &hashes)?)
            }
            C::List => reply::<ledger::List>(&self.list(&request::<ledger::List>(req).await?)?),
            C::IdemPeek => {
                let q = request::<ledger::IdemPeek>(req).await?;
                reply::<ledger::IdemPeek>(&crate::objects::idempotency::peek(&self.sql, &q.scope_key)?)
            }
            C::OutboxStats => reply::<ledger::OutboxStats>(&outbox::stats(&self.sql)?),
            C::OutboxDead => {
                reply::<ledger::OutboxDead>(&outbox::dead(&self.sql, &request::<ledger::OutboxDead>(req).await?)?)
            }
            C::OutboxReplay => {
                let r = request::<ledger::OutboxReplay>(req).await?;
                let replayed = self.txn.atomically(|| outbox::replay(&self.sql, &r))?;
                self.wake_if(replayed > 0).await?;
                reply::<ledger::OutboxReplay>(&ReplayReply { replayed })
            }
            C::Targets => self.take_targets(request::<ledger::Targets>(req).await?).await,
            C::OutboxDiscard => {
                let q = request::<ledger::OutboxDiscard>(req).await?;
                let discarded = self.txn.atomically(|| outbox::discard(&self.sql, &q))?;
                reply::<ledger::OutboxDiscard>(&DiscardReply { discarded })
            }
            C::Sweep => {
                let q = request::<ledger::Sweep>(req).await?;
                let swept = self.txn.atomically(|| self.sweep(&q))?;
                self.empty_trash().await?;
                if swept.more && q.continue_by_alarm {
                    self.deliveries().reschedule(false).await?;
                }
                reply::<ledger::Sweep>(&swept)
            }
            C::Erase => {
                let q = request::<ledger::Erase>(req).await?;
                let erased = self.txn.atomically(|| self.erase(&q))?;
                self.empty_trash().await?;
                reply::<ledger::Erase>(&erased)
            }
            C::Outcomes => {
                reply::<ledger::Outcomes>(&metrics::outcomes(&self.sql, &request::<ledger::Outcomes>(req).await?)?)
            }
            C::Metrics => {
                let figures = self.txn.atomically(|| metrics::collect(&self.sql, self.duplicates.get()))?;
                reply::<ledger::Metrics>(&figures)
            }
            C::Media => reply::<ledger::Media>(&reads::media(&self.sql, &request::<ledger::Media>(req).await?)?),
            C::Export => {
                reply::<ledger::Export>(&lifecycle::export_page(&self.sql, &request::<ledger::Export>(req).await?)?)
            }
            C::LiveOn => {
                self.live.turn_on();
                reply::<ledger::LiveOn>(&Empty {})
            }
        }
    }

    /// One shard's page of a list query, and its count when the query asks.
    fn list(&self, q: &ListQuery) -> Result<ShardPage> {
        let rows = reads::list_page(&self.sql, q)?;
        let total = match count_plan(q) {
            Some(plan) => {
                #[cfg(feature = "test-hooks")]
                self.count_queries.set(self.count_queries.get() + 1);
                Some(reads::list_count(&self.sql, plan)?)
            }
            None => None,
        };
        Ok(ShardPage { rows, total })
    }

    /// The registry's targets at a version (`targets`): stored if newer,
    /// with the outbox rows it settles, then used from the next attempt.
    async fn take_targets(&self, snapshot: bw_ledger_core::targets::TargetSnapshot) -> Result<Response> {
        let now = now_ms();
        if self.txn.atomically(|| self.targets.store(&self.sql, &snapshot, now))? {
            self.targets.adopt(snapshot);
            // Resumed targets' rows are due; deleted ones' are done.
            self.deliveries().reschedule(false).await?;
        }
        reply::<ledger::Targets>(&Empty {})
    }

    /// New outbox work: the alarm runs now.
    async fn wake_if(&self, new_work: bool) -> Result<()> {
        if new_work {
            self.storage.set_alarm(0).await?;
        }
        Ok(())
    }

    /// Deletes the files of deleted messages from R2 now; if R2 fails, the
    /// alarm keeps trying (`media::empty_trash`).
    async fn empty_trash(&self) -> Result<()> {
        if let Err(e) = media::empty_trash(&self.env, &self.sql).await {
            crate::log::log_error!("media: files of deleted messages not yet deleted from R2 (the alarm retries): {e}");
            self.deliveries().reschedule(false).await?;
        }
        Ok(())
    }

    /// Applies the schema once per instance; true the first time if list
    /// rows of an older layout are still to move.
    fn ensure_schema(&self) -> Result<bool> {
        if self.schema_ready.get() {
            return Ok(false);
        }
        let moving = schema::ensure(&self.sql, &self.txn)? == list_rows::Layout::Moving;
        self.targets.load(&self.sql)?;
        self.rows_moving.set(moving);
        self.schema_ready.set(true);
        Ok(moving)
    }
}
