//! Which Durable Object shard owns a message.
//!
//! A deployment's shard layouts are recorded durably by the shard map
//! (`wire::shard_map`), one after another, never edited: each is a count
//! and the moment it starts. A message belongs to the layout that was in
//! force at the millisecond its id begins with (Bandwidth's message ids
//! begin with the time they were made), and within that layout to
//! `shard_for(id, count)`. So raising or lowering `LEDGER_SHARDS` moves no
//! message: a new layout starts in the future ([`LEAD_MS`]), only ids made
//! after that belong to it, and every message stays on the one shard that
//! has always held it. Ids without a time, and keys that are not message
//! ids (a content hash, an idempotency scope), belong to the first layout.
//!
//! A Worker caches the layouts for a while ([`Layouts::valid_ms`]) that is
//! shorter than the lead, so a layout it has not heard of yet cannot start
//! before it asks again: Workers of two versions, serving side by side,
//! agree on where every message is ([`Placement`]).

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

/// One shard layout: how many shards, and from when. A deployment's
/// layouts are recorded by the shard map, oldest first; a message belongs
/// to the newest one whose `since_ms` is not after the time its id begins
/// with (the first one for ids without a time, or older than it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layout {
    pub count: u32,
    pub since_ms: i64,
}

/// A recorded layout, and the upload time of the Worker version whose
/// `LEDGER_SHARDS` asked for it (0: unknown), which orders later asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    pub layout: Layout,
    pub version_ms: i64,
}

/// A shard count some Worker's `LEDGER_SHARDS` asked for that is not the
/// newest layout's, from a version older than the one that recorded it
/// (a version still rolling out, or rolled back to): noted, and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requested {
    pub count: u32,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// What a Worker tells the shard map when it needs the layouts: the count
/// its own var says, and when its version was uploaded (`None` from builds
/// before layouts changed; `Some(0)` when the runtime does not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ask {
    pub count: u32,
    #[serde(default)]
    pub version_ms: Option<i64>,
}

/// The shard map's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layouts {
    /// The first layout: builds from before layouts could change route
    /// every message by it. (In force now: [`in_force_at`].)
    pub in_force: Layout,
    /// Every layout, oldest first, including one that has not started.
    #[serde(default)]
    pub layouts: Vec<Layout>,
    /// Other counts asked for recently (most recently asked first).
    pub requested: Vec<Requested>,
    /// How long the asker may keep this answer: well inside the lead, so
    /// it asks again before any layout it has not heard of can start.
    #[serde(default)]
    pub valid_ms: i64,
    /// No layout recorded after this answer starts before this time (the
    /// map's clock): ids made before it are placed by `layouts` alone.
    #[serde(default)]
    pub horizon_ms: i64,
}

/// How far ahead of the ask that records it a new layout starts.
pub const LEAD_MS: i64 = 10 * 60 * 1000;

/// How long a Worker keeps the layouts it was given, for a lead: a fifth.
pub fn valid_for(lead_ms: i64) -> i64 {
    (lead_ms / 5).max(1)
}

/// How long a differing count stays listed after the last Worker asked for
/// it: a version rolled back is forgotten a day later.
pub const REQUEST_FORGOTTEN_AFTER_MS: i64 = 24 * 3600 * 1000;

/// How often a count asked for again is written down: a Worker asks once
/// per isolate and cache period, and many isolates start each minute, so
/// `last_seen` is kept to the minute rather than costing a row per ask.
pub const REQUEST_TOUCH_EVERY_MS: i64 = 60 * 1000;

/// What the shard map does with an ask, given what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Nothing recorded yet: the asker's count is the first layout, from now.
    First(Held),
    /// A newer version asks for another count: it starts `lead_ms` from now.
    Next(Held),
    /// The ask is the newest layout's count, or was noted less than a
    /// minute ago.
    Nothing,
    /// Note (or touch) a request for another count by an older version.
    Request(Requested),
}

