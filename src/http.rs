//! Rendering JSON and [`ApiError`]s as responses, in one place.

use bw_ledger_core::idempotency::SavedResponse;
use bw_ledger_core::ApiError;
use serde::Serialize;
use worker::{Headers, Response, Result};

pub fn json<T: Serialize>(body: &T) -> std::result::Result<Response, ApiError> {
    let text = serde_json::to_string(body).map_err(|_| ApiError::Internal)?;
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    let _ = headers.set("Cache-Control", "no-store");
    Ok(Response::ok(text).map_err(|_| ApiError::Internal)?.with_headers(headers))
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
