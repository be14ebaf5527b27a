//! Worker glue: the HTTP entry point, its routes, and the Durable Objects
//! (ledger shards, the OAuth token broker, the live hub).
//!
//! Every decision lives in `bw_ledger_core`; this crate moves bytes between
//! the runtime and the core. It must never answer 2xx to a callback before
//! every shard it touched has confirmed its write.
//!
//! - `routes/`: one file per concern (`callback` is the ack path);
//! - `objects/`: the Durable Objects (`ledger/` is the shard);
//! - `object_call`, `shard_client`, `group_commit`: calls to the objects;
//! - `config`, `http`, `upstream`, `clock`: settings, responses, Bandwidth,
//!   and the clock.

mod accepted;
mod clock;
mod config;
mod fetch;
mod group_commit;
mod http;
mod log;
mod object_call;
mod objects;
mod routes;
mod shard_client;
mod upstream;

use bw_ledger_core::route::{resolve, Route};
use bw_ledger_core::send::Endpoint;
use bw_ledger_core::ApiError;
use worker::{event, Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent};

use config::Config;
use routes::authorize_api;

pub use objects::key_guard::KeyGuard;
pub use objects::ledger::LedgerShard;
pub use objects::live_hub::LiveHub;
pub use objects::opt_outs::OptOutBook;
pub use objects::shard_map::ShardMap;
pub use objects::target_pacer::TargetPacer;
pub use objects::target_registry::TargetRegistry;
pub use objects::token_broker::TokenBroker;

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let started = clock::now_ms();
    let config = Config::from_env(&env);
    // The method as sent: `Request::method` reads any method it does not
    // know (`QUERY`, `PROPFIND`) as GET, which would serve it as one.
    let route = resolve(&req.inner().method(), &req.path());
    let mut trace = log::Trace::default();
    let resp = match handle(&mut req, route.clone(), &env, &config, &mut trace).await {
        Ok(resp) => resp,
        Err(e) => http::error_response(&e)?,
    };
    // The Bandwidth-shaped API serves browsers: every answer carries CORS
    // headers for allowed origins, errors included.
    let resp = if req.path().starts_with("/api/v2/") {
        let keys = config.client_keys().unwrap_or_default();
        let origin = http::header(&req, "Origin");
        routes::send::with_cors(resp, origin.as_deref(), &keys)
    } else {
        resp
    };
    let label = route.as_ref().map_or("unknown", Route::label);
    log::request(label, resp.status_code(), clock::now_ms() - started, &trace);
    Ok(resp)
}

/// The daily cron (`[triggers] crons` in wrangler.toml): retention.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    routes::lifecycle::scheduled(&env, &Config::from_env(&env)).await;
}

async fn handle(
    req: &mut Request,
    route: std::result::Result<Route, ApiError>,
    env: &Env,
    config: &Config,
    trace: &mut log::Trace,
) -> std::result::Result<Response, ApiError> {
    #[cfg(feature = "test-hooks")]
    if let Some(answer) = routes::test_routes::route(req, env, config).await {
        return answer;
    }
    let route = route?;
    if let Route::Message(id) | Route::Media { message_id: id, .. } = &route {
        trace.message_id = Some(id.clone());
        trace.shard = match shard_client::known_placement() {
            Some(placement) => Some(placement.shard_of(id)),
            None => config.shards().ok().map(|n| bw_ledger_core::shard::shard_for(id, n)),
        };
    }
    // Operator routes take the API token only, checked here once.
    if route.operator_only() {
        authorize_api(req, config)?;
    }
    match route {
        Route::Health => http::json(&serde_json::json!({ "status": "ok" })),
        Route::Console => http::console(config.account_id().unwrap_or_default().as_str()),
        Route::Callback => routes::callback::receive(req, env, config, trace).await,
        Route::Send { account_id } => routes::send::send(req, env, config, &account_id, Endpoint::Message).await,
        Route::SendMultiChannel { account_id } => {
            routes::send::send(req, env, config, &account_id, Endpoint::MultiChannel).await
        }
        Route::Preflight => routes::send::preflight(req, config),
        Route::List { account_id } => routes::read::list_messages(req, env, config, Some(&account_id)).await,
        Route::Conversation => routes::read::list_messages(req, env, config, None).await,
        Route::Live => routes::live::subscribe(req, env, config).await,
        Route::Message(id) => routes::read::message(env, config, id).await,
        Route::Quarantine => routes::read::quarantine(req, env, config).await,
        Route::QuarantineCount => routes::read::quarantine_count(env, config).await,
        Route::OutboxStats => routes::outbox::stats(env, config).await,
        Route::OutboxDead => routes::outbox::dead(req, env, config).await,
        Route::OutboxReplay => routes::outbox::replay(req, env, config).await,
        Route::Keys => routes::keys::usage(env, config).await,
        Route::RetentionRun => routes::lifecycle::run(env, config).await,
        Route::Erasure => routes::lifecycle::erasure(req, env, config).await,
        Route::OpenApi => routes::ops::openapi(),
        Route::Metrics => routes::ops::metrics(env, config).await,
        Route::Shards => routes::ops::shards(env, config).await,
        Route::Outcomes => routes::ops::outcomes(env, config).await,
        Route::Media { message_id, path } => routes::media::serve(req, env, config, message_id, path).await,
        Route::OptOuts => routes::optouts::list(req, env).await,
        Route::OptOutAdd => routes::optouts::add(req, env).await,
        Route::OptOutLift(number) => routes::optouts::lift(req, env, &number).await,
        Route::OptOutHistory(number) => routes::optouts::history(env, &number).await,
        Route::Export => routes::lifecycle::export(req, env, config).await,
        Route::OutboxDiscard => routes::outbox::discard(req, env, config).await,
        Route::Targets => routes::targets::list(env, config).await,
        Route::TargetCreate => routes::targets::create(req, env).await,
        Route::Target(id) => routes::targets::get(env, config, &id).await,
        Route::TargetPatch(id) => routes::targets::patch(req, env, config, id).await,
        Route::TargetDelete(id) => routes::targets::delete(env, id).await,
        Route::TargetRotate(id) => routes::targets::rotate(env, id).await,
        Route::TargetEnable(id) => routes::targets::set_paused(env, config, id, false).await,
        Route::TargetDisable(id) => routes::targets::set_paused(env, config, id, true).await,
    }
}
