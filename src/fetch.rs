//! Outgoing HTTP, bounded: every exchange gives up after a timeout and
//! aborts its request, and a body is read only as far as a caller needs
//! (Bandwidth's API, media downloads, forwarding targets, the token
//! endpoint).

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use worker::{
    AbortController, AbortSignal, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, ResponseBody,
};

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
