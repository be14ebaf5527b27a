//! Typed calls from the Worker to ledger shards over their fetch interface.
//! Routes and bodies come from `bw_ledger_core::wire`; a shard that errors
//! or answers non-2xx is a storage failure (5xx, retryable), never success.

use bw_ledger_core::ingest::ShardStore;
use bw_ledger_core::shard::{shard_for, shard_name};
use bw_ledger_core::wire::{route, IngestBatch, IngestReply};
use bw_ledger_core::ApiError;
use futures_util::future::{select, Either};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::pin::pin;
use std::time::Duration;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{console_error, js_sys, web_sys, Delay, Env, ObjectNamespace};

use crate::config::LEDGER;

pub struct ShardClient {
    namespace: ObjectNamespace,
    count: u32,
}

impl ShardClient {
    pub fn new(env: &Env, count: u32) -> Result<Self, ApiError> {
        let namespace = env.durable_object(LEDGER).map_err(|e| {
            console_error!("config: Durable Object binding {LEDGER}: {e}");
            ApiError::NotConfigured(LEDGER)
        })?;
        Ok(Self { namespace, count })
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn shard_of(&self, message_id: &str) -> u32 {
        shard_for(message_id, self.count)
    }

    /// Calls one shard method; any failure is logged and becomes a 503.
    pub async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        shard: u32,
        path: &str,
        body: &Q,
    ) -> Result<R, ApiError> {
        self.try_call(shard, path, body).await.map_err(|e| {
            console_error!("shard {shard} {path}: {e}");
            ApiError::StorageUnavailable
        })
    }

    /// Calls the same method on every shard concurrently.
    pub async fn call_all<Q: Serialize, R: DeserializeOwned>(&self, path: &str, body: &Q) -> Result<Vec<R>, ApiError> {
        let calls = (0..self.count).map(|shard| self.call(shard, path, body));
        futures_util::future::join_all(calls).await.into_iter().collect()
    }

    async fn try_call<Q: Serialize, R: DeserializeOwned>(&self, shard: u32, path: &str, body: &Q) -> worker::Result<R> {
        call_object(&self.namespace, &shard_name(shard), &format!("https://ledger-shard{path}"), body).await
    }
}

// The object namespace and stub at the JavaScript level: the ingest path
// calls a shard for every callback, and the `worker` wrappers cost a request
// built from `Headers`/`RequestInit` objects and a response body read chunk
// by chunk through a stream reader (a tenth of the ingest CPU in a profile).
#[wasm_bindgen]
extern "C" {
    type JsNamespace;
    #[wasm_bindgen(method, catch, js_name = idFromName)]
    fn id_from_name(this: &JsNamespace, name: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn get(this: &JsNamespace, id: &JsValue) -> Result<JsStub, JsValue>;

    type JsStub;
    #[wasm_bindgen(method, catch)]
    fn fetch(this: &JsStub, url: &str, init: &web_sys::RequestInit) -> Result<js_sys::Promise, JsValue>;
}

fn js_error(what: &str, e: JsValue) -> worker::Error {
    worker::Error::RustError(format!("{what}: {}", e.as_string().unwrap_or_else(|| format!("{e:?}"))))
}

/// POSTs `body` as JSON to the object `name` of `namespace` and reads its
/// JSON answer; a non-2xx answer is an error. Every object method is called
/// this way.
pub async fn call_object<Q: Serialize, R: DeserializeOwned>(
    namespace: &ObjectNamespace,
    name: &str,
    url: &str,
    body: &Q,
) -> worker::Result<R> {
    let ns: &JsNamespace = namespace.as_ref().unchecked_ref();
    let stub =
        ns.get(&ns.id_from_name(name).map_err(|e| js_error("idFromName", e))?).map_err(|e| js_error("get", e))?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&serde_json::to_string(body)?));
    let resp: web_sys::Response = JsFuture::from(stub.fetch(url, &init).map_err(|e| js_error(url, e))?)
        .await
        .map_err(|e| js_error(url, e))?
        .unchecked_into();
    let text = JsFuture::from(resp.text().map_err(|e| js_error(url, e))?).await.map_err(|e| js_error(url, e))?;
    if !resp.ok() {
        return Err(worker::Error::RustError(format!("{url} answered {}", resp.status())));
    }
    Ok(serde_json::from_str(&text.as_string().unwrap_or_default())?)
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
        let call = self.try_call(shard, route::INGEST, &batches);
        let timeout = Delay::from(Duration::from_millis(crate::group_commit::CALL_TIMEOUT_MS));
        match select(pin!(call), pin!(timeout)).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => {
                Err(worker::Error::RustError(format!("no answer within {} ms", crate::group_commit::CALL_TIMEOUT_MS)))
            }
        }
    }
}
