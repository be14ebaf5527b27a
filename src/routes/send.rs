//! The send proxy: `POST /api/v2/users/{accountId}/messages`.
//!
//! Order of checks: account, caller (a client key, or the API token for
//! the operator's own sends), origin, size, body rules, and for a key its
//! `from` numbers, applications and destinations; then, at the same time,
//! the key's guard (`objects::key_guard`, through `admission`) claims the
//! `Idempotency-Key` (a replay answers here) and admits the send against
//! the key's rate and quota, and the opt-out book (`objects::opt_outs`) says whether any
//! recipient opted out; only then one upstream call, never retried. On
//! `202 Accepted` the message is recorded in the ledger before answering:
//! the one ledger shard call of a send (two, in the first day of a key's
//! records, when the shards' older records are read too). A refused send
//! never reaches Bandwidth or the ledger, and gives back what its guard
//! admitted.

use bw_ledger_core::auth::{check_bearer, AuthOutcome};
use bw_ledger_core::client::{authenticate_client, cors_headers, preflight_headers, ClientKey};
use bw_ledger_core::event::accepted_event_with;
use bw_ledger_core::idempotency::{parse_key, saves_outcome, SavedResponse};
use bw_ledger_core::limits::{self, Ask, Refusal};
use bw_ledger_core::optout::CheckRequest;
use bw_ledger_core::send::{validate_send, ValidSend, MAX_SEND_BODY};
use bw_ledger_core::wire::opt_outs;
use bw_ledger_core::{ApiError, ParsedCallback};
use worker::{Env, Headers, Request, Response};

use super::admission::{admit_send, finish_claim, give_back, refund, Admitted};
use crate::clock::now_ms;
use crate::config::Config;
use crate::http::{self, header};
use crate::objects::key_guard;
use crate::objects::opt_outs::book;
use crate::shard_client::ShardClient;
use crate::upstream::{create_message, SendFailure};

/// Adds CORS headers when the request's origin is allowed by some key, so
/// that browsers can read errors too.
pub fn with_cors(mut resp: Response, origin: Option<&str>, keys: &[ClientKey]) -> Response {
    if let Some(origin) = origin {
        let allowed = keys.iter().any(|k| k.allows_origin(origin));
        for (name, value) in cors_headers(origin, allowed) {
            let _ = resp.headers_mut().set(name, &value);
        }
    }
    resp
}

/// Answers a CORS preflight: only for origins some key allows, never `*`.
pub fn preflight(req: &Request, config: &Config) -> Result<Response, ApiError> {
    let keys = config.client_keys()?;
    let origin = header(req, "Origin").unwrap_or_default();
    match preflight_headers(&origin, &keys) {
        Some(h) => {
            let headers = Headers::new();
            for (name, value) in h {
                let _ = headers.set(name, &value);
            }
            Ok(Response::empty().map_err(|_| ApiError::Internal)?.with_status(204).with_headers(headers))
        }
        None => Err(ApiError::Forbidden("This origin may not call this API.".into())),
    }
}

/// The operator's sends (the API token) run as this key: no limits, any
/// `from`, destination and application, and the only sends that may set
/// `"optOutOverride": true`. (A configured key id cannot hold a NUL.)
fn operator_key() -> ClientKey {
    ClientKey {
        id: "\u{0}operator".into(),
        key_sha256: String::new(),
        allowed_from: Vec::new(),
        allowed_origins: Vec::new(),
        allowed_applications: Vec::new(),
        limits: Default::default(),
    }
}

