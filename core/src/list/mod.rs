//! List Messages in Bandwidth's shape: the rows we keep per recipient, the
//! query parameters (`query`), the SQL each shard runs (`plan`), the stored
//! columns and what an update writes (`columns`), opaque page
//! tokens, and the merge of per-shard pages into one stable,
//! keyset-paginated answer.
//!
//! Rows are sorted by an immutable key (the sort field, then message id and
//! recipient), so pages never repeat or skip a row while new events arrive:
//! a status change updates a row in place, and a new message lands at its
//! own key, outside pages already handed out.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::identity::sha256_hex;
use crate::projection::MessageView;
use crate::route::percent_decode;
use crate::send::is_e164;
use crate::status::RecipientState;
use crate::time::{format_rfc3339_ms, parse_rfc3339_ms};

mod columns;
mod plan;
mod query;
pub use columns::ColumnValue;
pub use plan::{count_plan, page_plan, total_count, SqlPlan, ROW_COLUMNS};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// One row per (message, recipient), as stored in each shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRow {
    pub message_id: String,
    pub destination_tn: String,
    pub source_tn: String,
    pub message_status: String,
    pub message_direction: String,
    pub message_type: String,
    pub segment_count: i64,
    pub error_code: i64,
    pub receive_time_ms: i64,
    pub carrier_name: Option<String>,
    pub message_length: i64,
    pub attachment_count: i64,
    pub recipient_count: i64,
    pub text: Option<String>,
    pub media: Vec<String>,
    /// The normalized status (`delivered`, `read`, ...), finer than Bandwidth's.
    pub state: String,
    /// `network-handoff-only`, `receipt-expired`, `contradiction`.
    pub flags: Vec<String>,
}

/// Derives the list rows of a message from its projected view.
/// `first_received_ms` stands in for the time when no event carries one.
pub fn rows_for(view: &MessageView, first_received_ms: i64) -> Vec<ListRow> {
    let receive_time_ms = receive_time_ms(view, first_received_ms);
    let inbound =
        view.direction.as_deref() == Some("in") || view.recipients.iter().all(|r| r.status == RecipientState::Received);
    let rcs = view.timeline.iter().any(|t| t.event.get("channel").and_then(Value::as_str) == Some("RBM"));
    let recipient_count = view.to.len().max(1) as i64;
    let message_type = if rcs {
        "rcs"
    } else if !view.media.is_empty() || recipient_count > 1 {
        "mms"
    } else {
        "sms"
    };
    let text = view.text.clone().filter(|t| !t.is_empty());
    view.recipients
        .iter()
        .map(|r| {
            // The latest carrier name reported for this recipient, if any.
            let carrier_name = view
                .timeline
                .iter()
                .rev()
                .filter(|t| t.recipient.as_deref() == Some(r.number.as_str()))
                .find_map(|t| t.event.get("carrierName").and_then(Value::as_str).map(str::to_owned));
            ListRow {
                message_id: view.message_id.clone(),
                destination_tn: r.number.clone(),
                source_tn: view.from.clone().unwrap_or_default(),
                message_status: r.status.bandwidth_status().to_owned(),
                message_direction: if inbound { "INBOUND" } else { "OUTBOUND" }.to_owned(),
                message_type: message_type.to_owned(),
                segment_count: view.segment_count.unwrap_or(1),
                error_code: r.error_code.unwrap_or(0),
                receive_time_ms,
                carrier_name,
                message_length: text.as_deref().map_or(0, |t| t.chars().count() as i64),
                attachment_count: view.media.len() as i64,
                recipient_count,
                text: text.clone(),
                media: view.media.clone(),
                state: r.status.as_str().to_owned(),
                flags: r
                    .flags
                    .iter()
                    .filter_map(|f| serde_json::to_value(f).ok()?.as_str().map(str::to_owned))
                    .collect(),
            }
        })
        .collect()
}

