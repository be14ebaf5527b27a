//! Group commit bookkeeping: who sends what, and that every write is sent
//! exactly once (or withdrawn by its own request before any group took it).
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::common::{ready, Rng};
use bw_ledger_core::group::{store_group, Arrival, GroupQueue, GroupStore, Limits, Ticket, Turn};
use bw_ledger_core::records::EventRecord;
use bw_ledger_core::wire::{IngestBatch, IngestReply};

const LEASE: i64 = 3000;
const LIMITS: Limits = Limits { max_items: 4, max_weight: 1000, call_lease_ms: LEASE };
const STALL: i64 = 1000;

/// Arrives at an idle queue, is designated, and takes its group at once.
fn lead<T: std::fmt::Debug>(q: &mut GroupQueue<T>, item: T, weight: usize, now: i64) -> Vec<(Ticket, T)> {
    let Arrival::Lead(me) = q.arrive(item, weight, now) else { panic!("expected to lead") };
    match q.poll(me, now, STALL) {
        Turn::Lead(g) => g,
        other => panic!("the designated leader takes its group, got {other:?}"),
    }
}

fn wait(a: Arrival) -> Ticket {
    match a {
        Arrival::Wait(t) => t,
        Arrival::Lead(t) => panic!("expected to wait, was designated leader {t}"),
    }
}

fn items<T: Copy>(g: &[(Ticket, T)]) -> Vec<T> {
    g.iter().map(|(_, i)| *i).collect()
}

#[test]
fn an_idle_queue_sends_at_once_alone() {
    let mut q = GroupQueue::new(LIMITS);
    assert_eq!(items(&lead(&mut q, "a", 10, 0)), vec!["a"]);
    assert_eq!(q.finished(1), None);
    // Idle again: the next write also leads at once.
    assert_eq!(items(&lead(&mut q, "b", 10, 2)), vec!["b"]);
}

#[test]
fn writes_arriving_before_the_leader_takes_its_group_join_it() {
    let mut q = GroupQueue::new(LIMITS);
    let Arrival::Lead(a) = q.arrive("a", 10, 0) else { panic!("an idle queue designates the first writer") };
    // The event loop turns once: these were already received.
    let b = wait(q.arrive("b", 10, 0));
    let c = wait(q.arrive("c", 10, 0));
    assert_eq!(q.poll(b, 0, STALL), Turn::Wait, "only the designated leader takes");
    let Turn::Lead(g) = q.poll(a, 0, STALL) else { panic!("designated leads") };
    assert_eq!(g.iter().map(|(t, i)| (*t, *i)).collect::<Vec<_>>(), vec![(a, "a"), (b, "b"), (c, "c")]);
    assert_eq!(q.poll(c, 0, STALL), Turn::Taken);
}

#[test]
fn writes_arriving_during_a_call_ride_together_in_the_next() {
    let mut q = GroupQueue::new(LIMITS);
    lead(&mut q, "a", 10, 0);
    let b = wait(q.arrive("b", 10, 1));
    let c = wait(q.arrive("c", 10, 1));
    // Not designated, nothing stalled: keep waiting.
    assert_eq!(q.poll(c, 2, STALL), Turn::Wait);
    assert_eq!(q.finished(3), Some(b), "the oldest waiter is woken to lead");
    // Another write arrives before the designated leader runs: it rides too.
    let d = wait(q.arrive("d", 10, 3));
    assert_eq!(q.poll(c, 3, STALL), Turn::Wait, "only the designated waiter leads");
    match q.poll(b, 4, STALL) {
        Turn::Lead(g) => {
            assert_eq!(g.iter().map(|(t, i)| (*t, *i)).collect::<Vec<_>>(), vec![(b, "b"), (c, "c"), (d, "d")])
        }
        other => panic!("expected to lead, got {other:?}"),
    }
    assert_eq!(q.poll(c, 4, STALL), Turn::Taken);
    assert_eq!(q.poll(d, 4, STALL), Turn::Taken);
    assert_eq!(q.waiting(), 0);
    assert_eq!(q.finished(5), None);
}

