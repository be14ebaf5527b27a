//! Turning one authenticated callback into durable shard writes, and the
//! rule for when Bandwidth may be told "stored".
//!
//! The Worker answers 2xx only when every shard touched by the request has
//! confirmed its write. One failed shard fails the whole request with a 5xx:
//! Bandwidth then retries all of it, and dedup absorbs what did land.

use std::collections::BTreeMap;

use crate::channel::tied_copy;
use crate::error::ApiError;
use crate::event::ParsedCallback;
use crate::quarantine::QuarantineRecord;
use crate::records::EventRecord;
use crate::shard::Placement;
use crate::wire::{IngestBatch, IngestReply};

/// Groups a parsed callback into one batch per shard: events by message id
/// (a rich reply also by the id it answers), quarantine items by content hash. Empty shards get no batch.
#[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
pub fn plan(parsed: &ParsedCallback, shards: &Placement, received_at_ms: i64) -> BTreeMap<u32, IngestBatch> {
    let mut batches: BTreeMap<u32, IngestBatch> = BTreeMap::new();
    let new_batch = || IngestBatch { received_at_ms, ..Default::default() };
    for ev in &parsed.events {
        let shard = shards.shard_of(&ev.message_id);
        batches.entry(shard).or_insert_with(new_batch).events.push(EventRecord::from_event(ev));
        // A rich reply is stored under the message it answers too, in the
        // same all-or-nothing write.
        if let Some(copy) = tied_copy(ev) {
            let shard = shards.shard_of(&copy.message_id);
            batches.entry(shard).or_insert_with(new_batch).events.push(EventRecord::from_event(&copy));
        }
    }
    for r in &parsed.rejected {
        let rec = QuarantineRecord::from_rejected(r);
        let shard = shards.shard_of_untimed(&rec.content_hash);
        batches.entry(shard).or_insert_with(new_batch).quarantine.push(rec);
    }
    batches
}

/// Where batches go. The Worker implements it over Durable Object stubs;
/// tests implement it in memory, including stores that fail.
#[allow(async_fn_in_trait)]
pub trait ShardStore {
    type Error: std::fmt::Display;
    async fn ingest(&self, shard: u32, batch: IngestBatch) -> Result<IngestReply, Self::Error>;
}

/// Writes every batch concurrently and succeeds only if all shards confirm.
/// Failures are reported through `on_error` (for the log) and collapse to
/// [`ApiError::StorageUnavailable`], which answers 503.
pub async fn ingest<S: ShardStore>(
    store: &S,
    parsed: &ParsedCallback,
    shards: &Placement,
    received_at_ms: i64,
    mut on_error: impl FnMut(u32, &S::Error),
) -> Result<IngestReply, ApiError> {
    let writes = plan(parsed, shards, received_at_ms)
        .into_iter()
        .map(|(shard, batch)| async move { (shard, store.ingest(shard, batch).await) });
    let results = futures_util::future::join_all(writes).await;
    let mut total = IngestReply::default();
    let mut failed = false;
    for (shard, result) in results {
        match result {
            Ok(reply) => total = total.merge(reply),
            Err(e) => {
                on_error(shard, &e);
                failed = true;
            }
        }
    }
    if failed {
        Err(ApiError::StorageUnavailable)
    } else {
        Ok(total)
    }
}
