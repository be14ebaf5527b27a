//! Test-only routes, compiled in only with the `test-hooks` feature (the
//! e2e suite's second build, `build-test/`); the Worker `npm run dev` and
//! `npm run deploy` build has none of this. Each calls a test method
//! declared beside the object it tests (`objects/*/test_methods.rs`).
//! All take the API token.
//!
//! - `POST /__test/shard-sql` runs one SQL statement on the shard that
//!   holds `messageId` (or on shard number `shard`), so a test can damage
//!   derived state by hand or install a trigger that makes a later
//!   statement fail midway.
//! - `POST /__test/drop-alarm` deletes a shard's alarm.
//! - `POST /__test/guard-sql` runs one statement on a client key's guard
//!   (`{"keyId", "sql", "params"}`), to see its idempotency records.
//! - `POST /__test/live-keys` takes `{"clientKeys": "<CLIENT_KEYS JSON>"}`:
//!   the live hub checks open sockets against that list instead of its own
//!   `CLIENT_KEYS`, and runs its key check alarm now.
//! - `POST /__test/r2-keys` takes `{"prefix"}` and lists the keys of the
//!   media bucket under it, so a test sees what R2 really holds.
//! - `POST /__test/list-probe` takes `{"query": "<List Messages query
//!   string>"}` and answers, summed over the shards, how many count queries
//!   they have run, and SQLite's query plans for the list's page and count
//!   queries on one shard, so a test can see which index serves them.

use bw_ledger_core::list::ListQuery;
use bw_ledger_core::wire::{key_guard, live_hub, MessageQuery};
use bw_ledger_core::ApiError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use worker::{Env, Request, Response};

use crate::config::Config;
use crate::object_call::call;
use crate::objects::key_guard::test_methods::{GuardSql, GuardSqlRequest};
use crate::objects::ledger::test_methods::{DropAlarm, Probe, ShardProbe, ShardSql, ShardSqlRequest};
use crate::objects::live_hub::test_methods::LiveKeys;
use crate::shard_client::ShardClient;

/// The test routes, or `None` for any other path (the Worker's own routes).
pub async fn route(req: &mut Request, env: &Env, config: &Config) -> Option<Result<Response, ApiError>> {
    Some(match req.path().as_str() {
        "/__test/shard-sql" => shard_sql(req, env, config).await,
        "/__test/list-probe" => list_probe(req, env, config).await,
        "/__test/drop-alarm" => drop_alarm(req, env, config).await,
        "/__test/r2-keys" => r2_keys(req, env, config).await,
        "/__test/guard-sql" => guard_sql(req, env, config).await,
        "/__test/live-keys" => live_keys(req, env, config).await,
        _ => return None,
    })
}

/// The API token, then the JSON body as `T`.
async fn body<T: DeserializeOwned>(req: &mut Request, config: &Config) -> Result<T, ApiError> {
    crate::routes::authorize_api(req, config)?;
    let body = crate::http::read_bounded(req, 1 << 20).await?;
    serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("not a {} request: {e}", req.path())))
}

async fn shard_sql(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let q: ShardSqlRequest = body(req, config).await?;
    let shards = ShardClient::open(env, config).await?;
    let shard = q.shard.unwrap_or_else(|| shards.shard_of(&q.message_id));
    let rows = shards.call::<ShardSql>(shard, &q).await?;
    crate::http::json(&serde_json::json!({ "rows": rows }))
}

async fn drop_alarm(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let q: MessageQuery = body(req, config).await?;
    let shards = ShardClient::open(env, config).await?;
    shards.call::<DropAlarm>(shards.shard_of(&q.message_id), &q).await?;
    crate::http::json(&serde_json::json!({}))
}

#[derive(Deserialize)]
struct ProbeRequest {
    query: String,
}

async fn list_probe(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let p: ProbeRequest = body(req, config).await?;
    let q = ListQuery::parse(Some(&p.query), None)?;
    let shards = ShardClient::open(env, config).await?;
    let probes = shards.call_all::<ShardProbe>(&q).await?;
    let count_queries: u64 = probes.iter().map(|p| p.count_queries).sum();
    let requests: u64 = probes.iter().map(|p| p.requests).sum();
    let first = probes.into_iter().next().unwrap_or_default();
    crate::http::json(&Probe { count_queries, requests, ..first })
}

async fn guard_sql(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let q: GuardSqlRequest = body(req, config).await?;
    let rows = call::<GuardSql>(env, &key_guard::name(&q.key_id), &q).await?;
    crate::http::json(&serde_json::json!({ "rows": rows }))
}

#[derive(Deserialize)]
struct R2KeysRequest {
    prefix: String,
}

async fn r2_keys(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let q: R2KeysRequest = body(req, config).await?;
    let bucket = env.bucket(crate::config::MEDIA).map_err(|_| ApiError::NotConfigured(crate::config::MEDIA))?;
    let listed = bucket.list().prefix(q.prefix).execute().await.map_err(|_| ApiError::StorageUnavailable)?;
    let keys: Vec<String> = listed.objects().iter().map(|o| o.key()).collect();
    crate::http::json(&serde_json::json!({ "keys": keys }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LiveKeysRequest {
    client_keys: String,
}

async fn live_keys(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let q: LiveKeysRequest = body(req, config).await?;
    call::<LiveKeys>(env, live_hub::NAME, &q.client_keys).await?;
    crate::http::json(&serde_json::json!({}))
}
