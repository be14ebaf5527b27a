//! How `GET /targets` and `/metrics` show targets: never a secret.

use serde_json::Value;

use super::health::{Health, TargetState};
use super::{StoredSecret, TargetRecord};
use crate::forward::ForwardTarget;
use crate::outbox::TargetStats;
use crate::time::format_rfc3339_ms;

/// How `GET /targets` shows an API-made target: never a secret.
pub fn api_view(r: &TargetRecord, now_ms: i64) -> Value {
    let signing: Vec<&StoredSecret> = r.secrets.iter().filter(|s| s.signs_at(now_ms)).collect();
    let previous_until = signing.iter().filter_map(|s| s.expires_ms).max();
    serde_json::json!({
        "id": r.id, "url": r.url, "events": r.events, "ratePerSecond": r.rate_per_second,
        "description": r.description, "source": "api",
        "createdAt": format_rfc3339_ms(r.created_ms), "updatedAt": format_rfc3339_ms(r.updated_ms),
        "secretCreatedAt": r.secrets.first().map(|s| format_rfc3339_ms(s.created_ms)),
        "previousSecretExpiresAt": previous_until.map(format_rfc3339_ms),
    })
}

/// How `GET /targets` shows a target of `FORWARD_TARGETS` (`"config"`),
/// the `ALERT_WEBHOOK_URL` one (`"alert"`), or one that is neither any more
/// (`None`: only its rows and health remain).
pub fn other_view(
    id: &str,
    source: Option<&str>,
    url: Option<&str>,
    events: Option<Vec<String>>,
    rate: Option<u32>,
) -> Value {
    serde_json::json!({
        "id": id, "url": url, "events": events, "ratePerSecond": rate,
        "description": null, "source": source,
        "createdAt": null, "updatedAt": null, "secretCreatedAt": null, "previousSecretExpiresAt": null,
    })
}

/// The alert webhook's URL as shown: its origin only, since a Slack
/// incoming webhook's path is its credential.
pub fn shown_alert_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.path() != "/" || u.query().is_some() => format!("{}/…", u.origin().ascii_serialization()),
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => "(not a URL)".into(),
    }
}

/// How `GET /targets` shows a target of `FORWARD_TARGETS`.
pub fn config_view(t: &ForwardTarget) -> Value {
    other_view(&t.id, Some("config"), Some(&t.url), t.events.clone(), t.rate_per_second)
}

/// A target's view with its health and its outbox figures, summed over
/// the shards. `removed`: it is no longer configured.
pub fn with_stats(mut view: Value, stats: Option<&TargetStats>, health: Option<&Health>, removed: bool) -> Value {
    let s = stats.cloned().unwrap_or_default();
    let state = match health {
        _ if removed => TargetState::Removed,
        Some(h) => h.state,
        None => TargetState::Active,
    };
    view["state"] = state.as_str().into();
    view["since"] = health.map(|h| format_rfc3339_ms(h.since_ms)).into();
    view["pending"] = s.pending.into();
    view["paused"] = s.paused.into();
    view["delivered"] = s.delivered.into();
    view["dead"] = s.dead.into();
    view["consecutiveFailures"] = health.map_or(s.consecutive_failures, |h| h.consecutive_failures).into();
    let (error, at) = match health {
        Some(h) if h.last_error_ms >= s.last_error_ms => (h.last_error.clone(), h.last_error_ms),
        _ => (s.last_error, s.last_error_ms),
    };
    view["lastError"] = error.into();
    view["lastErrorAt"] = at.map(format_rfc3339_ms).into();
    view
}

/// `bw_ledger_target_state{target,state}`: 1 for the state each target is
/// in, 0 for the others, so every series exists from the start.
pub fn render_states(states: &[(String, TargetState)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP bw_ledger_target_state A forwarding target's state: 1 for the one it is in.");
    let _ = writeln!(out, "# TYPE bw_ledger_target_state gauge");
    for (target, state) in states {
        for s in TargetState::ALL {
            let on = u8::from(s == state);
            let (t, s) = (crate::metrics::label(target), s.as_str());
            let _ = writeln!(out, "bw_ledger_target_state{{target=\"{t}\",state=\"{s}\"}} {on}");
        }
    }
    out
}