/// A message's receive time (the List's `receiveTime`, and what retention
/// and export go by): Bandwidth's `message.time`, else its earliest event
/// time, else when the ledger first got it.
pub fn receive_time_ms(view: &MessageView, first_received_ms: i64) -> i64 {
    view.time
        .as_deref()
        .and_then(parse_rfc3339_ms)
        .or_else(|| view.timeline.iter().filter_map(|t| t.time.as_deref().and_then(parse_rfc3339_ms)).min())
        .unwrap_or(first_received_ms)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortField {
    ReceiveTime,
    SourceTn,
    DestinationTn,
    MessageId,
}

impl SortField {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "receiveTime" => Self::ReceiveTime,
            "sourceTn" => Self::SourceTn,
            "destinationTn" => Self::DestinationTn,
            "messageId" => Self::MessageId,
            _ => return None,
        })
    }
    fn column(self) -> &'static str {
        match self {
            Self::ReceiveTime => "receive_time_ms",
            Self::SourceTn => "source_tn",
            Self::DestinationTn => "destination_tn",
            Self::MessageId => "message_id",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TnFilter {
    /// One full number or a comma list of up to 10.
    Exact(Vec<String>),
    /// A single partial number of at least 5 characters, matched as a prefix.
    Prefix(String),
}

/// A value bound to a `?` placeholder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SqlParam {
    Int(i64),
    Text(String),
}

/// The sort key of a row: (sort value, message id, recipient). Unique.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RowKey(pub SqlParam, pub String, pub String);

impl PartialOrd for SqlParam {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for SqlParam {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (Self::Int(a), Self::Int(b)) => a.cmp(b),
            (Self::Text(a), Self::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Self::Int(_), Self::Text(_)) => std::cmp::Ordering::Less,
            (Self::Text(_), Self::Int(_)) => std::cmp::Ordering::Greater,
        }
    }
}

impl RowKey {
    pub fn of(row: &ListRow, field: SortField) -> Self {
        let primary = match field {
            SortField::ReceiveTime => SqlParam::Int(row.receive_time_ms),
            SortField::SourceTn => SqlParam::Text(row.source_tn.clone()),
            SortField::DestinationTn => SqlParam::Text(row.destination_tn.clone()),
            SortField::MessageId => SqlParam::Text(row.message_id.clone()),
        };
        Self(primary, row.message_id.clone(), row.destination_tn.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PageDirection {
    /// Rows after the key, in sort order (the next page).
    After,
    /// Rows before the key (the previous page).
    Before,
}

/// What a page token carries. Opaque to clients (base64url JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "k")]
    pub key: RowKey,
    #[serde(rename = "d")]
    pub direction: PageDirection,
    /// Fingerprint of the filters and sort the token was made for.
    #[serde(rename = "f")]
    pub fingerprint: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }
    pub fn decode(token: &str) -> Option<Self> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.trim()).ok()?).ok()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    pub message_id: Option<String>,
    pub source_tn: Option<TnFilter>,
    pub destination_tn: Option<TnFilter>,
    pub message_status: Option<String>,
    pub message_direction: Option<String>,
    pub message_type: Option<String>,
    pub error_code: Option<i64>,
    pub carrier_name: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub from_segments: Option<i64>,
    pub to_segments: Option<i64>,
    /// Both directions between two numbers.
    pub conversation: Option<(String, String)>,
    /// A client key sees only rows that involve its own numbers.
    pub scope_numbers: Option<Vec<String>>,
}

/// Which count of the matching rows a list answers (`limitTotalCount`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CountMode {
    /// No `limitTotalCount`: an exact `totalCount`, as Bandwidth answers.
    #[default]
    Exact,
    /// `limitTotalCount=true`: counting stops at [`COUNT_CAP`], as
    /// Bandwidth documents, so the count's cost is bounded.
    Capped,
    /// `limitTotalCount=false`: no count query at all; `totalCount` is left
    /// out. (Bandwidth counts exactly here; this ledger saves the shards
    /// the scan, see the README.)
    Skip,
}

/// The most `limitTotalCount=true` counts, as Bandwidth's documentation says.
pub const COUNT_CAP: i64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    pub filters: Filters,
    pub sort: SortField,
    pub descending: bool,
    pub limit: u32,
    pub cursor: Option<Cursor>,
    pub include_content: bool,
    pub count: CountMode,
}

