//! List Messages in Bandwidth's shape: the rows we keep per recipient, the
//! query parameters, the SQL each shard runs, opaque page tokens, and the
//! merge of per-shard pages into one stable, keyset-paginated answer.
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
    let receive_time_ms = view
        .time
        .as_deref()
        .and_then(parse_rfc3339_ms)
        .or_else(|| view.timeline.iter().filter_map(|t| t.time.as_deref().and_then(parse_rfc3339_ms)).min())
        .unwrap_or(first_received_ms);
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

const STATUSES: [&str; 8] = ["RECEIVED", "QUEUED", "SENDING", "SENT", "FAILED", "DELIVERED", "ACCEPTED", "UNDELIVERED"];

/// Bandwidth parameters this ledger does not keep the data for: asking for
/// them is an error, not a silently wrong answer.
const UNSUPPORTED: [&str; 11] = [
    "campaignId",
    "fromBwLatency",
    "bwQueued",
    "product",
    "location",
    "carrierQueued",
    "fromCarrierLatency",
    "callingNumberCountryA3",
    "calledNumberCountryA3",
    "fromMessageSize",
    "toMessageSize",
];

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

fn decode_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec =
            |s: &str| percent_decode(&s.replace('+', " ")).ok_or_else(|| bad("The query string is not valid UTF-8."));
        // '+' in a phone number must arrive as %2B; a bare '+' is a space per
        // form encoding, but Bandwidth's own examples send bare '+' too.
        let value = if k == "sourceTn" || k == "destinationTn" || k == "number" || k == "with" {
            percent_decode(v).ok_or_else(|| bad("The query string is not valid UTF-8."))?
        } else {
            dec(v)?
        };
        out.push((dec(k)?, value));
    }
    Ok(out)
}

fn parse_tn(name: &str, v: &str) -> Result<TnFilter, ApiError> {
    if v.contains(',') {
        let list: Vec<String> = v.split(',').map(|s| s.trim().to_owned()).collect();
        if list.len() > 10 || list.iter().any(|n| !is_e164(n)) {
            return Err(bad(format!("`{name}` takes up to 10 comma-separated full E.164 numbers.")));
        }
        return Ok(TnFilter::Exact(list));
    }
    if v.chars().count() < 5 {
        return Err(bad(format!("`{name}` must be a full number or a partial number of at least 5 characters.")));
    }
    Ok(TnFilter::Prefix(v.to_owned()))
}

fn parse_limit(v: &str) -> Result<u32, ApiError> {
    match v.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(bad(format!("`limit` must be a whole number from 1 to {MAX_LIMIT}."))),
    }
}

fn parse_int(name: &str, v: &str) -> Result<i64, ApiError> {
    v.parse().map_err(|_| bad(format!("`{name}` must be a whole number.")))
}

fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    parse_rfc3339_ms(v)
        .ok_or_else(|| bad(format!("`{name}` must be an ISO 8601 date-time, like 2026-11-20T15:04:05.000Z.")))
}

impl ListQuery {
    /// The defaults before parameters: newest or oldest first by receive time.
    fn starting(scope: Option<Vec<String>>, descending: bool, include_content: bool) -> Self {
        ListQuery {
            filters: Filters { scope_numbers: scope, ..Filters::default() },
            sort: SortField::ReceiveTime,
            descending,
            limit: DEFAULT_LIMIT,
            cursor: None,
            include_content,
            count: CountMode::Exact,
        }
    }

    /// Parses Bandwidth's List Messages query string. `scope` limits a
    /// client key to rows involving its own numbers.
    pub fn parse(query: Option<&str>, scope: Option<Vec<String>>) -> Result<Self, ApiError> {
        let mut q = Self::starting(scope, true, false);
        let mut token = None;
        for (k, v) in decode_pairs(query)? {
            let f = &mut q.filters;
            match k.as_str() {
                "messageId" => f.message_id = Some(v),
                "sourceTn" => f.source_tn = Some(parse_tn("sourceTn", &v)?),
                "destinationTn" => f.destination_tn = Some(parse_tn("destinationTn", &v)?),
                "messageStatus" if STATUSES.contains(&v.as_str()) => f.message_status = Some(v),
                "messageStatus" => return Err(bad(format!("`messageStatus` must be one of {}.", STATUSES.join(", ")))),
                "messageDirection" if v == "INBOUND" || v == "OUTBOUND" => f.message_direction = Some(v),
                "messageDirection" => return Err(bad("`messageDirection` must be INBOUND or OUTBOUND.")),
                "messageType" if ["sms", "mms", "rcs"].contains(&v.as_str()) => f.message_type = Some(v),
                "messageType" => return Err(bad("`messageType` must be sms, mms or rcs.")),
                "errorCode" => f.error_code = Some(parse_int("errorCode", &v)?),
                "carrierName" => f.carrier_name = Some(v),
                "fromDateTime" => f.from_ms = Some(parse_time("fromDateTime", &v)?),
                "toDateTime" => f.to_ms = Some(parse_time("toDateTime", &v)?),
                "fromSegmentCount" => f.from_segments = Some(parse_int("fromSegmentCount", &v)?),
                "toSegmentCount" => f.to_segments = Some(parse_int("toSegmentCount", &v)?),
                "sort" => {
                    let (field, dir) = v.split_once(':').unwrap_or((v.as_str(), "asc"));
                    q.sort = SortField::parse(field).ok_or_else(|| {
                        bad("`sort` supports receiveTime, sourceTn, destinationTn and messageId, with :asc or :desc.")
                    })?;
                    q.descending = match dir {
                        "asc" => false,
                        "desc" => true,
                        _ => return Err(bad("`sort` direction must be asc or desc.")),
                    };
                }
                "pageToken" => token = Some(v),
                "limit" => q.limit = parse_limit(&v)?,
                "include" if v == "content" => q.include_content = true,
                "include" => return Err(bad("`include` supports only `content`.")),
                "limitTotalCount" if v == "true" => q.count = CountMode::Capped,
                "limitTotalCount" if v == "false" => q.count = CountMode::Skip,
                "limitTotalCount" => return Err(bad("`limitTotalCount` must be true or false.")),
                k if UNSUPPORTED.contains(&k) => {
                    return Err(bad(format!("`{k}` is a Bandwidth filter this ledger does not support.")))
                }
                other => return Err(bad(format!("Unknown query parameter `{other}`."))),
            }
        }
        q.attach_token(token)?;
        Ok(q)
    }

