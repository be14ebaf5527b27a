//! Group commit for shard writes: the bookkeeping, without the runtime.
//!
//! Every callback costs one round trip to its ledger shard and one SQLite
//! commit, and that fixed cost dominated ingest (see `docs/decisions/0001-group-commit.md`).
//! Within one isolate, callbacks bound for the same shard share a call:
//!
//! - A write that arrives while nothing is in flight for its shard is
//!   designated leader at once. The glue lets the event loop turn once
//!   before the leader takes its group, so requests already received join
//!   it; an idle ledger adds one turn of latency.
//! - Writes that arrive while a call is in flight wait. When that call
//!   finishes, the oldest waiter is designated leader; it takes the waiters
//!   (oldest first, up to a count and a size) and sends them as one call.
//! - Every write is in exactly one group, or withdrawn by its own request
//!   before any group took it. A write's outcome is its group's outcome.
//!
//! A leader whose request never resumes (its context was cancelled) would
//! stall the queue, so a waiter may take the lead itself:
//! - from a designated leader that has not taken its group after the stall
//!   time;
//! - from a call in flight only once the call's lease has passed. The glue
//!   gives up on a call before its lease ends, so a takeover never starts a
//!   second group while the first call is still in flight.
//!
//! If the shard refuses a group, [`store_group`] retries each member alone,
//! so one callback it cannot store does not fail the others.
//!
//! The glue owns the clocks, the waiting and the call; [`GroupQueue`] only
//! decides who sends what.

use std::collections::VecDeque;

use crate::wire::{IngestBatch, IngestReply};

/// Identifies one waiting write within its queue.
pub type Ticket = u64;

/// Bounds of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most writes in one call.
    pub max_items: usize,
    /// Most total weight (bytes) in one call; a single heavier write still
    /// goes, alone.
    pub max_weight: usize,
    /// How long a call may be in flight before waiters presume it lost and
    /// one takes over. Longer than the glue's timeout for one call.
    pub call_lease_ms: i64,
}

/// What the writer who just arrived does. Either way the write waits in the
/// queue until a leader takes it.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Nothing in flight: this writer is the designated leader; it calls
    /// [`GroupQueue::poll`] to take its group (after letting others join).
    Lead(Ticket),
    /// Wait; call [`GroupQueue::poll`] when woken or when the timer fires.
    Wait(Ticket),
}

/// What a waiting writer does when it looks again.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn<T> {
    /// Send this group (it includes the writer's own write), then report
    /// [`GroupQueue::finished`].
    Lead(Vec<(Ticket, T)>),
    /// A group took the write: wait for that group's outcome.
    Taken,
    /// Keep waiting.
    Wait,
}

#[derive(Debug)]
pub struct GroupQueue<T> {
    limits: Limits,
    waiting: VecDeque<(Ticket, T, usize)>,
    /// A leader is designated or a call is in flight.
    in_flight: bool,
    /// When the call in flight took its group; `None` while a designated
    /// leader has yet to take it (or nothing is in flight).
    sending_since: Option<i64>,
    designated: Option<Ticket>,
    last_progress_ms: i64,
    next_ticket: Ticket,
}