#[test]
fn a_group_stops_at_the_count_and_the_size_limit_in_arrival_order() {
    let mut q = GroupQueue::new(LIMITS);
    lead(&mut q, 0, 1, 0);
    let tickets: Vec<Ticket> = (1..=6).map(|i| wait(q.arrive(i, 100, 0))).collect();
    let first = q.finished(1).unwrap();
    assert_eq!(first, tickets[0]);
    let Turn::Lead(g) = q.poll(first, 1, STALL) else { panic!("designated leads") };
    assert_eq!(items(&g), vec![1, 2, 3, 4], "at most max_items, oldest first");
    let next = q.finished(2).unwrap();
    let Turn::Lead(g) = q.poll(next, 2, STALL) else { panic!("designated leads") };
    assert_eq!(items(&g), vec![5, 6]);

    // By weight: 600 + 300 fit in 1000, the next 300 does not.
    let mut q = GroupQueue::new(LIMITS);
    lead(&mut q, 0, 1, 0);
    let a = wait(q.arrive(1, 600, 0));
    wait(q.arrive(2, 300, 0));
    wait(q.arrive(3, 300, 0));
    q.finished(1);
    let Turn::Lead(g) = q.poll(a, 1, STALL) else { panic!("designated leads") };
    assert_eq!(items(&g), vec![1, 2]);
    // No overtaking: a lighter later write does not jump a heavier earlier one.
    let mut q = GroupQueue::new(LIMITS);
    lead(&mut q, 0, 1, 0);
    let a = wait(q.arrive(1, 600, 0));
    wait(q.arrive(2, 500, 0));
    wait(q.arrive(3, 300, 0));
    q.finished(1);
    let Turn::Lead(g) = q.poll(a, 1, STALL) else { panic!("designated leads") };
    assert_eq!(items(&g), vec![1]);
    // A single write heavier than the limit still goes, alone.
    let mut q = GroupQueue::new(LIMITS);
    lead(&mut q, 0, 1, 0);
    let big = wait(q.arrive(1, 5000, 0));
    wait(q.arrive(2, 1, 0));
    q.finished(1);
    let Turn::Lead(g) = q.poll(big, 1, STALL) else { panic!("designated leads") };
    assert_eq!(items(&g), vec![1]);
}

#[test]
fn a_waiter_takes_the_lead_when_the_designated_leader_never_comes_back() {
    let mut q = GroupQueue::new(LIMITS);
    lead(&mut q, "a", 1, 0);
    let b = wait(q.arrive("b", 1, 10));
    let c = wait(q.arrive("c", 1, 10));
    assert_eq!(q.finished(20), Some(b));
    // b's request was cancelled and never polls. c's timer fires.
    assert_eq!(q.poll(c, 20 + STALL - 1, STALL), Turn::Wait);
    let Turn::Lead(g) = q.poll(c, 20 + STALL, STALL) else { panic!("a stalled queue is taken over") };
    // Oldest first, so b's write goes too (its outcome waits in its slot).
    assert_eq!(items(&g), vec!["b", "c"]);
    assert_eq!(q.poll(b, 20 + STALL, STALL), Turn::Taken);
}

/// The stall time applies to a designated leader that never takes its
/// group; a call in flight is waited for until its lease ends, so a
/// takeover never overlaps a call that may still be running.
#[test]
fn a_call_in_flight_is_taken_over_only_after_its_lease() {
    let mut q = GroupQueue::new(LIMITS);
    lead(&mut q, "a", 1, 0);
    let b = wait(q.arrive("b", 1, 5));
    assert_eq!(q.poll(b, STALL, STALL), Turn::Wait, "the stall time does not apply to a call in flight");
    assert_eq!(q.poll(b, LEASE - 1, STALL), Turn::Wait);
    let Turn::Lead(g) = q.poll(b, LEASE, STALL) else { panic!("a lost call is taken over after its lease") };
    assert_eq!(items(&g), vec!["b"]);
    // The takeover's own call is leased from when it took its group.
    let c = wait(q.arrive("c", 1, LEASE));
    assert_eq!(q.poll(c, 2 * LEASE - 1, STALL), Turn::Wait);
    assert_eq!(q.finished(2 * LEASE - 1), Some(c));
    assert!(matches!(q.poll(c, 2 * LEASE - 1, STALL), Turn::Lead(_)));
}