pub async fn send(req: &mut Request, env: &Env, config: &Config, account_id: &str) -> Result<Response, ApiError> {
    if account_id != config.account_id()? {
        return Err(ApiError::NotFound("Account"));
    }
    let keys = config.client_keys()?;
    let authorization = header(req, "Authorization");
    let operator =
        config.api_token().is_some_and(|t| check_bearer(authorization.as_deref(), t) == AuthOutcome::Accepted);
    let operator_key = operator.then(operator_key);
    let key = match &operator_key {
        Some(k) => k,
        None => authenticate_client(authorization.as_deref(), &keys).map_err(|_| ApiError::ApiUnauthorized)?,
    };
    if !operator {
        check_origin(req, env, key).await?;
    }
    let body = crate::http::read_bounded(req, MAX_SEND_BODY).await?;
    let valid = validate_send(&body, now_ms(), config.application_id().as_deref()).map_err(ApiError::Validation)?;
    let opt_out_override = valid.opt_out_override;
    if !operator {
        check_scope(env, config, key, &valid, opt_out_override).await?;
    }
    let idempotency_key = header(req, "Idempotency-Key").map(|k| parse_key(&k)).transpose()?;
    let forward = valid.body.to_string();
    let shards = ShardClient::new(env, config.shards()?)?;

    // The key's guard admits the send against its rate and quota (with an
    // Idempotency-Key it claims the key in the same call: a replay answers
    // here, and costs nothing); the opt-out book is asked at the same time,
    // so its check adds no round trip in sequence.
    let recipients = valid.to.len() as u32;
    let ask =
        Ask::Send { recipients, rate_per_minute: key.limits.rate_per_minute, daily_quota: key.limits.daily_quota };
    let admit = admit_send(env, config, key, &shards, idempotency_key, &valid, ask);
    let (claim, opted_out) = futures_util::future::join(admit, opted_out(env, &valid, opt_out_override)).await;
    let admitted = claim?;
    if let Admitted::Replay(saved) = admitted {
        return http::saved(&saved);
    }
    // Someone who opted out is never texted, by a key or the operator,
    // unless the operator says so on this very send (recorded with it).
    // Nothing is sent, to no recipient: what the guard admitted goes back.
    let refusal = match opted_out {
        Ok(numbers) if numbers.is_empty() => None,
        Ok(numbers) => Some(ApiError::RecipientOptedOut(numbers)),
        Err(e) => Some(e),
    };
    if let Some(e) = refusal {
        give_back(env, key, admitted, recipients).await;
        return Err(e);
    }
    let claim = match admitted {
        Admitted::Claimed(scope) => Some(scope),
        _ => None,
    };

    let outcome = create_message(env, config, account_id, &forward).await;
    let taken = match &outcome {
        Ok(reply) => !(400..500).contains(&reply.status),
        Err(SendFailure::NotSent(_)) => false,
        Err(SendFailure::MaybeSent(_)) => true,
    };
    // Bandwidth did not take the message: it does not count today. (With a
    // key, the refund rides on the claim's finish, below.)
    let given_back = if taken { 0 } else { recipients };
    if given_back > 0 && claim.is_none() {
        refund(env, key, recipients).await;
    }
    let (response, saved) = match outcome {
        Ok(reply) => {
            if (200..300).contains(&reply.status) {
                record_accepted(&shards, &reply.body, opt_out_override).await;
            }
            let saved = SavedResponse {
                status: reply.status,
                body: String::from_utf8_lossy(&reply.body).into_owned(),
                content_type: reply.content_type,
                retry_after: reply.retry_after,
            };
            (http::saved(&saved), saves_outcome(saved.status).then_some(saved))
        }
        Err(SendFailure::NotSent(e)) => (Err(e), None),
        Err(SendFailure::MaybeSent(e)) => {
            let saved = SavedResponse {
                status: e.status(),
                body: serde_json::to_string(&e.body()).unwrap_or_default(),
                content_type: Some("application/json".into()),
                retry_after: None,
            };
            (Err(e), Some(saved))
        }
    };
    if let Some(scope_key) = claim {
        finish_claim(env, &key.id, scope_key, saved, given_back).await;
    }
    response
}

/// The recipients of a send who opted out of its `from` (none asked when
/// the operator overrides).
async fn opted_out(env: &Env, valid: &ValidSend, opt_out_override: bool) -> Result<Vec<String>, ApiError> {
    if opt_out_override {
        return Ok(Vec::new());
    }
    let q = CheckRequest { from: valid.from.clone(), to: valid.to.clone() };
    Ok(book::<opt_outs::Check>(env, &q).await?.opted_out)
}

