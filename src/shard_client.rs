//! Typed calls from the Worker to ledger shards over their fetch interface.
//! Routes and bodies come from `bw_ledger_core::wire`; a shard that errors
//! or answers non-2xx is a storage failure (5xx, retryable), never success.

use bw_ledger_core::ingest::ShardStore;
use bw_ledger_core::shard::{shard_for, shard_name};
use bw_ledger_core::wire::{route, IngestBatch, IngestReply};
use bw_ledger_core::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use worker::{console_error, Env, ObjectNamespace, Stub};

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
        let stub = self.namespace.id_from_name(&shard_name(shard))?.get_stub()?;
        call_object(&stub, &format!("https://ledger-shard{path}"), body).await
    }
}

/// POSTs `body` as JSON to a Durable Object and reads its JSON answer; a
/// non-2xx answer is an error. Every object method is called this way.
pub async fn call_object<Q: Serialize, R: DeserializeOwned>(stub: &Stub, url: &str, body: &Q) -> worker::Result<R> {
    let req = crate::http::post(url, &[("Content-Type", "application/json")], &serde_json::to_string(body)?)?;
    let mut resp = stub.fetch_with_request(req).await?;
    if !(200..300).contains(&resp.status_code()) {
        return Err(worker::Error::RustError(format!("{url} answered {}", resp.status_code())));
    }
    resp.json().await
}

impl ShardStore for ShardClient {
    type Error = worker::Error;

    async fn ingest(&self, shard: u32, batch: IngestBatch) -> Result<IngestReply, Self::Error> {
        self.try_call(shard, route::INGEST, &batch).await
    }
}