#[test]
fn a_withdrawn_write_is_in_no_group_and_hands_on_the_lead() {
    let mut q = GroupQueue::new(LIMITS);
    lead(&mut q, "a", 1, 0);
    let b = wait(q.arrive("b", 1, 0));
    let c = wait(q.arrive("c", 1, 0));
    assert_eq!(q.finished(1), Some(b));
    // The designated leader gives up: its write comes back, c is woken.
    assert_eq!(q.withdraw(b), (Some("b"), Some(c)));
    assert_eq!(q.get(b), None);
    let Turn::Lead(g) = q.poll(c, 2, STALL) else { panic!("the next waiter was designated") };
    assert_eq!(items(&g), vec!["c"]);
    // A write already taken stays with its group.
    assert_eq!(q.withdraw(c), (None, None));
    // The last waiter withdrawing leaves the queue idle.
    q.finished(3);
    let mut q2 = GroupQueue::new(LIMITS);
    lead(&mut q2, "x", 1, 0);
    let y = wait(q2.arrive("y", 1, 0));
    q2.finished(1);
    assert_eq!(q2.withdraw(y), (Some("y"), None));
    assert!(matches!(q2.arrive("z", 1, 2), Arrival::Lead(_)), "nothing in flight after the last waiter left");
}

/// Random interleavings of arrivals, polls, finished calls, withdrawals,
/// lost leaders and clock jumps: every write ends in exactly one group or is
/// withdrawn, groups respect the limits, and once the runtime settles every
/// write gets sent.
#[test]
fn every_write_is_sent_exactly_once_or_withdrawn_in_any_interleaving() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut q: GroupQueue<u32> = GroupQueue::new(LIMITS);
        let mut now = 0i64;
        let mut next_item = 0u32;
        let mut waiters: Vec<Ticket> = Vec::new();
        // Start times of the calls in flight, oldest first. A call ends
        // before its lease (the glue times it out), so calls end in order.
        let mut flights: Vec<i64> = Vec::new();
        let mut sent: Vec<u32> = Vec::new();
        let mut withdrawn: Vec<u32> = Vec::new();
        let check_group = |g: Vec<(Ticket, u32)>, sent: &mut Vec<u32>, flights: &mut Vec<i64>, now: i64| {
            assert!(!g.is_empty() && g.len() <= LIMITS.max_items, "seed {seed}: group size {}", g.len());
            assert!(
                flights.iter().all(|since| now - since >= LEASE),
                "seed {seed}: a group started at {now} while a call from {flights:?} was within its lease"
            );
            // Calls past their lease were lost with their requests: they
            // never report back (a live leader times out within the lease).
            flights.clear();
            flights.push(now);
            sent.extend(g.into_iter().map(|(_, i)| i));
        };
        for _ in 0..400 {
            match rng.below(6) {
                0 | 1 => {
                    let item = next_item;
                    next_item += 1;
                    // A designated leader polls later, like any waiter (or
                    // never: a lost request).
                    match q.arrive(item, 1 + rng.below(400), now) {
                        Arrival::Lead(t) | Arrival::Wait(t) => waiters.push(t),
                    }
                }
                2 if !waiters.is_empty() => {
                    let t = waiters[rng.below(waiters.len())];
                    match q.poll(t, now, STALL) {
                        Turn::Lead(g) => check_group(g, &mut sent, &mut flights, now),
                        Turn::Taken | Turn::Wait => {}
                    }
                }
                3 if !flights.is_empty() => {
                    flights.remove(0);
                    // The woken leader may or may not ever run (a lost context).
                    if let Some(t) = q.finished(now) {
                        if rng.below(4) != 0 {
                            if let Turn::Lead(g) = q.poll(t, now, STALL) {
                                check_group(g, &mut sent, &mut flights, now);
                            }
                        }
                    }
                }
                4 if !waiters.is_empty() => {
                    let t = waiters[rng.below(waiters.len())];
                    let (item, _wake) = q.withdraw(t);
                    withdrawn.extend(item);
                }
                _ => now += rng.below(600) as i64,
            }
            waiters.retain(|t| q.get(*t).is_some());
        }
        // Settle: calls finish, time passes, every waiter polls.
        let mut rounds = 0;
        while q.waiting() > 0 {
            rounds += 1;
            assert!(rounds < 10_000, "seed {seed}: the queue never drained");
            while !flights.is_empty() {
                flights.remove(0);
                q.finished(now);
            }
            now += STALL;
            for t in waiters.clone() {
                if let Turn::Lead(g) = q.poll(t, now, STALL) {
                    check_group(g, &mut sent, &mut flights, now);
                }
            }
            waiters.retain(|t| q.get(*t).is_some());
        }
        let mut all: Vec<u32> = sent.iter().chain(withdrawn.iter()).copied().collect();
        all.sort_unstable();
        let unique: BTreeSet<u32> = all.iter().copied().collect();
        assert_eq!(all.len(), unique.len(), "seed {seed}: a write was sent or withdrawn twice");
        assert_eq!(all, (0..next_item).collect::<Vec<_>>(), "seed {seed}: a write was lost");
    }
}

