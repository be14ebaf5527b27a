//! The MMS media archive: which URLs of a message are archived, under what
//! name, who may be sent credentials, and what happens after each attempt.
//!
//! Bandwidth deletes media 48 hours after it stores it, and its media URLs
//! answer only with the account's credentials. A shard queues one archive
//! job per media URL of an inbound message (`message-received`) or of a send
//! accepted by the proxy (`message-accepted`), in the commit that stores the
//! event; its alarm fetches each file, stores it in R2 and records the
//! outcome. No clock here: times come from the caller.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::change::{Change, ChangeKind, DOC_VERSION};
use crate::event::EventKind;
use crate::identity::sha256_hex;
use crate::percent::percent_encode;
use crate::retry::Schedule;

/// Largest file archived: above Bandwidth's own limits (3.75 MB uploads,
/// about 3.5 MB per MMS), so a real MMS part always fits.
pub const MAX_MEDIA_BYTES: u64 = 5 * 1024 * 1024;
/// One attempt (connect, headers and the whole body) must finish within this.
pub const FETCH_TIMEOUT_MS: u64 = 30_000;
/// Redirects followed per attempt.
pub const MAX_REDIRECTS: u32 = 5;
/// Bandwidth's window: media is deleted 48 hours after it is stored.
pub const WINDOW_MS: i64 = 48 * 3_600_000;

/// The default retry schedule: 30 s doubling to at most an hour, for the
/// 48 hours Bandwidth keeps the file (vars `MEDIA_RETRY_BASE_MS`,
/// `MEDIA_RETRY_MAX_MS`, `MEDIA_GIVE_UP_MS`).
pub fn schedule(base: Option<&str>, max: Option<&str>, give_up: Option<&str>) -> Schedule {
    let d = Schedule { base_ms: 30_000, max_ms: 3_600_000, give_up_ms: WINDOW_MS };
    Schedule::from_vars_or(d, base, max, give_up)
}

crate::stored_enum! {
    /// A media archive job's state, stored in its `status` column.
    pub enum MediaStatus {
        Pending = "pending",
        Archived = "archived",
        Failed = "failed",
    }
}

#[derive(Deserialize)]
struct MediaOf {
    #[serde(default)]
    message: Option<MessageMedia>,
}

#[derive(Deserialize)]
struct MessageMedia {
    #[serde(default)]
    media: Option<Value>,
}

/// The media URLs to archive from a newly stored event: those of an inbound
/// message or of an accepted send; none for status callbacks (their media,
/// when present, is the send's, already queued).
pub fn urls_to_archive(kind: &EventKind, raw: &str) -> Vec<String> {
    if !matches!(kind, EventKind::MessageReceived | EventKind::MessageAccepted) {
        return Vec::new();
    }
    let media = serde_json::from_str::<MediaOf>(raw).ok().and_then(|m| m.message).and_then(|m| m.media);
    let Some(Value::Array(urls)) = media else { return Vec::new() };
    let mut out: Vec<String> = urls.iter().filter_map(Value::as_str).map(str::to_owned).collect();
    out.dedup();
    out
}

/// Where one media URL is archived: `path` names it under its message, in
/// R2 (`{messageId}/{path}`) and under this Worker's `/media/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaName {
    pub path: String,
}

/// Names a media URL. Bandwidth's own (`{api base origin}/…/media/{name}`)
/// become `bw/{name}`; any other origin becomes `ext/{host}{path}`, with a
/// hash of the query when there is one. Only http(s) URLs can be archived.
pub fn name_of(url: &str, api_base: &str) -> Result<MediaName, String> {
    let parsed = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err("only http and https URLs are archived".into());
    }
    let segments = |p: &str| -> String {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(|s| match s {
                "." => "%2E".to_owned(),
                ".." => "%2E%2E".to_owned(),
                s => s.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/")
    };
    let path = parsed.path();
    let mut name = match path.split_once("/media/") {
        Some((_, rest)) if same_origin(url, api_base) && !rest.is_empty() => format!("bw/{}", segments(rest)),
        _ => {
            let host = parsed.host_str().unwrap_or_default();
            let port = parsed.port().map(|p| format!("_{p}")).unwrap_or_default();
            format!("ext/{}{port}/{}", percent_encode(host), segments(path))
        }
    };
    if let Some(q) = parsed.query() {
        name.push_str(&format!("~{}", &sha256_hex(q.as_bytes())[..12]));
    }
    Ok(MediaName { path: name.trim_end_matches('/').to_owned() })
}

/// The lane of inbound media: the files of Bandwidth's own callbacks, which
/// never wait behind media named by sends.
pub const INBOUND_LANE: &str = "in";

/// The lane a job waits in for a connection: [`INBOUND_LANE`] for the media
/// of an authenticated callback; `out:{origin}` for media a send named, one
/// lane per origin, so one slow or dead host holds up only its own files.
pub fn lane_of(kind: &EventKind, url: &str) -> String {
    if *kind != EventKind::MessageAccepted {
        return INBOUND_LANE.to_owned();
    }
    let origin = Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    format!("out:{origin}")
}

/// Where Bandwidth's credentials may go: the configured account's media
/// under `BANDWIDTH_API_BASE` (`{base}/users/{account}/media/`), and only
/// for files that arrived in an authenticated Bandwidth callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialScope {
    base: String,
    prefix: String,
}

