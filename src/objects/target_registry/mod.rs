//! `TargetRegistry`: the one object that keeps the webhook targets made
//! through the API (`bw_ledger_core::targets`).
//!
//! Every change is a new snapshot version, committed here first, then
//! handed to every ledger shard before the change is answered, so the next
//! delivery attempt on every shard sees it. A shard that could not be
//! reached gets it from the alarm, which retries every few seconds until
//! every shard holds the newest version. Shards keep what they were handed
//! in their own storage, and ignore an older version than the one they
//! hold, so hand-overs may repeat and cross.
//!
//! It also keeps every target's health, and sends the operational events
//! (`health`).
//!
//! Secrets are made here, from `getrandom`, and stored sealed under
//! `TARGET_SECRETS_KEY` when it is set; only the create and rotate answers
//! carry one, once.

use bw_ledger_core::targets::input::generated_id;
use bw_ledger_core::targets::seal::{new_secret, seal, NONCE_LEN, SECRET_BYTES};
use bw_ledger_core::targets::{
    config_conflict, Listing, NewTarget, Outcome, TargetRecord, TargetSnapshot, WithSecret, ALERT_WEBHOOK_ID,
    DEFAULT_ROTATION_OVERLAP_MS,
};
use bw_ledger_core::wire::target_registry::{self as registry, PatchRequest, PausedRequest, TargetId};
use bw_ledger_core::wire::{ledger, Empty, Method};
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use crate::clock::{now_ms, random};
use crate::config::{forward_targets, target_sealer, Config, FORWARD_ROTATION_OVERLAP_MS};
use crate::object_call::{call, reply, request};
use crate::objects::transaction::Transactions;
use crate::shard_client::ShardClient;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS targets (id TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID",
    // The newest version, and the newest every shard is known to hold.
    "CREATE TABLE IF NOT EXISTS versions (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL,
       handed INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO versions (id, version, handed) VALUES (1, 0, 0)",
    // How many shards `handed` reached: a layout with more shards gets the
    // version again, before it starts (`ShardMap` asks, `Settle`).
    "CREATE TABLE IF NOT EXISTS handed_shards (id INTEGER PRIMARY KEY CHECK (id = 1), shards INTEGER NOT NULL)",
    // Every target's health (`health`), of either source.
    "CREATE TABLE IF NOT EXISTS health (target_id TEXT PRIMARY KEY, health TEXT NOT NULL) WITHOUT ROWID",
    // Operational events made, not yet handed to a shard's outbox.
    "CREATE TABLE IF NOT EXISTS alerts (seq INTEGER PRIMARY KEY, webhook_id TEXT NOT NULL, alert TEXT NOT NULL)",
];

mod health;

/// A hand-over that failed is tried again this much later.
const RETRY_MS: i64 = 2_000;

#[durable_object]
pub struct TargetRegistry {
    state: State,
    env: Env,
    sql: SqlStorage,
    txn: Transactions,
    ready: std::cell::Cell<bool>,
}

#[derive(Deserialize)]
struct RecordRow {
    record: String,
}

#[derive(Deserialize)]
struct VersionRow {
    version: i64,
    handed: i64,
}

