//! Which Durable Object shard owns a message.
//!
//! The mapping must never change for a given shard count: a message's events
//! and its reads all go to `shard_for(id, count)`. The count is the layout
//! in force ([`Layout`]), recorded durably when the deployment first runs,
//! not the `LEDGER_SHARDS` var: a var changed later is noted as a request
//! ([`Requested`]) and moves nothing, so no message is ever looked for on a
//! shard that never heard of it.

use serde::{Deserialize, Serialize};

/// FNV-1a, 64-bit: tiny, stable across platforms and releases.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shard index in `0..shards` for a key (a message id or a content hash).
pub fn shard_for(key: &str, shards: u32) -> u32 {
    let shards = shards.max(1);
    (fnv1a64(key.as_bytes()) % u64::from(shards)) as u32
}

/// The Durable Object name of shard `index`; the object id derives from it.
pub fn shard_name(index: u32) -> String {
    format!("ledger-shard-{index}")
}

/// Upper bound on `LEDGER_SHARDS`: fan-out reads touch every shard.
pub const MAX_SHARDS: u32 = 256;

/// Parses the `LEDGER_SHARDS` var: a whole number in `1..=MAX_SHARDS`.
pub fn parse_shard_count(raw: &str) -> Result<u32, String> {
    match raw.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(n),
        _ => Err(format!("LEDGER_SHARDS must be a whole number from 1 to {MAX_SHARDS}, got {raw:?}")),
    }
}

/// The shard layout a deployment's data is in: how many shards, and since
/// when. It is recorded once, durably, by the shard map (`wire::shard_map`)
/// from the first Worker that asks, and every Worker then routes by it,
/// whatever its own `LEDGER_SHARDS` says: two versions of the Worker with
/// different vars, serving side by side, agree on where a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layout {
    pub count: u32,
    pub since_ms: i64,
}

/// A shard count some Worker's `LEDGER_SHARDS` asked for that is not the
/// one in force. Nothing moves to it: the data stays where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requested {
    pub count: u32,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// What a Worker tells the shard map when it first needs the layout: the
/// count its own var says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ask {
    pub count: u32,
}

/// The shard map's answer: the layout in force, and the other counts asked
/// for recently (most recently asked first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layouts {
    pub in_force: Layout,
    pub requested: Vec<Requested>,
}

/// How long a differing count stays listed after the last Worker asked for
/// it: a version rolled back is forgotten a day later.
pub const REQUEST_FORGOTTEN_AFTER_MS: i64 = 24 * 3600 * 1000;

/// How often a count asked for again is written down: a Worker asks once
/// per isolate, and many isolates start each minute, so `last_seen` is kept
/// to the minute rather than costing a row written per isolate.
pub const REQUEST_TOUCH_EVERY_MS: i64 = 60 * 1000;

/// What the shard map does with an ask, given what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Nothing recorded yet: the asker's count becomes the layout in force.
    InForce(Layout),
    /// The ask is the count in force, or was noted less than a minute ago.
    Nothing,
    /// Note (or touch) a request for another count.
    Request(Requested),
}

/// Decides an ask: `held` is the layout in force, if any, and `noted` the
/// request already held for the same count, if any.
pub fn record(held: Option<Layout>, noted: Option<Requested>, ask: Ask, now_ms: i64) -> Record {
    let Some(in_force) = held else { return Record::InForce(Layout { count: ask.count, since_ms: now_ms }) };
    if ask.count == in_force.count {
        return Record::Nothing;
    }
    match noted {
        Some(n) if now_ms - n.last_seen_ms < REQUEST_TOUCH_EVERY_MS => Record::Nothing,
        Some(n) => Record::Request(Requested { last_seen_ms: now_ms, ..n }),
        None => Record::Request(Requested { count: ask.count, first_seen_ms: now_ms, last_seen_ms: now_ms }),
    }
}

/// The requests still worth showing: asked for within a day, most recent first.
pub fn current_requests(mut requested: Vec<Requested>, now_ms: i64) -> Vec<Requested> {
    requested.retain(|r| now_ms - r.last_seen_ms < REQUEST_FORGOTTEN_AFTER_MS);
    requested.sort_by(|a, b| b.last_seen_ms.cmp(&a.last_seen_ms).then(a.count.cmp(&b.count)));
    requested
}

/// `GET /shards`: the layout in force, the counts asked for, and what each
/// shard holds (`list_rows[i]`: shard `i`'s List Messages rows, one per
/// message and recipient). `moving` is `false`: this build moves no data
/// between layouts, so a requested count waits, and says so.
pub fn view(layouts: &Layouts, list_rows: &[i64]) -> serde_json::Value {
    use crate::time::format_rfc3339_ms as at;
    let requested: Vec<serde_json::Value> = layouts
        .requested
        .iter()
        .map(
            |r| serde_json::json!({"count": r.count, "firstSeen": at(r.first_seen_ms), "lastSeen": at(r.last_seen_ms)}),
        )
        .collect();
    let shards: Vec<serde_json::Value> = list_rows
        .iter()
        .enumerate()
        .map(|(i, n)| serde_json::json!({"shard": i, "name": shard_name(i as u32), "listRows": n}))
        .collect();
    serde_json::json!({
        "inForce": {"count": layouts.in_force.count, "since": at(layouts.in_force.since_ms)},
        "requested": requested,
        "moving": false,
        "shards": shards,
    })
}

/// The layout's lines for `GET /metrics`: `bw_ledger_shards` is the count
/// in force, and `bw_ledger_shards_requested` is 1 for each other count a
/// Worker asked for in the last day (an alert on it finds a changed var
/// that, in this build, moves nothing).
pub fn render_metrics(layouts: &Layouts) -> String {
    let mut out = String::new();
    out.push_str("# HELP bw_ledger_shards Ledger shards in the layout in force.\n");
    out.push_str("# TYPE bw_ledger_shards gauge\n");
    out.push_str(&format!("bw_ledger_shards {}\n", layouts.in_force.count));
    out.push_str(
        "# HELP bw_ledger_shards_requested Other shard counts a Worker's LEDGER_SHARDS asked for in the last day.\n",
    );
    out.push_str("# TYPE bw_ledger_shards_requested gauge\n");
    for r in &layouts.requested {
        out.push_str(&format!("bw_ledger_shards_requested{{count=\"{}\"}} 1\n", r.count));
    }
    out
}