impl CredentialScope {
    /// `None` when no account is configured: then no media gets credentials.
    pub fn new(api_base: &str, account_id: Option<&str>) -> Option<Self> {
        let account = account_id.map(str::trim).filter(|a| !a.is_empty())?;
        let base = Url::parse(api_base).ok()?;
        let path = base.path().trim_end_matches('/');
        let prefix = format!("{path}/users/{}/media/", percent_encode(account));
        Some(Self { base: api_base.to_owned(), prefix })
    }

    /// Whether `url` is one of the account's media files. The path is
    /// compared after URL parsing has resolved dot segments (`%2e%2e` too).
    pub fn covers(&self, url: &str) -> bool {
        same_origin(url, &self.base)
            && Url::parse(url).is_ok_and(|u| {
                u.username().is_empty() && u.path().starts_with(&self.prefix) && u.path().len() > self.prefix.len()
            })
    }
}

/// Which hops of one download may carry Bandwidth's credentials: none of a
/// send's media; for a callback's media, hops inside the [`CredentialScope`]
/// until the chain has once left Bandwidth's origin, after which no hop
/// gets them back.
#[derive(Debug, Clone)]
pub struct CredentialChain<'a> {
    scope: Option<&'a CredentialScope>,
}

impl<'a> CredentialChain<'a> {
    pub fn new(from_callback: bool, scope: Option<&'a CredentialScope>) -> Self {
        Self { scope: scope.filter(|_| from_callback) }
    }

    /// Whether the request to `url`, the chain's next hop, carries them.
    pub fn hop(&mut self, url: &str) -> bool {
        let Some(scope) = self.scope else { return false };
        if !same_origin(url, &scope.base) {
            self.scope = None;
            return false;
        }
        scope.covers(url)
    }
}

/// Whether `url` is on `base`'s origin (scheme, host and port), the only
/// place Bandwidth's credentials may be sent.
pub fn same_origin(url: &str, base: &str) -> bool {
    match (Url::parse(url), Url::parse(base)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin() && a.origin().is_tuple(),
        _ => false,
    }
}

/// Resolves a redirect's `Location` against the URL that answered it.
pub fn redirect_target(from: &str, location: &str) -> Option<String> {
    let next = Url::parse(from).ok()?.join(location).ok()?;
    matches!(next.scheme(), "http" | "https").then(|| next.to_string())
}

/// The R2 key of a file: its message id, then its name.
pub fn object_key(message_id: &str, path: &str) -> String {
    format!("{message_id}/{path}")
}

/// The path this Worker serves a file at.
pub fn worker_path(message_id: &str, path: &str) -> String {
    format!("/media/{}/{path}", percent_encode(message_id))
}

/// Splits `/media/{messageId}/{path}` (the part after `/media/`).
pub fn parse_worker_path(rest: &str) -> Option<(String, String)> {
    let (id, path) = rest.split_once('/')?;
    let id = crate::percent::percent_decode(id)?;
    (!id.is_empty() && !path.is_empty()).then(|| (id, path.to_owned()))
}