impl<T> GroupQueue<T> {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits: Limits { max_items: limits.max_items.max(1), ..limits },
            waiting: VecDeque::new(),
            in_flight: false,
            sending_since: None,
            designated: None,
            last_progress_ms: 0,
            next_ticket: 0,
        }
    }

    /// A write of `weight` bytes arrives at `now_ms`.
    pub fn arrive(&mut self, item: T, weight: usize, now_ms: i64) -> Arrival {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiting.push_back((ticket, item, weight));
        if !self.in_flight {
            self.in_flight = true;
            self.designated = Some(ticket);
            self.last_progress_ms = now_ms;
            return Arrival::Lead(ticket);
        }
        Arrival::Wait(ticket)
    }

    /// The waiter `me` looks again at `now_ms`. While a call is in flight
    /// within its lease, everyone waits. Otherwise it leads if it was
    /// designated, if nothing is in flight, if the designated leader made no
    /// progress for `stall_ms` (it never came back), or if the call in
    /// flight outlived its lease (its leader never came back).
    pub fn poll(&mut self, me: Ticket, now_ms: i64, stall_ms: i64) -> Turn<T> {
        if !self.waiting.iter().any(|(t, _, _)| *t == me) {
            return Turn::Taken;
        }
        let leads = match self.sending_since {
            Some(since) => now_ms.saturating_sub(since) >= self.limits.call_lease_ms,
            None => {
                self.designated == Some(me)
                    || !self.in_flight
                    || now_ms.saturating_sub(self.last_progress_ms) >= stall_ms
            }
        };
        if !leads {
            return Turn::Wait;
        }
        self.designated = None;
        self.in_flight = true;
        self.sending_since = Some(now_ms);
        self.last_progress_ms = now_ms;
        Turn::Lead(self.take(me))
    }

    /// A group's call finished, whatever its outcome. Returns the waiter to
    /// wake as the next leader, if any is waiting.
    pub fn finished(&mut self, now_ms: i64) -> Option<Ticket> {
        self.last_progress_ms = now_ms;
        self.sending_since = None;
        match self.waiting.front() {
            Some((t, _, _)) => {
                self.designated = Some(*t);
                Some(*t)
            }
            None => {
                self.in_flight = false;
                self.designated = None;
                None
            }
        }
    }

    /// The waiter `me` gives up (its deadline passed). Returns its write if
    /// no group took it, and the waiter to wake if `me` was the designated
    /// leader. A write already taken stays with its group.
    pub fn withdraw(&mut self, me: Ticket) -> (Option<T>, Option<Ticket>) {
        let Some(pos) = self.waiting.iter().position(|(t, _, _)| *t == me) else { return (None, None) };
        let (_, item, _) = self.waiting.remove(pos).expect("position is in range");
        if self.designated != Some(me) {
            return (Some(item), None);
        }
        self.designated = self.waiting.front().map(|(t, _, _)| *t);
        if self.designated.is_none() {
            self.in_flight = false;
        }
        (Some(item), self.designated)
    }

    /// Writes waiting for a group.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The waiting write of `ticket`, if no group took it yet.
    pub fn get(&self, ticket: Ticket) -> Option<&T> {
        self.waiting.iter().find(|(t, _, _)| *t == ticket).map(|(_, item, _)| item)
    }

    /// `me`'s write plus the oldest others, within the limits, in arrival order.
    fn take(&mut self, me: Ticket) -> Vec<(Ticket, T)> {
        let mut weight = self.waiting.iter().find(|(t, _, _)| *t == me).map_or(0, |(_, _, w)| *w);
        let mut count = 1;
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        let mut group = Vec::new();
        for (t, item, w) in self.waiting.drain(..) {
            let fits = count < self.limits.max_items && weight.saturating_add(w) <= self.limits.max_weight;
            if t == me {
                group.push((t, item));
            } else if fits && kept.is_empty() {
                count += 1;
                weight += w;
                group.push((t, item));
            } else {
                kept.push_back((t, item, w));
            }
        }
        self.waiting = kept;
        group
    }
}

/// Where a group goes: one call stores a list of batches and answers one
/// reply per batch, in order. The Worker implements it over a shard's fetch
/// interface; tests implement it in memory, including stores that fail.
#[allow(async_fn_in_trait)]
pub trait GroupStore {
    type Error: std::fmt::Display;
    async fn store(&self, shard: u32, batches: &[IngestBatch]) -> Result<Vec<IngestReply>, Self::Error>;
}

/// Stores a group in one call and returns one outcome per batch, in order.
///
/// If the call fails and the group has several members, each is retried
/// alone, so a callback the shard cannot store fails only itself, never the
/// callbacks that happened to ride with it. (A retried member may find its
/// events already written by the failed call: they count as duplicates,
/// which is still "stored".)
pub async fn store_group<S: GroupStore>(
    store: &S,
    shard: u32,
    batches: &[IngestBatch],
) -> Vec<Result<IngestReply, String>> {
    let whole = match store.store(shard, batches).await {
        Ok(replies) if replies.len() == batches.len() => return replies.into_iter().map(Ok).collect(),
        Ok(replies) => format!("shard {shard} answered {} replies for {} batches", replies.len(), batches.len()),
        Err(e) => e.to_string(),
    };
    if batches.len() == 1 {
        return vec![Err(whole)];
    }
    let alone = batches.iter().map(|b| async move {
        match store.store(shard, std::slice::from_ref(b)).await {
            Ok(mut replies) if replies.len() == 1 => Ok(replies.remove(0)),
            Ok(replies) => Err(format!("shard {shard} answered {} replies for 1 batch", replies.len())),
            Err(e) => Err(e.to_string()),
        }
    });
    futures_util::future::join_all(alone).await
}
