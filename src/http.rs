//! Rendering JSON and [`ApiError`]s as responses, in one place.

use bw_ledger_core::idempotency::SavedResponse;
use bw_ledger_core::ApiError;
use futures_util::StreamExt;
use serde::Serialize;
use wasm_bindgen::JsValue;
use worker::{Headers, Method, Request, RequestInit, Response, Result};

/// A POST to `url` with these headers and body: every call to the outside
/// (Bandwidth, its token endpoint, forwarding targets) is one. Calls to our
/// own objects go through `object_call::call`.
pub fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Result<Request> {
    let h = Headers::new();
    for (name, value) in headers {
        h.set(name, value)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(h).with_body(Some(JsValue::from_str(body)));
    Request::new_with_init(url, &init)
}

/// A request header's value, if present and readable.
pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// Past a body's limit, this much more is read and dropped (never held), so
/// that the client, or a proxy in front of the Worker, still gets the 413
/// rather than a connection cut mid-upload; anything longer is cut.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads a request body of at most `limit` bytes. A declared
/// `Content-Length` over the limit is refused before reading; a body sent
/// without one (chunked) is read chunk by chunk and refused as soon as it
/// passes the limit, so no more than `limit` plus one chunk is ever held.
pub async fn read_bounded(req: &mut Request, limit: usize) -> std::result::Result<Vec<u8>, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit };
    let declared = header(req, "Content-Length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large);
    }
    let unreadable = || ApiError::BadRequest("The body could not be read.".into());
    if req.inner().body().is_none() {
        return Ok(Vec::new());
    }
    if declared.is_some() {
        // The runtime delivers exactly the declared length, so the whole
        // body is read at once: reading a stream chunk by chunk costs the
        // ack path (docs/decisions/0001).
        let body = req.bytes().await.map_err(|_| unreadable())?;
        return if body.len() > limit { Err(too_large) } else { Ok(body) };
    }
    let mut stream = req.stream().map_err(|_| unreadable())?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| unreadable())?;
        if body.len() + chunk.len() > limit {
            drop(body);
            let mut drained = chunk.len();
            while drained < DRAIN_LIMIT {
                match stream.next().await {
                    Some(Ok(chunk)) => drained += chunk.len(),
                    _ => break,
                }
            }
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub fn json<T: Serialize>(body: &T) -> std::result::Result<Response, ApiError> {
    text(serde_json::to_string(body).map_err(|_| ApiError::Internal)?, "application/json")
}

/// A 200 with this body and `Content-Type`, never cached.
pub fn text(body: String, content_type: &str) -> std::result::Result<Response, ApiError> {
    let headers = Headers::new();
    let _ = headers.set("Content-Type", content_type);
    let _ = headers.set("Cache-Control", "no-store");
    Ok(Response::ok(body).map_err(|_| ApiError::Internal)?.with_headers(headers))
}

pub fn error_response(e: &ApiError) -> Result<Response> {
    let headers = Headers::new();
    headers.set("Content-Type", "application/json")?;
    headers.set("Cache-Control", "no-store")?;
    for (name, value) in e.headers() {
        headers.set(name, &value)?;
    }
    let body = serde_json::to_string(&e.body())?;
    Ok(Response::ok(body)?.with_status(e.status()).with_headers(headers))
}

/// Replays an upstream answer (or a saved one): status, body, content type
/// and `Retry-After`, as Bandwidth sent them.
pub fn saved(saved: &SavedResponse) -> std::result::Result<Response, ApiError> {
    let headers = Headers::new();
    let content_type = saved.content_type.as_deref().unwrap_or("application/json");
    let _ = headers.set("Content-Type", content_type);
    let _ = headers.set("Cache-Control", "no-store");
    if let Some(retry_after) = &saved.retry_after {
        let _ = headers.set("Retry-After", retry_after);
    }
    let resp = Response::from_bytes(saved.body.clone().into_bytes()).map_err(|_| ApiError::Internal)?;
    Ok(resp.with_status(saved.status).with_headers(headers))
}

const CONSOLE_HTML: &str = include_str!("console.html");

/// The operator console: one static page; the account id is filled in.
pub fn console(account_id: &str) -> std::result::Result<Response, ApiError> {
    let html = CONSOLE_HTML.replace("__ACCOUNT_ID__", &account_id.replace(['<', '>', '"', '&', '\'', '\\'], ""));
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "text/html; charset=utf-8");
    let _ = headers.set("Cache-Control", "no-store");
    let _ = headers.set(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'",
    );
    // No page may frame the console (its Replay buttons), in browsers
    // that predate frame-ancestors too.
    let _ = headers.set("X-Frame-Options", "DENY");
    Ok(Response::ok(html).map_err(|_| ApiError::Internal)?.with_headers(headers))
}
