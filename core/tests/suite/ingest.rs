//! Planning shard writes and the rule for acknowledging a callback.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::common::*;
use bw_ledger_core::identity::{decide, DedupDecision};
use bw_ledger_core::ingest::{ingest, plan, ShardStore};
use bw_ledger_core::shard::{shard_for, Placement};
use bw_ledger_core::wire::{IngestBatch, IngestReply};
use bw_ledger_core::{parse_callback_body, ApiError};

/// An in-memory ledger with the shard's dedup rule; shards listed in
/// `failing` refuse every write, like a storage outage.
#[derive(Default)]
struct MemoryShards {
    events: RefCell<BTreeMap<String, String>>,
    quarantine: RefCell<BTreeMap<String, u32>>,
    calls: RefCell<Vec<u32>>,
    failing: Vec<u32>,
}

impl ShardStore for MemoryShards {
    type Error = String;
    async fn ingest(&self, shard: u32, batch: IngestBatch) -> Result<IngestReply, String> {
        self.calls.borrow_mut().push(shard);
        if self.failing.contains(&shard) {
            return Err(format!("shard {shard} unavailable"));
        }
        let mut reply = IngestReply::default();
        let mut events = self.events.borrow_mut();
        for ev in batch.events {
            match decide(events.get(&ev.event_key).map(String::as_str), &ev.content_hash) {
                DedupDecision::Insert => {
                    events.insert(ev.event_key, ev.content_hash);
                    reply.stored += 1;
                }
                DedupDecision::Duplicate => reply.duplicates += 1,
                DedupDecision::Conflict => reply.conflicts += 1,
            }
        }
        for q in batch.quarantine {
            *self.quarantine.borrow_mut().entry(q.content_hash).or_default() += 1;
            reply.quarantined += 1;
        }
        Ok(reply)
    }
}

#[test]
fn plan_routes_each_event_to_its_message_shard_and_stamps_the_time() {
    let parsed = parse_callback_body(GROUP_MMS_INVALID.as_bytes());
    let all = [SMS_LIFECYCLE, INBOUND_MMS, FAILED, RBM];
    let mut combined = parsed.clone();
    for f in all {
        combined.events.extend(parse_callback_body(f.as_bytes()).events);
    }
    let batches = plan(&combined, &Placement::fixed(8), 42);
    let mut total = 0;
    for (shard, batch) in &batches {
        assert_eq!(batch.received_at_ms, 42);
        for ev in &batch.events {
            assert_eq!(shard_for(&ev.message_id, 8), *shard);
        }
        total += batch.events.len();
    }
    assert_eq!(total, combined.events.len());
    assert!(batches.values().all(|b| !b.events.is_empty() || !b.quarantine.is_empty()));
}

#[test]
fn plan_routes_quarantine_by_content_hash() {
    let parsed = parse_callback_body(br#"[1, 2, {"type":"message-sent","to":"+1","message":{"id":"a"}}]"#);
    let batches = plan(&parsed, &Placement::fixed(4), 0);
    let q: Vec<_> = batches.iter().flat_map(|(s, b)| b.quarantine.iter().map(move |q| (*s, q))).collect();
    assert_eq!(q.len(), 2);
    for (shard, rec) in q {
        assert_eq!(shard_for(&rec.content_hash, 4), shard);
    }
}

#[test]
fn a_retried_callback_is_stored_once() {
    let store = MemoryShards::default();
    let parsed = parse_callback_body(GROUP_MMS_INVALID.as_bytes());
    let first = ready(ingest(&store, &parsed, &Placement::fixed(4), 1, |_, _| {})).unwrap();
    assert_eq!(first, IngestReply { stored: 5, duplicates: 0, conflicts: 0, quarantined: 0, erased: 0 });
    for _ in 0..3 {
        let again = ready(ingest(&store, &parsed, &Placement::fixed(4), 2, |_, _| {})).unwrap();
        assert_eq!(again, IngestReply { stored: 0, duplicates: 5, conflicts: 0, quarantined: 0, erased: 0 });
    }
    assert_eq!(store.events.borrow().len(), 5);
}

#[test]
fn same_identity_with_other_content_is_a_conflict_not_an_overwrite() {
    let store = MemoryShards::default();
    let a = parse_callback_body(FAILED.as_bytes());
    let b = parse_callback_body(FAILED.replace("rejected-unallocated-to-number", "changed").as_bytes());
    ready(ingest(&store, &a, &Placement::fixed(2), 1, |_, _| {})).unwrap();
    let before = store.events.borrow().clone();
    let reply = ready(ingest(&store, &b, &Placement::fixed(2), 2, |_, _| {})).unwrap();
    assert_eq!(reply.conflicts, 1);
    assert_eq!(reply.stored, 0);
    assert_eq!(*store.events.borrow(), before);
}

#[test]
fn any_shard_failure_fails_the_whole_callback_with_a_retryable_error() {
    let mut combined = parse_callback_body(GROUP_MMS_INVALID.as_bytes());
    for f in [SMS_LIFECYCLE, INBOUND_MMS, FAILED, RBM] {
        combined.events.extend(parse_callback_body(f.as_bytes()).events);
    }
    let shards: Vec<u32> = plan(&combined, &Placement::fixed(8), 0).keys().copied().collect();
    assert!(shards.len() >= 2, "fixtures should span several shards: {shards:?}");
    let store = MemoryShards { failing: vec![shards[1]], ..Default::default() };
    let mut logged = Vec::new();
    let result = ready(ingest(&store, &combined, &Placement::fixed(8), 0, |shard, e| logged.push((shard, e.clone()))));
    assert_eq!(result, Err(ApiError::StorageUnavailable));
    assert_eq!(ApiError::StorageUnavailable.status(), 503);
    assert_eq!(logged, vec![(shards[1], format!("shard {} unavailable", shards[1]))]);
    // Every shard was still attempted, so the retry finds most work done.
    let mut called = store.calls.borrow().clone();
    called.sort();
    assert_eq!(called, shards);
}

#[test]
fn quarantine_is_written_through_the_same_path() {
    let store = MemoryShards::default();
    let parsed = parse_callback_body(b"definitely not json");
    let reply = ready(ingest(&store, &parsed, &Placement::fixed(3), 0, |_, _| {})).unwrap();
    assert_eq!(reply.quarantined, 1);
    assert_eq!(store.quarantine.borrow().len(), 1);
}
