//! The registry's side of target health (`bw_ledger_core::targets::health`):
//! one [`Health`] per target of either source, folded from the shards'
//! reports, moved by the clock (disable, batched `forward.exhausted`) and
//! by operators (`enable`, `disable`).
//!
//! Each move commits with the alerts it makes (`alerts`, a queue of its
//! own) and, when the state moved, a new snapshot version. After the
//! commit the alerts are handed to a ledger shard's outbox, one row per
//! destination, so they are signed, retried and counted like every other
//! forward, and never sent to the target they are about. A hand-over that
//! fails is retried by the alarm; the shard takes each (target, webhook id)
//! once, so a repeated hand-over sends nothing twice.

use bw_ledger_core::change::ChangeKind;
use bw_ledger_core::outbox::{merge_stats, TargetStats};
use bw_ledger_core::targets::health::{Alert, Health, Report, TargetState};
use bw_ledger_core::targets::{runtime, Outcome, StateEntry, TargetSnapshot, ALERT_WEBHOOK_ID};
use bw_ledger_core::wire::{ledger, Empty, QueuedChange};
use serde::Deserialize;
use worker::Result;

use super::TargetRegistry;
use crate::config::{alert_target, alerts_for_slack, forward_targets, health_policy, Config};
use crate::shard_client::ShardClient;

#[derive(Deserialize)]
struct HealthRow {
    health: String,
}

#[derive(Deserialize)]
struct AlertRow {
    seq: i64,
    webhook_id: String,
    alert: String,
}

impl TargetRegistry {
    pub(super) fn healths(&self) -> Result<Vec<Health>> {
        let rows: Vec<HealthRow> = self.sql.exec("SELECT health FROM health ORDER BY target_id", None)?.to_array()?;
        Ok(rows.iter().map(|r| serde_json::from_str(&r.health)).collect::<serde_json::Result<_>>()?)
    }

    fn health_of(&self, id: &str, now: i64) -> Result<Health> {
        let rows: Vec<HealthRow> =
            self.sql.exec("SELECT health FROM health WHERE target_id = ?", vec![id.into()])?.to_array()?;
        Ok(match rows.first() {
            Some(r) => serde_json::from_str(&r.health)?,
            None => Health::new(id, now),
        })
    }

    /// Saves a target's health after a step; a state that moved makes a
    /// new version (an API target's record keeps `paused` equal to it), and
    /// the step's alerts are queued.
    fn save_step(&self, h: &Health, moved: bool, alerts: Vec<Alert>) -> Result<()> {
        self.sql.exec(
            "INSERT INTO health (target_id, health) VALUES (?, ?)
             ON CONFLICT (target_id) DO UPDATE SET health = excluded.health",
            vec![h.target.clone().into(), serde_json::to_string(h)?.into()],
        )?;
        if moved {
            if let Some(mut record) = self.find(&h.target)? {
                record.paused = h.state == TargetState::Disabled;
                self.sql.exec(
                    "UPDATE targets SET record = ? WHERE id = ?",
                    vec![serde_json::to_string(&record)?.into(), record.id.clone().into()],
                )?;
            }
            self.bump()?;
        }
        for a in alerts {
            self.sql.exec(
                "INSERT INTO alerts (webhook_id, alert) VALUES (?, ?)",
                vec![a.webhook_id().into(), serde_json::to_string(&a)?.into()],
            )?;
        }
        Ok(())
    }

    /// Targets paused by an earlier build (a record's `paused`, before
    /// health) are disabled by hand.
    pub(super) fn adopt_paused(&self) -> Result<()> {
        for r in self.records()?.into_iter().filter(|r| r.paused) {
            let mut h = self.health_of(&r.id, r.updated_ms)?;
            if h.state != TargetState::Disabled {
                h.disable(r.updated_ms);
                self.save_step(&h, false, Vec::new())?;
            }
        }
        Ok(())
    }

    /// A target configured now, of either source, or the alert webhook.
    fn known(&self, id: &str) -> Result<bool> {
        Ok(id == ALERT_WEBHOOK_ID && alert_target(&self.env).is_some()
            || forward_targets(&self.env).unwrap_or_default().iter().any(|t| t.id == id)
            || self.find(id)?.is_some())
    }

    /// Folds the shards' reports in (in the caller's transaction). Reports
    /// on a target deleted or unconfigured meanwhile are dropped: it has no
    /// state any more.
    pub(super) fn take_reports(&self, reports: &[Report], now: i64) -> Result<()> {
        let policy = health_policy(&self.env);
        for r in reports {
            if !self.known(&r.target)? {
                continue;
            }
            let mut h = self.health_of(&r.target, now)?;
            let step = h.apply(r, &policy, now);
            self.save_step(&h, step.moved, step.alerts)?;
        }
        Ok(())
    }

    /// `enable` or `disable` (in the caller's transaction): any target of
    /// either source, or the alert webhook.
    pub(super) fn set_state(&self, id: &str, disable: bool, now: i64) -> Result<Outcome<Empty>> {
        if !self.known(id)? {
            return Ok(Outcome::NotFound);
        }
        let mut h = self.health_of(id, now)?;
        let step = if disable { h.disable(now) } else { h.enable(now) };
        self.save_step(&h, step.moved, step.alerts)?;
        Ok(Outcome::Done(Empty {}))
    }

