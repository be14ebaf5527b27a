//! `KeyGuard`: one Durable Object per client key, holding the key's abuse
//! counters (`bw_ledger_core::limits`).
//!
//! Why an object per key: every isolate that sees the key calls the same
//! object, which decides one request at a time from state it holds in
//! memory and stores before answering, so a quota of 10 admits exactly 10
//! however many sends race (Cloudflare's Rate Limiting binding counts per
//! location and approximately, and has no daily window). Keys do not share
//! an object, so one busy key never queues another's sends, and the token
//! broker stays a cache that may lose its state.
//!
//! It also keeps the key's `Idempotency-Key` records (`objects::idempotency`),
//! so a keyed send is claimed and admitted in one call (`Claim`) and
//! finished, with any refund, in another (`Finish`), and the ledger shards
//! see only the send's record.
//!
//! Cost: one row written per decision (the key's one state row), and one
//! per idempotency record written.

use std::cell::{Cell, RefCell};

use bw_ledger_core::client::ClientKey;
use bw_ledger_core::idempotency::IDEMPOTENCY_TTL_MS;
use bw_ledger_core::idempotency::{reads_through, BeginDecision, ClaimReply, GuardClaim, GuardFinish, IdemFinish};
use bw_ledger_core::lifecycle::{number_needle, EraseReply, EraseRequest, SweepReply, SweepRequest};
use bw_ledger_core::limits::{limited, Ask, GuardRequest, KeyState, Verdict};
use bw_ledger_core::wire::{key_guard, Empty, Method};
use bw_ledger_core::ApiError;
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use crate::clock::now_ms;
use crate::object_call::{call, reply, request};
use crate::objects::idempotency;
use crate::objects::transaction::Transactions;

#[cfg(feature = "test-hooks")]
pub(crate) mod test_methods;

#[durable_object]
pub struct KeyGuard {
    sql: SqlStorage,
    /// Writes that must be all or nothing (a claim and its admission).
    txn: Transactions,
    /// The stored state, read once per object instance.
    state: RefCell<Option<KeyState>>,
    /// When this guard started keeping idempotency records (read once),
    /// and when this instance last pruned expired ones.
    records_since: Cell<Option<i64>>,
    pruned_at: Cell<i64>,
}

#[derive(Deserialize)]
struct SinceRow {
    since_ms: i64,
}

/// Expired idempotency records are deleted at most this often per instance:
/// a scan of the key's records, not one per send.
const PRUNE_EVERY_MS: i64 = 3_600_000;

#[derive(Deserialize)]
struct KeyIdRow {
    key_id: String,
}

#[derive(Deserialize)]
struct StateRow {
    state: String,
}

impl KeyGuard {
    /// The key's state; the first call creates the table and reads it.
    fn load(&self) -> Result<KeyState> {
        if let Some(state) = self.state.borrow().as_ref() {
            return Ok(state.clone());
        }
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS key_state (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL)",
            None,
        )?;
        let rows: Vec<StateRow> = self.sql.exec("SELECT state FROM key_state WHERE id = 1", None)?.to_array()?;
        let state = match rows.first() {
            Some(row) => serde_json::from_str(&row.state)?,
            None => KeyState::default(),
        };
        *self.state.borrow_mut() = Some(state.clone());
        Ok(state)
    }

    /// Creates the idempotency table on first use and answers since when
    /// the guard keeps records; prunes expired ones now and then.
    fn records(&self, now: i64) -> Result<i64> {
        let since = match self.records_since.get() {
            Some(since) => since,
            None => {
                self.sql.exec(idempotency::CREATE_TABLE, None)?;
                self.sql.exec(
                    "CREATE TABLE IF NOT EXISTS records_since (id INTEGER PRIMARY KEY CHECK (id = 1), since_ms INTEGER NOT NULL)",
                    None,
                )?;
                self.sql.exec(
                    "INSERT INTO records_since (id, since_ms) VALUES (1, ?) ON CONFLICT DO NOTHING",
                    vec![now.into()],
                )?;
                let rows: Vec<SinceRow> = self.sql.exec("SELECT since_ms FROM records_since", None)?.to_array()?;
                let since = rows.first().map_or(now, |r| r.since_ms);
                self.records_since.set(Some(since));
                since
            }
        };
        if now - self.pruned_at.get() >= PRUNE_EVERY_MS {
            self.sql.exec("DELETE FROM idempotency WHERE created_ms < ?", vec![(now - IDEMPOTENCY_TTL_MS).into()])?;
            self.pruned_at.set(now);
        }
        Ok(since)
    }

    /// Claims the key and, if it is ours, admits the send; a refused send
    /// releases the claim in the same step.
    fn claim(&self, claim: &GuardClaim) -> Result<ClaimReply> {
        let now = claim.begin.now_ms;
        let since = self.records(now)?;
        let decision = idempotency::begin(&self.sql, &claim.begin)?;
        let mut verdict = None;
        if decision == BeginDecision::Proceed {
            let mut state = self.load()?;
            let v = state.admit(&claim.ask, now);
            self.store(state)?;
            if v != Verdict::Admit {
                let release = IdemFinish { scope_key: claim.begin.scope_key.clone(), response: None };
                idempotency::finish(&self.sql, &release)?;
            }
            verdict = Some(v);
        }
        Ok(ClaimReply { decision, verdict, read_through: reads_through(since, now) })
    }

    fn finish(&self, f: &GuardFinish) -> Result<()> {
        self.records(f.now_ms)?;
        idempotency::finish(&self.sql, &f.finish)?;
        if f.refund > 0 {
            let mut state = self.load()?;
            state.admit(&Ask::Refund { recipients: f.refund }, f.now_ms);
            self.store(state)?;
        }
        Ok(())
    }

    /// The registry's table (only the registry guard has one).
    fn registry(&self) -> Result<()> {
        self.sql.exec(
            "CREATE TABLE IF NOT EXISTS guards (key_id TEXT PRIMARY KEY, registered_ms INTEGER NOT NULL) WITHOUT ROWID",
            None,
        )?;
        Ok(())
    }

    /// After a rolled-back write: what this instance holds in memory may be
    /// ahead of the storage (a state, a table created), so read it again.
    fn forget(&self) {
        *self.state.borrow_mut() = None;
        self.records_since.set(None);
    }

    fn store(&self, state: KeyState) -> Result<()> {
        self.sql.exec(
            "INSERT INTO key_state (id, state) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            vec![serde_json::to_string(&state)?.into()],
        )?;
        *self.state.borrow_mut() = Some(state);
        Ok(())
    }
}

