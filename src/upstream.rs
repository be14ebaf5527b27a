//! Calls to Bandwidth: the token endpoint, Create Message and media
//! downloads, each bounded by a timeout. A POST is never retried here:
//! Bandwidth has no idempotency of its own, so a retry could send a message
//! twice.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use bw_ledger_core::media::{
    redirect_target, Attempt, CredentialChain, FETCH_TIMEOUT_MS, MAX_MEDIA_BYTES, MAX_REDIRECTS,
};
use bw_ledger_core::oauth::{basic_header, CachedToken, TokenOutcome, UpstreamAuth, TOKEN_REQUEST_BODY};
use bw_ledger_core::wire::token_broker::{self, TokenRequest};
use bw_ledger_core::ApiError;
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use worker::{
    AbortController, AbortSignal, Delay, Env, Fetch, Headers, Method, Request, RequestInit, RequestRedirect,
    ResponseBody,
};

use crate::clock::now_ms;

use crate::config::{Config, TOKENS};
use crate::http::post;
use crate::object_call::call;
use crate::objects::token_broker::BROKER_NAME;

/// Bandwidth's answer, passed through to the caller as it came.
pub struct UpstreamReply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
}

pub enum FetchFailure {
    Timeout,
    Network(String),
}

/// Sends `req` and reads the whole answer, or gives up after `timeout`
/// (aborting the request).
pub async fn fetch_with_timeout(req: Request, timeout: Duration) -> Result<UpstreamReply, FetchFailure> {
    send_with_timeout(req, timeout, true).await
}

/// Sends `req` and reads only the answer's status and headers: the body is
/// cancelled unread, whatever its size (a forwarding target's reply counts
/// only by its status).
pub async fn fetch_status_with_timeout(req: Request, timeout: Duration) -> Result<u16, FetchFailure> {
    send_with_timeout(req, timeout, false).await.map(|reply| reply.status)
}

async fn send_with_timeout(req: Request, timeout: Duration, read_body: bool) -> Result<UpstreamReply, FetchFailure> {
    let (abort, signal) = Abort::new();
    let call = async {
        let mut resp = Fetch::Request(req).send_with_signal(&signal).await?;
        let body = if read_body {
            resp.bytes().await?
        } else {
            if let ResponseBody::Stream(stream) = resp.body() {
                // Frees the connection without reading what the target sent.
                let _ = stream.cancel();
            }
            Vec::new()
        };
        let header = |name: &str| resp.headers().get(name).ok().flatten();
        Ok::<_, worker::Error>(UpstreamReply {
            status: resp.status_code(),
            content_type: header("Content-Type"),
            retry_after: header("Retry-After"),
            body,
        })
    };
    bounded(call, timeout, &abort).await
}

/// A request's abort switch. `AbortController::abort` takes the controller,
/// so it is held until whichever side needs it first.
struct Abort(Cell<Option<AbortController>>);

impl Abort {
    fn new() -> (Self, AbortSignal) {
        let controller = AbortController::default();
        let signal = controller.signal();
        (Self(Cell::new(Some(controller))), signal)
    }

    fn now(&self) {
        if let Some(c) = self.0.take() {
            c.abort();
        }
    }
}

/// Runs an exchange until it finishes or `timeout` passes; then aborts it.
async fn bounded<T>(
    call: impl Future<Output = worker::Result<T>>,
    timeout: Duration,
    abort: &Abort,
) -> Result<T, FetchFailure> {
    let finished = match select(pin!(call), pin!(Delay::from(timeout))).await {
        Either::Left((result, _)) => Some(result),
        Either::Right(_) => None,
    };
    match finished {
        Some(Ok(reply)) => Ok(reply),
        Some(Err(e)) => Err(FetchFailure::Network(e.to_string())),
        None => {
            abort.now();
            Err(FetchFailure::Timeout)
        }
    }
}

/// A GET's answer, its body read only up to a limit.
pub struct Fetched {
    pub status: u16,
    pub location: Option<String>,
    pub content_type: Option<String>,
    /// The body, or `None` when it is (or declares itself) over the limit:
    /// reading stops there, never holding more than the limit and a chunk.
    pub body: Option<Vec<u8>>,
}

