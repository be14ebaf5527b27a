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

use bw_ledger_core::optout::{
    changed_doc, keyed_hash, Action, CheckReply, CheckRequest, Counts, HistoryEntry, ListPage, ListQuery,
    OperatorChange, OptOut, Reason, RecordRequest, Recorded, Scope, Signal, State as OptState, ACCOUNT_WIDE,
    KIND_OPTOUT, REPLY_QUIET_MS,
};
use bw_ledger_core::time::format_rfc3339_ms;
use bw_ledger_core::wire::{ledger, opt_outs, Method, QueuedChange};
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use crate::config::{Config, OPT_OUTS};
use crate::object_call::{call, reply, request};
use crate::objects::transaction::Transactions;
use crate::shard_client::ShardClient;

/// The one book's object name.
pub const BOOK_NAME: &str = "opt-outs";
/// Entries per `GET /optouts` page.
const PAGE: i64 = 100;

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
struct OptOutRow {
    subject: String,
    scope_number: String,
    number: Option<String>,
    reason: String,
    message_id: Option<String>,
    note: Option<String>,
    changed_ms: i64,
}

impl OptOutRow {
    fn view(self) -> OptOut {
        let (scope, scope_number) = if self.scope_number == ACCOUNT_WIDE {
            (Scope::Account, None)
        } else {
            (Scope::Number, Some(self.scope_number))
        };
        OptOut {
            number: self.number,
            number_hash: self.subject,
            scope,
            scope_number,
            reason: Reason::parse(&self.reason).unwrap_or(Reason::Operator),
            message_id: self.message_id,
            note: self.note,
            time: format_rfc3339_ms(self.changed_ms),
        }
    }
}

#[derive(Deserialize)]
struct HistoryRow {
    state: String,
    subject: String,
    scope_number: String,
    number: Option<String>,
    reason: String,
    message_id: Option<String>,
    note: Option<String>,
    changed_ms: i64,
}

