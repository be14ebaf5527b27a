//! What operators read: `GET /metrics` (Prometheus text), `GET
//! /stats/outcomes` (the console's chart), `GET /shards` (the shard layout)
//! and `GET /openapi.json` (the API described). Figures come from every
//! shard, merged in the core.

use bw_ledger_core::list::ListQuery;
use bw_ledger_core::metrics::{render, ShardMetrics};
use bw_ledger_core::stats::{merge, window_start, OutcomeQuery};
use bw_ledger_core::targets::views::render_states;
use bw_ledger_core::wire::{ledger, opt_outs, Empty};
use bw_ledger_core::ApiError;
use worker::{Env, Response};

use crate::clock::now_ms;
use crate::config::Config;
use crate::http;
use crate::shard_client::{layouts, ShardClient};

const OPENAPI: &str = include_str!("../openapi.json");

/// `GET /metrics` (API token).
pub async fn metrics(env: &Env, config: &Config) -> Result<Response, ApiError> {
    let layouts = layouts(env, config).await?;
    let shards = ShardClient::open(env, config).await?;
    let mut total = ShardMetrics::default();
    for figures in shards.call_all::<ledger::Metrics>(&Empty {}).await? {
        total.add(figures);
    }
    let known = crate::routes::targets::Known::read(env).await?;
    let optouts = crate::objects::opt_outs::book::<opt_outs::Counts>(env, &Empty {}).await?;
    let mut text = render(&total, &known.ids());
    // The shards' figures already count outbox rows per target.
    let with_rows = total.outbox.iter().filter(|(_, _, n)| *n > 0).map(|(target, _, _)| target.as_str());
    text.push_str(&render_states(&known.states(with_rows)));
    text.push_str(&optouts.render());
    text.push_str(&bw_ledger_core::shard::render_metrics(&layouts, crate::clock::now_ms()));
    http::text(text, "text/plain; version=0.0.4; charset=utf-8")
}

/// `GET /shards` (API token): the shard layouts, the counts older versions
/// asked for, and each shard's List Messages rows (`shard::view`).
pub async fn shards(env: &Env, config: &Config) -> Result<Response, ApiError> {
    let layouts = layouts(env, config).await?;
    let shards = ShardClient::open(env, config).await?;
    let count_only = ListQuery::parse(Some("limit=1"), None)?;
    let pages = shards.call_all::<ledger::List>(&count_only).await?;
    let rows: Vec<i64> = pages.iter().map(|p| p.total.unwrap_or(0)).collect();
    http::json(&bw_ledger_core::shard::view(&layouts, &rows, config.retention_days()?, crate::clock::now_ms()))
}

/// `GET /stats/outcomes` (API token).
pub async fn outcomes(env: &Env, config: &Config) -> Result<Response, ApiError> {
    let now = now_ms();
    let shards = ShardClient::open(env, config).await?;
    let counts = shards.call_all::<ledger::Outcomes>(&OutcomeQuery { from_ms: window_start(now) }).await?;
    http::json(&merge(now, counts))
}

/// `GET /openapi.json` (no auth): the document, as written.
pub fn openapi() -> Result<Response, ApiError> {
    http::text(OPENAPI.to_owned(), "application/json")
}
