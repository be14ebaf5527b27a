//! Operations API over the forwarding outbox: counts, dead letters and
//! replay, fanned out to every shard.

use bw_ledger_core::forward::{merge_stats, OutboxItem, ReplayRequest, TargetStats};
use bw_ledger_core::route::{query_limit, Route};
use bw_ledger_core::wire::{route, DeadQuery, ReplayReply};
use bw_ledger_core::ApiError;
use worker::{Date, Env, Request, Response};

use crate::config::Config;
use crate::http;
use crate::shard_client::ShardClient;

pub async fn handle(which: Route, req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let shards = ShardClient::new(env, config.shards()?)?;
    let now = Date::now().as_millis() as i64;
    match which {
        Route::OutboxStats => {
            let per_shard: Vec<Vec<TargetStats>> = shards.call_all(route::OUTBOX_STATS, &serde_json::json!({})).await?;
            let mut total = Vec::new();
            for s in per_shard {
                merge_stats(&mut total, s);
            }
            let targets: Vec<serde_json::Value> = total
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "target": t.target, "pending": t.pending, "delivered": t.delivered, "dead": t.dead,
                        "oldestPendingAgeMs": t.oldest_pending_ms.map(|ms| (now - ms).max(0)),
                    })
                })
                .collect();
            http::json(&serde_json::json!({ "targets": targets }))
        }
        Route::OutboxDead => {
            let url = req.url().map_err(|_| ApiError::BadRequest("The URL is not valid.".into()))?;
            let limit = query_limit(url.query(), 100, 1000)?;
            let target = url.query_pairs().find(|(k, _)| k == "target").map(|(_, v)| v.into_owned());
            let per_shard: Vec<Vec<OutboxItem>> =
                shards.call_all(route::OUTBOX_DEAD, &DeadQuery { target, limit }).await?;
            let mut items: Vec<OutboxItem> = per_shard.into_iter().flatten().collect();
            items.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.webhook_id.cmp(&b.webhook_id)));
            items.truncate(limit as usize);
            http::json(&serde_json::json!({ "items": items }))
        }
        Route::OutboxReplay => {
            let body = req.bytes().await.map_err(|_| ApiError::BadRequest("The body could not be read.".into()))?;
            let mut replay: ReplayRequest = serde_json::from_slice(&body).map_err(|e| {
                ApiError::BadRequest(format!("The body must be {{\"target\", \"from\"/\"to\" or \"ids\"}}: {e}"))
            })?;
            replay.validate().map_err(ApiError::BadRequest)?;
            replay.now_ms = now;
            let per_shard: Vec<ReplayReply> = shards.call_all(route::OUTBOX_REPLAY, &replay).await?;
            http::json(&ReplayReply { replayed: per_shard.iter().map(|r| r.replayed).sum() })
        }
        _ => Err(ApiError::NotFound("Route")),
    }
}