    /// A conversation: both directions between two numbers, oldest first,
    /// with content.
    pub fn conversation(query: Option<&str>, scope: Option<Vec<String>>) -> Result<Self, ApiError> {
        let mut q = Self::starting(scope, false, true);
        let (mut a, mut b, mut token) = (None, None, None);
        for (k, v) in decode_pairs(query)? {
            match k.as_str() {
                "number" => a = Some(v),
                "with" => b = Some(v),
                "pageToken" => token = Some(v),
                "limit" => q.limit = parse_limit(&v)?,
                "sort" if v == "receiveTime:desc" => q.descending = true,
                "sort" if v == "receiveTime:asc" => q.descending = false,
                other => {
                    return Err(bad(format!(
                        "Unknown query parameter `{other}`; use number, with, limit, sort, pageToken."
                    )))
                }
            }
        }
        match (a, b) {
            (Some(a), Some(b)) if is_e164(&a) && is_e164(&b) => q.filters.conversation = Some((a, b)),
            _ => return Err(bad("`number` and `with` must both be E.164 numbers (encode + as %2B).")),
        }
        q.attach_token(token)?;
        Ok(q)
    }

    /// Decodes a page token, refusing one made for another query.
    fn attach_token(&mut self, token: Option<String>) -> Result<(), ApiError> {
        if let Some(t) = token {
            let cursor = Cursor::decode(&t).ok_or_else(|| bad("`pageToken` is not valid."))?;
            if cursor.fingerprint != self.fingerprint() {
                return Err(bad("`pageToken` belongs to a query with other filters or sort."));
            }
            self.cursor = Some(cursor);
        }
        Ok(())
    }

    /// Identifies the filters and sort, so a token cannot be replayed
    /// against a different query.
    pub fn fingerprint(&self) -> String {
        let shape = serde_json::json!([self.filters, self.sort, self.descending]);
        sha256_hex(shape.to_string().as_bytes())[..16].to_owned()
    }

    /// Rows are returned in this order, within a shard and after the merge.
    fn scan_descending(&self) -> bool {
        match self.cursor.as_ref().map(|c| c.direction) {
            Some(PageDirection::Before) => !self.descending,
            _ => self.descending,
        }
    }
}

/// A query for one shard: SQL text and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlPlan {
    pub sql: String,
    pub params: Vec<SqlParam>,
}

pub const ROW_COLUMNS: &str = "message_id, destination_tn, source_tn, message_status, message_direction, message_type, \
segment_count, error_code, receive_time_ms, carrier_name, message_length, attachment_count, recipient_count, text, media, \
state, flags";

