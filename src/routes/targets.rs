//! The webhook targets API (API token): `FORWARD_TARGETS`' targets, read
//! only, and those made through the API, kept by the target registry
//! (`objects::target_registry`), which hands every change to every shard
//! before it answers. A secret is in the create and rotate answers only.

use bw_ledger_core::forward::ForwardTarget;
use bw_ledger_core::outbox::{merge_stats, TargetStats};
use bw_ledger_core::targets::health::{Health, TargetState};
use bw_ledger_core::targets::views::{api_view, config_view, other_view, shown_alert_url, with_stats};
use bw_ledger_core::targets::{parse_new, parse_patch, Listing, Outcome, Target, TargetRecord, WithSecret};
use bw_ledger_core::wire::target_registry::{self as reg, PatchRequest, PausedRequest, TargetId};
use bw_ledger_core::wire::{ledger, Empty};
use bw_ledger_core::ApiError;
use serde_json::Value;
use worker::{Env, Request, Response};

use crate::clock::now_ms;
use crate::config::{alert_target, forward_targets, target_sealer, Config, TARGET_SECRETS_KEY};
use crate::http;
use crate::objects::target_registry::registry;
use crate::shard_client::ShardClient;

/// A target's body is a URL, a few kinds, a number and a description.
const MAX_BODY: usize = 16 * 1024;

/// Every target an operator can see: `FORWARD_TARGETS`' (none if it is
/// malformed: the shards log that, and forward nothing to them), the alert
/// webhook, the API's, and every target's health.
pub struct Known {
    configured: Vec<ForwardTarget>,
    alert: Option<Target>,
    listing: Listing,
}

impl Known {
    pub async fn read(env: &Env) -> Result<Self, ApiError> {
        let listing = registry::<reg::List>(env, &Empty {}).await?;
        Ok(Self { configured: forward_targets(env).unwrap_or_default(), alert: alert_target(env), listing })
    }

    fn api(&self) -> impl Iterator<Item = &TargetRecord> {
        self.listing.targets.iter().filter(|r| !self.configured.iter().any(|c| c.id == r.id))
    }

    /// The ids of every target configured now, either source.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.configured.iter().map(|t| t.id.clone()).collect();
        ids.extend(self.alert.iter().map(|a| a.id.clone()));
        ids.extend(self.api().map(|r| r.id.clone()));
        ids
    }

    fn health(&self, id: &str) -> Option<&Health> {
        self.listing.health.iter().find(|h| h.target == id)
    }

    /// Each target's state; of `with_rows` (the targets that have outbox
    /// rows), those no longer configured are `removed`.
    pub fn states<'a>(&self, with_rows: impl Iterator<Item = &'a str>) -> Vec<(String, TargetState)> {
        let ids = self.ids();
        let mut all: Vec<(String, TargetState)> =
            ids.iter().map(|id| (id.clone(), self.health(id).map_or(TargetState::Active, |h| h.state))).collect();
        all.extend(removed(&ids, with_rows).into_iter().map(|id| (id, TargetState::Removed)));
        all
    }
}

/// Of `with_rows`, the targets not among `ids` (configured now), once each.
fn removed<'a>(ids: &[String], with_rows: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut gone: Vec<String> = with_rows.filter(|id| !ids.iter().any(|c| c == id)).map(str::to_owned).collect();
    gone.sort();
    gone.dedup();
    gone
}

/// The targets with outbox rows, by the shards' counts.
fn with_rows(stats: &[TargetStats]) -> impl Iterator<Item = &str> {
    stats.iter().filter(|s| s.pending + s.paused + s.dead + s.delivered > 0).map(|s| s.target.as_str())
}

fn done<T>(outcome: Outcome<T>) -> Result<T, ApiError> {
    match outcome {
        Outcome::Done(t) => Ok(t),
        Outcome::NotFound => Err(ApiError::NotFound("Target")),
        Outcome::Conflict(why) => Err(ApiError::Conflict(why)),
    }
}

/// The shards' outbox figures, summed per target.
async fn outbox_stats(env: &Env, config: &Config) -> Result<Vec<TargetStats>, ApiError> {
    let mut stats: Vec<TargetStats> = Vec::new();
    for s in ShardClient::open(env, config).await?.call_all::<ledger::OutboxStats>(&Empty {}).await? {
        merge_stats(&mut stats, s);
    }
    Ok(stats)
}

/// Every target's view with its health and outbox figures: configured ones
/// first, then the alert webhook, the API's, and those removed.
async fn views(env: &Env, config: &Config) -> Result<Vec<Value>, ApiError> {
    let known = Known::read(env).await?;
    let stats = outbox_stats(env, config).await?;
    let of = |id: &str| stats.iter().find(|s| s.target == id);
    let view = |v: Value, id: &str, removed: bool| with_stats(v, of(id), known.health(id), removed);
    let now = now_ms();
    let mut all: Vec<Value> = known.configured.iter().map(|t| view(config_view(t), &t.id, false)).collect();
    if let Some(a) = &known.alert {
        let events = a.events.as_ref().map(|e| e.iter().map(|k| k.as_str().to_owned()).collect());
        let url = shown_alert_url(&a.url);
        all.push(view(other_view(&a.id, Some("alert"), Some(&url), events, None), &a.id, false));
    }
    all.extend(known.api().map(|r| view(api_view(r, now), &r.id, false)));
    let gone = removed(&known.ids(), with_rows(&stats));
    all.extend(gone.iter().map(|id| view(other_view(id, None, None, None, None), id, true)));
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
    let mut view = with_stats(api_view(&made.target, now_ms()), None, None, false);
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

/// `POST /targets/{id}/enable` and `/disable`, for a target of either
/// source (`enable` ends a failing or disabled state).
pub async fn set_paused(env: &Env, config: &Config, id: String, paused: bool) -> Result<Response, ApiError> {
    done(registry::<reg::SetPaused>(env, &PausedRequest { id: id.clone(), paused }).await?)?;
    get(env, config, &id).await
}

/// `DELETE /targets/{id}` → 204: its pending forwards are dead letters.
pub async fn delete(env: &Env, id: String) -> Result<Response, ApiError> {
    done(registry::<reg::Delete>(env, &TargetId { id }).await?)?;
    Ok(Response::empty().map_err(|_| ApiError::Internal)?.with_status(204))
}
