//! The shard object's state: what one instance holds between requests.
//! Each concern's file adds its methods to it (`ingest`, `lifecycle`,
//! `media`, `archiver`); `mod.rs` serves requests and alarms with them.

use std::cell::Cell;
use std::rc::Rc;

use bw_ledger_core::forward::ForwardTarget;
use bw_ledger_core::lifecycle::{parse_tombstone_ms, DEFAULT_TOMBSTONE_DAYS, DEFAULT_TOMBSTONE_MS};
use bw_ledger_core::media::CredentialScope;
use bw_ledger_core::retry::{positive_var, Schedule};
use bw_ledger_core::targets::seal::Sealer;
use worker::{durable_object, Env, SqlStorage, State, Storage};

use super::delivery::{Deliveries, DEFAULT_KEEP_DELIVERED_MS};
use super::health::Reporter;
use super::list_rows;
use super::rows::InFlight;
use super::targets::TargetBook;
use crate::config::{
    alert_target, forward_targets, target_sealer, Config, ERASURE_TOMBSTONE_DAYS, FORWARD_GIVE_UP_MS,
    FORWARD_KEEP_DELIVERED_MS, FORWARD_RETRY_BASE_MS, FORWARD_RETRY_MAX_MS, MEDIA_GIVE_UP_MS, MEDIA_RETRY_BASE_MS,
    MEDIA_RETRY_MAX_MS, MIGRATION_BATCH_ROWS,
};
use crate::objects::live_hub::LiveSwitch;
use crate::objects::transaction::Transactions;

#[durable_object]
pub struct LedgerShard {
    pub(super) state: State,
    pub(super) env: Env,
    pub(super) sql: SqlStorage,
    pub(super) storage: Rc<Storage>,
    /// Every write a request makes runs in one of these: all or nothing.
    pub(super) txn: Transactions,
    pub(super) schema_ready: Cell<bool>,
    /// Whether list rows of an older layout are still to move, and how
    /// many the alarm moves per wake (`list_rows`).
    pub(super) rows_moving: Cell<bool>,
    pub(super) move_batch: i64,
    /// Whether live subscribers may be listening; starts true, cleared when
    /// the hub reports none, set again by the hub's `LiveOn`.
    pub(super) live: Rc<LiveSwitch>,
    /// Forwarding targets (`FORWARD_TARGETS` read once per instance, and
    /// the registry's as handed over) and the retry schedule.
    pub(super) targets: Rc<TargetBook>,
    pub(super) schedule: Schedule,
    pub(super) keep_delivered_ms: i64,
    /// Media archive jobs' retry schedule, and the origin Bandwidth's
    /// credentials may go to (`BANDWIDTH_API_BASE`).
    pub(super) media_schedule: Schedule,
    pub(super) api_base: Rc<str>,
    pub(super) media_scope: Option<Rc<CredentialScope>>,
    /// Deliveries running from this instance, per target.
    pub(super) in_flight: Rc<InFlight>,
    /// Sends this shard's attempts to the registry (`health`).
    pub(super) reporter: Rc<Reporter>,
    /// Duplicates answered since this instance started (`GET /metrics`).
    pub(super) duplicates: Cell<i64>,
    /// Whether the `erased` table holds tombstones; unknown until read.
    pub(super) tombstones: Cell<Option<bool>>,
    /// How long a tombstone refuses its message id (`ERASURE_TOMBSTONE_DAYS`).
    pub(super) tombstone_ms: i64,
    /// Count queries run, and requests answered, by this instance, for the
    /// e2e suite.
    #[cfg(feature = "test-hooks")]
    pub(super) count_queries: Cell<u64>,
    #[cfg(feature = "test-hooks")]
    pub(super) requests: Cell<u64>,
}

