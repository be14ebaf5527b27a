//! Webhook targets made through the API: what POST and PATCH accept,
//! rotation, sealing at rest, pacing, and what a shard delivers with.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bw_ledger_core::change::ChangeKind;
use bw_ledger_core::forward::{parse_targets, sign};
use bw_ledger_core::targets::pace::{Pacer, HORIZON_MS, MARGIN_MS, WINDOW_MS};
use bw_ledger_core::targets::seal::{is_sealed, new_secret, open, seal, Sealer};
use bw_ledger_core::targets::views::{api_view, config_view};
use bw_ledger_core::targets::*;

const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn record(secret: &str) -> TargetRecord {
    let new = parse_new(br#"{"url": "https://crm.example/hook", "id": "crm"}"#).unwrap();
    TargetRecord::new(new, "crm".into(), secret.into(), 1_000)
}

#[test]
fn post_takes_the_documented_fields_and_names_what_it_refuses() {
    let t = parse_new(
        br#"{"url": "https://x.example/h", "id": "crm.v2", "events": ["message.status", "message.status"],
             "ratePerSecond": 5, "description": "the CRM"}"#,
    )
    .unwrap();
    assert_eq!(t.id.as_deref(), Some("crm.v2"));
    assert_eq!(t.events, Some(vec![ChangeKind::Status]), "a repeated kind is kept once");
    assert_eq!(t.rate_per_second, Some(5));
    let nulls =
        parse_new(br#"{"url": "http://x.example", "events": null, "ratePerSecond": null, "description": null}"#);
    assert_eq!(nulls.unwrap().events, None);
    for (body, field) in [
        (&br#"{}"#[..], "url"),
        (br#"{"url": "ftp://x.example"}"#, "url"),
        (br#"{"url": "HTTP://x.example"}"#, "url"),
        (br#"{"url": "https://x.example/a b"}"#, "url"),
        (br#"{"url": "https://x", "id": "-x"}"#, "id"),
        (br#"{"url": "https://x", "id": null}"#, "id"),
        (br#"{"url": "https://x", "events": []}"#, "events"),
        (br#"{"url": "https://x", "events": ["message.sent"]}"#, "events"),
        (br#"{"url": "https://x", "ratePerSecond": 0}"#, "ratePerSecond"),
        (br#"{"url": "https://x", "ratePerSecond": 1.5}"#, "ratePerSecond"),
        (br#"{"url": "https://x", "ratePerSecond": 1001}"#, "ratePerSecond"),
        (br#"{"url": "https://x", "event": ["message.status"]}"#, "event"),
        (br#"[]"#, "object"),
    ] {
        let why = parse_new(body).unwrap_err();
        assert!(why.contains(field), "{why} should name {field}");
    }
    assert!(parse_new(format!(r#"{{"url": "https://x", "description": "{}"}}"#, "é".repeat(501)).as_bytes()).is_err());
    assert!(parse_new(format!(r#"{{"url": "https://x", "description": "{}"}}"#, "é".repeat(500)).as_bytes()).is_ok());
}

#[test]
fn patch_keeps_what_is_absent_and_clears_what_is_null() {
    let mut r = record("whsec_AAAA");
    r.events = Some(vec![ChangeKind::Received]);
    r.rate_per_second = Some(3);
    r.apply(&parse_patch(br#"{"description": "new"}"#).unwrap(), 2_000);
    assert_eq!(
        (r.events.clone(), r.rate_per_second, r.description.as_deref()),
        (Some(vec![ChangeKind::Received]), Some(3), Some("new"))
    );
    r.apply(&parse_patch(br#"{"events": null, "ratePerSecond": null, "url": "https://y.example"}"#).unwrap(), 3_000);
    assert_eq!(
        (r.events.clone(), r.rate_per_second, r.url.as_str(), r.updated_ms),
        (None, None, "https://y.example", 3_000)
    );
    assert!(parse_patch(br#"{"id": "other"}"#).is_err(), "an id never changes");
    // The patch travels to the registry and back unchanged, null included.
    let p = parse_patch(br#"{"ratePerSecond": null}"#).unwrap();
    let back: TargetPatch = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.rate_per_second, Some(None));
}

#[test]
fn rotation_signs_with_both_during_the_overlap_then_the_new_alone() {
    let old = new_secret(&[1; 32]);
    let fresh = new_secret(&[2; 32]);
    let mut r = record(&old);
    r.rotate(fresh.clone(), 10_000, 5_000);
    let t = Target::from_record(&r, None);
    let key = |s: &str| bw_ledger_core::forward::secret_key(s).unwrap();
    assert_eq!(t.keys_at(14_999).unwrap(), vec![key(&fresh), key(&old)], "newest first, both");
    assert_eq!(t.keys_at(15_000).unwrap(), vec![key(&fresh)], "the old one stops at the overlap's end");
    // A second rotation never extends the first overlap.
    let third = new_secret(&[3; 32]);
    r.rotate(third.clone(), 12_000, 60_000);
    assert_eq!(r.secrets.len(), 3);
    assert_eq!(r.secrets[2].expires_ms, Some(15_000));
    let view = api_view(&r, 12_000);
    assert_eq!(view["previousSecretExpiresAt"], "1970-01-01T00:01:12.000Z");
    assert!(!view.to_string().contains("whsec_"), "a view never holds a secret");
    assert!(r.without_secrets().secrets.iter().all(|s| s.sealed.is_empty()));
    // Overlap 0: the new secret alone at once.
    r.rotate(new_secret(&[4; 32]), 13_000, 0);
    assert_eq!(Target::from_record(&r, None).keys_at(13_000).unwrap().len(), 1);
}

#[test]
fn secrets_are_32_random_bytes_sealed_per_target_when_a_key_is_set() {
    let secret = new_secret(&[9; 32]);
    assert!(secret.starts_with("whsec_"));
    assert_eq!(bw_ledger_core::forward::secret_key(&secret).unwrap().len(), 32);
    let sealer = Sealer::from_var(Some(KEY)).unwrap().unwrap();
    let sealed = seal(Some(&sealer), "crm", &secret, &[5; 12]);
    assert!(is_sealed(&sealed) && !sealed.contains(&secret[6..]));
    assert_eq!(open(Some(&sealer), "crm", &sealed).unwrap(), secret);
    assert!(open(Some(&sealer), "other", &sealed).is_err(), "bound to its target");
    assert!(open(None, "crm", &sealed).unwrap_err().contains("TARGET_SECRETS_KEY"));
    let other = Sealer::from_var(Some(&"ab".repeat(32))).unwrap().unwrap();
    assert!(open(Some(&other), "crm", &sealed).unwrap_err().contains("key"), "another key does not open it");
    // Without a key a secret is kept as shown, and still opens once a key is set.
    assert_eq!(seal(None, "crm", &secret, &[5; 12]), secret);
    assert_eq!(open(Some(&sealer), "crm", &secret).unwrap(), secret);
    assert!(Sealer::from_var(Some("  ")).unwrap().is_none());
    for bad in ["short", "c2hvcnQ=", &"zz".repeat(32)] {
        let why = Sealer::from_var(Some(bad)).unwrap_err();
        assert!(!why.contains(bad), "the value is never repeated: {why}");
    }
    // A delivery signs with the sealed secret, opened.
    let r = record(&sealed);
    let t = Target::from_record(&r, Some(&sealer));
    let k = t.keys_at(0).unwrap();
    assert_eq!(sign(&k[0], "id", 1, "{}"), sign(&bw_ledger_core::forward::secret_key(&secret).unwrap(), "id", 1, "{}"));
    assert!(Target::from_record(&r, None).keys_at(0).unwrap_err().contains("TARGET_SECRETS_KEY"));
}

#[test]
fn pacing_keeps_any_rate_plus_one_sends_a_window_apart() {
    let mut p = Pacer::default();
    let mut sends = Vec::new();
    let mut now = 0;
    while sends.len() < 40 {
        let slot = p.reserve(now, 3);
        if slot.granted {
            assert!(slot.at_ms >= now && slot.at_ms - now <= HORIZON_MS);
            sends.push(slot.at_ms);
        } else {
            assert!(slot.at_ms - now > HORIZON_MS);
        }
        now += 37;
    }
    for w in sends.windows(4) {
        assert!(w[3] - w[0] >= WINDOW_MS + MARGIN_MS, "{w:?}");
    }
    assert!(sends.windows(2).all(|w| w[1] >= w[0]), "in order");
    let busiest = sends.iter().map(|s| sends.iter().filter(|t| **t >= *s && **t < s + 1000).count()).max();
    assert_eq!(busiest, Some(3));
    // A lower rate applies at once.
    let mut p = Pacer::default();
    let (a, b) = (p.reserve(0, 5), p.reserve(0, 5));
    assert_eq!((a.at_ms, b.at_ms), (0, 0));
    assert_eq!(p.reserve(0, 1).at_ms, WINDOW_MS + MARGIN_MS);
}

#[test]
fn config_targets_win_their_ids_and_may_be_paced() {
    let config = parse_targets(Some(
        r#"[{"id": "crm", "url": "https://a", "secret": "whsec_AAAA", "ratePerSecond": 4, "events": ["message.status"]}]"#,
    ))
    .unwrap();
    assert!(parse_targets(Some(r#"[{"id": "x", "url": "https://a", "secret": "whsec_AAAA", "ratePerSecond": 0}]"#))
        .is_err());
    let mut shadowed = record("whsec_BBBB");
    shadowed.url = "https://b".into();
    let mut other = record("whsec_BBBB");
    other.id = "other".into();
    other.paused = true;
    let snapshot = TargetSnapshot { version: 1, targets: vec![shadowed, other], states: vec![] };
    let all = runtime(&config, None, &snapshot, None);
    assert_eq!(
        all.iter().map(|t| (t.id.as_str(), t.url.as_str())).collect::<Vec<_>>(),
        [("crm", "https://a"), ("other", "https://crm.example/hook")]
    );
    assert_eq!(all[0].rate_per_second, Some(4));
    assert!(all[0].wants(ChangeKind::Status) && !all[0].wants(ChangeKind::Received));
    assert!(all[1].paused() && all[1].wants(ChangeKind::Received));
    // Operational events go only to a target that names them.
    assert!(!all[1].wants(ChangeKind::TargetFailing));
    assert_eq!(config_view(&config[0])["source"], "config");
    assert!(config_conflict("crm").contains("FORWARD_TARGETS"));
}

mod health {
    use super::{record, ChangeKind, TargetSnapshot};
    use bw_ledger_core::targets::health::*;
    use bw_ledger_core::targets::views::{render_states, shown_alert_url};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy() -> Policy {
        Policy { failing_after: 5, disable_after_ms: 10_000 }
    }

    fn failures(n: i64, at: i64) -> Report {
        Report {
            target: "crm".into(),
            failures: n,
            first_failure_ms: Some(at),
            last_error: Some("target answered 503".into()),
            last_error_ms: Some(at),
            ..Report::default()
        }
    }

    fn kinds(step: &Step) -> Vec<ChangeKind> {
        step.alerts.iter().map(|a| a.kind).collect()
    }

    #[test]
    fn failures_from_any_shard_make_one_incident_with_one_event_per_step() {
        let p = policy();
        let mut h = Health::new("crm", 0);
        // Four failures over two shards: still active.
        assert_eq!(h.apply(&failures(2, 100), &p, 100), Step::default());
        assert_eq!(h.apply(&failures(2, 50), &p, 150), Step::default());
        assert_eq!(h.state, TargetState::Active);
        // The fifth: failing since the first failure, one target.failing.
        let step = h.apply(&failures(1, 200), &p, 200);
        assert!(step.moved);
        assert_eq!(kinds(&step), [ChangeKind::TargetFailing]);
        assert_eq!((h.state, h.since_ms, h.consecutive_failures), (TargetState::Failing, 100, 5));
        let doc = step.alerts[0].doc("op_1");
        assert_eq!(doc["type"], "target.failing");
        assert_eq!(doc["consecutiveFailures"], 5);
        assert_eq!(doc["lastError"], "target answered 503");
        assert_eq!(doc["webhookId"], "op_1");
        // However many more fail, no second event and no new state.
        for at in [300, 400, 5_000] {
            assert_eq!(h.apply(&failures(3, at), &p, at), Step::default());
        }
        // Past the window with no success: disabled, once.
        let step = h.tick(&p, 10_100);
        assert!(step.moved);
        assert_eq!(kinds(&step), [ChangeKind::TargetDisabled]);
        assert_eq!(h.state, TargetState::Disabled);
        assert_eq!(h.tick(&p, 20_000), Step::default());
        // A straggler's success does not enable a disabled target.
        let ok = Report { target: "crm".into(), succeeded_ms: Some(20_001), ..Report::default() };
        assert_eq!(h.apply(&ok, &p, 20_001).alerts, []);
        assert_eq!(h.state, TargetState::Disabled);
        // Enable: active, one target.recovered counting from the first failure.
        let step = h.enable(30_100);
        assert_eq!(kinds(&step), [ChangeKind::TargetRecovered]);
        let mut recovered = step.alerts[0].clone();
        assert!(recovered.needs_held());
        assert_eq!(recovered.data["downForMs"], 30_000);
        recovered.set_held(7);
        assert!(!recovered.needs_held());
        assert!(recovered.slack_text().contains("7 held changes"));
        assert_eq!(h.state, TargetState::Active);
        assert_eq!(h.enable(30_200), Step::default());
    }

    #[test]
    fn a_success_ends_the_streak_and_a_failing_state() {
        let p = policy();
        let mut h = Health::new("crm", 0);
        h.apply(&failures(4, 10), &p, 10);
        let ok = Report {
            target: "crm".into(),
            succeeded_ms: Some(20),
            failures: 1,
            first_failure_ms: Some(25),
            ..Report::default()
        };
        // A success, then one failure after it: the streak is one.
        assert_eq!(h.apply(&ok, &p, 30), Step::default());
        assert_eq!((h.state, h.consecutive_failures), (TargetState::Active, 1));
        h.apply(&failures(4, 40), &p, 40);
        assert_eq!(h.state, TargetState::Failing);
        let ok = Report { target: "crm".into(), succeeded_ms: Some(50), ..Report::default() };
        let step = h.apply(&ok, &p, 50);
        assert_eq!(kinds(&step), [ChangeKind::TargetRecovered]);
        assert_eq!((h.state, h.consecutive_failures), (TargetState::Active, 0));
        // A new streak is a new incident, with its own target.failing.
        assert_eq!(kinds(&h.apply(&failures(5, 60), &p, 60)), [ChangeKind::TargetFailing]);
    }

    #[test]
    fn a_disable_by_hand_sends_nothing_and_enable_ends_it_quietly() {
        let p = policy();
        let mut h = Health::new("crm", 0);
        let step = h.disable(5);
        assert!(step.moved && step.alerts.is_empty() && h.by_hand);
        assert_eq!(h.disable(6), Step::default());
        assert_eq!(h.tick(&p, 1_000_000), Step::default());
        let step = h.enable(10);
        assert!(step.moved && step.alerts.is_empty());
    }

    #[test]
    fn dead_changes_make_one_event_per_minute_at_most() {
        let p = policy();
        let mut h = Health::new("crm", 0);
        let dead = |n: usize| Report {
            target: "crm".into(),
            exhausted: (0..n)
                .map(|i| Exhausted {
                    webhook_id: format!("msg_{i}"),
                    message_id: "m".into(),
                    kind: "message.status".into(),
                    attempts: 3,
                    last_error: None,
                })
                .collect(),
            exhausted_count: n as i64,
            ..Report::default()
        };
        // The first at once, one change.
        let step = h.apply(&dead(1), &p, 1_000);
        assert_eq!(kinds(&step), [ChangeKind::ForwardExhausted]);
        assert_eq!(step.alerts[0].data["count"], 1);
        // Many within the minute wait for one event when it is over.
        assert_eq!(h.apply(&dead(150), &p, 2_000), Step::default());
        assert_eq!(h.apply(&dead(3), &p, 30_000), Step::default());
        assert_eq!(h.next_due(&p), Some(1_000 + EXHAUSTED_WINDOW_MS));
        assert_eq!(h.tick(&p, 60_000), Step::default());
        let step = h.tick(&p, 61_000);
        assert_eq!(kinds(&step), [ChangeKind::ForwardExhausted]);
        assert_eq!(step.alerts[0].data["count"], 153);
        assert_eq!(step.alerts[0].data["changes"].as_array().unwrap().len(), EXHAUSTED_LISTED);
        assert_eq!(h.next_due(&p), None);
    }

    #[test]
    fn policy_and_metrics() {
        assert_eq!(Policy::from_vars(None, Some("-3")), Policy::default());
        assert_eq!(Policy::from_vars(Some("2"), Some("900")), Policy { failing_after: 2, disable_after_ms: 900 });
        // The alert webhook's path (Slack's credential) is never shown.
        assert_eq!(shown_alert_url("https://hooks.slack.com/services/T0/B0/xyz"), "https://hooks.slack.com/…");
        assert_eq!(shown_alert_url("http://127.0.0.1:9"), "http://127.0.0.1:9");
        let text = render_states(&[("crm".into(), TargetState::Failing)]);
        assert!(text.contains("bw_ledger_target_state{target=\"crm\",state=\"failing\"} 1\n"));
        assert!(text.contains("bw_ledger_target_state{target=\"crm\",state=\"active\"} 0\n"));
        // A snapshot from before states: a paused record is disabled.
        let mut r = record("whsec_AAAA");
        r.paused = true;
        let old = TargetSnapshot { version: 1, targets: vec![r], states: vec![] };
        assert_eq!(old.state_of("crm"), TargetState::Disabled);
        assert_eq!(old.state_of("other"), TargetState::Active);
    }
}
