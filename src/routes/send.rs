//! The send proxy: `POST /api/v2/users/{accountId}/messages`, and
//! `POST /api/v2/users/{accountId}/messages/multiChannel` (one path: only
//! the body's rules and the upstream endpoint differ; a multi-channel
//! message has a sender per `channelList` entry, and each is checked).
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

use std::borrow::Cow;

use bw_ledger_core::auth::{check_bearer, AuthOutcome};
use bw_ledger_core::client::{authenticate_client, cors_headers, preflight_headers, ClientKey};
use bw_ledger_core::error::Refusal;
use bw_ledger_core::idempotency::{parse_key, saves_outcome, SavedResponse};
use bw_ledger_core::limits::{self, Ask};
use bw_ledger_core::multichannel::validate_multichannel;
use bw_ledger_core::optout::CheckRequest;
use bw_ledger_core::send::{validate_send, Endpoint, ValidSend, MAX_SEND_BODY};
use bw_ledger_core::wire::opt_outs;
use bw_ledger_core::ApiError;
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

pub async fn send(
    req: &mut Request,
    env: &Env,
    config: &Config,
    account_id: &str,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    if account_id != config.account_id()? {
        return Err(ApiError::NotFound("Account"));
    }
    let keys = config.client_keys()?;
    let (key, operator) = caller(req, config, &keys)?;
    if !operator {
        check_origin(req, env, &key).await?;
    }
    let body = crate::http::read_bounded(req, MAX_SEND_BODY).await?;
    let default_application = config.application_id();
    let valid = match endpoint {
        Endpoint::Message => validate_send(&body, now_ms(), default_application.as_deref()),
        Endpoint::MultiChannel => validate_multichannel(&body, now_ms(), default_application.as_deref()),
    }
    .map_err(ApiError::Validation)?;
    if !operator {
        check_scope(env, config, &key, &valid, valid.opt_out_override).await?;
    }
    let idempotency_key = header(req, "Idempotency-Key").map(|k| parse_key(&k)).transpose()?;
    let shards = ShardClient::open(env, config).await?;
    match admit(env, config, &key, &shards, idempotency_key, &valid).await? {
        Admitted::Replay(saved) => http::saved(&saved),
        admitted => forward(env, config, account_id, &key, &shards, &valid, admitted).await,
    }
}

/// Who sends: the operator (the API token), as `operator_key`, or a client
/// key.
fn caller<'k>(req: &Request, config: &Config, keys: &'k [ClientKey]) -> Result<(Cow<'k, ClientKey>, bool), ApiError> {
    let authorization = header(req, "Authorization");
    if config.api_token().is_some_and(|t| check_bearer(authorization.as_deref(), t) == AuthOutcome::Accepted) {
        return Ok((Cow::Owned(operator_key()), true));
    }
    let key = authenticate_client(authorization.as_deref(), keys).map_err(|_| ApiError::ApiUnauthorized)?;
    Ok((Cow::Borrowed(key), false))
}

/// The key's guard admits the send against its rate and quota (with an
/// Idempotency-Key it claims the key in the same call: a replay answers
/// here, and costs nothing); the opt-out book is asked at the same time, so
/// its check adds no round trip in sequence. Someone who opted out is never
/// texted, by a key or the operator, unless the operator says so on this
/// very send (recorded with it): then nothing is sent, to no recipient, and
/// what the guard admitted goes back.
async fn admit(
    env: &Env,
    config: &Config,
    key: &ClientKey,
    shards: &ShardClient,
    idempotency_key: Option<String>,
    valid: &ValidSend,
) -> Result<Admitted, ApiError> {
    let recipients = valid.to.len() as u32;
    let ask =
        Ask::Send { recipients, rate_per_minute: key.limits.rate_per_minute, daily_quota: key.limits.daily_quota };
    let admit = admit_send(env, config, key, shards, idempotency_key, valid, ask);
    let (claim, opted_out) = futures_util::future::join(admit, opted_out(env, valid, valid.opt_out_override)).await;
    let admitted = claim?;
    if matches!(admitted, Admitted::Replay(_)) {
        return Ok(admitted);
    }
    let refusal = match opted_out {
        Ok(numbers) if numbers.is_empty() => return Ok(admitted),
        Ok(numbers) => ApiError::RecipientOptedOut(numbers),
        Err(e) => e,
    };
    give_back(env, key, admitted, recipients).await;
    Err(refusal)
}

/// Sends the admitted message to Bandwidth and answers as it did. A
/// message Bandwidth did not take does not count today (with a key, the
/// refund rides on the claim's finish); one it accepted is recorded in the
/// ledger; a keyed send's outcome is saved for its replays.
async fn forward(
    env: &Env,
    config: &Config,
    account_id: &str,
    key: &ClientKey,
    shards: &ShardClient,
    valid: &ValidSend,
    admitted: Admitted,
) -> Result<Response, ApiError> {
    let claim = match admitted {
        Admitted::Claimed(scope) => Some(scope),
        _ => None,
    };
    let recipients = valid.to.len() as u32;
    let outcome = create_message(env, config, account_id, valid.endpoint, &valid.body.to_string()).await;
    let taken = match &outcome {
        Ok(reply) => !(400..500).contains(&reply.status),
        Err(SendFailure::NotSent(_)) => false,
        Err(SendFailure::MaybeSent(_)) => true,
    };
    let given_back = if taken { 0 } else { recipients };
    if given_back > 0 && claim.is_none() {
        refund(env, key, recipients).await;
    }
    let (response, saved) = match outcome {
        Ok(reply) => {
            if (200..300).contains(&reply.status) {
                crate::accepted::record(shards, &reply.body, valid.opt_out_override, valid.endpoint).await;
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

/// The recipients of a send who opted out of any `from` it may go out as
/// (none asked when the operator overrides): one check per distinct sender,
/// at the same time.
async fn opted_out(env: &Env, valid: &ValidSend, opt_out_override: bool) -> Result<Vec<String>, ApiError> {
    if opt_out_override {
        return Ok(Vec::new());
    }
    let mut froms: Vec<&str> = valid.senders.iter().map(|s| s.from.as_str()).collect();
    froms.sort_unstable();
    froms.dedup();
    let checks = froms.into_iter().map(|from| async move {
        let q = CheckRequest { from: from.to_owned(), to: valid.to.clone() };
        book::<opt_outs::Check>(env, &q).await
    });
    let mut numbers: Vec<String> = Vec::new();
    for reply in futures_util::future::join_all(checks).await {
        for n in reply?.opted_out {
            if !numbers.contains(&n) {
                numbers.push(n);
            }
        }
    }
    Ok(numbers)
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

/// A key's reach: its `from` numbers and its applications (every sender's,
/// for a multi-channel message), its destinations; and no key may override
/// an opt-out.
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
    if let Some(s) = valid.senders.iter().find(|s| !key.may_send_from(&s.from)) {
        count_refusal(env, key, Refusal::From).await;
        return Err(ApiError::Forbidden(format!("Key {} may not send from {}.", key.id, s.from)));
    }
    let default_application = config.application_id();
    if let Some(s) =
        valid.senders.iter().find(|s| !key.may_use_application(&s.application_id, default_application.as_deref()))
    {
        count_refusal(env, key, Refusal::Application).await;
        return Err(ApiError::Forbidden(format!(
            "Key {} may not send through application {}.",
            key.id, s.application_id
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
