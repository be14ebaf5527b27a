//! `GET /stats/outcomes`: recipient outcomes by hour over the last 24
//! hours (by the message's time, the List's `receiveTime`), and the most
//! frequent error codes, for the console's chart. Inbound messages are not
//! outcomes and are left out.

use serde::{Deserialize, Serialize};

use crate::status::RecipientState;
use crate::time::format_rfc3339_ms;

pub const HOUR_MS: i64 = 3_600_000;
pub const HOURS: i64 = 24;
/// Error codes listed beside the chart.
pub const TOP_ERRORS: usize = 5;

/// What a shard is asked: rows from `from_ms` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeQuery {
    pub from_ms: i64,
}

/// One shard's counts: (hour start, normalized status, recipients) and
/// (error code, recipients).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShardOutcomes {
    pub hours: Vec<(i64, String, i64)>,
    pub error_codes: Vec<(i64, i64)>,
}

/// The chart's column for a normalized status; `None` for inbound.
pub fn outcome_of(status: &str) -> Option<Outcome> {
    use RecipientState as S;
    match RecipientState::parse(status)? {
        S::Delivered | S::Read => Some(Outcome::Delivered),
        S::Failed => Some(Outcome::Failed),
        S::Accepted | S::Sending | S::Sent => Some(Outcome::Pending),
        S::Received => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Failed,
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HourCounts {
    /// The hour's start, RFC 3339.
    pub hour: String,
    pub delivered: i64,
    pub failed: i64,
    pub pending: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorCount {
    pub error_code: i64,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcomes {
    pub from: String,
    pub hours: Vec<HourCounts>,
    pub error_codes: Vec<ErrorCount>,
}

/// The first hour of the window that ends with the hour holding `now_ms`.
pub fn window_start(now_ms: i64) -> i64 {
    (now_ms.div_euclid(HOUR_MS) - (HOURS - 1)) * HOUR_MS
}

/// Merges the shards' counts into 24 hourly buckets (oldest first, empty
/// hours included) and the top error codes (most frequent first, ties by
/// code).
pub fn merge(now_ms: i64, shards: Vec<ShardOutcomes>) -> Outcomes {
    let start = window_start(now_ms);
    let mut hours: Vec<HourCounts> = (0..HOURS)
        .map(|i| HourCounts { hour: format_rfc3339_ms(start + i * HOUR_MS), delivered: 0, failed: 0, pending: 0 })
        .collect();
    let mut errors: Vec<ErrorCount> = Vec::new();
    for shard in shards {
        for (hour_ms, status, n) in shard.hours {
            let i = (hour_ms - start).div_euclid(HOUR_MS);
            let Some(bucket) = usize::try_from(i).ok().and_then(|i| hours.get_mut(i)) else { continue };
            match outcome_of(&status) {
                Some(Outcome::Delivered) => bucket.delivered += n,
                Some(Outcome::Failed) => bucket.failed += n,
                Some(Outcome::Pending) => bucket.pending += n,
                None => {}
            }
        }
        for (code, n) in shard.error_codes {
            match errors.iter_mut().find(|e| e.error_code == code) {
                Some(e) => e.count += n,
                None => errors.push(ErrorCount { error_code: code, count: n }),
            }
        }
    }
    errors.sort_by(|a, b| b.count.cmp(&a.count).then(a.error_code.cmp(&b.error_code)));
    errors.truncate(TOP_ERRORS);
    Outcomes { from: format_rfc3339_ms(start), hours, error_codes: errors }
}
