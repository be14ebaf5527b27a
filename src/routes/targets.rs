//! The webhook targets API (API token): `FORWARD_TARGETS`' targets, read
//! only, and those made through the API, kept by the target registry
//! (`objects::target_registry`), which hands every change to every shard
//! before it answers. A secret is in the create and rotate answers only.

use bw_ledger_core::outbox::{merge_stats, TargetStats};
use bw_ledger_core::targets::{api_view, config_view, parse_new, parse_patch, with_stats, Outcome, WithSecret};
use bw_ledger_core::wire::target_registry::{self as reg, PatchRequest, PausedRequest, TargetId};
use bw_ledger_core::wire::{ledger, Empty};
use bw_ledger_core::ApiError;
use serde_json::Value;
use worker::{Env, Request, Response};

use crate::clock::now_ms;
use crate::config::{forward_targets, target_sealer, Config, TARGET_SECRETS_KEY};
use crate::http;
use crate::objects::target_registry::registry;
use crate::shard_client::ShardClient;

/// A target's body is a URL, a few kinds, a number and a description.
const MAX_BODY: usize = 16 * 1024;

/// The ids of every target, from both sources (none of `FORWARD_TARGETS`
/// if it is malformed: the shards log that, and forward nothing to them).
pub async fn ids(env: &Env) -> Result<Vec<String>, ApiError> {
    let mut ids: Vec<String> = forward_targets(env).unwrap_or_default().into_iter().map(|t| t.id).collect();
    ids.extend(registry::<reg::List>(env, &Empty {}).await?.into_iter().map(|r| r.id));
    Ok(ids)
}

fn done<T>(outcome: Outcome<T>) -> Result<T, ApiError> {
    match outcome {
        Outcome::Done(t) => Ok(t),
        Outcome::NotFound => Err(ApiError::NotFound("Target")),
        Outcome::Conflict(why) => Err(ApiError::Conflict(why)),
    }
}

/// Every target's view with its outbox figures: configured ones first.
async fn views(env: &Env, config: &Config) -> Result<Vec<Value>, ApiError> {
    let api = registry::<reg::List>(env, &Empty {}).await?;
    let mut stats: Vec<TargetStats> = Vec::new();
    for s in ShardClient::open(env, config)?.call_all::<ledger::OutboxStats>(&Empty {}).await? {
        merge_stats(&mut stats, s);
    }
    let of = |id: &str| stats.iter().find(|s| s.target == id);
    let now = now_ms();
    let configured = forward_targets(env).unwrap_or_default();
    let mut all: Vec<Value> = configured.iter().map(|t| with_stats(config_view(t), of(&t.id))).collect();
    for r in api.iter().filter(|r| !configured.iter().any(|c| c.id == r.id)) {
        all.push(with_stats(api_view(r, now), of(&r.id)));
    }
    Ok(all)
}

/// `GET /targets`.
pub async fn list(env: &Env, config: &Config) -> Result<Response, ApiError> {
    http::json(&serde_json::json!({ "targets": views(env, config).await? }))
}

/// `GET /targets/{id}`.
pub async fn get(env: &Env, config: &Config, id: &str) -> Result<Response, ApiError> {
    let all = views(env, config).await?;
    let one = all.into_iter().find(|v| v["id"] == id).ok_or(ApiError::NotFound("Target"))?;
    http::json(&one)
}

/// A malformed `TARGET_SECRETS_KEY` refuses to make secrets rather than
/// keep them in the clear.
fn check_key(env: &Env) -> Result<(), ApiError> {
    target_sealer(env).map(|_| ()).map_err(|why| {
        crate::log::log_error!("config: {why}");
        ApiError::NotConfigured(TARGET_SECRETS_KEY)
    })
}

/// The view of a made or rotated target, with its secret this once.
fn with_secret(made: WithSecret, status: u16) -> Result<Response, ApiError> {
    let mut view = with_stats(api_view(&made.target, now_ms()), None);
    view["secret"] = Value::String(made.secret);
    Ok(http::json(&view)?.with_status(status))
}

/// `POST /targets` → 201.
pub async fn create(req: &mut Request, env: &Env) -> Result<Response, ApiError> {
    let body = http::read_bounded(req, MAX_BODY).await?;
    let new = parse_new(&body).map_err(ApiError::BadRequest)?;
    check_key(env)?;
    // The registry refuses an id FORWARD_TARGETS holds (409).
    with_secret(done(registry::<reg::Create>(env, &new).await?)?, 201)
}

/// `PATCH /targets/{id}`: the body is checked before the target is looked up.
pub async fn patch(req: &mut Request, env: &Env, config: &Config, id: String) -> Result<Response, ApiError> {
    let body = http::read_bounded(req, MAX_BODY).await?;
    let patch = parse_patch(&body).map_err(ApiError::BadRequest)?;
    done(registry::<reg::Patch>(env, &PatchRequest { id: id.clone(), patch }).await?)?;
    get(env, config, &id).await
}

/// `POST /targets/{id}/secret/rotate`.
pub async fn rotate(env: &Env, id: String) -> Result<Response, ApiError> {
    check_key(env)?;
    with_secret(done(registry::<reg::Rotate>(env, &TargetId { id }).await?)?, 200)
}

/// `POST /targets/{id}/enable` and `/disable`.
pub async fn set_paused(env: &Env, config: &Config, id: String, paused: bool) -> Result<Response, ApiError> {
    done(registry::<reg::SetPaused>(env, &PausedRequest { id: id.clone(), paused }).await?)?;
    get(env, config, &id).await
}

/// `DELETE /targets/{id}` → 204: its pending forwards are dead letters.
pub async fn delete(env: &Env, id: String) -> Result<Response, ApiError> {
    done(registry::<reg::Delete>(env, &TargetId { id }).await?)?;
    Ok(Response::empty().map_err(|_| ApiError::Internal)?.with_status(204))
}