fn where_clause(f: &Filters) -> (String, Vec<SqlParam>) {
    let mut conds: Vec<String> = Vec::new();
    let mut params = Vec::new();
    let mut eq = |col: &str, v: SqlParam, conds: &mut Vec<String>| {
        conds.push(format!("{col} = ?"));
        params.push(v);
    };
    if let Some(v) = &f.message_id {
        eq("message_id", SqlParam::Text(v.clone()), &mut conds);
    }
    if let Some(v) = &f.message_status {
        eq("message_status", SqlParam::Text(v.clone()), &mut conds);
    }
    if let Some(v) = &f.message_direction {
        eq("message_direction", SqlParam::Text(v.clone()), &mut conds);
    }
    if let Some(v) = &f.message_type {
        eq("message_type", SqlParam::Text(v.clone()), &mut conds);
    }
    if let Some(v) = f.error_code {
        eq("error_code", SqlParam::Int(v), &mut conds);
    }
    if let Some(v) = &f.carrier_name {
        eq("carrier_name", SqlParam::Text(v.clone()), &mut conds);
    }
    for (col, tn) in [("source_tn", &f.source_tn), ("destination_tn", &f.destination_tn)] {
        match tn {
            Some(TnFilter::Exact(list)) => {
                conds.push(format!("{col} IN {NUMBERS_PARAM}"));
                params.push(numbers_param(list));
            }
            Some(TnFilter::Prefix(p)) => {
                // A range on the column, so its index serves it (LIKE would
                // need escaping and, case-insensitive by default, no index).
                conds.push(format!("{col} >= ?"));
                params.push(SqlParam::Text(p.clone()));
                if let Some(upper) = prefix_upper_bound(p) {
                    conds.push(format!("{col} < ?"));
                    params.push(SqlParam::Text(upper));
                }
            }
            None => {}
        }
    }
    for (cond, v) in [
        ("receive_time_ms >= ?", f.from_ms),
        ("receive_time_ms <= ?", f.to_ms),
        ("segment_count >= ?", f.from_segments),
        ("segment_count <= ?", f.to_segments),
    ] {
        if let Some(v) = v {
            conds.push(cond.to_owned());
            params.push(SqlParam::Int(v));
        }
    }
    if let Some((a, b)) = &f.conversation {
        conds.push("((source_tn = ? AND destination_tn = ?) OR (source_tn = ? AND destination_tn = ?))".into());
        params.extend([a, b, b, a].into_iter().cloned().map(SqlParam::Text));
    }
    if let Some(numbers) = &f.scope_numbers {
        conds.push(format!("(source_tn IN {NUMBERS_PARAM} OR destination_tn IN {NUMBERS_PARAM})"));
        params.push(numbers_param(numbers));
        params.push(numbers_param(numbers));
    }
    let sql = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
    (sql, params)
}

/// The least string greater than every string that starts with `prefix`:
/// its last character incremented (UTF-8 orders bytes as code points).
/// `None` when no such string exists (only `char::MAX`).
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A user-sized list of numbers is bound as one JSON array, never as one
/// `?` each: SQLite caps the number of bound parameters per statement.
const NUMBERS_PARAM: &str = "(SELECT value FROM json_each(?))";

fn numbers_param(numbers: &[String]) -> SqlParam {
    SqlParam::Text(serde_json::to_string(numbers).unwrap_or_else(|_| "[]".to_owned()))
}

/// The page query each shard runs: filters, the cursor as a row-value
/// comparison on the sort key, and `limit + 1` rows to tell if more remain.
pub fn page_plan(q: &ListQuery) -> SqlPlan {
    let (mut sql, mut params) = where_clause(&q.filters);
    let col = q.sort.column();
    let desc = q.scan_descending();
    if let Some(c) = &q.cursor {
        let op = if desc { "<" } else { ">" };
        sql.push_str(if sql.is_empty() { " WHERE " } else { " AND " });
        sql.push_str(&format!("({col}, message_id, destination_tn) {op} (?, ?, ?)"));
        params.push(c.key.0.clone());
        params.push(SqlParam::Text(c.key.1.clone()));
        params.push(SqlParam::Text(c.key.2.clone()));
    }
    let dir = if desc { "DESC" } else { "ASC" };
    params.push(SqlParam::Int(i64::from(q.limit) + 1));
    SqlPlan {
        sql: format!(
            "SELECT {ROW_COLUMNS} FROM message_rows{sql} ORDER BY {col} {dir}, message_id {dir}, destination_tn {dir} LIMIT ?"
        ),
        params,
    }
}

/// The count of the rows matching the filters (no cursor), or `None` when
/// the query asks for none. A capped count stops at [`COUNT_CAP`] rows.
pub fn count_plan(q: &ListQuery) -> Option<SqlPlan> {
    let (sql, mut params) = where_clause(&q.filters);
    match q.count {
        CountMode::Skip => None,
        CountMode::Exact => Some(SqlPlan { sql: format!("SELECT COUNT(*) AS n FROM message_rows{sql}"), params }),
        CountMode::Capped => {
            params.push(SqlParam::Int(COUNT_CAP));
            Some(SqlPlan {
                sql: format!("SELECT COUNT(*) AS n FROM (SELECT 1 FROM message_rows{sql} LIMIT ?)"),
                params,
            })
        }
    }
}

/// The `totalCount` of a list from its shards' counts: `None` when not
/// counted, at most [`COUNT_CAP`] when capped.
pub fn total_count(q: &ListQuery, shard_totals: impl IntoIterator<Item = Option<i64>>) -> Option<i64> {
    let total: Option<i64> = shard_totals.into_iter().sum();
    match q.count {
        CountMode::Skip => None,
        CountMode::Exact => total,
        CountMode::Capped => total.map(|t| t.min(COUNT_CAP)),
    }
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
