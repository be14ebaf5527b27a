//! List Messages (`GET /api/v2/users/{accountId}/messages`) and
//! conversations: parse and plan in the core, fan out to every shard,
//! merge in the core, answer in Bandwidth's shape.

use bw_ledger_core::auth::{check_bearer, AuthOutcome};
use bw_ledger_core::client::authenticate_client;
use bw_ledger_core::list::{list_item, merge, page_info, ListQuery, ShardPage};
use bw_ledger_core::wire::route;
use bw_ledger_core::ApiError;
use worker::{Env, Request, Response};

use crate::config::Config;
use crate::http;
use crate::shard_client::ShardClient;

/// Who is reading: the operator (API token) sees everything; a client key
/// sees rows that involve its own `allowed_from` numbers.
fn reader_scope(req: &Request, config: &Config) -> Result<Option<Vec<String>>, ApiError> {
    let header = req.headers().get("Authorization").ok().flatten();
    if let Some(token) = config.api_token() {
        if check_bearer(header.as_deref(), token) == AuthOutcome::Accepted {
            return Ok(None);
        }
    }
    let keys = config.client_keys()?;
    match authenticate_client(header.as_deref(), &keys) {
        Ok(key) => Ok(Some(key.allowed_from.clone())),
        Err(_) => Err(ApiError::ApiUnauthorized),
    }
}

/// `account_id` is `Some` for List Messages, `None` for conversations.
pub async fn list_messages(
    req: &Request,
    env: &Env,
    config: &Config,
    account_id: Option<&str>,
) -> Result<Response, ApiError> {
    let account = match account_id {
        Some(id) => {
            let configured = config.account_id()?;
            if id != configured {
                return Err(ApiError::NotFound("Account"));
            }
            configured
        }
        None => config.account_id().unwrap_or_default(),
    };
    let scope = reader_scope(req, config)?;
    let url = req.url().map_err(|_| ApiError::BadRequest("The URL is not valid.".into()))?;
    let query = url.query();
    let q = match account_id {
        Some(_) => ListQuery::parse(query, scope)?,
        None => ListQuery::conversation(query, scope)?,
    };
    let shards = ShardClient::new(env, config.shards()?)?;
    let pages: Vec<ShardPage> = shards.call_all(route::LIST, &q).await?;
    let total: i64 = pages.iter().map(|p| p.total).sum();
    let page = merge(&q, pages.into_iter().map(|p| p.rows).collect());
    let base = format!("{}{}", url.origin().ascii_serialization(), url.path());
    let messages: Vec<serde_json::Value> =
        page.rows.iter().map(|r| list_item(r, &account, q.include_content)).collect();
    http::json(&serde_json::json!({
        "totalCount": total,
        "pageInfo": page_info(&page, &base, query),
        "messages": messages,
    }))
}
