//! Abuse limits of client keys: where a key may send, how fast, how much a
//! day, and how fast it may read.
//!
//! A client key sits in browser code, so anyone can lift it. Its limits are
//! configured per key in `CLIENT_KEYS`; the counters live in one
//! `KeyGuard` Durable Object per key (the Worker's glue), which applies
//! [`KeyState::admit`] one request at a time, so counts are exact across
//! isolates. Everything here is pure: times come in as arguments.
//!
//! - `rate_per_minute`: a token bucket (GCRA) of that many sends, refilled
//!   evenly over a minute: a burst of N, then one every 60/N seconds.
//! - `daily_quota`: **messages** per UTC day, one per recipient (a group
//!   send to 3 numbers counts 3), since each recipient is a message billed
//!   by Bandwidth and pumping is paid per message. A send that would pass
//!   the quota is refused whole, never partly sent.
//! - `allowed_destinations`: E.164 prefixes every `to` must start with.
//!   Without it, the calling codes of the key's own `allowed_from` numbers
//!   (`+15551110000` sends to `+1...`); `["*"]` allows every destination.
//!   `+1` means the United States, its territories and Canada: the other
//!   NANP countries need their own prefix (`+1876`, [`prefix_admits`]).
//! - `reads_per_minute` (default [`DEFAULT_READS_PER_MINUTE`]): list,
//!   conversation and live-feed requests, as a token bucket like sends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Refusal};
use crate::send::is_e164;

pub const DEFAULT_READS_PER_MINUTE: u32 = 120;
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// A key's optional limits, as configured in `CLIENT_KEYS`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_quota: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_destinations: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads_per_minute: Option<u32>,
}

impl KeyLimits {
    /// Checks the configured values; `key_id` names the key in the error.
    pub fn validate(&self, key_id: &str) -> Result<(), String> {
        for (name, value) in [
            ("rate_per_minute", self.rate_per_minute),
            ("daily_quota", self.daily_quota),
            ("reads_per_minute", self.reads_per_minute),
        ] {
            if value == Some(0) {
                return Err(format!("CLIENT_KEYS: key {key_id:?} has {name} 0; leave it out for no limit"));
            }
        }
        for prefix in self.allowed_destinations.iter().flatten() {
            let digits = prefix.strip_prefix('+').unwrap_or("");
            let valid =
                prefix == "*" || ((1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()));
            if !valid {
                return Err(format!(
                    "CLIENT_KEYS: key {key_id:?} has allowed_destinations entry {prefix:?}; \
                     use E.164 prefixes like \"+1\" or \"+4420\", or \"*\""
                ));
            }
        }
        Ok(())
    }

    pub fn reads_per_minute(&self) -> u32 {
        self.reads_per_minute.unwrap_or(DEFAULT_READS_PER_MINUTE)
    }

    /// The destination prefixes in force: the configured ones, or else the
    /// calling codes of `allowed_from`'s E.164 numbers. `None` means any.
    pub fn destination_prefixes(&self, allowed_from: &[String]) -> Option<Vec<String>> {
        match &self.allowed_destinations {
            Some(list) if list.iter().any(|p| p == "*") => None,
            Some(list) => Some(list.clone()),
            None => {
                let mut codes: Vec<String> =
                    allowed_from.iter().filter_map(|n| calling_code(n)).map(|c| format!("+{c}")).collect();
                codes.sort();
                codes.dedup();
                Some(codes)
            }
        }
    }

    /// The recipients of `to` this key may not send to, in order.
    pub fn refused_destinations<'a>(&self, allowed_from: &[String], to: &'a [String]) -> Vec<&'a str> {
        match self.destination_prefixes(allowed_from) {
            None => Vec::new(),
            Some(prefixes) => {
                to.iter().map(String::as_str).filter(|n| !prefixes.iter().any(|p| prefix_admits(p, n))).collect()
            }
        }
    }
}

/// Area codes of the North American Numbering Plan that belong to neither
/// the United States (with its territories) nor Canada: 18 Caribbean
/// countries and territories with calling code 1, the classic SMS-pumping
/// destinations. Source: NANPA's list of NANP countries.
pub const NANP_FOREIGN_AREA_CODES: [&str; 21] = [
    "242", // Bahamas
    "246", // Barbados
    "264", // Anguilla
    "268", // Antigua and Barbuda
    "284", // British Virgin Islands
    "345", // Cayman Islands
    "441", // Bermuda
    "473", // Grenada
    "649", // Turks and Caicos Islands
    "658", // Jamaica
    "664", // Montserrat
    "721", // Sint Maarten
    "758", // Saint Lucia
    "767", // Dominica
    "784", // Saint Vincent and the Grenadines
    "809", // Dominican Republic
    "829", // Dominican Republic
    "849", // Dominican Republic
    "868", // Trinidad and Tobago
    "869", // Saint Kitts and Nevis
    "876", // Jamaica
];

