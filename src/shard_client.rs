//! Typed calls from the Worker to the ledger shards. Methods and bodies come
//! from `bw_ledger_core::wire::ledger`; a shard that errors or answers non-2xx
//! is a storage failure (503, retryable), never success.

use std::cell::Cell;
use std::pin::pin;
use std::time::Duration;

use bw_ledger_core::ingest::ShardStore;
use bw_ledger_core::shard::{shard_for, Ask, Layouts};
use bw_ledger_core::wire::ledger::{self, name as shard_name};
use bw_ledger_core::wire::shard_map;
use bw_ledger_core::wire::{IngestBatch, IngestReply, Method};
use bw_ledger_core::ApiError;
use futures_util::future::{select, Either};
use worker::{Delay, Env, ObjectNamespace};

use crate::config::Config;
use crate::object_call::{call_in, namespace};

pub struct ShardClient {
    namespace: ObjectNamespace,
    count: u32,
}

thread_local! {
    /// The shard count in force, once this isolate has asked for it. It
    /// never changes once recorded, so it is asked for once per isolate.
    static IN_FORCE: Cell<Option<u32>> = const { Cell::new(None) };
}

/// The shard count in force, if this isolate knows it yet (for logs).
pub fn known_count() -> Option<u32> {
    IN_FORCE.with(Cell::get)
}

/// The shard map's layouts, asked with this Worker's `LEDGER_SHARDS`: the
/// layout the first Worker to ask recorded, and the other counts asked for.
/// The first answer an isolate gets fills its cache of the count in force;
/// a var that differs from it is noted by the map, logged here, and routes
/// nothing.
pub async fn layouts(env: &Env, config: &Config) -> Result<Layouts, ApiError> {
    let asked = config.shards()?;
    let layouts = crate::object_call::call::<shard_map::Resolve>(env, shard_map::NAME, &Ask { count: asked }).await?;
    let count = layouts.in_force.count;
    if known_count().is_none() {
        if count != asked {
            crate::log::log_warn!(
                "LEDGER_SHARDS is {asked}, but the data is laid out over {count} shards: routing by {count} (GET /shards)"
            );
        }
        IN_FORCE.with(|c| c.set(Some(count)));
    }
    Ok(layouts)
}

/// The shard count in force: this isolate's cache, or the shard map's
/// answer (see [`layouts`]).
async fn count_in_force(env: &Env, config: &Config) -> Result<u32, ApiError> {
    match known_count() {
        Some(count) => Ok(count),
        None => Ok(layouts(env, config).await?.in_force.count),
    }
}

impl ShardClient {
    /// The one way to reach the shards: the `LEDGER` binding, and as many
    /// shards as the layout in force has (see [`count_in_force`]).
    pub async fn open(env: &Env, config: &Config) -> Result<Self, ApiError> {
        Ok(Self { namespace: namespace::<ledger::Object>(env)?, count: count_in_force(env, config).await? })
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn shard_of(&self, key: &str) -> u32 {
        shard_for(key, self.count)
    }

    /// Calls method `M` of one shard; any failure is logged and becomes a 503.
    pub async fn call<M: Method<Object = ledger::Object>>(
        &self,
        shard: u32,
        request: &M::Request,
    ) -> Result<M::Reply, ApiError> {
        call_in::<M, _>(&self.namespace, &shard_name(shard), request).await.map_err(|e| {
            crate::log::log_error!("shard {shard} {}: {e}", M::PATH);
            ApiError::StorageUnavailable
        })
    }

    /// Calls method `M` of every shard concurrently.
    pub async fn call_all<M: Method<Object = ledger::Object>>(
        &self,
        request: &M::Request,
    ) -> Result<Vec<M::Reply>, ApiError> {
        let calls = (0..self.count).map(|shard| self.call::<M>(shard, request));
        futures_util::future::join_all(calls).await.into_iter().collect()
    }
}

impl ShardStore for ShardClient {
    type Error = worker::Error;

    /// Rides with the other callbacks bound for the shard (group commit).
    async fn ingest(&self, shard: u32, batch: IngestBatch) -> Result<IngestReply, Self::Error> {
        crate::group_commit::write(self, shard, batch).await
    }
}

impl bw_ledger_core::group::GroupStore for ShardClient {
    type Error = worker::Error;

    /// One group's call, given up after `CALL_TIMEOUT_MS` so that the group
    /// queue's lease on it is never outlived (see `bw_ledger_core::group`).
    async fn store(&self, shard: u32, batches: &[IngestBatch]) -> worker::Result<Vec<IngestReply>> {
        let name = shard_name(shard);
        let call = call_in::<ledger::Ingest, _>(&self.namespace, &name, batches);
        let timeout = Delay::from(Duration::from_millis(crate::group_commit::CALL_TIMEOUT_MS));
        let outcome = match select(pin!(call), pin!(timeout)).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => {
                Err(worker::Error::RustError(format!("no answer within {} ms", crate::group_commit::CALL_TIMEOUT_MS)))
            }
        };
        outcome
    }
}
