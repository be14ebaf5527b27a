//! Small pieces the outbox's files share: a state as a statement
//! parameter, a `RETURNING seq` row, and the deliveries in flight.

use std::cell::RefCell;
use std::collections::HashMap;

use bw_ledger_core::outbox::OutboxState;
use serde::Deserialize;
use worker::SqlStorageValue;

/// Deliveries in flight from one object at once: a Durable Object has six
/// simultaneous outgoing connections.
pub const MAX_IN_FLIGHT: u32 = 6;

pub fn state(s: OutboxState) -> SqlStorageValue {
    s.as_str().into()
}

/// A row of a statement's `RETURNING seq`, counted.
#[derive(Deserialize)]
pub(super) struct SeqRow {
    pub seq: i64,
}

/// Deliveries in flight from this object instance, per target (and media
/// fetches, in a lane of their own, `media.rs`). In memory:
/// after an eviction nothing is in flight, and leases cover what was.
#[derive(Default)]
pub struct InFlight(RefCell<HashMap<String, u32>>);

impl InFlight {
    pub fn total(&self) -> u32 {
        self.0.borrow().values().sum()
    }
    /// Connections left for new work.
    pub fn free(&self) -> u32 {
        MAX_IN_FLIGHT.saturating_sub(self.total())
    }
    pub fn of(&self, lane: &str) -> u32 {
        self.0.borrow().get(lane).copied().unwrap_or(0)
    }
    /// In flight in every lane whose name starts with `prefix`.
    pub fn of_prefix(&self, prefix: &str) -> u32 {
        self.0.borrow().iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, n)| n).sum()
    }
    pub fn start(&self, lane: &str) {
        *self.0.borrow_mut().entry(lane.to_owned()).or_default() += 1;
    }
    pub fn finish(&self, lane: &str) {
        if let Some(n) = self.0.borrow_mut().get_mut(lane) {
            *n = n.saturating_sub(1);
        }
    }
}