/// The type to store: the server's `Content-Type` when it gave one (other
/// than the generic binary type), else one from the file's extension.
pub fn content_type(header: Option<&str>, path: &str) -> String {
    if let Some(h) = header.map(str::trim).filter(|h| !h.is_empty() && !h.starts_with("application/octet-stream")) {
        return h.to_owned();
    }
    let ext = path.rsplit('/').next().and_then(|f| f.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("bmp") => "image/bmp",
        Some("smil") => "application/smil",
        Some("txt") => "text/plain",
        Some("vcf") => "text/vcard",
        Some("mp4") => "video/mp4",
        Some("3gp") => "video/3gpp",
        Some("mp3") => "audio/mpeg",
        Some("amr") => "audio/amr",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
    .to_owned()
}

/// Whether a stored type is a raster image, the only kind shown inline
/// (an `<img>` in the console). Everything else, SVG included, can carry
/// script or markup, and goes out as an attachment.
pub fn is_raster(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(essence.as_str(), "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/bmp")
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Archived {
        content_type: String,
        size: u64,
        sha256: String,
    },
    /// Worth trying again while the window is open.
    Retry(String),
    /// Never worth trying again (too large, not a URL).
    Fail(String),
}

/// The job's state and next action time after an attempt (`attempts`
/// counts it): archived; failed for good; or, for a retryable failure, a
/// retry after the backoff, the last one when the window closes, and failed
/// once it has closed.
pub fn next_state(
    schedule: &Schedule,
    attempt: &Attempt,
    attempts: u32,
    window_start_ms: i64,
    now_ms: i64,
    jitter: f64,
) -> (MediaStatus, i64) {
    match attempt {
        Attempt::Archived { .. } => (MediaStatus::Archived, now_ms),
        Attempt::Fail(_) => (MediaStatus::Failed, now_ms),
        Attempt::Retry(_) => {
            let next = now_ms + schedule.backoff_ms(attempts, jitter);
            let end = window_start_ms + schedule.give_up_ms;
            if now_ms >= end {
                (MediaStatus::Failed, now_ms)
            } else {
                // The last try lands when the window closes, not after it.
                (MediaStatus::Pending, next.min(end))
            }
        }
    }
}

/// One archived (or pending, or failed) file, as `GET /messages/{id}`
/// (`archivedMedia`) and the `message.media` forward show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedMedia {
    /// This Worker's path for the file, under `/media/`.
    pub url: String,
    pub content_type: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub status: MediaStatus,
    /// Bandwidth's (or the sender's) URL it was copied from.
    pub source_url: String,
    /// Why it failed, or why the last attempt did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A shard's media row, as it travels to the Worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaRecord {
    pub message_id: String,
    pub path: String,
    pub source_url: String,
    pub status: MediaStatus,
    pub content_type: Option<String>,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub last_error: Option<String>,
}

impl MediaRecord {
    pub fn view(&self) -> ArchivedMedia {
        let status = self.status;
        ArchivedMedia {
            url: worker_path(&self.message_id, &self.path),
            content_type: self.content_type.clone(),
            size: self.size.and_then(|s| u64::try_from(s).ok()),
            sha256: self.sha256.clone(),
            status,
            source_url: self.source_url.clone(),
            error: if status == MediaStatus::Archived { None } else { self.last_error.clone() },
        }
    }
}

/// The `message.media` document: every file of the message, once all are
/// archived or failed. Its webhook id is stable, so it is queued once.
pub fn media_change(message_id: &str, media: &[ArchivedMedia]) -> Change {
    let identity = serde_json::json!([message_id, ChangeKind::Media]).to_string();
    let webhook_id = format!("msg_{}", &sha256_hex(identity.as_bytes())[..32]);
    let doc = serde_json::json!({
        "type": ChangeKind::Media,
        "version": DOC_VERSION,
        "messageId": message_id,
        "archivedMedia": media,
        "webhookId": webhook_id,
    });
    Change { webhook_id, kind: ChangeKind::Media, message_id: message_id.to_owned(), doc }
}

/// Whether a reader may fetch a message's file: the operator (`scope`
/// `None`) always; a client key when one of its numbers is the message's
/// sender or one of its recipients.
pub fn may_read(scope: Option<&[String]>, numbers: &[String]) -> bool {
    scope.is_none_or(|own| own.iter().any(|n| numbers.contains(n)))
}

/// `GET /media/...` asks its shard for this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaQuery {
    pub message_id: String,
    pub path: String,
}

/// The file's row (if the message has such a file) and the message's
/// numbers (sender and recipients), for a client key's scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MediaLookup {
    pub item: Option<MediaRecord>,
    pub numbers: Vec<String>,
}
