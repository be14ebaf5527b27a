//! Typed calls from the Worker to the ledger shards. Methods and bodies come
//! from `bw_ledger_core::wire::ledger`; a shard that errors or answers non-2xx
//! is a storage failure (503, retryable), never success.

use std::cell::{Cell, RefCell};
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use bw_ledger_core::ingest::ShardStore;
use bw_ledger_core::shard::{valid_for, Ask, Layouts, Placement, LEAD_MS};
use bw_ledger_core::wire::ledger::{self, name as shard_name};
use bw_ledger_core::wire::shard_map;
use bw_ledger_core::wire::{IngestBatch, IngestReply, Method};
use bw_ledger_core::ApiError;
use futures_util::future::{select, Either};
use wasm_bindgen::JsValue;
use worker::{Delay, Env, ObjectNamespace};

use crate::clock::now_ms;
use crate::config::{Config, VERSION_METADATA};
use crate::object_call::{call_in, namespace};

pub struct ShardClient {
    namespace: ObjectNamespace,
    placement: Rc<Placement>,
}

/// The layouts this isolate was given, and until when it may use them.
struct Cached {
    placement: Rc<Placement>,
    until_ms: i64,
}

thread_local! {
    /// The shard map's last answer, kept for the time the map allows
    /// (`Layouts::valid_ms`), well inside the lead of any new layout.
    static CACHED: RefCell<Option<Cached>> = const { RefCell::new(None) };
    /// Whether this isolate has logged that its var is not the newest
    /// layout's count.
    static WARNED: Cell<bool> = const { Cell::new(false) };
}

/// Where this isolate places keys, if it has asked the map yet (for logs).
pub fn known_placement() -> Option<Rc<Placement>> {
    CACHED.with(|c| c.borrow().as_ref().map(|c| Rc::clone(&c.placement)))
}

/// When this Worker's version was uploaded (`CF_VERSION_METADATA`), in ms;
/// 0 when the runtime does not say. It orders two versions' counts.
fn version_ms(env: &Env) -> i64 {
    use worker::js_sys::Reflect;
    let field = |o: &JsValue, k: &str| Reflect::get(o, &JsValue::from_str(k)).ok().filter(|v| !v.is_undefined());
    let env: &JsValue = env.as_ref();
    field(env, VERSION_METADATA)
        .and_then(|m| field(&m, "timestamp"))
        .and_then(|t| t.as_string())
        .and_then(|t| bw_ledger_core::time::parse_rfc3339_ms(&t))
        .unwrap_or(0)
}

/// Asks the shard map for the layouts, with this Worker's `LEDGER_SHARDS`
/// and version (a newer version's count is recorded as a new layout), and
/// caches the answer for this isolate. A var that is not the newest
/// layout's count is logged once per isolate; it places nothing.
pub async fn layouts(env: &Env, config: &Config) -> Result<Layouts, ApiError> {
    Ok(ask(env, config).await?.0)
}

async fn ask(env: &Env, config: &Config) -> Result<(Layouts, Rc<Placement>), ApiError> {
    let asked = config.shards()?;
    let ask = Ask { count: asked, version_ms: Some(version_ms(env)) };
    let layouts = crate::object_call::call::<shard_map::Resolve>(env, shard_map::NAME, &ask).await?;
    let placement = Rc::new(Placement::of(&layouts));
    let newest = placement.layouts().last().map_or(asked, |l| l.count);
    if newest != asked && !WARNED.with(|w| w.replace(true)) {
        crate::log::log_warn!(
            "LEDGER_SHARDS is {asked}, but a newer version recorded {newest} shards: placing by the recorded layouts (GET /shards)"
        );
    }
    let valid_ms = if layouts.valid_ms > 0 { layouts.valid_ms } else { valid_for(LEAD_MS) };
    let cached = Cached { placement: Rc::clone(&placement), until_ms: now_ms() + valid_ms };
    CACHED.with(|c| *c.borrow_mut() = Some(cached));
    Ok((layouts, placement))
}

/// Where keys go: this isolate's cached layouts while they are valid, else
/// the shard map's answer (see [`layouts`]).
async fn placement(env: &Env, config: &Config) -> Result<Rc<Placement>, ApiError> {
    let now = now_ms();
    let cached = CACHED.with(|c| c.borrow().as_ref().filter(|c| now < c.until_ms).map(|c| Rc::clone(&c.placement)));
    match cached {
        Some(placement) => Ok(placement),
        None => Ok(ask(env, config).await?.1),
    }
}

impl ShardClient {
    /// The one way to reach the shards: the `LEDGER` binding, placed by the
    /// recorded layouts (see [`placement`]).
    pub async fn open(env: &Env, config: &Config) -> Result<Self, ApiError> {
        Ok(Self { namespace: namespace::<ledger::Object>(env)?, placement: placement(env, config).await? })
    }

    /// How many shards a read of everything touches: every shard of every
    /// layout, each message on exactly one of them.
    pub fn count(&self) -> u32 {
        self.placement.fan_out()
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    pub fn shard_of(&self, key: &str) -> u32 {
        self.placement.shard_of(key)
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
        let calls = (0..self.count()).map(|shard| self.call::<M>(shard, request));
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