/// A key used from a browser: only from its `allowed_origins`.
async fn check_origin(req: &Request, env: &Env, key: &ClientKey) -> Result<(), ApiError> {
    // The console is served by this Worker: its own origin is not cross-origin.
    let own_origin = req.url().ok().map(|u| u.origin().ascii_serialization());
    if let Some(origin) = header(req, "Origin").filter(|o| Some(o) != own_origin.as_ref()) {
        if !key.allows_origin(&origin) {
            count_refusal(env, key, Refusal::Origin).await;
            return Err(ApiError::Forbidden(format!("Key {} may not be used from origin {origin}.", key.id)));
        }
    }
    Ok(())
}

/// A key's reach: its `from` numbers, its applications, its destinations;
/// and no key may override an opt-out.
async fn check_scope(
    env: &Env,
    config: &Config,
    key: &ClientKey,
    valid: &ValidSend,
    opt_out_override: bool,
) -> Result<(), ApiError> {
    if opt_out_override {
        return Err(ApiError::Forbidden("Only the API token may send past an opt-out (optOutOverride).".into()));
    }
    if !key.may_send_from(&valid.from) {
        count_refusal(env, key, Refusal::From).await;
        return Err(ApiError::Forbidden(format!("Key {} may not send from {}.", key.id, valid.from)));
    }
    if !key.may_use_application(&valid.application_id, config.application_id().as_deref()) {
        count_refusal(env, key, Refusal::Application).await;
        return Err(ApiError::Forbidden(format!(
            "Key {} may not send through application {}.",
            key.id, valid.application_id
        )));
    }
    let refused = key.refused_destinations(&valid.to);
    if !refused.is_empty() {
        count_refusal(env, key, Refusal::Destination).await;
        return Err(limits::refused_destinations(&key.id, &key.limits, &key.allowed_from, &refused));
    }
    Ok(())
}

/// Counts a refusal decided here (origin, from, destination) for `GET
/// /keys`; the refusal stands whether or not it could be counted.
async fn count_refusal(env: &Env, key: &ClientKey, reason: Refusal) {
    if let Err(e) = key_guard::admit(env, &key.id, Ask::Refused { reason }).await {
        crate::log::log_error!("send: a refusal of key {} was not counted: {e}", key.id);
    }
}

/// Records the accepted message so later callbacks attach to it. The
/// message is already sent: a failure here is logged, never answered as an
/// error (the caller would retry and send twice).
async fn record_accepted(shards: &ShardClient, accepted_body: &[u8], opt_out_override: bool) {
    let event = match accepted_event_with(accepted_body, opt_out_override) {
        Ok(ev) => ev,
        Err(why) => {
            crate::log::log_error!("send: 202 answer could not be recorded in the ledger: {why}");
            return;
        }
    };
    let parsed = ParsedCallback { events: vec![event], rejected: Vec::new() };
    let result = bw_ledger_core::ingest::ingest(shards, &parsed, shards.count(), now_ms(), |shard, e| {
        crate::log::log_error!("send: ledger shard {shard} did not record the accepted message: {e}");
    })
    .await;
    if result.is_err() {
        crate::log::log_error!("send: the accepted message is missing from the ledger until its callbacks arrive");
    }
}

/// Sends `OPT_OUT_REPLY` to `to` from `from` (the opt-out book's alarm),
/// through the same upstream path as the proxy, and records it in the
/// ledger like any send. Never retried: a confirmation is sent at most once.
pub async fn send_confirmation(env: &Env, to: &str, from: &str) {
    let config = Config::from_env(env);
    let (Some(text), Ok(account)) = (config.opt_out_reply(), config.account_id()) else { return };
    let mut body = serde_json::json!({ "to": [to], "from": from, "text": text });
    if let Some(app) = config.application_id() {
        body["applicationId"] = app.into();
    }
    match create_message(env, &config, &account, &body.to_string()).await {
        Ok(reply) if (200..300).contains(&reply.status) => match config.shards().map(|n| ShardClient::new(env, n)) {
            Ok(Ok(shards)) => record_accepted(&shards, &reply.body, false).await,
            _ => crate::log::log_error!("opt-outs: confirmation sent, but the ledger is not configured to record it"),
        },
        Ok(reply) => crate::log::log_error!("opt-outs: Bandwidth refused the confirmation: {}", reply.status),
        Err(_) => crate::log::log_error!("opt-outs: the confirmation could not be sent"),
    }
}
