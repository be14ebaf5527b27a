//! The key guard's test method, compiled only into the e2e suite's build
//! (`test-hooks`): one statement on a guard, to see its idempotency
//! records.

use bw_ledger_core::wire::key_guard;
use serde::{Deserialize, Serialize};
use worker::{Request, Response, Result, SqlStorage};

use crate::object_call::{reply, request};
use crate::objects::ledger::test_methods::run_rows;

bw_ledger_core::methods! {
    object = key_guard::Object;
    /// `{"keyId", "sql", "params"}`: one statement on that key's guard.
    GuardSql = "/test/guard-sql": GuardSqlRequest => Vec<serde_json::Value>;
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardSqlRequest {
    pub key_id: String,
    pub sql: String,
    #[serde(default)]
    pub params: Vec<serde_json::Value>,
}

/// Every test method, one arm each.
pub(super) async fn serve(sql: &SqlStorage, call: Call, mut req: Request) -> Result<Response> {
    match call {
        Call::GuardSql => {
            let q = request::<GuardSql>(&mut req).await?;
            reply::<GuardSql>(&run_rows(sql, &q.sql, q.params)?)
        }
    }
}
