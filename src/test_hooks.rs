//! Test-only hooks, compiled in only with the `test-hooks` feature (the
//! e2e suite's second build, `build-test/`); the Worker `npm run dev` and
//! `npm run deploy` build has none of this.
//!
//! `POST /__test/shard-sql` (API token) runs one SQL statement on the shard
//! that holds `messageId` (or on shard number `shard`), so a test can damage derived state by hand or
//! install a trigger that makes a later statement fail midway.
//!
//! `POST /__test/drop-alarm` (API token) deletes a shard's alarm.
//!
//! `POST /__test/guard-sql` (API token) runs one statement on a client
//! key's guard (`{"keyId", "sql", "params"}`), to see its idempotency records.
//!
//! `POST /__test/live-keys` (API token) takes `{"clientKeys": "<CLIENT_KEYS
//! JSON>"}`: the live hub checks open sockets against that list instead of
//! its own `CLIENT_KEYS` (a running workerd cannot change a secret without
//! restarting, which would drop every socket anyway), and runs its key
//! check alarm now.
//!
//! `POST /__test/r2-keys` (API token) takes `{"prefix"}` and lists the keys
//! of the media bucket under it, so a test sees what R2 really holds.
//!
//! `POST /__test/list-probe` (API token) takes `{"query": "<List Messages
//! query string>"}` and answers, summed over the shards, how many count
//! queries they have run, and SQLite's query plans for the list's page and
//! count queries on one shard, so a test can see which index serves them.

use bw_ledger_core::list::{count_plan, page_plan, ListQuery, SqlPlan};
use bw_ledger_core::wire::Method;
use bw_ledger_core::ApiError;
use serde::{Deserialize, Serialize};
use worker::{Env, Request, Response, SqlStorage};

use crate::config::Config;
use crate::shard_client::ShardClient;

/// The test routes, or `None` for any other path (the Worker's own routes).
pub async fn route(req: &mut Request, env: &Env, config: &Config) -> Option<Result<Response, ApiError>> {
    Some(match req.path().as_str() {
        "/__test/shard-sql" => handle(req, env, config).await,
        "/__test/list-probe" => handle_probe(req, env, config).await,
        "/__test/drop-alarm" => handle_drop_alarm(req, env, config).await,
        "/__test/r2-keys" => handle_r2_keys(req, env, config).await,
        "/__test/guard-sql" => handle_guard_sql(req, env, config).await,
        "/__test/live-keys" => handle_live_keys(req, env, config).await,
        _ => return None,
    })
}

/// The shard method behind it: one statement, its rows.
pub struct ShardSql;

impl Method for ShardSql {
    const PATH: &'static str = "/test/sql";
    type Request = ShardSqlRequest;
    type Reply = Vec<serde_json::Value>;
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardSqlRequest {
    /// The shard that holds this message; or name the shard by number.
    #[serde(default)]
    pub message_id: String,
    #[serde(default)]
    pub shard: Option<u32>,
    pub sql: String,
    #[serde(default)]
    pub params: Vec<serde_json::Value>,
}

async fn handle(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    crate::routes::authorize_api(req, config)?;
    let body = crate::http::read_bounded(req, 1 << 20).await?;
    let q: ShardSqlRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("not a shard-sql request: {e}")))?;
    let shards = ShardClient::new(env, config.shards()?)?;
    let shard = q.shard.unwrap_or_else(|| shards.shard_of(&q.message_id));
    let rows = shards.call::<ShardSql>(shard, &q).await?;
    crate::http::json(&serde_json::json!({ "rows": rows }))
}

/// The shard method behind `POST /__test/drop-alarm` (`{"messageId"}`):
/// deletes the alarm of the shard that holds the message, as a crash at the
/// wrong moment could, so a test can see the shard re-arm it on waking.
pub struct DropAlarm;

impl Method for DropAlarm {
    const PATH: &'static str = "/test/drop-alarm";
    type Request = bw_ledger_core::wire::MessageQuery;
    type Reply = bw_ledger_core::wire::Empty;
}

async fn handle_drop_alarm(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    crate::routes::authorize_api(req, config)?;
    let body = crate::http::read_bounded(req, 1 << 16).await?;
    let q: bw_ledger_core::wire::MessageQuery =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("not a drop-alarm request: {e}")))?;
    let shards = ShardClient::new(env, config.shards()?)?;
    shards.call::<DropAlarm>(shards.shard_of(&q.message_id), &q).await?;
    crate::http::json(&serde_json::json!({}))
}

/// The shard method behind the probe.
pub struct ShardProbe;

impl Method for ShardProbe {
    const PATH: &'static str = "/test/probe";
    type Request = ListQuery;
    type Reply = Probe;
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub count_queries: u64,
    /// Requests the shards have answered (the probe's own excluded).
    #[serde(default)]
    pub requests: u64,
    pub page_plan: Vec<String>,
    pub count_plan: Vec<String>,
}

#[derive(Deserialize)]
struct ProbeRequest {
    query: String,
}

