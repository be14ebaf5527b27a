//! Bandwidth's List Messages query string (and the conversation query)
//! parsed into a [`ListQuery`], with page tokens bound to the query that
//! made them.

use super::*;

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
    pub(super) fn scan_descending(&self) -> bool {
        match self.cursor.as_ref().map(|c| c.direction) {
            Some(PageDirection::Before) => !self.descending,
            _ => self.descending,
        }
    }
}
