//! Operations API over the forwarding outbox (API token): counts, dead
//! letters, replay (to the same target or into another) and discard,
//! fanned out to every shard and merged in the core.

use bw_ledger_core::outbox::{merge_dead, merge_stats, stats_view, DiscardRequest, ReplayRequest};
use bw_ledger_core::route::query_limit;
use bw_ledger_core::wire::{ledger, DeadQuery, DiscardReply, Empty, ReplayReply};
use bw_ledger_core::ApiError;
use worker::{Env, Request, Response};

use crate::clock::now_ms;
use crate::config::Config;
use crate::http;
use crate::shard_client::ShardClient;

/// Replay bodies are small: a target and a range, or a list of ids.
const MAX_REPLAY_BODY: usize = 256 * 1024;

/// `GET /outbox`: counts per target.
pub async fn stats(env: &Env, config: &Config) -> Result<Response, ApiError> {
    let shards = ShardClient::open(env, config).await?;
    let mut total = Vec::new();
    for s in shards.call_all::<ledger::OutboxStats>(&Empty {}).await? {
        merge_stats(&mut total, s);
    }
    http::json(&stats_view(&total, now_ms()))
}

/// `GET /outbox/dead`: dead letters, oldest first.
pub async fn dead(req: &Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let url = req.url().map_err(|_| ApiError::BadRequest("The URL is not valid.".into()))?;
    let limit = query_limit(url.query(), 100, 1000)?;
    let target = url.query_pairs().find(|(k, _)| k == "target").map(|(_, v)| v.into_owned());
    let shards = ShardClient::open(env, config).await?;
    let lists = shards.call_all::<ledger::OutboxDead>(&DeadQuery { target, limit }).await?;
    http::json(&serde_json::json!({ "items": merge_dead(lists, limit as usize) }))
}

/// `POST /outbox/replay`: queues rows again with their webhook ids.
pub async fn replay(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let body = http::read_bounded(req, MAX_REPLAY_BODY).await?;
    let mut replay: ReplayRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!("The body must be {{\"target\", \"from\"/\"to\" or \"ids\"}}: {e}"))
    })?;
    replay.validate().map_err(ApiError::BadRequest)?;
    if let Some(into) = &replay.into {
        if !crate::routes::targets::Known::read(env).await?.ids().contains(into) {
            return Err(ApiError::NotFound("Target"));
        }
    }
    replay.now_ms = now_ms();
    let shards = ShardClient::open(env, config).await?;
    let per_shard = shards.call_all::<ledger::OutboxReplay>(&replay).await?;
    http::json(&ReplayReply { replayed: per_shard.iter().map(|r| r.replayed).sum() })
}

/// `POST /outbox/discard`: a target's dead letters (all, or `ids`) are
/// deleted for good.
pub async fn discard(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let body = http::read_bounded(req, MAX_REPLAY_BODY).await?;
    let discard: DiscardRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("The body must be {{\"target\", \"ids\"?}}: {e}")))?;
    let shards = ShardClient::open(env, config).await?;
    let per_shard = shards.call_all::<ledger::OutboxDiscard>(&discard).await?;
    http::json(&DiscardReply { discarded: per_shard.iter().map(|r| r.discarded).sum() })
}
