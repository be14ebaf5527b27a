//! `GET /media/{messageId}/{path}`: a file of the media archive, for the
//! API token or a client key whose numbers include the message's.
//!
//! The bytes are whatever a phone or a sender sent, served from this
//! Worker's origin: they go out with their stored type, `nosniff`, and a
//! sandboxing CSP, so a file that claims to be HTML or SVG runs no script
//! here.

use bw_ledger_core::media::{is_raster, may_read, MediaQuery, MediaStatus};
use bw_ledger_core::wire::ledger;
use bw_ledger_core::ApiError;
use worker::{Env, Headers, Request, Response};

use crate::config::{Config, MEDIA};
use crate::http;
use crate::shard_client::ShardClient;

pub async fn serve(
    req: &Request,
    env: &Env,
    config: &Config,
    message_id: String,
    path: String,
) -> Result<Response, ApiError> {
    let scope = super::authorize_reader(http::header(req, "Authorization").as_deref(), env, config).await?;
    let shards = ShardClient::open(env, config).await?;
    let shard = shards.shard_of(&message_id);
    let found = shards.call::<ledger::Media>(shard, &MediaQuery { message_id, path }).await?;
    // A key outside the message's numbers learns nothing, not even whether
    // the file exists: the same 404 as a missing file.
    let item = found
        .item
        .filter(|_| may_read(scope.as_deref(), &found.numbers))
        .filter(|item| item.status == MediaStatus::Archived)
        .ok_or(ApiError::NotFound("Archived media"))?;
    let bucket = env.bucket(MEDIA).map_err(|_| ApiError::NotConfigured(MEDIA))?;
    let key = bw_ledger_core::media::object_key(&item.message_id, &item.path);
    let object = bucket
        .get(key)
        .execute()
        .await
        .map_err(|e| {
            crate::log::log_error!("media: R2 read failed: {e}");
            ApiError::StorageUnavailable
        })?
        .ok_or(ApiError::NotFound("Archived media"))?;
    let body =
        object.body().ok_or(ApiError::NotFound("Archived media"))?.response_body().map_err(|_| ApiError::Internal)?;
    let headers = Headers::new();
    let content_type = item.content_type.as_deref().unwrap_or("application/octet-stream");
    let _ = headers.set("Content-Type", content_type);
    let _ = headers.set("Content-Length", &object.size().to_string());
    if let Some(sha256) = &item.sha256 {
        let _ = headers.set("ETag", &format!("\"{sha256}\""));
    }
    // The same name always holds the same bytes.
    let _ = headers.set("Cache-Control", "private, max-age=86400, immutable");
    if !is_raster(content_type) {
        // Never rendered on this origin: saved, not shown.
        let name: String = item
            .path
            .rsplit('/')
            .next()
            .unwrap_or("file")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
            .collect();
        let _ = headers.set("Content-Disposition", &format!("attachment; filename=\"{name}\""));
    }
    let _ = headers.set("X-Content-Type-Options", "nosniff");
    let _ = headers.set("Content-Security-Policy", "default-src 'none'; sandbox");
    Ok(Response::from_body(body).map_err(|_| ApiError::Internal)?.with_headers(headers))
}