/// The NANP area code of `number` when it belongs to a country other than
/// the United States and Canada (`+1876…`: `"876"`).
pub fn nanp_foreign_area(number: &str) -> Option<&str> {
    let area = number.strip_prefix("+1")?.get(..3)?;
    NANP_FOREIGN_AREA_CODES.contains(&area).then_some(area)
}

/// Whether destination prefix `prefix` admits `number`. Calling code 1 is
/// shared by 20-odd countries: a prefix that names only part of it (`"+1"`,
/// `"+18"`) means the United States, its territories and Canada; another
/// NANP country needs a prefix that names its area code (`"+1876"`).
pub fn prefix_admits(prefix: &str, number: &str) -> bool {
    if !number.starts_with(prefix) {
        return false;
    }
    nanp_foreign_area(number).is_none() || prefix.len() >= "+1".len() + 3
}

/// Two-digit country calling codes (ITU-T E.164 zones 2 to 9); `1` and `7`
/// are the only one-digit codes and every other code has three digits.
/// Calling codes form a prefix code, so this decides the length.
const TWO_DIGIT_CODES: [&str; 44] = [
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49", "51",
    "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81", "82", "84", "86", "90",
    "91", "92", "93", "94", "95", "98",
];

/// The country calling code of an E.164 number, without the `+`; `None`
/// for anything else (an alphanumeric sender ID).
pub fn calling_code(number: &str) -> Option<&str> {
    if !is_e164(number) {
        return None;
    }
    let digits = &number[1..];
    let len = if digits.starts_with('1') || digits.starts_with('7') {
        1
    } else if TWO_DIGIT_CODES.contains(&&digits[..2]) {
        2
    } else {
        3
    };
    digits.get(..len)
}

/// What a `KeyGuard` is asked to admit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "kind")]
pub enum Ask {
    /// A send to `recipients` numbers, under the key's send limits.
    Send { recipients: u32, rate_per_minute: Option<u32>, daily_quota: Option<u32> },
    /// Gives back an admitted send that Bandwidth did not take (it answered
    /// 4xx, or was never reached): it does not count against the quota.
    Refund { recipients: u32 },
    /// A read (list, conversation, live subscribe).
    Read { reads_per_minute: u32 },
    /// A refusal the Worker decided itself (destination, from, origin),
    /// counted for `GET /keys`.
    Refused { reason: Refusal },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardRequest {
    pub ask: Ask,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "decision")]
pub enum Verdict {
    Admit,
    /// Refused; retry in `retry_after_s` seconds (the `Retry-After` value).
    Refuse {
        reason: Refusal,
        retry_after_s: i64,
    },
}

/// One key's counters, as its `KeyGuard` stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyState {
    /// The UTC day (days since the epoch) the daily counts are for.
    pub day: i64,
    pub sends_today: u64,
    pub messages_today: u64,
    pub refusals_today: BTreeMap<Refusal, u64>,
    pub last_refusal_ms: Option<i64>,
    pub last_refusal: Option<Refusal>,
    /// GCRA: the theoretical arrival time of the next send / read.
    pub send_tat_ms: i64,
    pub read_tat_ms: i64,
}

/// GCRA over a minute: `per_minute` requests may arrive at once, then one
/// every `60/per_minute` seconds. Returns the new arrival time, or the
/// milliseconds until the request would be allowed.
fn bucket(tat_ms: i64, now_ms: i64, per_minute: u32) -> Result<i64, i64> {
    let interval = MINUTE_MS as f64 / f64::from(per_minute.max(1));
    let next = tat_ms.max(now_ms) as f64 + interval;
    let over = next - (now_ms + MINUTE_MS) as f64;
    if over > 0.0 {
        Err(over.ceil() as i64)
    } else {
        Ok(next.round() as i64)
    }
}

fn seconds(ms: i64) -> i64 {
    ((ms + 999) / 1000).max(1)
}

impl KeyState {
    fn roll_day(&mut self, now_ms: i64) {
        let day = now_ms.div_euclid(DAY_MS);
        if day != self.day {
            self.day = day;
            self.sends_today = 0;
            self.messages_today = 0;
            self.refusals_today.clear();
        }
    }

