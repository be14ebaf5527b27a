//! The read API: a message (`GET /messages/{id}`), the quarantine, List
//! Messages (`GET /api/v2/users/{accountId}/messages`, in Bandwidth's
//! shape) and conversations. Queries are parsed and planned in the core,
//! fanned out to the shards, and merged in the core.

use bw_ledger_core::list::{list_item, merge, page_info, total_count, ListQuery, ShardPage};
use bw_ledger_core::projection::project;
use std::collections::BTreeMap;

use bw_ledger_core::quarantine::{plan_page, QuarantineCursor, QuarantinePageQuery, MAX_PAGE_BYTES};
use bw_ledger_core::route::query_limit;
use bw_ledger_core::wire::{ledger, MessageQuery};
use bw_ledger_core::ApiError;
use worker::{Env, Request, Response};

use crate::config::Config;
use crate::http;
use crate::shard_client::ShardClient;

/// `GET /messages/{id}` (API token): the message as its events show it.
pub async fn message(env: &Env, config: &Config, id: String) -> Result<Response, ApiError> {
    let shards = ShardClient::open(env, config).await?;
    let records =
        shards.call::<ledger::Message>(shards.shard_of(&id), &MessageQuery { message_id: id.clone() }).await?;
    let view = project(&id, &records).ok_or(ApiError::NotFound("Message"))?;
    http::json(&view)
}

/// `GET /quarantine` (API token): the most recently seen items of all
/// shards, at most `limit` and [`MAX_PAGE_BYTES`] of bodies per answer,
/// with `nextPageToken` for the rest. The page is planned from the shards'
/// indexes (sizes, no bodies); only the chosen bodies are read.
pub async fn quarantine(req: &Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let url = req.url().map_err(|_| ApiError::BadRequest("The URL is not valid.".into()))?;
    let limit = query_limit(url.query(), 100, 1000)?;
    let after = match url.query_pairs().find(|(k, _)| k == "pageToken") {
        None => None,
        Some((_, token)) => Some(
            QuarantineCursor::parse(&token)
                .ok_or_else(|| ApiError::BadRequest("`pageToken` is not a token this API gave.".into()))?,
        ),
    };
    let shards = ShardClient::open(env, config).await?;
    let pages =
        shards.call_all::<ledger::QuarantineIndex>(&QuarantinePageQuery { limit, after: after.clone() }).await?;
    let total: u64 = pages.iter().map(|p| p.count).sum();
    let plan = plan_page(&pages, limit, MAX_PAGE_BYTES, after.as_ref());
    let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for m in &plan.items {
        by_shard.entry(shards.placement().shard_of_untimed(&m.content_hash)).or_default().push(m.content_hash.clone());
    }
    let mut bodies: BTreeMap<String, String> = BTreeMap::new();
    for (shard, hashes) in by_shard {
        for b in shards.call::<ledger::QuarantineBodies>(shard, &hashes).await? {
            bodies.insert(b.content_hash, b.raw);
        }
    }
    // An item deleted between the two reads (retention, erasure) is left out.
    let items: Vec<_> =
        plan.items.into_iter().filter_map(|m| bodies.remove(&m.content_hash).map(|raw| m.with_raw(raw))).collect();
    let mut answer = serde_json::json!({ "items": items, "totalCount": total });
    if let Some(next) = plan.next {
        answer["nextPageToken"] = next.token().into();
    }
    http::json(&answer)
}

/// `GET /quarantine/count` (API token): how many items the quarantine
/// holds, reading no body.
pub async fn quarantine_count(env: &Env, config: &Config) -> Result<Response, ApiError> {
    let shards = ShardClient::open(env, config).await?;
    let pages = shards.call_all::<ledger::QuarantineIndex>(&QuarantinePageQuery { limit: 0, after: None }).await?;
    http::json(&serde_json::json!({ "count": pages.iter().map(|p| p.count).sum::<u64>() }))
}

/// List Messages (`account_id` is `Some`) or conversations (`None`).
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
    let scope = super::authorize_reader(http::header(req, "Authorization").as_deref(), env, config).await?;
    let url = req.url().map_err(|_| ApiError::BadRequest("The URL is not valid.".into()))?;
    let query = url.query();
    let q = match account_id {
        Some(_) => ListQuery::parse(query, scope)?,
        None => ListQuery::conversation(query, scope)?,
    };
    let shards = ShardClient::open(env, config).await?;
    let pages: Vec<ShardPage> = shards.call_all::<ledger::List>(&q).await?;
    let total = total_count(&q, pages.iter().map(|p| p.total));
    let page = merge(&q, pages.into_iter().map(|p| p.rows).collect());
    let base = format!("{}{}", url.origin().ascii_serialization(), url.path());
    let messages: Vec<serde_json::Value> =
        page.rows.iter().map(|r| list_item(r, &account, q.include_content)).collect();
    let mut body = serde_json::json!({
        "pageInfo": page_info(&page, &base, query),
        "messages": messages,
    });
    if let Some(total) = total {
        body["totalCount"] = total.into();
    }
    http::json(&body)
}
