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
//! This file is the table of contents: the object, its methods
//! (`bw_ledger_core::wire::ledger`) and its alarm.
//! - `schema`: tables and indexes; `list_rows`: the list rows' table, and
//!   moving an older layout's rows into it;
//! - `ingest`: the write path;
//! - `reads`: messages, list pages, the quarantine;
//! - `delivery`: delivering and pruning the outbox (the alarm's work);
//! - `outbox`: the operations over the outbox;
//! - the send proxy's idempotency records of earlier builds, read only
//!   (`objects::idempotency`);
//! - `lifecycle`: retention, erasure (and its tombstones), export;
//! - `media`: the media archive's jobs and trash; `archiver`: fetching
//!   them into R2, lane by lane;
//! - `metrics`: the figures of `GET /metrics`.

mod archiver;
mod delivery;
mod ingest;
mod lifecycle;
mod list_rows;
mod media;
mod metrics;
mod outbox;
mod reads;
mod schema;

use std::cell::Cell;
use std::rc::Rc;

use bw_ledger_core::forward::{parse_targets, ForwardTarget, Schedule};
use bw_ledger_core::lifecycle::{
    parse_tombstone_ms, SweepRequest, BATCH, DEFAULT_TOMBSTONE_DAYS, DEFAULT_TOMBSTONE_MS,
};
use bw_ledger_core::list::{count_plan, ShardPage};
use bw_ledger_core::media::CredentialScope;
use bw_ledger_core::wire::{ledger, Empty, Method, ReplayReply};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State, Storage};

use crate::clock::now_ms;
use crate::config::{
    Config, ERASURE_TOMBSTONE_DAYS, FORWARD_GIVE_UP_MS, FORWARD_KEEP_DELIVERED_MS, FORWARD_RETRY_BASE_MS,
    FORWARD_RETRY_MAX_MS, FORWARD_TARGETS, MEDIA_GIVE_UP_MS, MEDIA_RETRY_BASE_MS, MEDIA_RETRY_MAX_MS,
    MIGRATION_BATCH_ROWS,
};
use crate::object_call::{reply, request};
use crate::objects::live_hub::LiveSwitch;
use crate::objects::transaction::Transactions;
use archiver::Lanes;
use delivery::{Deliveries, InFlight, DEFAULT_KEEP_DELIVERED_MS};
#[cfg(feature = "test-hooks")]
pub(crate) use reads::run as run_planned;

#[durable_object]
pub struct LedgerShard {
    state: State,
    env: Env,
    sql: SqlStorage,
    storage: Rc<Storage>,
    /// Every write a request makes runs in one of these: all or nothing.
    txn: Transactions,
    schema_ready: Cell<bool>,
    /// Whether list rows of an older layout are still to move, and how
    /// many the alarm moves per wake (`list_rows`).
    rows_moving: Cell<bool>,
    move_batch: i64,
    /// Whether live subscribers may be listening; starts true, cleared when
    /// the hub reports none, set again by the hub's `LiveOn`.
    live: Rc<LiveSwitch>,
    /// Forwarding targets and schedule, read once per object instance.
    targets: Rc<Vec<ForwardTarget>>,
    schedule: Schedule,
    keep_delivered_ms: i64,
    /// Media archive jobs' retry schedule, and the origin Bandwidth's
    /// credentials may go to (`BANDWIDTH_API_BASE`).
    media_schedule: Schedule,
    api_base: Rc<str>,
    media_scope: Option<Rc<CredentialScope>>,
    /// Deliveries running from this instance, per target.
    in_flight: Rc<InFlight>,
    /// Duplicates answered since this instance started (`GET /metrics`).
    duplicates: Cell<i64>,
    /// Whether the `erased` table holds tombstones; unknown until read.
    tombstones: Cell<Option<bool>>,
    /// How long a tombstone refuses its message id (`ERASURE_TOMBSTONE_DAYS`).
    tombstone_ms: i64,
    /// Count queries run, and requests answered, by this instance, for the
    /// e2e suite.
    #[cfg(feature = "test-hooks")]
    count_queries: Cell<u64>,
    #[cfg(feature = "test-hooks")]
    requests: Cell<u64>,
}

