//! Group commit of callback writes, per ledger shard, within one isolate.
//!
//! The decisions (who leads, who rides in which group, when a stalled queue
//! is taken over) are `bw_ledger_core::group`; this module supplies the
//! clock, the call and the wake-ups.
//!
//! Nothing wakes a request from another request: a task woken during
//! another request's turn can start its I/O in the wrong context, which
//! workerd refuses ("Cannot perform I/O on behalf of a different request").
//! A waiting request looks at its queue on its own short timers instead,
//! which always fire in a turn of its own request. Only outcomes cross
//! between requests. (docs/decisions/0001 records the designs that were tried.)

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bw_ledger_core::group::{store_group, Arrival, GroupQueue, GroupStore, Limits, Ticket, Turn};
use bw_ledger_core::wire::{IngestBatch, IngestReply};
use worker::Delay;

use crate::clock::now_ms;

// Bandwidth gives a callback 10 s. Worst case for one callback: it waits
// out a lost call's lease (3 s), then leads a group call (2.5 s) and, if
// that fails, its own call alone (2.5 s): 8 s, the deadline, after which
// it answers 503 and Bandwidth retries.

/// Most callbacks in one shard call, and most event bytes; a call in flight
/// is presumed lost after `call_lease_ms`.
const LIMITS: Limits = Limits { max_items: 64, max_weight: 4 * 1024 * 1024, call_lease_ms: CALL_LEASE_MS };
/// A leader gives up on one shard call after this long (its writes may
/// still land; a retry then finds them as duplicates).
pub const CALL_TIMEOUT_MS: u64 = 2_500;
/// Longer than `CALL_TIMEOUT_MS`: a takeover never overlaps a live call.
const CALL_LEASE_MS: i64 = 3_000;
/// A designated leader that has not taken its group this long is lost.
const STALL_MS: i64 = 1_000;
/// A waiter gives up (503, so Bandwidth retries) after this long.
const DEADLINE_MS: i64 = 8_000;

/// One callback's write, shared by its own request and its group's leader.
struct Slot {
    batch: RefCell<Option<IngestBatch>>,
    outcome: RefCell<Option<Result<IngestReply, String>>>,
}

/// How long a waiter sleeps before it looks again: a group's call takes a
/// few milliseconds under load, then backing off (every look costs a timer
/// and a poll; docs/decisions/0001 has the measurements).
fn poll_interval(looks: u32) -> i64 {
    match looks {
        0..=1 => 2,
        2..=3 => 4,
        _ => 8,
    }
}

thread_local! {
    static QUEUES: RefCell<HashMap<u32, GroupQueue<Rc<Slot>>>> = RefCell::new(HashMap::new());
}

fn with_queue<R>(shard: u32, f: impl FnOnce(&mut GroupQueue<Rc<Slot>>) -> R) -> R {
    QUEUES.with(|qs| f(qs.borrow_mut().entry(shard).or_insert_with(|| GroupQueue::new(LIMITS))))
}

fn weight(batch: &IngestBatch) -> usize {
    batch.events.iter().map(|e| e.raw.len()).sum::<usize>()
        + batch.quarantine.iter().map(|q| q.raw.len()).sum::<usize>()
}

/// Writes `batch` to `shard`, in a group with the other callbacks bound for
/// it, and returns this batch's own reply once the group is stored.
pub async fn write<C: GroupStore>(call: &C, shard: u32, batch: IngestBatch) -> worker::Result<IngestReply> {
    let w = weight(&batch);
    let slot = Rc::new(Slot { batch: RefCell::new(Some(batch)), outcome: RefCell::new(None) });
    let me = match with_queue(shard, |q| q.arrive(slot.clone(), w, now_ms())) {
        Arrival::Lead(me) => {
            // Let the event loop turn once: callbacks already received for
            // this shard join the group instead of waiting for the next.
            Delay::from(Duration::ZERO).await;
            me
        }
        Arrival::Wait(me) => me,
    };
    let deadline = now_ms() + DEADLINE_MS;
    let mut looks = 0;
    loop {
        if slot.outcome.borrow().is_some() {
            return outcome(&slot);
        }
        if let Turn::Lead(group) = with_queue(shard, |q| q.poll(me, now_ms(), STALL_MS)) {
            send(call, shard, group).await;
            continue;
        }
        let now = now_ms();
        if now >= deadline {
            // If it was designated, the next waiter sees that on its timer.
            with_queue(shard, |q| q.withdraw(me));
            return Err(worker::Error::RustError(format!("no shard write within {DEADLINE_MS} ms")));
        }
        Delay::from(Duration::from_millis(poll_interval(looks).min(deadline - now).max(1) as u64)).await;
        looks += 1;
    }
}

fn outcome(slot: &Slot) -> worker::Result<IngestReply> {
    match slot.outcome.borrow_mut().take() {
        Some(Ok(reply)) => Ok(reply),
        Some(Err(e)) => Err(worker::Error::RustError(e)),
        None => Err(worker::Error::RustError("a group finished without this write's outcome".into())),
    }
}

/// Stores a group (members the shard refuses fail alone, see
/// `store_group`) and hands each member its outcome.
async fn send<C: GroupStore>(call: &C, shard: u32, group: Vec<(Ticket, Rc<Slot>)>) {
    let slots: Vec<Rc<Slot>> = group.into_iter().map(|(_, s)| s).collect();
    let batches: Vec<IngestBatch> = slots.iter().filter_map(|s| s.batch.borrow_mut().take()).collect();
    let outcomes = if batches.len() == slots.len() {
        store_group(call, shard, &batches).await
    } else {
        vec![Err("a group member had no batch".to_owned()); slots.len()]
    };
    for (slot, outcome) in slots.iter().zip(outcomes) {
        *slot.outcome.borrow_mut() = Some(outcome);
    }
    // The next leader and the members see this on their timers.
    with_queue(shard, |q| q.finished(now_ms()));
}