/// A shard in memory that refuses any call carrying a message id starting
/// with "poison", and records the size of every call.
#[derive(Default)]
struct PickyShard {
    calls: RefCell<Vec<usize>>,
}

impl GroupStore for PickyShard {
    type Error = String;
    async fn store(&self, _shard: u32, batches: &[IngestBatch]) -> Result<Vec<IngestReply>, String> {
        self.calls.borrow_mut().push(batches.len());
        if batches.iter().flat_map(|b| &b.events).any(|e| e.message_id.starts_with("poison")) {
            return Err("the shard refused the call".into());
        }
        Ok(batches.iter().map(|b| IngestReply { stored: b.events.len() as u32, ..Default::default() }).collect())
    }
}

fn batch(message_id: &str) -> IngestBatch {
    IngestBatch {
        received_at_ms: 1,
        events: vec![EventRecord {
            event_key: format!("[\"{message_id}\"]"),
            message_id: message_id.into(),
            kind: "message-delivered".into(),
            recipient: None,
            time: None,
            time_ms: None,
            error_code: None,
            content_hash: "h".into(),
            raw: "{}".into(),
        }],
        quarantine: Vec::new(),
    }
}

#[test]
fn a_group_is_one_call_with_one_outcome_per_member() {
    let shard = PickyShard::default();
    let out = ready(store_group(&shard, 0, &[batch("a"), batch("b"), batch("c")]));
    assert_eq!(out.iter().filter(|o| matches!(o, Ok(r) if r.stored == 1)).count(), 3);
    assert_eq!(*shard.calls.borrow(), vec![3]);
}

#[test]
fn a_member_the_shard_refuses_fails_alone() {
    let shard = PickyShard::default();
    let out = ready(store_group(&shard, 0, &[batch("a"), batch("poison-1"), batch("c")]));
    assert!(matches!(out[0], Ok(IngestReply { stored: 1, .. })));
    assert!(out[1].is_err(), "the refused member fails");
    assert!(matches!(out[2], Ok(IngestReply { stored: 1, .. })));
    // The group call, then each member alone.
    assert_eq!(*shard.calls.borrow(), vec![3, 1, 1, 1]);
}

#[test]
fn a_lone_refused_write_is_not_retried() {
    let shard = PickyShard::default();
    let out = ready(store_group(&shard, 0, &[batch("poison-2")]));
    assert_eq!(out, vec![Err("the shard refused the call".to_string())]);
    assert_eq!(*shard.calls.borrow(), vec![1]);
}
