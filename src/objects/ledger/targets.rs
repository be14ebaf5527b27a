//! The targets this shard delivers to: those of `FORWARD_TARGETS`, read
//! when the instance starts, and the registry's API-made ones at the newest
//! version handed to this shard (`ledger::Targets`), kept in its own
//! storage (`api_targets`) so that they survive a restart.
//!
//! Handing over a version also settles the outbox rows it concerns, in the
//! same transaction: a deleted target's pending and paused rows become dead
//! letters (`DELETE /targets/{id}`), a disabled target's pending rows are
//! paused, and an enabled target's paused rows are pending again, with a
//! new retry window counted from then.

use std::cell::RefCell;
use std::rc::Rc;

use bw_ledger_core::forward::ForwardTarget;
use bw_ledger_core::outbox::{OutboxState, KEEP_PAUSED_MS};
use bw_ledger_core::targets::health::TargetState;
use bw_ledger_core::targets::seal::Sealer;
use bw_ledger_core::targets::{runtime, Target, TargetSnapshot};
use serde::Deserialize;
use worker::{Result, SqlStorage};

use super::rows::state;

/// Why a deleted target's pending rows are dead.
pub const DELETED: &str = "the target was deleted";

pub struct TargetBook {
    config: Vec<ForwardTarget>,
    alert: Option<Target>,
    sealer: Option<Sealer>,
    api: RefCell<TargetSnapshot>,
    all: RefCell<Rc<Vec<Target>>>,
}

#[derive(Deserialize)]
struct SnapshotRow {
    snapshot: String,
}

impl TargetBook {
    pub fn new(config: Vec<ForwardTarget>, alert: Option<Target>, sealer: Option<Sealer>) -> Self {
        let all = Rc::new(runtime(&config, alert.as_ref(), &TargetSnapshot::default(), sealer.as_ref()));
        Self { config, alert, sealer, api: RefCell::default(), all: RefCell::new(all) }
    }

    /// Every target, as of the newest version this shard holds.
    pub fn current(&self) -> Rc<Vec<Target>> {
        self.all.borrow().clone()
    }

    pub fn find(&self, id: &str) -> Option<Target> {
        self.all.borrow().iter().find(|t| t.id == id).cloned()
    }

    /// The ids of disabled targets.
    pub fn paused(&self) -> Vec<String> {
        self.current().iter().filter(|t| t.paused()).map(|t| t.id.clone()).collect()
    }

    /// Failing targets (their circuit breaker is open), and since when.
    pub fn failing(&self) -> Vec<(String, i64)> {
        self.current().iter().filter(|t| t.failing()).map(|t| (t.id.clone(), t.since_ms)).collect()
    }

    /// Reads the stored version (once per instance, after the schema).
    pub fn load(&self, sql: &SqlStorage) -> Result<()> {
        let rows: Vec<SnapshotRow> = sql.exec("SELECT snapshot FROM api_targets WHERE id = 1", None)?.to_array()?;
        if let Some(row) = rows.first() {
            self.adopt(serde_json::from_str(&row.snapshot)?);
        }
        Ok(())
    }

    /// Stores `snapshot` if it is newer than the one held, and settles the
    /// rows of deleted and resumed targets; run in a transaction, then
    /// [`TargetBook::adopt`] after it commits. Whether it was newer.
    pub fn store(&self, sql: &SqlStorage, snapshot: &TargetSnapshot, now: i64) -> Result<bool> {
        let held = self.api.borrow();
        if snapshot.version <= held.version {
            return Ok(false);
        }
        sql.exec(
            "INSERT INTO api_targets (id, version, snapshot) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, snapshot = excluded.snapshot",
            vec![snapshot.version.into(), serde_json::to_string(snapshot)?.into()],
        )?;
        let before = self.current();
        for old in &held.targets {
            let gone = !snapshot.targets.iter().any(|t| t.id == old.id && t.created_ms == old.created_ms);
            if gone && self.is_api(&old.id) {
                settle(
                    sql,
                    &old.id,
                    &[OutboxState::Pending, OutboxState::Paused],
                    OutboxState::Dead,
                    now,
                    Some(DELETED),
                )?;
            }
        }
        for t in before.iter() {
            let (was, is) = (held.state_of(&t.id), snapshot.state_of(&t.id));
            if was != TargetState::Disabled && is == TargetState::Disabled {
                settle(sql, &t.id, &[OutboxState::Pending], OutboxState::Paused, now, None)?;
            } else if was == TargetState::Disabled && is != TargetState::Disabled {
                settle(sql, &t.id, &[OutboxState::Paused, OutboxState::Pending], OutboxState::Pending, now, None)?;
            }
        }
        Ok(true)
    }

    /// Holds `snapshot` from now on: the stored one, or a newer one after
    /// [`TargetBook::store`] committed it.
    pub fn adopt(&self, snapshot: TargetSnapshot) {
        let all = runtime(&self.config, self.alert.as_ref(), &snapshot, self.sealer.as_ref());
        *self.all.borrow_mut() = Rc::new(all);
        *self.api.borrow_mut() = snapshot;
    }

    /// Made through the API, not configured here.
    fn is_api(&self, id: &str) -> bool {
        !self.config.iter().any(|c| c.id == id) && self.alert.as_ref().is_none_or(|a| a.id != id)
    }
}

/// Moves a target's rows in one of `from` to `to`: a dead one with `why`,
/// a paused one kept [`KEEP_PAUSED_MS`] from now, a pending one with a new
/// retry window, due now.
fn settle(
    sql: &SqlStorage,
    id: &str,
    from: &[OutboxState],
    to: OutboxState,
    now: i64,
    why: Option<&str>,
) -> Result<()> {
    let next = match to {
        OutboxState::Paused => now + KEEP_PAUSED_MS,
        _ => now,
    };
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    sql.exec(
        "UPDATE outbox SET state = ?, window_start_ms = ?, next_attempt_ms = CASE WHEN state = ? THEN MIN(next_attempt_ms, ?) ELSE ? END,
           last_error = COALESCE(?, last_error)
         WHERE target_id = ? AND state IN (SELECT value FROM json_each(?))",
        vec![
            state(to),
            now.into(),
            state(to),
            next.into(),
            next.into(),
            why.map(str::to_owned).into(),
            id.into(),
            serde_json::to_string(&from)?.into(),
        ],
    )?;
    Ok(())
}