    fn refuse(&mut self, reason: Refusal, now_ms: i64, retry_after_s: i64) -> Verdict {
        *self.refusals_today.entry(reason).or_default() += 1;
        self.last_refusal_ms = Some(now_ms);
        self.last_refusal = Some(reason);
        Verdict::Refuse { reason, retry_after_s }
    }

    /// Decides a request and updates the counters. The caller stores the
    /// state after every call (refusals are counted too).
    pub fn admit(&mut self, ask: &Ask, now_ms: i64) -> Verdict {
        self.roll_day(now_ms);
        match *ask {
            Ask::Send { recipients, rate_per_minute, daily_quota } => {
                let recipients = u64::from(recipients);
                if let Some(quota) = daily_quota {
                    if self.messages_today + recipients > u64::from(quota) {
                        let until_midnight = (self.day + 1) * DAY_MS - now_ms;
                        return self.refuse(Refusal::Quota, now_ms, seconds(until_midnight));
                    }
                }
                let mut tat = self.send_tat_ms;
                if let Some(rate) = rate_per_minute {
                    match bucket(tat, now_ms, rate) {
                        Ok(next) => tat = next,
                        Err(wait_ms) => return self.refuse(Refusal::Rate, now_ms, seconds(wait_ms)),
                    }
                }
                self.send_tat_ms = tat;
                self.sends_today += 1;
                self.messages_today += recipients;
                Verdict::Admit
            }
            Ask::Refund { recipients } => {
                self.messages_today = self.messages_today.saturating_sub(u64::from(recipients));
                self.sends_today = self.sends_today.saturating_sub(1);
                Verdict::Admit
            }
            Ask::Read { reads_per_minute } => match bucket(self.read_tat_ms, now_ms, reads_per_minute) {
                Ok(next) => {
                    self.read_tat_ms = next;
                    Verdict::Admit
                }
                Err(wait_ms) => self.refuse(Refusal::Reads, now_ms, seconds(wait_ms)),
            },
            Ask::Refused { reason } => self.refuse(reason, now_ms, 0),
        }
    }
}

/// The 429 for a refused send or read of key `key_id`.
pub fn limited(key_id: &str, limits: &KeyLimits, reason: Refusal, retry_after_s: i64) -> ApiError {
    let description = match reason {
        Refusal::Quota => format!(
            "Key {key_id} has used its daily_quota of {} messages for this UTC day; nothing was sent.",
            limits.daily_quota.unwrap_or(0)
        ),
        Refusal::Reads => format!(
            "Key {key_id} is over its reads_per_minute of {}; retry after {retry_after_s} s.",
            limits.reads_per_minute()
        ),
        _ => format!(
            "Key {key_id} is over its rate_per_minute of {}; nothing was sent. Retry after {retry_after_s} s.",
            limits.rate_per_minute.unwrap_or(0)
        ),
    };
    ApiError::Limited { reason, retry_after_s, description }
}

/// The 403 for a send to numbers outside the key's destinations, naming them.
pub fn refused_destinations(key_id: &str, limits: &KeyLimits, allowed_from: &[String], refused: &[&str]) -> ApiError {
    let allowed = limits.destination_prefixes(allowed_from).unwrap_or_default();
    let allowed = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
    ApiError::Forbidden(format!(
        "Key {key_id} may not send to {} (allowed destinations: {allowed}); nothing was sent.",
        refused.join(", ")
    ))
}

/// One key's use as `GET /keys` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyUsage {
    pub id: String,
    pub limits: KeyLimits,
    /// The destination prefixes in force (`null`: any).
    pub allowed_destinations: Option<Vec<String>>,
    pub sends_today: u64,
    /// Recipients sent to today: what `daily_quota` counts.
    pub messages_today: u64,
    pub refusals_today: BTreeMap<Refusal, u64>,
    /// RFC 3339, or `null` when the key was never refused.
    pub last_refusal_at: Option<String>,
    pub last_refusal: Option<Refusal>,
}

impl KeyUsage {
    /// The view of `state` as of `now_ms` (yesterday's counts read as zero).
    pub fn of(id: &str, limits: &KeyLimits, allowed_from: &[String], mut state: KeyState, now_ms: i64) -> Self {
        state.roll_day(now_ms);
        KeyUsage {
            id: id.to_owned(),
            limits: limits.clone(),
            allowed_destinations: limits.destination_prefixes(allowed_from),
            sends_today: state.sends_today,
            messages_today: state.messages_today,
            refusals_today: state.refusals_today,
            last_refusal_at: state.last_refusal_ms.map(crate::time::format_rfc3339_ms),
            last_refusal: state.last_refusal,
        }
    }
}