/// Decides an ask: `held` is every layout recorded, oldest first, and
/// `noted` the request already held for the same count, if any.
///
/// A count differing from the newest layout's starts a new layout only
/// when the asking version was uploaded after the version that recorded
/// the newest: during a gradual rollout the old version keeps asking for
/// its count, and a rollback to it, and neither must undo the change.
/// Builds from before layouts changed (no version) never start one.
pub fn record(held: &[Held], noted: Option<Requested>, ask: Ask, now_ms: i64, lead_ms: i64) -> Record {
    let version_ms = ask.version_ms.unwrap_or(0);
    let Some(newest) = held.last() else {
        return Record::First(Held { layout: Layout { count: ask.count, since_ms: now_ms }, version_ms });
    };
    if ask.count == newest.layout.count {
        return Record::Nothing;
    }
    if ask.version_ms.is_some() && version_ms > newest.version_ms {
        let since_ms = (now_ms + lead_ms).max(newest.layout.since_ms + 1);
        return Record::Next(Held { layout: Layout { count: ask.count, since_ms }, version_ms });
    }
    match noted {
        Some(n) if now_ms - n.last_seen_ms < REQUEST_TOUCH_EVERY_MS => Record::Nothing,
        Some(n) => Record::Request(Requested { last_seen_ms: now_ms, ..n }),
        None => Record::Request(Requested { count: ask.count, first_seen_ms: now_ms, last_seen_ms: now_ms }),
    }
}

/// The requests still worth showing: asked for within a day, most recent
/// first, and none for the newest layout's count (asked again after a
/// newer version recorded it).
pub fn current_requests(mut requested: Vec<Requested>, newest: u32, now_ms: i64) -> Vec<Requested> {
    requested.retain(|r| now_ms - r.last_seen_ms < REQUEST_FORGOTTEN_AFTER_MS && r.count != newest);
    requested.sort_by(|a, b| b.last_seen_ms.cmp(&a.last_seen_ms).then(a.count.cmp(&b.count)));
    requested
}

/// The layout in force at `at_ms`: the newest that has started, else the
/// first. `layouts` is oldest first and never empty.
pub fn in_force_at(layouts: &[Layout], at_ms: i64) -> Layout {
    layouts
        .iter()
        .rev()
        .find(|l| l.since_ms <= at_ms)
        .or(layouts.first())
        .copied()
        .unwrap_or(Layout { count: 1, since_ms: 0 })
}

/// The time a Bandwidth message id begins with: its first 13 characters,
/// all digits (milliseconds since 1970, as in `1589228074636lm4k2je7j7jklbn2`).
pub fn id_time_ms(id: &str) -> Option<i64> {
    let head = id.as_bytes().get(..13)?;
    if !head.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(head).ok()?.parse().ok()
}

/// Where keys go, given the layouts a Worker holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    layouts: Vec<Layout>,
    horizon_ms: i64,
}

impl Placement {
    /// `layouts` oldest first (one at least); `horizon_ms` as in [`Layouts`].
    pub fn new(layouts: Vec<Layout>, horizon_ms: i64) -> Self {
        let layouts = if layouts.is_empty() { vec![Layout { count: 1, since_ms: 0 }] } else { layouts };
        Self { layouts, horizon_ms }
    }

    /// One layout of `count` shards, for ever.
    pub fn fixed(count: u32) -> Self {
        Self::new(vec![Layout { count, since_ms: 0 }], i64::MAX)
    }

    /// The map's answer as a placement.
    pub fn of(answer: &Layouts) -> Self {
        let layouts = if answer.layouts.is_empty() { vec![answer.in_force] } else { answer.layouts.clone() };
        let horizon_ms = if answer.horizon_ms > 0 { answer.horizon_ms } else { i64::MAX };
        Self::new(layouts, horizon_ms)
    }

    /// The layout a key belongs to. An id whose time is past the horizon
    /// (made minutes in the future: not Bandwidth's) belongs to the first.
    pub fn layout_of(&self, key: &str) -> Layout {
        match id_time_ms(key) {
            Some(t) if t < self.horizon_ms => in_force_at(&self.layouts, t),
            _ => self.layouts[0],
        }
    }

    /// The shard in `0..fan_out()` that holds a message id.
    pub fn shard_of(&self, key: &str) -> u32 {
        shard_for(key, self.layout_of(key).count)
    }