impl DurableObject for KeyGuard {
    fn new(state: State, _env: Env) -> Self {
        let txn = Transactions::of_object(&state, "KeyGuard");
        Self {
            sql: state.storage().sql(),
            txn,
            state: RefCell::new(None),
            records_since: Cell::new(None),
            pruned_at: Cell::new(i64::MIN / 2),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let Some(call) = key_guard::Call::from_path(&path) else {
            #[cfg(feature = "test-hooks")]
            if let Some(call) = test_methods::Call::from_path(&path) {
                self.records(now_ms())?;
                return test_methods::serve(&self.sql, call, req).await;
            }
            return Response::error("unknown key guard method", 404);
        };
        self.serve(call, &mut req).await
    }
}

impl KeyGuard {
    /// Every method of `bw_ledger_core::wire::key_guard`, one arm each.
    async fn serve(&self, call: key_guard::Call, req: &mut Request) -> Result<Response> {
        use key_guard::Call as C;
        match call {
            C::Admit => {
                let GuardRequest { ask, now_ms } = request::<key_guard::Admit>(req).await?;
                // No await from here to the reply: decisions are serial.
                let mut state = self.load()?;
                let verdict = state.admit(&ask, now_ms);
                self.store(state)?;
                reply::<key_guard::Admit>(&verdict)
            }
            C::Claim => {
                let claim = request::<key_guard::Claim>(req).await?;
                let answer = self.txn.atomically(|| self.claim(&claim));
                if answer.is_err() {
                    self.forget();
                }
                reply::<key_guard::Claim>(&answer?)
            }
            C::Finish => {
                let finish = request::<key_guard::Finish>(req).await?;
                let done = self.txn.atomically(|| self.finish(&finish));
                if done.is_err() {
                    self.forget();
                }
                done?;
                reply::<key_guard::Finish>(&Empty {})
            }
            C::Erase => {
                let q = request::<key_guard::Erase>(req).await?;
                self.records(q.now_ms)?;
                let gone = self.sql.exec(
                    "DELETE FROM idempotency WHERE instr(response, ?) > 0",
                    vec![number_needle(&q.number).into()],
                )?;
                let erased = gone.rows_written() as u32;
                reply::<key_guard::Erase>(&EraseReply { erased, quarantined: 0, more: false })
            }
            C::Sweep => {
                let q = request::<key_guard::Sweep>(req).await?;
                self.records(q.now_ms)?;
                // Saved answers live 24 hours, and no longer than retention.
                let expired = q.now_ms - IDEMPOTENCY_TTL_MS;
                let before = q.cutoff_ms.map_or(expired, |c| c.max(expired));
                let gone = self.sql.exec("DELETE FROM idempotency WHERE created_ms < ?", vec![before.into()])?;
                reply::<key_guard::Sweep>(&SweepReply { purged: gone.rows_written() as u32, more: false })
            }
            C::Usage => reply::<key_guard::Usage>(&self.load()?),
            C::Register => {
                let q = request::<key_guard::Register>(req).await?;
                self.registry()?;
                // Written once per key: a second registration writes nothing.
                self.sql.exec(
                    "INSERT INTO guards (key_id, registered_ms) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    vec![q.key_id.into(), now_ms().into()],
                )?;
                reply::<key_guard::Register>(&Empty {})
            }
            C::Registered => {
                self.registry()?;
                let rows: Vec<KeyIdRow> =
                    self.sql.exec("SELECT key_id FROM guards ORDER BY key_id", None)?.to_array()?;
                reply::<key_guard::Registered>(&rows.into_iter().map(|r| r.key_id).collect())
            }
        }
    }
}

/// Calls method `M` of key `key_id`'s guard. A guard that cannot answer
/// refuses (503, retryable): limits fail closed.
async fn guard<M: Method<Object = key_guard::Object>>(
    env: &worker::Env,
    key_id: &str,
    request: &M::Request,
) -> std::result::Result<M::Reply, ApiError> {
    call::<M>(env, &key_guard::name(key_id), request).await
}

/// Asks the guard of key `key_id` to admit, refuse or count.
pub async fn admit(env: &worker::Env, key_id: &str, ask: Ask) -> std::result::Result<Verdict, ApiError> {
    guard::<key_guard::Admit>(env, key_id, &GuardRequest { ask, now_ms: now_ms() }).await
}

/// Claims an idempotency key and admits its send, in one call.
pub async fn claim(env: &worker::Env, key_id: &str, claim: &GuardClaim) -> std::result::Result<ClaimReply, ApiError> {
    guard::<key_guard::Claim>(env, key_id, claim).await
}

/// Saves a keyed send's outcome (or releases its key), with any refund.
pub async fn finish(env: &worker::Env, key_id: &str, finish: &GuardFinish) -> std::result::Result<(), ApiError> {
    guard::<key_guard::Finish>(env, key_id, finish).await.map(|_| ())
}

thread_local! {
    /// Key ids this isolate has registered (`register`): one registry call
    /// per key per isolate.
    static REGISTERED: std::cell::RefCell<std::collections::HashSet<String>> = Default::default();
}

/// Registers key `key_id`'s guard before it may keep a saved answer, so
/// erasure and retention find it even after the key is renamed away from
/// `CLIENT_KEYS` (`guard_ids`). Fails closed: an unregistered guard must
/// not keep anything.
pub async fn register(env: &worker::Env, key_id: &str) -> std::result::Result<(), ApiError> {
    if REGISTERED.with(|r| r.borrow().contains(key_id)) {
        return Ok(());
    }
    let name = key_guard::GuardName { key_id: key_id.to_owned() };
    call::<key_guard::Register>(env, key_guard::REGISTRY_NAME, &name).await?;
    REGISTERED.with(|r| r.borrow_mut().insert(key_id.to_owned()));
    Ok(())
}

/// Every guard that may hold saved send answers: the configured keys' and
/// every one ever registered.
pub async fn guard_ids(env: &worker::Env, configured: &[ClientKey]) -> std::result::Result<Vec<String>, ApiError> {
    let mut ids = call::<key_guard::Registered>(env, key_guard::REGISTRY_NAME, &Empty {}).await?;
    ids.extend(configured.iter().map(|k| k.id.clone()));
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Retention on guard `key_id`: its saved answers past `cutoff` or their
/// 24 hours.
pub async fn sweep(env: &worker::Env, key_id: &str, q: &SweepRequest) -> std::result::Result<u32, ApiError> {
    guard::<key_guard::Sweep>(env, key_id, q).await.map(|r| r.purged)
}

/// Deletes the saved answers of key `key_id` that mention a number.
pub async fn erase(env: &worker::Env, key_id: &str, q: &EraseRequest) -> std::result::Result<u32, ApiError> {
    guard::<key_guard::Erase>(env, key_id, q).await.map(|r| r.erased)
}

/// Asks the guard of `key` to admit a send or a read: `Ok` when admitted,
/// else the 429 (or the 503 of a guard that cannot answer).
pub async fn enforce(env: &worker::Env, key: &ClientKey, ask: Ask) -> std::result::Result<(), ApiError> {
    match admit(env, &key.id, ask).await? {
        Verdict::Admit => Ok(()),
        Verdict::Refuse { reason, retry_after_s } => Err(limited(&key.id, &key.limits, reason, retry_after_s)),
    }
}

/// The counters of key `key_id`.
pub async fn usage(env: &worker::Env, key_id: &str) -> std::result::Result<KeyState, ApiError> {
    guard::<key_guard::Usage>(env, key_id, &Empty {}).await
}
