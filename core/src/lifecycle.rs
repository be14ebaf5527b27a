//! The data lifecycle: retention, erasure by number, and export.
//!
//! - **Retention** (`RETENTION_DAYS`): a message whose time (its List
//!   `receiveTime`: Bandwidth's `message.time`) is older than the window is
//!   deleted with everything attached to it. Shards delete in bounded
//!   batches ([`SweepRequest`]), so a large shard never holds up callbacks.
//! - **Erasure** (`POST /erasure`): every message in which a number is the
//!   sender or a recipient, on every shard, in batches ([`EraseRequest`]),
//!   with the quarantine items and saved send answers that mention it. The
//!   erased ids are kept as tombstones (`ERASURE_TOMBSTONE_DAYS`, 30 days
//!   by default), so neither Bandwidth's retries nor a late first callback
//!   can bring a message back.
//! - **Export** (`GET /export`): messages in `[from, to)`, shard by shard in
//!   pages ([`ExportQuery`]), as NDJSON message views or CSV rows.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::projection::MessageView;
use crate::quarantine::RawEncoding;
use crate::records::MessageRecords;
use crate::send::is_e164;
use crate::time::{format_rfc3339_ms, parse_rfc3339_ms};

pub const DAY_MS: i64 = 86_400_000;
/// How long an erased message's id is kept by default
/// (`ERASURE_TOMBSTONE_DAYS`): far past Bandwidth's 24 hours of retries, so
/// a late callback (a `message-read` days later, a receipt held through an
/// outage) stores nothing and never brings the number back.
pub const DEFAULT_TOMBSTONE_DAYS: u32 = 30;
pub const DEFAULT_TOMBSTONE_MS: i64 = DEFAULT_TOMBSTONE_DAYS as i64 * DAY_MS;

/// Reads `ERASURE_TOMBSTONE_DAYS` (1 to 36500, default 30), in milliseconds.
pub fn parse_tombstone_ms(raw: Option<&str>) -> Result<i64, String> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_TOMBSTONE_MS),
        Some(v) => match v.parse::<u32>() {
            Ok(days) if (1..=36_500).contains(&days) => Ok(i64::from(days) * DAY_MS),
            _ => Err(format!("ERASURE_TOMBSTONE_DAYS must be a whole number of days from 1 to 36500; got {v:?}")),
        },
    }
}
/// Messages deleted per shard call: small enough that a call takes a few
/// milliseconds, so callbacks queued behind it barely wait.
pub const BATCH: u32 = 100;
/// Messages per export page (per shard call).
pub const EXPORT_PAGE: u32 = 100;

/// Reads `RETENTION_DAYS`: unset or empty keeps everything forever.
pub fn parse_retention_days(raw: Option<&str>) -> Result<Option<u32>, String> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => match v.parse::<u32>() {
            Ok(days) if (1..=36_500).contains(&days) => Ok(Some(days)),
            _ => Err(format!("RETENTION_DAYS must be a whole number of days from 1 to 36500; got {v:?}")),
        },
    }
}

/// Messages older than this are deleted.
pub fn retention_cutoff(days: u32, now_ms: i64) -> i64 {
    now_ms - i64::from(days) * DAY_MS
}

/// One bounded batch of retention on a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepRequest {
    /// Delete messages older than this; `None` only prunes tombstones.
    pub cutoff_ms: Option<i64>,
    pub now_ms: i64,
    pub limit: u32,
    /// When more remain, the shard continues on its own, batch by batch
    /// from its alarm (the daily cron); otherwise the caller calls again.
    pub continue_by_alarm: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SweepReply {
    pub purged: u32,
    pub more: bool,
}

/// One bounded batch of an erasure on a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EraseRequest {
    pub number: String,
    pub now_ms: i64,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct EraseReply {
    pub erased: u32,
    /// Quarantine items that mentioned the number (deleted with the first batch).
    pub quarantined: u32,
    pub more: bool,
}

