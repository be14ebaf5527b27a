//! `OptOutBook`: the one Durable Object that knows who may not be texted
//! (`bw_ledger_core::optout`).
//!
//! Why one object: the send proxy asks it before every send, and a STOP is
//! stored here before its callback is answered, so an opt-out stored before
//! a send's check is always honoured (the object decides one request at a
//! time). A send costs one round trip here; callbacks that carry no
//! keyword and no error 4775 never call it.
//!
//! Numbers are keyed by an HMAC of the number under a random key this
//! object makes once and never shows, so erasing a number removes it in
//! clear and keeps its suppression. Every change goes into an audit trail,
//! and into `pending_forwards` in the same transaction; the alarm relays
//! those to a ledger shard's outbox (`ledger::QueueChanges`, idempotent by
//! webhook id) and sends the `OPT_OUT_REPLY` confirmations.
//!
//! `changes`: the writes (signals, the operator's changes, erasure);
//! `reads`: the send check, the list, history and counts.

mod changes;
mod reads;

use bw_ledger_core::change::ChangeKind;
use bw_ledger_core::identity::hex;
use bw_ledger_core::optout::keyed_hash;
use bw_ledger_core::wire::{ledger, opt_outs, Method, QueuedChange};
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use crate::config::Config;
use crate::object_call::{call, reply, request};
use crate::objects::transaction::Transactions;
use crate::shard_client::ShardClient;

/// The one book's object name.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS book_key (id INTEGER PRIMARY KEY CHECK (id = 1), key TEXT NOT NULL)",
    // In force: one row per (person, scope), `number` cleared by erasure.
    "CREATE TABLE IF NOT EXISTS optouts (subject TEXT NOT NULL, scope_number TEXT NOT NULL, number TEXT,
       reason TEXT NOT NULL, message_id TEXT, note TEXT, changed_ms INTEGER NOT NULL,
       PRIMARY KEY (subject, scope_number)) WITHOUT ROWID",
    // The audit trail: every change, lifted ones included.
    "CREATE TABLE IF NOT EXISTS history (seq INTEGER PRIMARY KEY, subject TEXT NOT NULL, number TEXT,
       scope_number TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL, message_id TEXT, note TEXT,
       changed_ms INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS history_by_subject ON history (subject, seq)",
    // Events already counted: a retried callback records nothing twice.
    "CREATE TABLE IF NOT EXISTS seen (event_ref TEXT PRIMARY KEY, at_ms INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS seen_by_time ON seen (at_ms)",
    // The last confirmation per person, and those still to send.
    "CREATE TABLE IF NOT EXISTS replies (subject TEXT PRIMARY KEY, last_ms INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS pending_replies (seq INTEGER PRIMARY KEY, to_number TEXT NOT NULL,
       from_number TEXT NOT NULL)",
    // Changes to forward, until a ledger shard's outbox holds them.
    "CREATE TABLE IF NOT EXISTS pending_forwards (seq INTEGER PRIMARY KEY, webhook_id TEXT NOT NULL,
       subject TEXT NOT NULL, doc TEXT NOT NULL)",
];

#[durable_object]
pub struct OptOutBook {
    state: State,
    env: Env,
    sql: SqlStorage,
    txn: Transactions,
    /// The hashing key, read (or made) once per instance, before any
    /// transaction: a key made inside one that rolls back would be lost.
    key: std::cell::RefCell<Option<std::rc::Rc<[u8]>>>,
}

#[derive(Deserialize)]
struct KeyRow {
    key: String,
}

#[derive(Deserialize)]
struct ReplyRow {
    seq: i64,
    to_number: String,
    from_number: String,
}

#[derive(Deserialize)]
struct ForwardRow {
    webhook_id: String,
    subject: String,
    doc: String,
}

impl OptOutBook {
    /// The tables, and the hashing key (made once, never shown). Called
    /// first by every method, outside any transaction.
    fn key(&self) -> Result<std::rc::Rc<[u8]>> {
        if let Some(key) = self.key.borrow().as_ref() {
            return Ok(key.clone());
        }
        for stmt in SCHEMA {
            self.sql.exec(stmt, None)?;
        }
        let rows: Vec<KeyRow> = self.sql.exec("SELECT key FROM book_key WHERE id = 1", None)?.to_array()?;
        let key = match rows.first() {
            Some(r) => r.key.clone(),
            None => {
                let mut bytes = [0u8; 32];
                crate::clock::random(&mut bytes)?;
                let key = hex(&bytes);
                self.sql.exec("INSERT INTO book_key (id, key) VALUES (1, ?)", vec![key.clone().into()])?;
                key
            }
        };
        let key: std::rc::Rc<[u8]> = key.into_bytes().into();
        *self.key.borrow_mut() = Some(key.clone());
        Ok(key)
    }