impl DurableObject for LedgerShard {
    fn new(state: State, env: Env) -> Self {
        let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
        let targets = parse_targets(var(FORWARD_TARGETS).as_deref()).unwrap_or_else(|why| {
            // Ingest must never fail over forwarding config: log it loudly.
            crate::log::log_error!("config: {why}; forwarding is off until it is fixed");
            Vec::new()
        });
        let schedule = Schedule::from_vars(
            var(FORWARD_RETRY_BASE_MS).as_deref(),
            var(FORWARD_RETRY_MAX_MS).as_deref(),
            var(FORWARD_GIVE_UP_MS).as_deref(),
        );
        let keep_delivered_ms = var(FORWARD_KEEP_DELIVERED_MS)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|ms| *ms > 0)
            .unwrap_or(DEFAULT_KEEP_DELIVERED_MS);
        let media_schedule = bw_ledger_core::media::schedule(
            var(MEDIA_RETRY_BASE_MS).as_deref(),
            var(MEDIA_RETRY_MAX_MS).as_deref(),
            var(MEDIA_GIVE_UP_MS).as_deref(),
        );
        let config = Config::from_env(&env);
        let api_base: Rc<str> = config.api_base().into();
        let media_scope = CredentialScope::new(&api_base, config.account_id().ok().as_deref()).map(Rc::new);
        let tombstone_ms = parse_tombstone_ms(var(ERASURE_TOMBSTONE_DAYS).as_deref()).unwrap_or_else(|why| {
            // Longer is the safe side: an erased number is never stored again.
            crate::log::log_error!("config: {why}; keeping tombstones {DEFAULT_TOMBSTONE_DAYS} days");
            DEFAULT_TOMBSTONE_MS
        });
        let move_batch = var(MIGRATION_BATCH_ROWS)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(list_rows::DEFAULT_MOVE_BATCH);
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
            rows_moving: Cell::new(false),
            move_batch,
            live: LiveSwitch::new(),
            targets: Rc::new(targets),
            schedule,
            keep_delivered_ms,
            media_schedule,
            api_base,
            media_scope,
            in_flight: Rc::new(InFlight::default()),
            tombstones: Cell::new(None),
            tombstone_ms,
            duplicates: Cell::new(0),
            #[cfg(feature = "test-hooks")]
            count_queries: Cell::new(0),
            #[cfg(feature = "test-hooks")]
            requests: Cell::new(0),
        };
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
        #[cfg(feature = "test-hooks")]
        if path != crate::test_hooks::ShardProbe::PATH {
            self.requests.set(self.requests.get() + 1);
        }
        match path.as_str() {
            ledger::Ingest::PATH => {
                // A group of callbacks (see bw_ledger_core::group): one
                // transaction each, one commit for all.
                let batches = request::<ledger::Ingest>(&mut req).await?;
                let replies = self.ingest(&batches).await?;
                reply::<ledger::Ingest>(&replies)
            }
            ledger::Message::PATH => {
                let q = request::<ledger::Message>(&mut req).await?;
                reply::<ledger::Message>(&reads::message(&self.sql, &q.message_id)?)
            }
            ledger::QueueChanges::PATH => {
                let handed = request::<ledger::QueueChanges>(&mut req).await?;
                let now = now_ms();
                let queued =
                    self.txn.atomically(|| outbox::queue_handed_over(&self.sql, &self.targets, &handed, now))?;
                if queued > 0 {
                    self.storage.set_alarm(0).await?;
                }
                reply::<ledger::QueueChanges>(&queued)
            }
            ledger::QuarantineIndex::PATH => {
                let q = request::<ledger::QuarantineIndex>(&mut req).await?;
                reply::<ledger::QuarantineIndex>(&reads::quarantine_index(&self.sql, &q)?)
            }
            ledger::QuarantineBodies::PATH => {
                let hashes = request::<ledger::QuarantineBodies>(&mut req).await?;
                reply::<ledger::QuarantineBodies>(&reads::quarantine_bodies(&self.sql, &hashes)?)
            }
            ledger::List::PATH => {
                let q = request::<ledger::List>(&mut req).await?;
                let rows = reads::list_page(&self.sql, &q)?;
                let total = match count_plan(&q) {
                    Some(plan) => {
                        #[cfg(feature = "test-hooks")]
                        self.count_queries.set(self.count_queries.get() + 1);
                        Some(reads::list_count(&self.sql, plan)?)
                    }
                    None => None,
                };
                reply::<ledger::List>(&ShardPage { rows, total })
            }
            ledger::IdemPeek::PATH => {
                let q = request::<ledger::IdemPeek>(&mut req).await?;
                reply::<ledger::IdemPeek>(&crate::objects::idempotency::peek(&self.sql, &q.scope_key)?)
            }
            ledger::OutboxStats::PATH => reply::<ledger::OutboxStats>(&outbox::stats(&self.sql)?),
            ledger::OutboxDead::PATH => {
                let q = request::<ledger::OutboxDead>(&mut req).await?;
                reply::<ledger::OutboxDead>(&outbox::dead(&self.sql, &q)?)
            }
            ledger::OutboxReplay::PATH => {
                let r = request::<ledger::OutboxReplay>(&mut req).await?;
                let replayed = self.txn.atomically(|| outbox::replay(&self.sql, &r))?;
                if replayed > 0 {
                    self.storage.set_alarm(0).await?;
                }
                reply::<ledger::OutboxReplay>(&ReplayReply { replayed })
            }
            ledger::Sweep::PATH => {
                let q = request::<ledger::Sweep>(&mut req).await?;
                let swept = self.txn.atomically(|| self.sweep(&q))?;
                self.empty_trash().await?;
                if swept.more && q.continue_by_alarm {
                    self.deliveries().reschedule(false).await?;
                }
                reply::<ledger::Sweep>(&swept)
            }
            ledger::Erase::PATH => {
                let q = request::<ledger::Erase>(&mut req).await?;
                let erased = self.txn.atomically(|| self.erase(&q))?;
                self.empty_trash().await?;
                reply::<ledger::Erase>(&erased)
            }
            ledger::Outcomes::PATH => {
                let q = request::<ledger::Outcomes>(&mut req).await?;
                reply::<ledger::Outcomes>(&metrics::outcomes(&self.sql, &q)?)
            }
            ledger::Metrics::PATH => {
                let figures = self.txn.atomically(|| metrics::collect(&self.sql, self.duplicates.get()))?;
                reply::<ledger::Metrics>(&figures)
            }
            ledger::Media::PATH => {
                let q = request::<ledger::Media>(&mut req).await?;
                reply::<ledger::Media>(&reads::media(&self.sql, &q)?)
            }
            ledger::Export::PATH => {
                let q = request::<ledger::Export>(&mut req).await?;
                reply::<ledger::Export>(&lifecycle::export_page(&self.sql, &q)?)
            }
            ledger::LiveOn::PATH => {
                self.live.turn_on();
                reply::<ledger::LiveOn>(&Empty {})
            }
            #[cfg(feature = "test-hooks")]
            crate::test_hooks::ShardSql::PATH => {
                let q = request::<crate::test_hooks::ShardSql>(&mut req).await?;
                reply::<crate::test_hooks::ShardSql>(&crate::test_hooks::run(&self.sql, q)?)
            }
            #[cfg(feature = "test-hooks")]
            crate::test_hooks::DropAlarm::PATH => {
                self.storage.delete_alarm().await?;
                reply::<crate::test_hooks::DropAlarm>(&Empty {})
            }
            #[cfg(feature = "test-hooks")]
            crate::test_hooks::ShardProbe::PATH => {
                let q = request::<crate::test_hooks::ShardProbe>(&mut req).await?;
                reply::<crate::test_hooks::ShardProbe>(&crate::test_hooks::probe(
                    &self.sql,
                    &q,
                    self.count_queries.get(),
                    self.requests.get(),
                )?)
            }
            _ => Response::error("unknown shard method", 404),
        }
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
    fn deliveries(&self) -> Deliveries {
        Deliveries {
            sql: self.sql.clone(),
            storage: self.storage.clone(),
            txn: self.txn.clone(),
            targets: self.targets.clone(),
            schedule: self.schedule,
            keep_delivered_ms: self.keep_delivered_ms,
            in_flight: self.in_flight.clone(),
        }
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
        self.rows_moving.set(moving);
        self.schema_ready.set(true);
        Ok(moving)
    }
}