/// The body of `POST /erasure`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErasureBody {
    pub number: String,
}

/// Validates an erasure request body.
pub fn parse_erasure(body: &[u8]) -> Result<String, ApiError> {
    let parsed: ErasureBody = serde_json::from_slice(body)
        .map_err(|_| ApiError::BadRequest("The body must be {\"number\": \"+15551230000\"}.".into()))?;
    if !is_e164(&parsed.number) {
        return Err(ApiError::BadRequest(format!("`number` must be an E.164 number; got {:?}.", parsed.number)));
    }
    Ok(parsed.number)
}

/// What raw text is searched for when erasing `number` (E.164): its digits
/// without the `+`, so `"+1555…"` and an escaped `"\u002b1555…"` both match.
/// It errs toward erasing: a longer number containing these digits matches too.
pub fn number_needle(number: &str) -> &str {
    number.trim_start_matches('+')
}

/// Whether a quarantined body, stored as text or as base64 (not UTF-8),
/// contains `needle`.
pub fn raw_mentions(raw: &str, encoding: RawEncoding, needle: &str) -> bool {
    match encoding {
        RawEncoding::Utf8 => raw.contains(needle),
        RawEncoding::Base64 => {
            let bytes = STANDARD.decode(raw.as_bytes()).unwrap_or_default();
            !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        }
    }
}

/// Where an export page starts: after this (time, message id).
pub type ExportCursor = (i64, String);

/// One page of one shard's export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportQuery {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub after: Option<ExportCursor>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedMessage {
    pub message_id: String,
    /// The message's time, as List Messages' `receiveTime`.
    pub time_ms: i64,
    pub records: MessageRecords,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExportPage {
    pub messages: Vec<ExportedMessage>,
    /// Where the next page starts; `None` when the shard has no more.
    pub next: Option<ExportCursor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Ndjson,
    Csv,
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// Parses `GET /export`'s query: `from`, `to` (ISO 8601; either may be
/// left out for an open end) and `format` (`ndjson`, the default, or `csv`).
pub fn parse_export(query: Option<&str>) -> Result<(Option<i64>, Option<i64>, ExportFormat), ApiError> {
    let (mut from, mut to, mut format) = (None, None, ExportFormat::Ndjson);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = crate::percent::percent_decode(v)
            .ok_or_else(|| ApiError::BadRequest("The query string is not valid UTF-8.".into()))?;
        let time = |name: &str| {
            parse_rfc3339_ms(&v).ok_or_else(|| {
                ApiError::BadRequest(format!("`{name}` must be an ISO 8601 date-time, like 2026-11-01T00:00:00Z."))
            })
        };
        match k {
            "from" => from = Some(time("from")?),
            "to" => to = Some(time("to")?),
            "format" if v == "ndjson" => format = ExportFormat::Ndjson,
            "format" if v == "csv" => format = ExportFormat::Csv,
            "format" => return Err(ApiError::BadRequest("`format` must be ndjson or csv.".into())),
            other => {
                return Err(ApiError::BadRequest(format!("Unknown query parameter `{other}`; use from, to, format.")))
            }
        }
    }
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::BadRequest("`from` must be before `to`.".into()));
        }
    }
    Ok((from, to, format))
}

/// The CSV columns, one row per recipient.
pub const CSV_HEADER: [&str; 14] = [
    "messageId",
    "time",
    "direction",
    "from",
    "to",
    "status",
    "errorCode",
    "text",
    "segmentCount",
    "flags",
    "media",
    "tag",
    "channel",
    "readTime",
];

fn csv_text(fields: &[&str]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.write_record(fields);
    w.into_inner().unwrap_or_default()
}

/// The header line of a CSV export (RFC 4180, CRLF).
pub fn csv_header() -> Vec<u8> {
    csv_text(&CSV_HEADER)
}