impl HistoryRow {
    fn entry(self) -> HistoryEntry {
        let state = OptState::parse(&self.state).unwrap_or(OptState::OptedOut);
        let row = OptOutRow {
            subject: self.subject,
            scope_number: self.scope_number,
            number: self.number,
            reason: self.reason,
            message_id: self.message_id,
            note: self.note,
            changed_ms: self.changed_ms,
        };
        HistoryEntry { state, opt_out: row.view() }
    }
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

#[derive(Deserialize)]
struct CountRow {
    scope: String,
    n: i64,
}

/// One change to record: who, where, what, why.
#[derive(Clone, Copy)]
struct Change<'a> {
    subject: &'a str,
    number: &'a str,
    scope_number: &'a str,
    reason: Reason,
    message_id: Option<&'a str>,
    note: Option<&'a str>,
    now: i64,
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
                getrandom::fill(&mut bytes).map_err(|e| worker::Error::RustError(format!("no randomness: {e}")))?;
                let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                self.sql.exec("INSERT INTO book_key (id, key) VALUES (1, ?)", vec![key.clone().into()])?;
                key
            }
        };
        let key: std::rc::Rc<[u8]> = key.into_bytes().into();
        *self.key.borrow_mut() = Some(key.clone());
        Ok(key)
    }

    fn subject(&self, key: &[u8], number: &str) -> String {
        keyed_hash(key, number)
    }

    /// Records a callback's signals, each event once; answers how many
    /// changed anything. Confirmations and forwards are queued in the same
    /// transaction, for the alarm.
    fn record(&self, req: &RecordRequest) -> Result<Recorded> {
        let key = self.key()?;
        let mut changed = 0;
        for s in &req.signals {
            let fresh = self.sql.exec(
                "INSERT INTO seen (event_ref, at_ms) VALUES (?, ?) ON CONFLICT DO NOTHING",
                vec![s.event_ref.clone().into(), req.now_ms.into()],
            )?;
            if fresh.rows_written() == 0 {
                continue;
            }
            let subject = self.subject(&key, &s.number);
            let change = Change {
                subject: &subject,
                number: &s.number,
                scope_number: &s.scope_number,
                reason: s.reason,
                message_id: Some(&s.message_id),
                note: None,
                now: req.now_ms,
            };
            let did = match s.action {
                Action::OptOut => self.opt_out(&change)?,
                Action::OptIn => self.opt_in(&change, false)?,
            };
            if did {
                changed += 1;
                if s.action == Action::OptOut && s.reason == Reason::Keyword && req.reply {
                    self.queue_reply(&subject, s, req.now_ms)?;
                }
            }
        }
        Ok(Recorded { changed })
    }

    /// One confirmation per opt-out, none for a second one within 24 hours.
    fn queue_reply(&self, subject: &str, s: &Signal, now: i64) -> Result<()> {
        let recent = self.sql.exec(
            "INSERT INTO replies (subject, last_ms) VALUES (?, ?)
             ON CONFLICT (subject) DO UPDATE SET last_ms = excluded.last_ms WHERE last_ms < ?",
            vec![subject.into(), now.into(), (now - REPLY_QUIET_MS).into()],
        )?;
        if recent.rows_written() > 0 {
            self.sql.exec(
                "INSERT INTO pending_replies (to_number, from_number) VALUES (?, ?)",
                vec![s.number.clone().into(), s.our_number.clone().into()],
            )?;
        }
        Ok(())
    }

    /// Records an opt-out unless one is already in force for this scope.
    fn opt_out(&self, c: &Change) -> Result<bool> {
        let inserted = self.sql.exec(
            "INSERT INTO optouts (subject, scope_number, number, reason, message_id, note, changed_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            vec![
                c.subject.into(),
                c.scope_number.into(),
                c.number.into(),
                c.reason.as_str().into(),
                c.message_id.map(str::to_owned).into(),
                c.note.map(str::to_owned).into(),
                c.now.into(),
            ],
        )?;
        if inserted.rows_written() == 0 {
            return Ok(false);
        }
        self.log(c, OptState::OptedOut)?;
        Ok(true)
    }

    /// Lifts the opt-out of this scope. A keyword opt-in lifts what a
    /// keyword or the carrier set, never what the operator recorded;
    /// the operator lifts any.
    fn opt_in(&self, c: &Change, by_operator: bool) -> Result<bool> {
        let lifted = self.sql.exec(
            "DELETE FROM optouts WHERE subject = ? AND scope_number = ? AND (? OR reason != ?)",
            vec![
                c.subject.into(),
                c.scope_number.into(),
                i64::from(by_operator).into(),
                Reason::Operator.as_str().into(),
            ],
        )?;
        if lifted.rows_written() == 0 {
            return Ok(false);
        }
        self.log(c, OptState::OptedIn)?;
        Ok(true)
    }

    /// The audit row and the `optout.changed` forward of a change.
    fn log(&self, c: &Change, state: OptState) -> Result<()> {
        let rows: Vec<SeqRow> = self
            .sql
            .exec(
                "INSERT INTO history (subject, number, scope_number, state, reason, message_id, note, changed_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                vec![
                    c.subject.into(),
                    c.number.into(),
                    c.scope_number.into(),
                    state.as_str().into(),
                    c.reason.as_str().into(),
                    c.message_id.map(str::to_owned).into(),
                    c.note.map(str::to_owned).into(),
                    c.now.into(),
                ],
            )?
            .to_array()?;
        let seq = rows.first().map_or(0, |r| r.seq);
        let entry = HistoryEntry {
            state,
            opt_out: OptOutRow {
                subject: c.subject.to_owned(),
                scope_number: c.scope_number.to_owned(),
                number: Some(c.number.to_owned()),
                reason: c.reason.as_str().to_owned(),
                message_id: c.message_id.map(str::to_owned),
                note: c.note.map(str::to_owned),
                changed_ms: c.now,
            }
            .view(),
        };
        let webhook_id = format!("msg_optout_{}_{seq}", &c.subject[..16]);
        self.sql.exec(
            "INSERT INTO pending_forwards (seq, webhook_id, subject, doc) VALUES (?, ?, ?, ?)",
            vec![
                seq.into(),
                webhook_id.clone().into(),
                c.subject.into(),
                changed_doc(&entry, &webhook_id).to_string().into(),
            ],
        )?;
        Ok(())
    }

    fn check(&self, q: &CheckRequest) -> Result<CheckReply> {
        let key = self.key()?;
        let mut opted_out = Vec::new();
        for n in &q.to {
            let found: Vec<serde::de::IgnoredAny> = self
                .sql
                .exec(
                    "SELECT 1 AS x FROM optouts WHERE subject = ? AND scope_number IN (?, ?)",
                    vec![self.subject(&key, n).into(), ACCOUNT_WIDE.into(), q.from.clone().into()],
                )?
                .to_array()?;
            if !found.is_empty() {
                opted_out.push(n.clone());
            }
        }
        Ok(CheckReply { opted_out })
    }

    /// An operator's opt-out (account-wide) or lift; `None` when there was
    /// nothing to change.
    fn operator(&self, op: &OperatorChange) -> Result<Option<HistoryEntry>> {
        let key = self.key()?;
        let subject = self.subject(&key, &op.number);
        let c = Change {
            subject: &subject,
            number: &op.number,
            scope_number: ACCOUNT_WIDE,
            reason: Reason::Operator,
            message_id: None,
            note: Some(&op.note),
            now: op.now_ms,
        };
        let did = match op.action {
            Action::OptOut => self.opt_out(&c)?,
            // A lift by hand lifts every scope of the number.
            Action::OptIn => {
                let scopes: Vec<ScopeRow> = self
                    .sql
                    .exec("SELECT scope_number FROM optouts WHERE subject = ?", vec![subject.clone().into()])?
                    .to_array()?;
                let mut any = false;
                for s in scopes {
                    any |= self.opt_in(&Change { scope_number: &s.scope_number, ..c }, true)?;
                }
                any
            }
        };
        if !did {
            return Ok(None);
        }
        Ok(self.history(&op.number)?.pop())
    }

    fn list(&self, q: &ListQuery) -> Result<ListPage> {
        let key = self.key()?;
        let subject = q.number.as_deref().map(|n| self.subject(&key, n));
        let after = q.cursor.clone().unwrap_or_default();
        let rows: Vec<OptOutRow> = self
            .sql
            .exec(
                "SELECT subject, scope_number, number, reason, message_id, note, changed_ms FROM optouts
                 WHERE (? IS NULL OR subject = ?) AND subject || '|' || scope_number > ?
                 ORDER BY subject, scope_number LIMIT ?",
                vec![subject.clone().into(), subject.into(), after.into(), PAGE.into()],
            )?
            .to_array()?;
        let next_cursor =
            (rows.len() as i64 >= PAGE).then(|| rows.last().map(|r| format!("{}|{}", r.subject, r.scope_number)));
        Ok(ListPage { optouts: rows.into_iter().map(OptOutRow::view).collect(), next_cursor: next_cursor.flatten() })
    }

    fn history(&self, number: &str) -> Result<Vec<HistoryEntry>> {
        let key = self.key()?;
        let rows: Vec<HistoryRow> = self
            .sql
            .exec(
                "SELECT state, subject, scope_number, number, reason, message_id, note, changed_ms FROM history
                 WHERE subject = ? ORDER BY seq",
                vec![self.subject(&key, number).into()],
            )?
            .to_array()?;
        Ok(rows.into_iter().map(HistoryRow::entry).collect())
    }

    /// Erasure: the number goes, its suppression stays (as its hash).
    fn erase(&self, number: &str) -> Result<u32> {
        let key = self.key()?;
        let subject = self.subject(&key, number);
        let kept = self.sql.exec("UPDATE optouts SET number = NULL WHERE subject = ?", vec![subject.clone().into()])?;
        self.sql.exec("UPDATE history SET number = NULL WHERE subject = ?", vec![subject.clone().into()])?;
        self.sql.exec("DELETE FROM pending_replies WHERE to_number = ?", vec![number.into()])?;
        Ok(kept.rows_written() as u32)
    }

    fn counts(&self) -> Result<Counts> {
        self.key()?;
        let rows: Vec<CountRow> = self
            .sql
            .exec(
                "SELECT CASE WHEN scope_number = ? THEN 'account' ELSE 'number' END AS scope, COUNT(*) AS n
                 FROM optouts GROUP BY 1",
                vec![ACCOUNT_WIDE.into()],
            )?
            .to_array()?;
        let mut c = Counts::default();
        for r in rows {
            match r.scope.as_str() {
                "account" => c.account = r.n as u64,
                _ => c.number = r.n as u64,
            }
        }
        Ok(c)
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

#[derive(Deserialize)]
struct SeqRow {
    seq: i64,
}

#[derive(Deserialize)]
struct ScopeRow {
    scope_number: String,
}

impl DurableObject for OptOutBook {
    fn new(state: State, env: Env) -> Self {
        let txn = match Transactions::of(&state) {
            Ok(txn) => txn,
            Err(e) => panic!("OptOutBook without storage: {e}"),
        };
        Self { sql: state.storage().sql(), state, env, txn, key: std::cell::RefCell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        self.key()?;
        match req.path().as_str() {
            opt_outs::Record::PATH => {
                let q = request::<opt_outs::Record>(&mut req).await?;
                // No await between the reads and the writes: one decision at a time.
                let done = self.txn.atomically(|| self.record(&q))?;
                self.arm_if_pending().await?;
                reply::<opt_outs::Record>(&done)
            }
            opt_outs::Check::PATH => {
                let q = request::<opt_outs::Check>(&mut req).await?;
                reply::<opt_outs::Check>(&self.check(&q)?)
            }
            opt_outs::Operator::PATH => {
                let q = request::<opt_outs::Operator>(&mut req).await?;
                let done = self.txn.atomically(|| self.operator(&q))?;
                self.arm_if_pending().await?;
                reply::<opt_outs::Operator>(&done)
            }
            opt_outs::List::PATH => {
                let q = request::<opt_outs::List>(&mut req).await?;
                reply::<opt_outs::List>(&self.list(&q)?)
            }
            opt_outs::History::PATH => {
                let q = request::<opt_outs::History>(&mut req).await?;
                reply::<opt_outs::History>(&self.history(&q.number)?)
            }
            opt_outs::Erase::PATH => {
                let q = request::<opt_outs::Erase>(&mut req).await?;
                let kept = self.txn.atomically(|| self.erase(&q.number))?;
                reply::<opt_outs::Erase>(&kept)
            }
            opt_outs::Counts::PATH => reply::<opt_outs::Counts>(&self.counts()?),
            _ => Response::error("unknown opt-out book method", 404),
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
            crate::routes::send::send_confirmation(&self.env, &r.to_number, &r.from_number).await;
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
        let shards =
            ShardClient::new(&self.env, config.shards().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        for f in forwards {
            let doc: serde_json::Value = serde_json::from_str(&f.doc).map_err(|e| e.to_string())?;
            let change = QueuedChange {
                webhook_id: f.webhook_id.clone(),
                kind: KIND_OPTOUT.to_owned(),
                message_id: format!("optout:{}", f.subject),
                doc,
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
pub async fn book<M: Method>(
    env: &Env,
    request: &M::Request,
) -> std::result::Result<M::Reply, bw_ledger_core::ApiError> {
    let namespace = env.durable_object(OPT_OUTS).map_err(|e| {
        crate::log::log_error!("config: Durable Object binding {OPT_OUTS}: {e}");
        bw_ledger_core::ApiError::NotConfigured(OPT_OUTS)
    })?;
    call::<M, _>(&namespace, BOOK_NAME, request).await.map_err(|e| {
        crate::log::log_error!("opt-out book {}: {e}", M::PATH);
        bw_ledger_core::ApiError::StorageUnavailable
    })
}