async fn handle_probe(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    crate::routes::authorize_api(req, config)?;
    let body = crate::http::read_bounded(req, 1 << 16).await?;
    let p: ProbeRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("not a probe request: {e}")))?;
    let q = ListQuery::parse(Some(&p.query), None)?;
    let shards = ShardClient::new(env, config.shards()?)?;
    let probes = shards.call_all::<ShardProbe>(&q).await?;
    let count_queries: u64 = probes.iter().map(|p| p.count_queries).sum();
    let requests: u64 = probes.iter().map(|p| p.requests).sum();
    let first = probes.into_iter().next().unwrap_or_default();
    crate::http::json(&Probe { count_queries, requests, ..first })
}

/// The shard's side of the probe.
pub fn probe(sql: &SqlStorage, q: &ListQuery, count_queries: u64, requests: u64) -> worker::Result<Probe> {
    #[derive(Deserialize)]
    struct PlanRow {
        detail: String,
    }
    let explain = |plan: Option<SqlPlan>| -> worker::Result<Vec<String>> {
        let Some(plan) = plan else { return Ok(Vec::new()) };
        let explained = SqlPlan { sql: format!("EXPLAIN QUERY PLAN {}", plan.sql), params: plan.params };
        let rows: Vec<PlanRow> = crate::objects::ledger::run_planned(sql, explained)?.to_array()?;
        Ok(rows.into_iter().map(|r| r.detail).collect())
    };
    Ok(Probe { count_queries, requests, page_plan: explain(Some(page_plan(q)))?, count_plan: explain(count_plan(q))? })
}

/// The shard's side: runs the statement, answers its rows.
pub fn run(sql: &SqlStorage, q: ShardSqlRequest) -> worker::Result<Vec<serde_json::Value>> {
    run_rows(sql, &q.sql, q.params)
}

/// One statement with JSON parameters; its rows.
pub fn run_rows(
    sql: &SqlStorage,
    stmt: &str,
    params: Vec<serde_json::Value>,
) -> worker::Result<Vec<serde_json::Value>> {
    let params = params
        .into_iter()
        .map(|p| match p {
            serde_json::Value::Number(n) => n.as_i64().map_or_else(|| n.as_f64().unwrap_or(0.0).into(), Into::into),
            serde_json::Value::String(s) => s.into(),
            serde_json::Value::Null => worker::SqlStorageValue::Null,
            other => other.to_string().into(),
        })
        .collect::<Vec<worker::SqlStorageValue>>();
    sql.exec(stmt, params)?.to_array()
}

/// The key guard method behind `POST /__test/guard-sql`
/// (`{"keyId", "sql", "params"}`): one statement on a client key's guard.
pub struct GuardSql;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardSqlRequest {
    pub key_id: String,
    pub sql: String,
    #[serde(default)]
    pub params: Vec<serde_json::Value>,
}

impl Method for GuardSql {
    const PATH: &'static str = "/test/guard-sql";
    type Request = GuardSqlRequest;
    type Reply = Vec<serde_json::Value>;
}

async fn handle_guard_sql(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    crate::routes::authorize_api(req, config)?;
    let body = crate::http::read_bounded(req, 1 << 20).await?;
    let q: GuardSqlRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("not a guard-sql request: {e}")))?;
    let namespace = env.durable_object(crate::config::KEY_GUARD).map_err(|_| ApiError::Internal)?;
    let rows =
        crate::object_call::call::<GuardSql, _>(&namespace, &crate::objects::key_guard::object_name(&q.key_id), &q)
            .await
            .map_err(|_| ApiError::StorageUnavailable)?;
    crate::http::json(&serde_json::json!({ "rows": rows }))
}

#[derive(Deserialize)]
struct R2KeysRequest {
    prefix: String,
}

async fn handle_r2_keys(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    crate::routes::authorize_api(req, config)?;
    let body = crate::http::read_bounded(req, 1 << 16).await?;
    let q: R2KeysRequest = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let bucket = env.bucket(crate::config::MEDIA).map_err(|_| ApiError::NotConfigured(crate::config::MEDIA))?;
    let listed = bucket.list().prefix(q.prefix).execute().await.map_err(|_| ApiError::StorageUnavailable)?;
    let keys: Vec<String> = listed.objects().iter().map(|o| o.key()).collect();
    crate::http::json(&serde_json::json!({ "keys": keys }))
}

/// The hub method behind `POST /__test/live-keys`: the `CLIENT_KEYS` JSON
/// the hub checks sockets against from now on.
pub struct LiveKeys;

impl Method for LiveKeys {
    const PATH: &'static str = "/test/live-keys";
    type Request = String;
    type Reply = bw_ledger_core::wire::Empty;
}

/// Where the hub keeps that list.
pub const LIVE_KEYS_OVERRIDE: &str = "test-client-keys";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LiveKeysRequest {
    client_keys: String,
}

async fn handle_live_keys(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    crate::routes::authorize_api(req, config)?;
    let body = crate::http::read_bounded(req, 1 << 16).await?;
    let q: LiveKeysRequest = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let namespace = env.durable_object(crate::config::LIVE).map_err(|_| ApiError::Internal)?;
    crate::object_call::call::<LiveKeys, _>(&namespace, crate::objects::live_hub::HUB_NAME, &q.client_keys)
        .await
        .map_err(|_| ApiError::StorageUnavailable)?;
    crate::http::json(&serde_json::json!({}))
}
