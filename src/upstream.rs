//! Calls to Bandwidth: Create Message with its `Authorization` (OAuth tokens
//! through the token broker), and media downloads, each bounded by a
//! timeout (`fetch`). A POST is never retried here:
//! Bandwidth has no idempotency of its own, so a retry could send a message
//! twice.

use std::cell::RefCell;
use std::time::Duration;

use bw_ledger_core::media::{
    redirect_target, Attempt, CredentialChain, FETCH_TIMEOUT_MS, MAX_MEDIA_BYTES, MAX_REDIRECTS,
};
use bw_ledger_core::oauth::{basic_header, CachedToken, TokenOutcome, UpstreamAuth};
use bw_ledger_core::send::Endpoint;
use bw_ledger_core::wire::token_broker::{self, TokenRequest};
use bw_ledger_core::ApiError;
use worker::Env;

use crate::clock::now_ms;
use crate::config::Config;
use crate::fetch::{fetch_with_timeout, get_limited, FetchFailure, UpstreamReply};
use crate::http::post;
use crate::object_call::call;

/// Fetches a media file for the archive (`objects::ledger::media`),
/// following redirects by hand. Bandwidth's credentials go only to the hops
/// `chain` allows: a callback's file in the account's media, never a send's,
/// and never again once the chain has left Bandwidth's origin. `Err` is the
/// attempt's outcome: retry, or fail for good (over the size limit).
pub async fn download_media(
    env: &Env,
    mut chain: CredentialChain<'_>,
    source: &str,
) -> std::result::Result<(Vec<u8>, Option<String>), Attempt> {
    let config = Config::from_env(env);
    let mut url = source.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let credentials = if chain.hop(&url) {
            let auth = config
                .upstream_auth()
                .map_err(|_| Attempt::Retry("no Bandwidth credentials are configured for Bandwidth's media".into()))?;
            Some(authorization(env, &auth).await.map_err(|e| Attempt::Retry(format!("credentials: {e}")))?)
        } else {
            None
        };
        let timeout = Duration::from_millis(FETCH_TIMEOUT_MS);
        let got = match get_limited(&url, credentials.as_deref(), MAX_MEDIA_BYTES, timeout).await {
            Ok(got) => got,
            Err(FetchFailure::Timeout) => {
                return Err(Attempt::Retry(format!("no answer within {FETCH_TIMEOUT_MS} ms")))
            }
            Err(FetchFailure::Network(e)) => return Err(Attempt::Retry(format!("network: {e}"))),
        };
        match got.status {
            200..=299 => {
                return match got.body {
                    Some(body) => Ok((body, got.content_type)),
                    None => Err(Attempt::Fail(format!("larger than {MAX_MEDIA_BYTES} bytes"))),
                }
            }
            300..=399 => match got.location.as_deref().and_then(|l| redirect_target(&url, l)) {
                Some(next) => url = next,
                None => return Err(Attempt::Retry(format!("answered {} without a usable Location", got.status))),
            },
            status => {
                if status == 401 {
                    if let Some(a) = &credentials {
                        drop_rejected(env, a).await;
                    }
                }
                return Err(Attempt::Retry(format!("answered {status}")));
            }
        }
    }
    Err(Attempt::Retry(format!("more than {MAX_REDIRECTS} redirects")))
}

thread_local! {
    /// This isolate's copy of the broker's token, so most sends skip the broker.
    static TOKEN: RefCell<Option<CachedToken>> = const { RefCell::new(None) };
}

/// The `Authorization` header for Bandwidth's API. OAuth tokens come from
/// this isolate's cache, else from the token broker object, which makes one
/// token request for any number of concurrent callers.
pub async fn authorization(env: &Env, auth: &UpstreamAuth) -> Result<String, ApiError> {
    if let UpstreamAuth::Basic { username, password } = auth {
        return Ok(basic_header(username, password));
    }
    // OAuth: the broker reads the client id and secret from its own Env.
    let now = now_ms();
    if let Some(t) = TOKEN.with(|c| c.borrow().clone()).filter(|t| t.is_fresh(now)) {
        return Ok(format!("Bearer {}", t.access_token));
    }
    let outcome = call_broker(env, None).await?;
    match outcome {
        TokenOutcome::Token { token } => {
            let header = format!("Bearer {}", token.access_token);
            TOKEN.with(|c| *c.borrow_mut() = Some(token));
            Ok(header)
        }
        TokenOutcome::Refused { .. } => Err(ApiError::UpstreamCredentials),
        TokenOutcome::Timeout => Err(ApiError::UpstreamTimeout),
        TokenOutcome::Unreachable => Err(ApiError::UpstreamUnreachable),
    }
}

/// Bandwidth answered 401 to this `Authorization`: a revoked or rotated
/// token. Drops this isolate's copy, and the broker's, so the next call
/// gets a new one.
pub async fn drop_rejected(env: &Env, authorization: &str) {
    TOKEN.with(|c| *c.borrow_mut() = None);
    if let Some(rejected) = authorization.strip_prefix("Bearer ") {
        if let Err(e) = call_broker(env, Some(rejected.to_owned())).await {
            crate::log::log_error!("token broker: the refused token could not be dropped: {e}");
        }
    }
}

async fn call_broker(env: &Env, rejected: Option<String>) -> Result<TokenOutcome, ApiError> {
    call::<token_broker::Token>(env, token_broker::NAME, &TokenRequest { rejected }).await
}

/// Forwards a validated send. `Ok` carries Bandwidth's answer, whatever its
/// status; `Err` says whether the message may have been sent.
pub async fn create_message(
    env: &Env,
    config: &Config,
    account_id: &str,
    endpoint: Endpoint,
    body: &str,
) -> Result<UpstreamReply, SendFailure> {
    let auth = config.upstream_auth().map_err(SendFailure::NotSent)?;
    let authorization = authorization(env, &auth).await.map_err(SendFailure::NotSent)?;
    let url = format!("{}/users/{}/{}", config.api_base(), account_id, endpoint.path());
    let headers = [
        ("Authorization", authorization.as_str()),
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
    ];
    let req = post(&url, &headers, body).map_err(|e| {
        crate::log::log_error!("send: request to {url} could not be built: {e}");
        SendFailure::NotSent(ApiError::NotConfigured("BANDWIDTH_API_BASE"))
    })?;
    match fetch_with_timeout(req, config.upstream_timeout()).await {
        Ok(reply) => {
            if reply.status == 401 {
                drop_rejected(env, &authorization).await;
            }
            Ok(reply)
        }
        Err(FetchFailure::Timeout) => Err(SendFailure::MaybeSent(ApiError::UpstreamTimeout)),
        Err(FetchFailure::Network(e)) => {
            crate::log::log_error!("send: Bandwidth unreachable: {e}");
            Err(SendFailure::MaybeSent(ApiError::UpstreamUnreachable))
        }
    }
}

pub enum SendFailure {
    /// Nothing reached Bandwidth's send endpoint: a retry is safe.
    NotSent(ApiError),
    /// The request may have reached Bandwidth: a retry could send twice.
    MaybeSent(ApiError),
}
