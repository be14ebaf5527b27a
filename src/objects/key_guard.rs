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
//! Cost: one row written per decision (the key's one state row).

use std::cell::RefCell;

use bw_ledger_core::client::ClientKey;
use bw_ledger_core::identity::sha256_hex;
use bw_ledger_core::limits::{limited, Ask, GuardRequest, KeyState, Verdict};
use bw_ledger_core::wire::{key_guard, Empty, Method};
use bw_ledger_core::ApiError;
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use crate::clock::now_ms;
use crate::config::KEY_GUARD;
use crate::object_call::{call, reply, request};

#[durable_object]
pub struct KeyGuard {
    sql: SqlStorage,
    /// The stored state, read once per object instance.
    state: RefCell<Option<KeyState>>,
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
        Self { sql: state.storage().sql(), state: RefCell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.path().as_str() {
            key_guard::Admit::PATH => {
                let GuardRequest { ask, now_ms } = request::<key_guard::Admit>(&mut req).await?;
                // No await from here to the reply: decisions are serial.
                let mut state = self.load()?;
                let verdict = state.admit(&ask, now_ms);
                self.store(state)?;
                reply::<key_guard::Admit>(&verdict)
            }
            key_guard::Usage::PATH => reply::<key_guard::Usage>(&self.load()?),
            _ => Response::error("unknown key guard method", 404),
        }
    }
}

/// The guard's object name: a digest, since a key id may hold any
/// character and the name travels in a URL.
fn object_name(key_id: &str) -> String {
    format!("key-{}", &sha256_hex(key_id.as_bytes())[..32])
}

/// Asks the guard of key `key_id`. A guard that cannot answer refuses
/// (503, retryable): limits fail closed.
pub async fn admit(env: &worker::Env, key_id: &str, ask: Ask) -> std::result::Result<Verdict, ApiError> {
    let namespace = env.durable_object(KEY_GUARD).map_err(|e| {
        crate::log::log_error!("config: Durable Object binding {KEY_GUARD}: {e}");
        ApiError::NotConfigured(KEY_GUARD)
    })?;
    let request = GuardRequest { ask, now_ms: now_ms() };
    call::<key_guard::Admit, _>(&namespace, &object_name(key_id), &request).await.map_err(|e| {
        crate::log::log_error!("key guard {}: {e}", key_guard::Admit::PATH);
        ApiError::StorageUnavailable
    })
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
    let namespace = env.durable_object(KEY_GUARD).map_err(|_| ApiError::NotConfigured(KEY_GUARD))?;
    call::<key_guard::Usage, _>(&namespace, &object_name(key_id), &Empty {}).await.map_err(|e| {
        crate::log::log_error!("key guard {}: {e}", key_guard::Usage::PATH);
        ApiError::StorageUnavailable
    })
}