/// GETs `url` (with `Authorization` when given), without following
/// redirects, and reads a 2xx body of at most `limit` bytes; gives up after
/// `timeout` for the whole exchange.
pub async fn get_limited(
    url: &str,
    authorization: Option<&str>,
    limit: u64,
    timeout: Duration,
) -> Result<Fetched, FetchFailure> {
    let (abort, signal) = Abort::new();
    let call = async {
        let headers = Headers::new();
        headers.set("Accept", "*/*")?;
        if let Some(a) = authorization {
            headers.set("Authorization", a)?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(headers).with_redirect(RequestRedirect::Manual);
        let req = Request::new_with_init(url, &init)?;
        let mut resp = Fetch::Request(req).send_with_signal(&signal).await?;
        let header = |name: &str| resp.headers().get(name).ok().flatten();
        let (status, location, content_type) = (resp.status_code(), header("Location"), header("Content-Type"));
        let declared = header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
        let mut body = None;
        if (200..300).contains(&status) && declared.is_none_or(|n| n <= limit) {
            let mut read = Vec::new();
            let mut over = false;
            if let ResponseBody::Stream(_) = resp.body() {
                let mut stream = resp.stream()?;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    if (read.len() + chunk.len()) as u64 > limit {
                        over = true;
                        break;
                    }
                    read.extend_from_slice(&chunk);
                }
            }
            body = (!over).then_some(read);
        }
        if body.is_none() {
            // Frees the connection, whatever of the body is left unread.
            abort.now();
        }
        Ok::<_, worker::Error>(Fetched { status, location, content_type, body })
    };
    bounded(call, timeout, &abort).await
}

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

/// Asks the token endpoint for a client-credentials token.
pub async fn request_token(token_url: &str, client_id: &str, client_secret: &str, timeout: Duration) -> TokenOutcome {
    let authorization = basic_header(client_id, client_secret);
    let headers = [
        ("Authorization", authorization.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept", "application/json"),
    ];
    let req = match post(token_url, &headers, TOKEN_REQUEST_BODY) {
        Ok(r) => r,
        Err(e) => {
            crate::log::log_error!("token request could not be built for {token_url}: {e}");
            return TokenOutcome::Unreachable;
        }
    };
    let now = now_ms();
    match fetch_with_timeout(req, timeout).await {
        Ok(reply) if (200..300).contains(&reply.status) => match CachedToken::from_response(&reply.body, now) {
            Ok(token) => TokenOutcome::Token { token },
            Err(e) => {
                crate::log::log_error!("token endpoint: {e}");
                TokenOutcome::Refused { status: reply.status }
            }
        },
        Ok(reply) => {
            crate::log::log_error!("token endpoint answered {}", reply.status);
            TokenOutcome::Refused { status: reply.status }
        }
        Err(FetchFailure::Timeout) => TokenOutcome::Timeout,
        Err(FetchFailure::Network(e)) => {
            crate::log::log_error!("token endpoint unreachable: {e}");
            TokenOutcome::Unreachable
        }
    }
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
    let outcome = call_broker(env, None).await.map_err(|e| {
        crate::log::log_error!("token broker: {e}");
        ApiError::StorageUnavailable
    })?;
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

async fn call_broker(env: &Env, rejected: Option<String>) -> worker::Result<TokenOutcome> {
    call::<token_broker::Token, _>(&env.durable_object(TOKENS)?, BROKER_NAME, &TokenRequest { rejected }).await
}

/// Forwards a validated send. `Ok` carries Bandwidth's answer, whatever its
/// status; `Err` says whether the message may have been sent.
pub async fn create_message(
    env: &Env,
    config: &Config,
    account_id: &str,
    body: &str,
) -> Result<UpstreamReply, SendFailure> {
    let auth = config.upstream_auth().map_err(SendFailure::NotSent)?;
    let authorization = authorization(env, &auth).await.map_err(SendFailure::NotSent)?;
    let url = format!("{}/users/{}/messages", config.api_base(), account_id);
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