impl DurableObject for TargetRegistry {
    fn new(state: State, env: Env) -> Self {
        let txn = Transactions::of_object(&state, "TargetRegistry");
        Self { sql: state.storage().sql(), state, env, txn, ready: std::cell::Cell::new(false) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        self.ensure_schema()?;
        let Some(call) = registry::Call::from_path(&req.path()) else {
            return Response::error("unknown target registry method", 404);
        };
        use registry::Call as C;
        let now = now_ms();
        match call {
            C::List => {
                let targets: Vec<TargetRecord> = self.records()?.iter().map(TargetRecord::without_secrets).collect();
                reply::<registry::List>(&Listing { targets, health: self.healths()? })
            }
            C::Create => {
                let new = request::<registry::Create>(&mut req).await?;
                let done = self.txn.atomically(|| self.create(new, now))?;
                self.answer::<registry::Create>(done).await
            }
            C::Patch => {
                let PatchRequest { id, patch } = request::<registry::Patch>(&mut req).await?;
                let done = self.txn.atomically(|| {
                    self.change(&id, |r| {
                        r.apply(&patch, now);
                        Ok(r.without_secrets())
                    })
                })?;
                self.answer::<registry::Patch>(done).await
            }
            C::Rotate => {
                let TargetId { id } = request::<registry::Rotate>(&mut req).await?;
                let overlap = self.overlap_ms();
                let done = self.txn.atomically(|| {
                    self.change(&id, |r| {
                        let secret = self.new_secret(&id)?;
                        r.rotate(secret.1, now, overlap);
                        Ok(WithSecret { target: r.without_secrets(), secret: secret.0 })
                    })
                })?;
                self.answer::<registry::Rotate>(done).await
            }
            C::SetPaused => {
                let PausedRequest { id, paused } = request::<registry::SetPaused>(&mut req).await?;
                let done = self.txn.atomically(|| self.set_state(&id, paused, now))?;
                self.answer::<registry::SetPaused>(done).await
            }
            C::Settle => {
                // A layout was just recorded: learn it now, not when this
                // isolate's copy of the layouts runs out.
                let config = Config::from_env(&self.env);
                if let Err(e) = crate::shard_client::layouts(&self.env, &config).await {
                    crate::log::log_warn!("targets: the shard layouts could not be read ({e:?}); retrying");
                }
                self.answer::<registry::Settle>(Empty {}).await
            }
            C::Report => {
                let reports = request::<registry::Report>(&mut req).await?;
                self.txn.atomically(|| self.take_reports(&reports, now))?;
                self.answer::<registry::Report>(Empty {}).await
            }
            C::Delete => {
                let TargetId { id } = request::<registry::Delete>(&mut req).await?;
                let done = self.txn.atomically(|| self.delete(&id))?;
                self.answer::<registry::Delete>(done).await
            }
        }
    }

    /// Moves health by the clock, then hands over what waits.
    async fn alarm(&self) -> Result<Response> {
        self.ensure_schema()?;
        self.txn.atomically(|| self.tick(now_ms()))?;
        self.settle().await?;
        Response::empty()
    }
}

impl TargetRegistry {
    fn ensure_schema(&self) -> Result<()> {
        if !self.ready.get() {
            for stmt in SCHEMA {
                self.sql.exec(stmt, None)?;
            }
            self.txn.atomically(|| self.adopt_paused())?;
            self.ready.set(true);
        }
        Ok(())
    }

    pub(super) fn records(&self) -> Result<Vec<TargetRecord>> {
        let rows: Vec<RecordRow> = self.sql.exec("SELECT record FROM targets", None)?.to_array()?;
        let mut all = rows.iter().map(|r| serde_json::from_str(&r.record)).collect::<serde_json::Result<Vec<_>>>()?;
        all.sort_by(|a: &TargetRecord, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }

    pub(super) fn find(&self, id: &str) -> Result<Option<TargetRecord>> {
        let rows: Vec<RecordRow> =
            self.sql.exec("SELECT record FROM targets WHERE id = ?", vec![id.into()])?.to_array()?;
        Ok(match rows.first() {
            Some(r) => Some(serde_json::from_str(&r.record)?),
            None => None,
        })
    }

    /// Writes a record and makes a new version (in the caller's transaction).
    fn save(&self, r: &TargetRecord) -> Result<()> {
        self.sql.exec(
            "INSERT INTO targets (id, record) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET record = excluded.record",
            vec![r.id.clone().into(), serde_json::to_string(r)?.into()],
        )?;
        self.bump()
    }

    pub(super) fn bump(&self) -> Result<()> {
        self.sql.exec("UPDATE versions SET version = version + 1 WHERE id = 1", None)?;
        Ok(())
    }

    /// The ids `FORWARD_TARGETS` holds, and the alert webhook's: the API
    /// may not touch them (but may enable and disable them).
    fn configured(&self, id: &str) -> bool {
        id == ALERT_WEBHOOK_ID || forward_targets(&self.env).unwrap_or_default().iter().any(|t| t.id == id)
    }

    /// A new secret, as shown and as stored.
    fn new_secret(&self, id: &str) -> Result<(String, String)> {
        let mut bytes = [0u8; SECRET_BYTES];
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut bytes)?;
        random(&mut nonce)?;
        // The Worker refuses the request before it gets here if the key is malformed.
        let sealer = target_sealer(&self.env).map_err(worker::Error::RustError)?;
        let secret = new_secret(&bytes);
        let sealed = seal(sealer.as_ref(), id, &secret, &nonce);
        Ok((secret, sealed))
    }

    fn overlap_ms(&self) -> i64 {
        let raw = self.env.var(FORWARD_ROTATION_OVERLAP_MS).ok().map(|v| v.to_string());
        raw.and_then(|v| v.trim().parse::<i64>().ok()).filter(|ms| *ms >= 0).unwrap_or(DEFAULT_ROTATION_OVERLAP_MS)
    }