    /// The book's key for `number` (`optout::keyed_hash`).
    fn subject(&self, number: &str) -> Result<String> {
        Ok(keyed_hash(&self.key()?, number))
    }

    /// Arms the alarm when confirmations or forwards wait.
    async fn arm_if_pending(&self) -> Result<()> {
        let waiting: Vec<serde::de::IgnoredAny> = self
            .sql
            .exec("SELECT 1 AS x FROM pending_replies UNION ALL SELECT 1 FROM pending_forwards LIMIT 1", None)?
            .to_array()?;
        if !waiting.is_empty() {
            self.state.storage().set_alarm(0).await?;
        }
        Ok(())
    }
}

impl DurableObject for OptOutBook {
    fn new(state: State, env: Env) -> Self {
        let txn = Transactions::of_object(&state, "OptOutBook");
        Self { sql: state.storage().sql(), state, env, txn, key: std::cell::RefCell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        self.key()?;
        let Some(call) = opt_outs::Call::from_path(&req.path()) else {
            return Response::error("unknown opt-out book method", 404);
        };
        use opt_outs::Call as C;
        match call {
            C::Record => {
                let q = request::<opt_outs::Record>(&mut req).await?;
                // No await between the reads and the writes: one decision at a time.
                let done = self.txn.atomically(|| self.record(&q))?;
                self.arm_if_pending().await?;
                reply::<opt_outs::Record>(&done)
            }
            C::Check => {
                let q = request::<opt_outs::Check>(&mut req).await?;
                reply::<opt_outs::Check>(&self.check(&q)?)
            }
            C::Operator => {
                let q = request::<opt_outs::Operator>(&mut req).await?;
                let done = self.txn.atomically(|| self.operator(&q))?;
                self.arm_if_pending().await?;
                reply::<opt_outs::Operator>(&done)
            }
            C::List => {
                let q = request::<opt_outs::List>(&mut req).await?;
                reply::<opt_outs::List>(&self.list(&q)?)
            }
            C::History => {
                let q = request::<opt_outs::History>(&mut req).await?;
                reply::<opt_outs::History>(&self.history(&q.number)?)
            }
            C::Erase => {
                let q = request::<opt_outs::Erase>(&mut req).await?;
                let kept = self.txn.atomically(|| self.erase(&q.number))?;
                reply::<opt_outs::Erase>(&kept)
            }
            C::Counts => reply::<opt_outs::Counts>(&self.counts()?),
        }
    }

    /// Relays pending forwards to a ledger shard's outbox, then sends the
    /// pending confirmations. A confirmation is taken off the queue before
    /// it is sent: a crash mid-send loses it rather than texting twice.
    async fn alarm(&self) -> Result<Response> {
        self.key()?;
        let forwards: Vec<ForwardRow> = self
            .sql
            .exec("SELECT webhook_id, subject, doc FROM pending_forwards ORDER BY seq LIMIT 100", None)?
            .to_array()?;
        if !forwards.is_empty() {
            if let Err(e) = self.relay(&forwards).await {
                crate::log::log_error!("opt-outs: forwards not yet queued (next alarm retries): {e}");
                self.state.storage().set_alarm(5_000).await?;
                return Response::empty();
            }
        }
        let replies: Vec<ReplyRow> =
            self.sql.exec("DELETE FROM pending_replies RETURNING seq, to_number, from_number", None)?.to_array()?;
        for r in replies {
            let _ = r.seq;
            crate::accepted::send_confirmation(&self.env, &r.to_number, &r.from_number).await;
        }
        self.arm_if_pending().await?;
        Response::empty()
    }
}

impl OptOutBook {
    /// Hands `forwards` to the ledger shard of each person (by hash, so a
    /// person's changes keep their order), then forgets them.
    async fn relay(&self, forwards: &[ForwardRow]) -> std::result::Result<(), String> {
        let config = Config::from_env(&self.env);
        let shards = ShardClient::open(&self.env, &config).await.map_err(|e| e.to_string())?;
        for f in forwards {
            let doc: serde_json::Value = serde_json::from_str(&f.doc).map_err(|e| e.to_string())?;
            let change = QueuedChange {
                webhook_id: f.webhook_id.clone(),
                kind: ChangeKind::OptOut,
                message_id: format!("optout:{}", f.subject),
                doc,
                target: None,
            };
            let shard = shards.shard_of(&change.message_id);
            shards.call::<ledger::QueueChanges>(shard, &vec![change]).await.map_err(|e| e.to_string())?;
            self.sql
                .exec("DELETE FROM pending_forwards WHERE webhook_id = ?", vec![f.webhook_id.clone().into()])
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Calls method `M` of the book.
pub async fn book<M: Method<Object = opt_outs::Object>>(
    env: &Env,
    request: &M::Request,
) -> std::result::Result<M::Reply, bw_ledger_core::ApiError> {
    call::<M>(env, opt_outs::NAME, request).await
}