/// One merged page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub rows: Vec<ListRow>,
    pub next: Option<Cursor>,
    pub prev: Option<Cursor>,
}

/// Merges per-shard pages (each in scan order, at most `limit + 1` rows)
/// into the page the client sees.
pub fn merge(q: &ListQuery, shard_pages: Vec<Vec<ListRow>>) -> Page {
    let desc = q.scan_descending();
    let mut rows: Vec<ListRow> = shard_pages.into_iter().flatten().collect();
    rows.sort_by(|a, b| {
        let ord = RowKey::of(a, q.sort).cmp(&RowKey::of(b, q.sort));
        if desc {
            ord.reverse()
        } else {
            ord
        }
    });
    let more = rows.len() > q.limit as usize;
    rows.truncate(q.limit as usize);
    let backwards = matches!(q.cursor.as_ref().map(|c| c.direction), Some(PageDirection::Before));
    if backwards {
        rows.reverse();
    }
    let fingerprint = q.fingerprint();
    let cursor_at = |row: Option<&ListRow>, direction| {
        row.map(|r| Cursor { key: RowKey::of(r, q.sort), direction, fingerprint: fingerprint.clone() })
    };
    // Forward: a next page if more rows remain; a previous page if we came
    // from one. Backward: the mirror image.
    let (has_next, has_prev) = if backwards { (true, more) } else { (more, q.cursor.is_some()) };
    Page {
        next: if has_next { cursor_at(rows.last(), PageDirection::After) } else { None },
        prev: if has_prev { cursor_at(rows.first(), PageDirection::Before) } else { None },
        rows,
    }
}

/// A row in Bandwidth's `listMessageItem` shape; text and media only when
/// the caller asked for content.
pub fn list_item(row: &ListRow, account_id: &str, include_content: bool) -> Value {
    let mut item = serde_json::json!({
        "messageId": row.message_id,
        "accountId": account_id,
        "sourceTn": row.source_tn,
        "destinationTn": row.destination_tn,
        "messageStatus": row.message_status,
        "messageDirection": row.message_direction,
        "messageType": row.message_type,
        "segmentCount": row.segment_count,
        "errorCode": row.error_code,
        "receiveTime": format_rfc3339_ms(row.receive_time_ms),
        "carrierName": row.carrier_name,
        "messageLength": row.message_length,
        "attachmentCount": row.attachment_count,
        "recipientCount": row.recipient_count,
    });
    if include_content {
        item["text"] = Value::String(row.text.clone().unwrap_or_default());
        item["media"] = serde_json::json!(row.media);
        item["status"] = Value::String(row.state.clone());
        item["flags"] = serde_json::json!(row.flags);
    }
    item
}

/// Bandwidth's `pageInfo`: tokens, and links that repeat the query with
/// the token. `base` is the request URL without its query string.
pub fn page_info(page: &Page, base: &str, query: Option<&str>) -> Value {
    let kept: Vec<&str> =
        query.unwrap_or("").split('&').filter(|p| !p.is_empty() && !p.starts_with("pageToken=")).collect();
    let link = |c: &Cursor| {
        let mut parts = kept.clone();
        let token = format!("pageToken={}", c.encode());
        parts.push(&token);
        format!("{base}?{}", parts.join("&"))
    };
    // Absent links are left out, not null: the schema types them as strings.
    let mut info = serde_json::Map::new();
    if let Some(c) = &page.prev {
        info.insert("prevPage".into(), Value::String(link(c)));
        info.insert("prevPageToken".into(), Value::String(c.encode()));
    }
    if let Some(c) = &page.next {
        info.insert("nextPage".into(), Value::String(link(c)));
        info.insert("nextPageToken".into(), Value::String(c.encode()));
    }
    Value::Object(info)
}

/// What one shard answers for a list query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShardPage {
    pub rows: Vec<ListRow>,
    /// The shard's count, `None` when the query asked for none.
    pub total: Option<i64>,
}
