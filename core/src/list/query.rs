//! Bandwidth's List Messages query string (and the conversation query)
//! parsed into a [`ListQuery`], with page tokens bound to the query that
//! made them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::channel::Channel;
use crate::error::ApiError;
use crate::identity::sha256_hex;
use crate::percent::percent_decode;
use crate::route::query_int;
use crate::send::is_e164;
use crate::time::parse_rfc3339_ms;

use super::row::ListRow;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

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
    pub(super) fn column(self) -> &'static str {
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
    /// The Multi-Channel channel that carried it. Left out when unset, so
    /// page tokens of queries without it keep their fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
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
    match query_int::<u32>(v) {
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(bad(format!("`limit` must be a whole number from 1 to {MAX_LIMIT}."))),
    }
}

fn parse_int(name: &str, v: &str) -> Result<i64, ApiError> {
    query_int(v).ok_or_else(|| bad(format!("`{name}` must be a whole number.")))
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
                "channel" if Channel::parse(&v).is_some() => f.channel = Some(v),
                "channel" => return Err(bad("`channel` must be RBM, SMS or MMS.")),
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
    pub(super) fn scan_descending(&self) -> bool {
        match self.cursor.as_ref().map(|c| c.direction) {
            Some(PageDirection::Before) => !self.descending,
            _ => self.descending,
        }
    }
}