    fn create(&self, new: NewTarget, now: i64) -> Result<Outcome<WithSecret>> {
        let id = match &new.id {
            Some(id) => id.clone(),
            None => {
                let mut bytes = [0u8; 8];
                random(&mut bytes)?;
                generated_id(&bytes)
            }
        };
        if self.configured(&id) {
            return Ok(Outcome::Conflict(config_conflict(&id)));
        }
        if self.find(&id)?.is_some() {
            return Ok(Outcome::Conflict(format!("A target `{id}` already exists.")));
        }
        let (secret, sealed) = self.new_secret(&id)?;
        let record = TargetRecord::new(new, id, sealed, now);
        self.save(&record)?;
        Ok(Outcome::Done(WithSecret { target: record.without_secrets(), secret }))
    }

    /// Changes a stored target with `edit`, which answers what to reply.
    fn change<T>(&self, id: &str, edit: impl FnOnce(&mut TargetRecord) -> Result<T>) -> Result<Outcome<T>> {
        if self.configured(id) {
            return Ok(Outcome::Conflict(config_conflict(id)));
        }
        let Some(mut record) = self.find(id)? else { return Ok(Outcome::NotFound) };
        let answer = edit(&mut record)?;
        self.save(&record)?;
        Ok(Outcome::Done(answer))
    }

    fn delete(&self, id: &str) -> Result<Outcome<Empty>> {
        if self.configured(id) {
            return Ok(Outcome::Conflict(config_conflict(id)));
        }
        if self.find(id)?.is_none() {
            return Ok(Outcome::NotFound);
        }
        self.sql.exec("DELETE FROM targets WHERE id = ?", vec![id.into()])?;
        self.sql.exec("DELETE FROM health WHERE target_id = ?", vec![id.into()])?;
        self.bump()?;
        Ok(Outcome::Done(Empty {}))
    }

    /// After a change committed: hands it over, then answers.
    async fn answer<M: Method>(&self, done: M::Reply) -> Result<Response> {
        self.settle().await?;
        reply::<M>(&done)
    }

    /// Hands over what waits, in order: a recovery's count of held changes
    /// (before the shards start draining them), the newest version to every
    /// shard, then the alerts. Whatever could not be done, the alarm
    /// retries shortly; it also comes back for health's next move.
    async fn settle(&self) -> Result<()> {
        let done = self.count_held().await? && self.hand_over().await? && self.hand_alerts().await?;
        let now = now_ms();
        let retry = (!done || self.alerts_waiting()?).then_some(now + RETRY_MS);
        let next = match (retry, self.next_tick()?) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = next {
            self.state.storage().set_alarm((at - now).max(0)).await?;
        }
        Ok(())
    }

    /// Gives every shard of every layout the newest version, unless all
    /// hold it already; false if one could not take it.
    async fn hand_over(&self) -> Result<bool> {
        let rows: Vec<VersionRow> =
            self.sql.exec("SELECT version, handed FROM versions WHERE id = 1", None)?.to_array()?;
        let Some(v) = rows.first() else { return Ok(true) };
        if v.version == 0 {
            return Ok(true);
        }
        let config = Config::from_env(&self.env);
        let Ok(shards) = ShardClient::open(&self.env, &config).await else { return Ok(false) };
        let reached: Vec<CountRow> =
            self.sql.exec("SELECT shards AS count FROM handed_shards WHERE id = 1", None)?.to_array()?;
        let reached = reached.first().map_or(0, |r| r.count);
        if v.handed >= v.version && reached >= i64::from(shards.count()) {
            return Ok(true);
        }
        let snapshot = TargetSnapshot { version: v.version, targets: self.records()?, states: self.states()? };
        let handed = shards.call_all::<ledger::Targets>(&snapshot).await.is_ok();
        if handed {
            self.txn.atomically(|| {
                self.sql
                    .exec("UPDATE versions SET handed = MAX(handed, ?) WHERE id = 1", vec![snapshot.version.into()])?;
                self.sql.exec(
                    "INSERT INTO handed_shards (id, shards) VALUES (1, ?)
                     ON CONFLICT (id) DO UPDATE SET shards = excluded.shards",
                    vec![i64::from(shards.count()).into()],
                )?;
                Ok(())
            })?;
        } else {
            crate::log::log_warn!("targets: version {} not yet held by every shard (retrying)", snapshot.version);
        }
        Ok(handed)
    }
}

#[derive(Deserialize)]
struct CountRow {
    count: i64,
}

/// Calls method `M` of the registry.
pub async fn registry<M: Method<Object = registry::Object>>(
    env: &Env,
    request: &M::Request,
) -> std::result::Result<M::Reply, bw_ledger_core::ApiError> {
    call::<M>(env, registry::NAME, request).await
}