/// A message's CSV lines: one per recipient (a message with none yet gets
/// one line with an empty `to`).
pub fn csv_lines(view: &MessageView, time_ms: i64) -> Vec<u8> {
    let time = format_rfc3339_ms(time_ms);
    let direction = view.direction.clone().unwrap_or_default();
    let text = view.text.clone().unwrap_or_default();
    let segments = view.segment_count.map(|n| n.to_string()).unwrap_or_default();
    let media = view.media.join(" ");
    let tag = view.tag.clone().unwrap_or_default();
    let mut out = Vec::new();
    // Per recipient: who it went out as (a Multi-Channel message's carrying
    // entry), to whom, and how it ended.
    let mut line =
        |from: &str, to: &str, status: &str, error_code: String, flags: String, channel: &str, read_time: &str| {
            out.extend(csv_text(&[
                &view.message_id,
                &time,
                &direction,
                from,
                to,
                status,
                &error_code,
                &text,
                &segments,
                &flags,
                &media,
                &tag,
                channel,
                read_time,
            ]));
        };
    if view.recipients.is_empty() {
        line(view.from.as_deref().unwrap_or(""), "", "", String::new(), String::new(), "", "");
    }
    for r in &view.recipients {
        let flags: Vec<String> =
            r.flags.iter().filter_map(|f| serde_json::to_value(f).ok()?.as_str().map(str::to_owned)).collect();
        let error_code = r.error_code.map(|c| c.to_string()).unwrap_or_default();
        let channel = r.channel.map_or("", |c| c.as_str());
        let from = r.sent_from().or(view.from.as_deref()).unwrap_or("");
        let read_time = r.read_time.as_deref().unwrap_or("");
        line(from, &r.number, r.status.as_str(), error_code, flags.join(";"), channel, read_time);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_days() {
        assert_eq!(parse_retention_days(None), Ok(None));
        assert_eq!(parse_retention_days(Some(" ")), Ok(None));
        assert_eq!(parse_retention_days(Some("30")), Ok(Some(30)));
        assert!(parse_retention_days(Some("0")).is_err());
        assert!(parse_retention_days(Some("-1")).is_err());
        assert!(parse_retention_days(Some("7d")).is_err());
        assert_eq!(retention_cutoff(2, 5 * DAY_MS), 3 * DAY_MS);
    }

    #[test]
    fn erasure_bodies() {
        assert_eq!(parse_erasure(br#"{"number":"+15551230000"}"#), Ok("+15551230000".into()));
        for bad in [&br#"{"number":"15551230000"}"#[..], b"{}", b"nope", br#"{"number":5}"#] {
            assert_eq!(parse_erasure(bad).unwrap_err().status(), 400);
        }
        assert_eq!(number_needle("+15551230000"), "15551230000");
        assert!(raw_mentions(r#"{"to":"\u002b15551230000"}"#, RawEncoding::Utf8, "15551230000"));
        let binary = STANDARD.encode(b"\xff\xfe to +15551230000");
        assert!(raw_mentions(&binary, RawEncoding::Base64, "15551230000"));
        assert!(!raw_mentions(&binary, RawEncoding::Base64, "15551239999"));
    }

    #[test]
    fn export_queries() {
        let (f, t, fmt) =
            parse_export(Some("from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00.000Z&format=csv")).unwrap();
        assert_eq!((f, t, fmt), (Some(1_793_491_200_000), Some(1_793_577_600_000), ExportFormat::Csv));
        assert_eq!(parse_export(None).unwrap(), (None, None, ExportFormat::Ndjson));
        for bad in ["from=yesterday", "format=xml", "limit=5", "from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z"] {
            assert_eq!(parse_export(Some(bad)).unwrap_err().status(), 400, "{bad}");
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(
            csv_text(&["a", "b,c", "say \"hi\"", "two\nlines", ""]),
            b"a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n"
        );
        assert!(String::from_utf8(csv_header()).unwrap().starts_with("messageId,time,direction,from,to,status,"));
    }
}
