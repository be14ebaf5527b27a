//! The shard's test methods, compiled only into the e2e suite's build
//! (`test-hooks`); `routes/test_routes.rs` calls them. Production code
//! never names anything here but `Call` and `serve`.

use bw_ledger_core::list::{count_plan, page_plan, ListQuery, SqlPlan};
use bw_ledger_core::wire::{ledger, Empty, MessageQuery};
use serde::{Deserialize, Serialize};
use worker::{Request, Response, Result, SqlStorage};

use super::reads;
use super::shard::LedgerShard;
use crate::object_call::{reply, request};

bw_ledger_core::methods! {
    object = ledger::Object;
    /// One SQL statement on the shard, its rows, so a test can damage
    /// derived state by hand or install a trigger that fails a later write.
    ShardSql = "/test/sql": ShardSqlRequest => Vec<serde_json::Value>;
    /// Deletes the shard's alarm, as a crash at the wrong moment could, so
    /// a test can see the shard re-arm it on waking.
    DropAlarm = "/test/drop-alarm": MessageQuery => Empty;
    /// The count queries and requests this instance has answered, and
    /// SQLite's plans for a list query's page and count.
    ShardProbe = "/test/probe": ListQuery => Probe;
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

/// Every test method, one arm each.
pub(super) async fn serve(shard: &LedgerShard, call: Call, mut req: Request) -> Result<Response> {
    match call {
        Call::ShardSql => {
            let q = request::<ShardSql>(&mut req).await?;
            reply::<ShardSql>(&run_rows(&shard.sql, &q.sql, q.params)?)
        }
        Call::DropAlarm => {
            shard.storage.delete_alarm().await?;
            reply::<DropAlarm>(&Empty {})
        }
        Call::ShardProbe => {
            let q = request::<ShardProbe>(&mut req).await?;
            reply::<ShardProbe>(&probe(&shard.sql, &q, shard.count_queries.get(), shard.requests.get())?)
        }
    }
}

fn probe(sql: &SqlStorage, q: &ListQuery, count_queries: u64, requests: u64) -> Result<Probe> {
    #[derive(Deserialize)]
    struct PlanRow {
        detail: String,
    }
    let explain = |plan: Option<SqlPlan>| -> Result<Vec<String>> {
        let Some(plan) = plan else { return Ok(Vec::new()) };
        let explained = SqlPlan { sql: format!("EXPLAIN QUERY PLAN {}", plan.sql), params: plan.params };
        let rows: Vec<PlanRow> = reads::run(sql, explained)?.to_array()?;
        Ok(rows.into_iter().map(|r| r.detail).collect())
    };
    Ok(Probe { count_queries, requests, page_plan: explain(Some(page_plan(q)))?, count_plan: explain(count_plan(q))? })
}

/// One statement with JSON parameters; its rows. (The key guard's test
/// method runs its statements through this too.)
pub fn run_rows(sql: &SqlStorage, stmt: &str, params: Vec<serde_json::Value>) -> Result<Vec<serde_json::Value>> {
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