impl LedgerShard {
    /// A new instance, its settings read from `env`.
    pub(super) fn from_env(state: State, env: Env) -> Self {
        let s = Settings::read(&env);
        let alert = alert_target(&env);
        let txn = Transactions::of_object(&state, "LedgerShard");
        Self {
            txn,
            sql: state.storage().sql(),
            storage: Rc::new(state.storage()),
            state,
            env,
            schema_ready: Cell::new(false),
            rows_moving: Cell::new(false),
            move_batch: s.move_batch,
            live: LiveSwitch::new(),
            targets: Rc::new(TargetBook::new(s.targets, alert, s.sealer)),
            schedule: s.schedule,
            keep_delivered_ms: s.keep_delivered_ms,
            media_schedule: s.media_schedule,
            api_base: s.api_base,
            media_scope: s.media_scope,
            in_flight: Rc::new(InFlight::default()),
            reporter: Rc::new(Reporter::default()),
            tombstones: Cell::new(None),
            tombstone_ms: s.tombstone_ms,
            duplicates: Cell::new(0),
            #[cfg(feature = "test-hooks")]
            count_queries: Cell::new(0),
            #[cfg(feature = "test-hooks")]
            requests: Cell::new(0),
        }
    }

    pub(super) fn deliveries(&self) -> Deliveries {
        Deliveries {
            sql: self.sql.clone(),
            storage: self.storage.clone(),
            env: self.env.clone(),
            txn: self.txn.clone(),
            targets: self.targets.clone(),
            schedule: self.schedule,
            keep_delivered_ms: self.keep_delivered_ms,
            in_flight: self.in_flight.clone(),
            reporter: self.reporter.clone(),
        }
    }
}

/// What an instance reads from its vars and secrets once, at start.
struct Settings {
    targets: Vec<ForwardTarget>,
    sealer: Option<Sealer>,
    schedule: Schedule,
    keep_delivered_ms: i64,
    media_schedule: Schedule,
    api_base: Rc<str>,
    media_scope: Option<Rc<CredentialScope>>,
    tombstone_ms: i64,
    move_batch: i64,
}

impl Settings {
    fn read(env: &Env) -> Self {
        let var = |name: &str| env.var(name).ok().map(|v| v.to_string());
        let targets = forward_targets(env).unwrap_or_else(|why| {
            // Ingest must never fail over forwarding config: log it loudly.
            crate::log::log_error!("config: {why}; forwarding is off until it is fixed");
            Vec::new()
        });
        let sealer = target_sealer(env).unwrap_or_else(|why| {
            crate::log::log_error!("config: {why}; sealed target secrets cannot be opened until it is fixed");
            None
        });
        let schedule = Schedule::from_vars(
            var(FORWARD_RETRY_BASE_MS).as_deref(),
            var(FORWARD_RETRY_MAX_MS).as_deref(),
            var(FORWARD_GIVE_UP_MS).as_deref(),
        );
        let keep_delivered_ms = positive_var(var(FORWARD_KEEP_DELIVERED_MS).as_deref(), DEFAULT_KEEP_DELIVERED_MS);
        let media_schedule = bw_ledger_core::media::schedule(
            var(MEDIA_RETRY_BASE_MS).as_deref(),
            var(MEDIA_RETRY_MAX_MS).as_deref(),
            var(MEDIA_GIVE_UP_MS).as_deref(),
        );
        let config = Config::from_env(env);
        let api_base: Rc<str> = config.api_base().into();
        let media_scope = CredentialScope::new(&api_base, config.account_id().ok().as_deref()).map(Rc::new);
        let tombstone_ms = parse_tombstone_ms(var(ERASURE_TOMBSTONE_DAYS).as_deref()).unwrap_or_else(|why| {
            // Longer is the safe side: an erased number is never stored again.
            crate::log::log_error!("config: {why}; keeping tombstones {DEFAULT_TOMBSTONE_DAYS} days");
            DEFAULT_TOMBSTONE_MS
        });
        let move_batch = positive_var(var(MIGRATION_BATCH_ROWS).as_deref(), list_rows::DEFAULT_MOVE_BATCH);
        Self {
            targets,
            sealer,
            schedule,
            keep_delivered_ms,
            media_schedule,
            api_base,
            media_scope,
            tombstone_ms,
            move_batch,
        }
    }
}
