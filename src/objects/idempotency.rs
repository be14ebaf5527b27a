//! The send proxy's idempotency records over a SQLite `idempotency` table
//! (`scope_key`, `body_hash`, `created_ms`, `response`): kept by each client
//! key's guard, and read from the ledger shards that kept them before. The
//! decisions are `bw_ledger_core::idempotency`'s.

use bw_ledger_core::idempotency::{decide_begin, BeginDecision, IdemBegin, IdemFinish, IdempotencyRecord};
use serde::Deserialize;
use worker::{Result, SqlStorage};

/// The table, defined once for both objects that keep it. (Shards made by
/// builds before this kept a rowid table of the same columns; every
/// statement here reads either.)
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS idempotency (scope_key TEXT PRIMARY KEY,
    body_hash TEXT NOT NULL, created_ms INTEGER NOT NULL, response TEXT) WITHOUT ROWID";

#[derive(Deserialize)]
struct IdempotencyRow {
    body_hash: String,
    created_ms: i64,
    response: Option<String>,
}

/// The record of a key, expired or not.
pub fn peek(sql: &SqlStorage, scope_key: &str) -> Result<Option<IdempotencyRecord>> {
    let rows: Vec<IdempotencyRow> = sql
        .exec("SELECT body_hash, created_ms, response FROM idempotency WHERE scope_key = ?", vec![scope_key.into()])?
        .to_array()?;
    match rows.into_iter().next() {
        None => Ok(None),
        Some(r) => Ok(Some(IdempotencyRecord {
            body_hash: r.body_hash,
            created_ms: r.created_ms,
            response: r.response.as_deref().map(serde_json::from_str).transpose()?,
        })),
    }
}

/// Claims or reads an idempotency key. Atomic: no await between the read
/// and the write, so of concurrent duplicates exactly one gets `Proceed`.
pub fn begin(sql: &SqlStorage, begin: &IdemBegin) -> Result<BeginDecision> {
    let existing = peek(sql, &begin.scope_key)?;
    let decision = decide_begin(existing.as_ref(), &begin.body_hash, begin.now_ms);
    if decision == BeginDecision::Proceed {
        sql.exec(
            "INSERT INTO idempotency (scope_key, body_hash, created_ms, response) VALUES (?, ?, ?, NULL)
             ON CONFLICT (scope_key) DO UPDATE SET
               body_hash = excluded.body_hash, created_ms = excluded.created_ms, response = NULL",
            vec![begin.scope_key.clone().into(), begin.body_hash.clone().into(), begin.now_ms.into()],
        )?;
    }
    Ok(decision)
}

/// Saves the outcome for replay, or releases the key for a safe retry.
pub fn finish(sql: &SqlStorage, finish: &IdemFinish) -> Result<()> {
    match &finish.response {
        Some(resp) => sql.exec(
            "UPDATE idempotency SET response = ? WHERE scope_key = ?",
            vec![serde_json::to_string(resp)?.into(), finish.scope_key.clone().into()],
        )?,
        None => sql.exec("DELETE FROM idempotency WHERE scope_key = ?", vec![finish.scope_key.clone().into()])?,
    };
    Ok(())
}