    /// The shard that holds a key that is not a message id (a content
    /// hash, an idempotency scope): by the first layout, whatever digits
    /// the key begins with.
    pub fn shard_of_untimed(&self, key: &str) -> u32 {
        shard_for(key, self.layouts[0].count)
    }

    /// How many shards a read of everything touches: every shard of every
    /// layout (the largest count), each message on exactly one of them.
    pub fn fan_out(&self) -> u32 {
        self.layouts.iter().map(|l| l.count).max().unwrap_or(1)
    }

    pub fn layouts(&self) -> &[Layout] {
        &self.layouts
    }
}

/// `GET /shards`: the layout in force, the one waiting to start if any,
/// every layout, the counts asked for by older versions, and what each
/// shard holds (`list_rows[i]`: shard `i`'s List Messages rows, one per
/// message and recipient). Nothing moves between layouts (`moving` is
/// `false`): a shard the newest layout no longer uses keeps serving the
/// messages it holds until retention removes them (`newMessages: false`,
/// and `emptyBy`, [`empty_by`]).
pub fn view(layouts: &Layouts, list_rows: &[i64], retention_days: Option<u32>, now_ms: i64) -> serde_json::Value {
    use crate::time::format_rfc3339_ms as at;
    let all = Placement::of(layouts);
    let in_force = in_force_at(all.layouts(), now_ms);
    let newest = *all.layouts().last().unwrap_or(&in_force);
    let layout = |l: &Layout| serde_json::json!({"count": l.count, "since": at(l.since_ms)});
    let next = (newest.since_ms > now_ms).then(|| layout(&newest));
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
        .map(|(i, n)| {
            let new_messages = (i as u32) < newest.count;
            let mut shard = serde_json::json!({"shard": i, "name": shard_name(i as u32), "listRows": n,
                "newMessages": new_messages});
            if !new_messages {
                shard["emptyBy"] = retention_days.map(|d| at(empty_by(newest, d))).into();
            }
            shard
        })
        .collect();
    serde_json::json!({
        "inForce": layout(&in_force),
        "next": next,
        "layouts": all.layouts().iter().map(layout).collect::<Vec<_>>(),
        "requested": requested,
        "moving": false,
        "shards": shards,
    })
}

/// When retention will have emptied a shard the newest layout no longer
/// uses: every message there was made before that layout started; its
/// callbacks come within Bandwidth's day of retries; retention then keeps
/// it `days`, and the daily sweep removes it within a day.
pub fn empty_by(newest: Layout, retention_days: u32) -> i64 {
    const DAY_MS: i64 = 24 * 3600 * 1000;
    newest.since_ms + DAY_MS * (i64::from(retention_days) + 2)
}

/// The layout's lines for `GET /metrics`: `bw_ledger_shards` is the count
/// in force, `bw_ledger_reshard_pending` the layouts recorded that have
/// not started yet (1 from a changed count's first ask until its start),
/// and `bw_ledger_shards_requested` is 1 for each count an older version's
/// `LEDGER_SHARDS` asked for in the last day (one that changes nothing).
pub fn render_metrics(layouts: &Layouts, now_ms: i64) -> String {
    let all = Placement::of(layouts);
    let pending = all.layouts().iter().filter(|l| l.since_ms > now_ms).count();
    let mut out = String::new();
    out.push_str("# HELP bw_ledger_shards Ledger shards in the layout in force.\n");
    out.push_str("# TYPE bw_ledger_shards gauge\n");
    out.push_str(&format!("bw_ledger_shards {}\n", in_force_at(all.layouts(), now_ms).count));
    out.push_str("# HELP bw_ledger_reshard_pending Shard layouts recorded that have not started yet.\n");
    out.push_str("# TYPE bw_ledger_reshard_pending gauge\n");
    out.push_str(&format!("bw_ledger_reshard_pending {pending}\n"));
    out.push_str(
        "# HELP bw_ledger_shards_requested Other shard counts an older version's LEDGER_SHARDS asked for in the last day.\n",
    );
    out.push_str("# TYPE bw_ledger_shards_requested gauge\n");
    for r in &layouts.requested {
        out.push_str(&format!("bw_ledger_shards_requested{{count=\"{}\"}} 1\n", r.count));
    }
    out
}
