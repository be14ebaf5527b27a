//! Worker glue: HTTP routes, configuration and the Durable Objects (ledger
//! shards, the OAuth token broker, the live hub).
//!
//! Every decision lives in `bw_ledger_core`; this crate only moves bytes
//! between the runtime and the core. It must never answer 2xx to a callback
//! before every shard it touched has confirmed its write.

mod config;
mod group_commit;
mod http;
mod ledger;
mod list;
mod live;
mod outbox;
mod send;
mod shard_client;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod token_broker;
mod transaction;
mod upstream;

use bw_ledger_core::auth::{check_basic, check_bearer, AuthOutcome};
use bw_ledger_core::error::MAX_CALLBACK_BODY;
use bw_ledger_core::route::{query_limit, resolve, Route};
use bw_ledger_core::wire::{route as shard_route, MessageQuery, MessageRecords, QuarantineList, QuarantineQuery};
use bw_ledger_core::{parse_callback_body, ApiError};
use worker::{console_error, event, Context, Date, Env, Request, Response, Result};

use config::Config;
use shard_client::ShardClient;

pub use ledger::LedgerShard;
pub use live::LiveHub;
pub use token_broker::TokenBroker;

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let resp = match handle(&mut req, &env).await {
        Ok(resp) => resp,
        Err(e) => http::error_response(&e)?,
    };
    // The Bandwidth-shaped API serves browsers: every answer carries CORS
    // headers for allowed origins, errors included.
    if req.path().starts_with("/api/v2/") {
        let keys = Config::from_env(&env).client_keys().unwrap_or_default();
        let origin = req.headers().get("Origin").ok().flatten();
        return Ok(send::with_cors(resp, origin.as_deref(), &keys));
    }
    Ok(resp)
}

async fn handle(req: &mut Request, env: &Env) -> std::result::Result<Response, ApiError> {
    #[cfg(feature = "test-hooks")]
    if req.path() == test_hooks::ROUTE {
        return test_hooks::handle(req, env, &Config::from_env(env)).await;
    }
    let route = resolve(req.method().as_ref(), &req.path())?;
    let config = Config::from_env(env);
    match route {
        Route::Health => http::json(&serde_json::json!({ "status": "ok" })),
        Route::Live => live::subscribe(req, env, &config).await,
        Route::Console => http::console(config.account_id().unwrap_or_default().as_str()),
        Route::Callback => receive_callback(req, env, &config).await,
        Route::Send { account_id } => send::send(req, env, &config, &account_id).await,
        Route::Preflight => send::preflight(req, &config),
        Route::List { account_id } => list::list_messages(req, env, &config, Some(&account_id)).await,
        Route::Conversation => list::list_messages(req, env, &config, None).await,
        Route::OutboxStats | Route::OutboxDead | Route::OutboxReplay => {
            authorize_api(req, &config)?;
            outbox::handle(route, req, env, &config).await
        }
        Route::Message(id) => {
            authorize_api(req, &config)?;
            let shards = ShardClient::new(env, config.shards()?)?;
            let records: MessageRecords = shards
                .call(shards.shard_of(&id), shard_route::MESSAGE, &MessageQuery { message_id: id.clone() })
                .await?;
            let view = bw_ledger_core::projection::project(&id, &records).ok_or(ApiError::NotFound("Message"))?;
            http::json(&view)
        }
        Route::Quarantine => {
            authorize_api(req, &config)?;
            let url = req.url().map_err(|_| ApiError::BadRequest("The URL is not valid.".into()))?;
            let limit = query_limit(url.query(), 100, 1000)?;
            let shards = ShardClient::new(env, config.shards()?)?;
            let lists: Vec<QuarantineList> =
                shards.call_all(shard_route::QUARANTINE, &QuarantineQuery { limit }).await?;
            let mut items: QuarantineList = lists.into_iter().flatten().collect();
            items.sort_by(|a, b| {
                b.last_seen_ms.cmp(&a.last_seen_ms).then_with(|| a.record.content_hash.cmp(&b.record.content_hash))
            });
            items.truncate(limit as usize);
            http::json(&serde_json::json!({ "items": items }))
        }
    }
}

/// The ack path. Order matters: authenticate, bound the size, parse, and
/// answer 2xx only after every shard has confirmed its write.
async fn receive_callback(req: &mut Request, env: &Env, config: &Config) -> std::result::Result<Response, ApiError> {
    let header = req.headers().get("Authorization").ok().flatten();
    let credentials = config.callback_credentials();
    if header.is_some() && credentials.is_empty() {
        // Credentials were presented but none are configured: our fault, and
        // a 5xx keeps Bandwidth retrying until the operator fixes it.
        return Err(ApiError::NotConfigured("CALLBACK_USER/CALLBACK_PASSWORD"));
    }
    match check_basic(header.as_deref(), credentials) {
        AuthOutcome::Accepted => {}
        AuthOutcome::Missing | AuthOutcome::Rejected => return Err(ApiError::CallbackUnauthorized),
    }
    let body = http::read_bounded(req, MAX_CALLBACK_BODY).await?;
    let parsed = parse_callback_body(&body);
    let shards = ShardClient::new(env, config.shards()?)?;
    let now = Date::now().as_millis() as i64;
    let reply = bw_ledger_core::ingest::ingest(&shards, &parsed, shards.count(), now, |shard, e| {
        console_error!("callback ingest: shard {shard} did not confirm: {e}");
    })
    .await?;
    http::json(&reply)
}

pub(crate) fn authorize_api(req: &Request, config: &Config) -> std::result::Result<(), ApiError> {
    let token = config.api_token().ok_or(ApiError::NotConfigured("API_TOKEN"))?;
    let header = req.headers().get("Authorization").ok().flatten();
    match check_bearer(header.as_deref(), token) {
        AuthOutcome::Accepted => Ok(()),
        AuthOutcome::Missing | AuthOutcome::Rejected => Err(ApiError::ApiUnauthorized),
    }
}