    /// The clock's moves (in the caller's transaction).
    pub(super) fn tick(&self, now: i64) -> Result<()> {
        let policy = health_policy(&self.env);
        for mut h in self.healths()? {
            let step = h.tick(&policy, now);
            if step.moved || !step.alerts.is_empty() {
                self.save_step(&h, step.moved, step.alerts)?;
            }
        }
        Ok(())
    }

    /// Every target not active, for the snapshot.
    pub(super) fn states(&self) -> Result<Vec<StateEntry>> {
        Ok(self
            .healths()?
            .into_iter()
            .filter(|h| h.state != TargetState::Active)
            .map(|h| StateEntry { id: h.target, state: h.state, since_ms: h.since_ms })
            .collect())
    }

    /// When the clock next moves a target's health.
    pub(super) fn next_tick(&self) -> Result<Option<i64>> {
        let policy = health_policy(&self.env);
        Ok(self.healths()?.iter().filter_map(|h| h.next_due(&policy)).min())
    }

    /// Whether alerts wait to be handed to a shard.
    pub(super) fn alerts_waiting(&self) -> Result<bool> {
        let rows: Vec<AlertRow> =
            self.sql.exec("SELECT seq, webhook_id, alert FROM alerts LIMIT 1", None)?.to_array()?;
        Ok(!rows.is_empty())
    }

    /// A `target.recovered` counts the changes held (pending or paused) on
    /// every shard, asked before the new state is handed over, so before
    /// they drain. False if the shards could not be asked.
    pub(super) async fn count_held(&self) -> Result<bool> {
        let rows: Vec<AlertRow> =
            self.sql.exec("SELECT seq, webhook_id, alert FROM alerts ORDER BY seq", None)?.to_array()?;
        let mut open: Vec<(i64, Alert)> = Vec::new();
        for r in rows {
            let alert: Alert = serde_json::from_str(&r.alert)?;
            if alert.needs_held() {
                open.push((r.seq, alert));
            }
        }
        if open.is_empty() {
            return Ok(true);
        }
        let config = Config::from_env(&self.env);
        let Ok(shards) = ShardClient::open(&self.env, &config).await else { return Ok(false) };
        let Ok(per_shard) = shards.call_all::<ledger::OutboxStats>(&Empty {}).await else { return Ok(false) };
        let mut stats: Vec<TargetStats> = Vec::new();
        for s in per_shard {
            merge_stats(&mut stats, s);
        }
        for (seq, mut alert) in open {
            let held = stats.iter().find(|s| s.target == alert.target).map_or(0, |s| s.pending + s.paused);
            alert.set_held(held);
            self.sql.exec(
                "UPDATE alerts SET alert = ? WHERE seq = ?",
                vec![serde_json::to_string(&alert)?.into(), seq.into()],
            )?;
        }
        Ok(true)
    }

    /// Hands the queued alerts to the outbox of the shard of the target
    /// they are about, in order; false if one could not be.
    pub(super) async fn hand_alerts(&self) -> Result<bool> {
        let rows: Vec<AlertRow> =
            self.sql.exec("SELECT seq, webhook_id, alert FROM alerts ORDER BY seq LIMIT 50", None)?.to_array()?;
        if rows.is_empty() {
            return Ok(true);
        }
        let records = self.records()?;
        let snapshot = TargetSnapshot { version: 0, targets: records, states: self.states()? };
        let config_targets = forward_targets(&self.env).unwrap_or_default();
        let destinations = runtime(&config_targets, alert_target(&self.env).as_ref(), &snapshot, None);
        let slack = alerts_for_slack(&self.env);
        let config = Config::from_env(&self.env);
        let Ok(shards) = ShardClient::open(&self.env, &config).await else { return Ok(false) };
        for r in rows {
            let alert: Alert = serde_json::from_str(&r.alert)?;
            if alert.needs_held() {
                return Ok(false);
            }
            let changes: Vec<QueuedChange> = destinations
                .iter()
                .filter(|d| d.wants(alert.kind) && d.id != alert.target)
                .map(|d| QueuedChange {
                    webhook_id: r.webhook_id.clone(),
                    kind: alert.kind,
                    message_id: format!("target:{}", alert.target),
                    doc: if slack && d.id == ALERT_WEBHOOK_ID {
                        serde_json::json!({ "text": alert.slack_text() })
                    } else {
                        alert.doc(&r.webhook_id)
                    },
                    target: Some(d.id.clone()),
                })
                .collect();
            if !changes.is_empty() {
                let shard = shards.shard_of(&changes[0].message_id);
                if shards.call::<ledger::QueueChanges>(shard, &changes).await.is_err() {
                    return Ok(false);
                }
            }
            log_alert(&alert, changes.len());
            self.sql.exec("DELETE FROM alerts WHERE seq = ?", vec![r.seq.into()])?;
        }
        Ok(true)
    }
}

fn log_alert(alert: &Alert, destinations: usize) {
    let what = match alert.kind {
        ChangeKind::ForwardExhausted => "forwards exhausted",
        _ => alert.kind.as_str(),
    };
    crate::log::log_warn!("targets: {what} for target {} ({destinations} destinations)", alert.target);
}
