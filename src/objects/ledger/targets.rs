//! The targets this shard delivers to: those of `FORWARD_TARGETS`, read
//! when the instance starts, and the registry's API-made ones at the newest
//! version handed to this shard (`ledger::Targets`), kept in its own
//! storage (`api_targets`) so that they survive a restart.
//!
//! Handing over a version also settles the outbox rows it concerns, in the
//! same transaction: a deleted target's pending rows become dead letters
//! (`DELETE /targets/{id}`), and a resumed target's pending rows get a new
//! retry window, counted from the resume.

use std::cell::RefCell;
use std::rc::Rc;

use bw_ledger_core::forward::ForwardTarget;
use bw_ledger_core::outbox::OutboxState;
use bw_ledger_core::targets::seal::Sealer;
use bw_ledger_core::targets::{runtime, Target, TargetSnapshot};
use serde::Deserialize;
use worker::{Result, SqlStorage, SqlStorageValue};

fn state(s: OutboxState) -> SqlStorageValue {
    s.as_str().into()
}

/// Why a deleted target's pending rows are dead.
pub const DELETED: &str = "the target was deleted";

pub struct TargetBook {
    config: Vec<ForwardTarget>,
    sealer: Option<Sealer>,
    api: RefCell<TargetSnapshot>,
    all: RefCell<Rc<Vec<Target>>>,
}

#[derive(Deserialize)]
struct SnapshotRow {
    snapshot: String,
}

impl TargetBook {
    pub fn new(config: Vec<ForwardTarget>, sealer: Option<Sealer>) -> Self {
        let all = Rc::new(runtime(&config, &[], sealer.as_ref()));
        Self { config, sealer, api: RefCell::default(), all: RefCell::new(all) }
    }

    /// Every target, as of the newest version this shard holds.
    pub fn current(&self) -> Rc<Vec<Target>> {
        self.all.borrow().clone()
    }

    pub fn find(&self, id: &str) -> Option<Target> {
        self.all.borrow().iter().find(|t| t.id == id).cloned()
    }

    /// The ids of paused targets, as a JSON list (a statement parameter).
    pub fn paused_json(&self) -> String {
        let all = self.current();
        let paused: Vec<&str> = all.iter().filter(|t| t.paused).map(|t| t.id.as_str()).collect();
        serde_json::to_string(&paused).unwrap_or_else(|_| "[]".into())
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
        for old in &held.targets {
            if self.config.iter().any(|c| c.id == old.id) {
                continue;
            }
            let now_held = snapshot.targets.iter().find(|t| t.id == old.id && t.created_ms == old.created_ms);
            match now_held {
                None => {
                    sql.exec(
                        "UPDATE outbox SET state = ?, next_attempt_ms = ?, last_error = ?
                         WHERE target_id = ? AND state = ?",
                        vec![
                            state(OutboxState::Dead),
                            now.into(),
                            DELETED.into(),
                            old.id.clone().into(),
                            state(OutboxState::Pending),
                        ],
                    )?;
                }
                Some(new) if old.paused && !new.paused => {
                    sql.exec(
                        "UPDATE outbox SET window_start_ms = ?, next_attempt_ms = MIN(next_attempt_ms, ?)
                         WHERE target_id = ? AND state = ?",
                        vec![now.into(), now.into(), new.id.clone().into(), state(OutboxState::Pending)],
                    )?;
                }
                Some(_) => {}
            }
        }
        Ok(true)
    }

    /// Holds `snapshot` from now on: the stored one, or a newer one after
    /// [`TargetBook::store`] committed it.
    pub fn adopt(&self, snapshot: TargetSnapshot) {
        *self.all.borrow_mut() = Rc::new(runtime(&self.config, &snapshot.targets, self.sealer.as_ref()));
        *self.api.borrow_mut() = snapshot;
    }
}
