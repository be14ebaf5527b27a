//! `GET /metrics`: the ledger's counts in Prometheus' text format.
//!
//! Every figure is derived at scrape time from what the shards hold, so
//! counting adds no row write to any callback:
//! - `stored`: events ever stored, from a per-shard checkpoint (the count
//!   and the highest `seq` counted); a scrape reads only the events stored
//!   since the last one, and writes the checkpoint (one row per shard, only
//!   when it moved). Deleting events (retention, erasure) counts first and
//!   lowers the checkpoint's `seq`, so the counter never goes back and
//!   never counts an event twice.
//! - `quarantined`: the sum of `seen_count` over the quarantine items held;
//! - `conflict`: identity conflicts held;
//! - `duplicate`: duplicates answered since each shard's object started, in
//!   memory (a counter that resets like a restarted process's; Prometheus'
//!   `rate()` handles that);
//! - recipients, outbox items and media files: grouped counts of the rows
//!   held, read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::media::MediaStatus;
use crate::outbox::OutboxState;
use crate::status::RecipientState;

/// One shard's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShardMetrics {
    pub stored: i64,
    pub duplicates: i64,
    pub conflicts: i64,
    pub quarantined: i64,
    /// Recipients by normalized status.
    pub recipients: BTreeMap<String, i64>,
    /// Outbox rows by (target, state).
    pub outbox: Vec<(String, String, i64)>,
    /// Media files by status.
    pub media: BTreeMap<String, i64>,
}

impl ShardMetrics {
    /// Adds another shard's figures to these.
    pub fn add(&mut self, o: ShardMetrics) {
        self.stored += o.stored;
        self.duplicates += o.duplicates;
        self.conflicts += o.conflicts;
        self.quarantined += o.quarantined;
        for (k, v) in o.recipients {
            *self.recipients.entry(k).or_default() += v;
        }
        for (k, v) in o.media {
            *self.media.entry(k).or_default() += v;
        }
        for (target, state, n) in o.outbox {
            match self.outbox.iter_mut().find(|(t, s, _)| *t == target && *s == state) {
                Some(row) => row.2 += n,
                None => self.outbox.push((target, state, n)),
            }
        }
    }
}

/// A label value, escaped as the text format requires.
pub(crate) fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Renders the totals. Every known status appears, zero or not, so a
/// series exists before its first event; `targets` (the configured
/// forwarding targets) get every outbox state the same way.
pub fn render(m: &ShardMetrics, targets: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP bw_ledger_events_total Callback events by outcome.");
    let _ = writeln!(out, "# TYPE bw_ledger_events_total counter");
    for (result, n) in
        [("stored", m.stored), ("duplicate", m.duplicates), ("conflict", m.conflicts), ("quarantined", m.quarantined)]
    {
        let _ = writeln!(out, "bw_ledger_events_total{{result=\"{result}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP bw_ledger_recipients Recipients by current normalized status.");
    let _ = writeln!(out, "# TYPE bw_ledger_recipients gauge");
    let known: Vec<&str> = RecipientState::ALL.iter().map(|s| s.as_str()).collect();
    let mut statuses = known.clone();
    statuses.extend(m.recipients.keys().map(String::as_str).filter(|s| !known.contains(s)));
    for s in statuses {
        let n = m.recipients.get(s).copied().unwrap_or(0);
        let _ = writeln!(out, "bw_ledger_recipients{{status=\"{}\"}} {n}", label(s));
    }
    let _ = writeln!(out, "# HELP bw_ledger_outbox_items Forwarding outbox rows by target and state.");
    let _ = writeln!(out, "# TYPE bw_ledger_outbox_items gauge");
    let mut rows: BTreeMap<(String, String), i64> = BTreeMap::new();
    for t in targets {
        for s in OutboxState::ALL {
            rows.insert((t.clone(), s.as_str().to_owned()), 0);
        }
    }
    for (t, s, n) in &m.outbox {
        *rows.entry((t.clone(), s.clone())).or_default() += n;
    }
    for ((t, s), n) in rows {
        let _ = writeln!(out, "bw_ledger_outbox_items{{target=\"{}\",state=\"{}\"}} {n}", label(&t), label(&s));
    }
    let _ = writeln!(out, "# HELP bw_ledger_media_items Archived media files by status.");
    let _ = writeln!(out, "# TYPE bw_ledger_media_items gauge");
    for s in MediaStatus::ALL.iter().map(|s| s.as_str()) {
        let n = m.media.get(s).copied().unwrap_or(0);
        let _ = writeln!(out, "bw_ledger_media_items{{status=\"{s}\"}} {n}");
    }
    out
}
