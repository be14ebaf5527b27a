//! Forwarding rules: targets, changes, signatures and the retry schedule.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::common::*;
use bw_ledger_core::change::*;
use bw_ledger_core::forward::*;
use bw_ledger_core::outbox::*;
use bw_ledger_core::projection::project;
use bw_ledger_core::retry::Schedule;
use bw_ledger_core::status::RecipientState;
use bw_ledger_core::CallbackEvent;

/// The Standard Webhooks reference vector (the same value the
/// `standardwebhooks` npm package computes).
#[test]
fn signature_matches_the_standard_webhooks_vector() {
    let t = ForwardTarget {
        id: "t".into(),
        url: "https://x".into(),
        secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        secrets: None,
        events: None,
        rate_per_second: None,
    };
    let sig = sign(&t.keys().unwrap()[0], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, r#"{"test": 2432232314}"#);
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

/// One delivery's headers, per Standard Webhooks, signed over the payload.
#[test]
fn webhook_headers_carry_the_id_timestamp_and_signature() {
    let key = b"secret".to_vec();
    let headers = webhook_headers(std::slice::from_ref(&key), "msg_1", 1_614_265_330, "{}");
    assert_eq!(
        headers,
        vec![
            ("Content-Type", "application/json".to_string()),
            ("webhook-id", "msg_1".to_string()),
            ("webhook-timestamp", "1614265330".to_string()),
            ("webhook-signature", sign(&key, "msg_1", 1_614_265_330, "{}")),
        ]
    );
}

/// Rotation: with `secrets`, every delivery carries one `v1,` signature
/// per secret, space separated, in the configured order.
#[test]
fn several_secrets_sign_every_delivery_once_each() {
    let json = r#"[{"id":"a","url":"https://x","secrets":["whsec_bmV3LXNlY3JldA==","whsec_b2xkLXNlY3JldA=="]}]"#;
    let t = parse_targets(Some(json)).unwrap().remove(0);
    let keys = t.keys().unwrap();
    assert_eq!(keys, vec![b"new-secret".to_vec(), b"old-secret".to_vec()]);
    let headers = webhook_headers(&keys, "msg_1", 5, "{}");
    let signature = &headers.iter().find(|(n, _)| *n == "webhook-signature").unwrap().1;
    assert_eq!(
        signature,
        &format!("{} {}", sign(b"new-secret", "msg_1", 5, "{}"), sign(b"old-secret", "msg_1", 5, "{}"))
    );
    for bad in [
        r#"[{"id":"a","url":"https://x","secrets":[]}]"#,
        r#"[{"id":"a","url":"https://x","secrets":["whsec_bmV3","nope"]}]"#,
        r#"[{"id":"a","url":"https://x"}]"#,
    ] {
        assert!(parse_targets(Some(bad)).is_err(), "{bad}");
    }
}

#[test]
fn outbox_states_are_stored_by_name_and_a_failure_is_dead_after_the_window() {
    for s in [OutboxState::Pending, OutboxState::Delivered, OutboxState::Dead] {
        assert_eq!(OutboxState::parse(s.as_str()), Some(s));
        assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
    }
    assert_eq!(OutboxState::parse("gone"), None);
    let schedule = Schedule { base_ms: 100, max_ms: 400, give_up_ms: 1000 };
    assert_eq!(OutboxState::after_failure(&schedule, 0, 999), OutboxState::Pending);
    assert_eq!(OutboxState::after_failure(&schedule, 0, 1000), OutboxState::Dead);
}

#[test]
fn shard_counts_merge_into_per_target_totals_and_dead_letters_merge_oldest_first() {
    let mut total = Vec::new();
    merge_stats(&mut total, vec![TargetStats::of_state("b".into(), OutboxState::Pending, 2, Some(50))]);
    merge_stats(&mut total, vec![TargetStats::of_state("a".into(), OutboxState::Dead, 1, Some(10))]);
    merge_stats(&mut total, vec![TargetStats::of_state("b".into(), OutboxState::Pending, 3, Some(40))]);
    merge_stats(&mut total, vec![TargetStats::of_state("b".into(), OutboxState::Delivered, 7, Some(1))]);
    merge_stats(&mut total, vec![TargetStats::of_state("b".into(), OutboxState::Paused, 4, Some(1))]);
    assert_eq!(
        stats_view(&total, 100),
        serde_json::json!({"targets": [
            {"target": "a", "pending": 0, "delivered": 0, "dead": 1, "paused": 0, "oldestPendingAgeMs": null,
                "lastError": null, "lastErrorAt": null, "consecutiveFailures": 0},
            {"target": "b", "pending": 5, "delivered": 7, "dead": 0, "paused": 4, "oldestPendingAgeMs": 60,
                "lastError": null, "lastErrorAt": null, "consecutiveFailures": 0},
        ]})
    );
    let item = |id: &str, created_ms: i64| OutboxItem {
        webhook_id: id.into(),
        target: "a".into(),
        message_id: "m".into(),
        kind: ChangeKind::Status,
        state: OutboxState::Dead,
        attempts: 1,
        created_ms,
        last_error: None,
    };
    let merged = merge_dead(vec![vec![item("y", 5), item("z", 9)], vec![item("x", 5), item("w", 1)]], 3);
    let ids: Vec<&str> = merged.iter().map(|i| i.webhook_id.as_str()).collect();
    assert_eq!(ids, ["w", "x", "y"]);
}

#[test]
fn targets_are_checked() {
    assert_eq!(parse_targets(None).unwrap(), vec![]);
    assert_eq!(parse_targets(Some("  ")).unwrap(), vec![]);
    let ok = r#"[{"id":"a","url":"https://example.com/h","secret":"whsec_c2VjcmV0","events":["message.status"]}]"#;
    let t = parse_targets(Some(ok)).unwrap();
    let t0 = bw_ledger_core::targets::Target::from_config(&t[0]);
    assert!(t0.wants(ChangeKind::Status) && !t0.wants(ChangeKind::Received));
    for bad in [
        "nope",
        r#"[{"id":"a","url":"ftp://x","secret":"whsec_c2VjcmV0"}]"#,
        r#"[{"id":"a","url":"https://x","secret":"c2VjcmV0"}]"#,
        r#"[{"id":"a","url":"https://x","secret":"whsec_!!!"}]"#,
        r#"[{"id":"a","url":"https://x","secret":"whsec_c2VjcmV0","events":["message.teleported"]}]"#,
        r#"[{"id":"a","url":"https://x","secret":"whsec_c2VjcmV0"},{"id":"a","url":"https://y","secret":"whsec_c2VjcmV0"}]"#,
    ] {
        assert!(parse_targets(Some(bad)).is_err(), "{bad}");
    }
    assert!(!format!("{:?}", t[0]).contains("c2VjcmV0"), "secrets are not printed");
}

fn view_of(evs: &[CallbackEvent]) -> bw_ledger_core::projection::MessageView {
    project(&evs[0].message_id, &stored(evs)).unwrap()
}

fn states(v: &bw_ledger_core::projection::MessageView) -> Vec<(String, RecipientState)> {
    v.recipients.iter().map(|r| (r.number.clone(), r.status)).collect()
}

#[test]
fn delivered_after_failed_is_not_a_change() {
    let evs = events(GROUP_MMS_INVALID);
    // After sending + failed, the late delivered for the same number changes nothing for it.
    let before = view_of(&evs[..2]);
    let after = view_of(&evs[..3]);
    let late = view_of(&[evs[..2].to_vec(), vec![evs[4].clone()]].concat());
    assert!(changes(&states(&before), &late).iter().all(|c| c.doc["recipient"] != "+15553330003"));
    // The delivered for a valid number is a change, with the previous status.
    let c = changes(&states(&before), &after);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].doc["recipient"], "+15553330001");
    assert_eq!(c[0].doc["previousStatus"], "sending");
    assert_eq!(c[0].doc["status"], "delivered");
    assert_eq!(c[0].doc["flags"], serde_json::json!(["network-handoff-only"]));
    assert_eq!(c[0].doc["event"]["type"], "message-delivered");
    assert_eq!(c[0].kind, ChangeKind::Status);
}

#[test]
fn nothing_changes_twice_and_ids_are_stable() {
    let evs = events(SMS_LIFECYCLE);
    let v = view_of(&evs);
    let first = changes(&[], &v);
    assert_eq!(first.len(), 1);
    assert!(changes(&states(&v), &v).is_empty(), "a retried duplicate is not a change");
    assert_eq!(changes(&[], &v)[0].webhook_id, first[0].webhook_id, "stable across recomputation");
    assert_eq!(first[0].doc["webhookId"], first[0].webhook_id.as_str());
    assert_eq!(first[0].doc["version"], 1);
}

#[test]
fn inbound_messages_are_received_documents_with_content() {
    let v = view_of(&events(INBOUND_MMS));
    let c = changes(&[], &v);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].kind, ChangeKind::Received);
    assert_eq!(c[0].doc["text"], "Here is the photo of the receipt");
    assert_eq!(c[0].doc["media"].as_array().unwrap().len(), 2);
}

#[test]
fn backoff_grows_caps_and_jitters_within_bounds() {
    let s = Schedule { base_ms: 100, max_ms: 1000, give_up_ms: 5000 };
    assert_eq!(s.backoff_ms(1, 1.0), 100);
    assert_eq!(s.backoff_ms(1, 0.0), 50);
    assert_eq!(s.backoff_ms(3, 1.0), 400);
    assert_eq!(s.backoff_ms(10, 1.0), 1000, "capped");
    assert_eq!(s.backoff_ms(200, 0.0), 500, "no overflow");
    assert!(s.gives_up(0, 5000) && !s.gives_up(0, 4999));
    assert_eq!(Schedule::from_vars(None, Some("x"), Some("-5")), Schedule::default());
    assert_eq!(Schedule::default().give_up_ms, 24 * 3_600_000);
}

#[test]
fn a_failing_targets_probes_keep_to_the_schedule_from_its_first_failure() {
    let s = Schedule { base_ms: 100, max_ms: 1000, give_up_ms: 5000 };
    // Points: 100, 300, 700, 1500, then every 1000.
    assert_eq!(s.next_point_after(0, 0), 100);
    assert_eq!(s.next_point_after(0, 100), 300);
    assert_eq!(s.next_point_after(0, 650), 700);
    assert_eq!(s.next_point_after(0, 1499), 1500);
    assert_eq!(s.next_point_after(0, 1500), 2500);
    assert_eq!(s.next_point_after(1_000, 9_000_000), 9_000_500);
    // However many attempts failed at once, the next probe is one step on.
    assert_eq!(s.next_point_after(0, 5), 100);
}

#[test]
fn stats_merge_across_shards() {
    let mut total = Vec::new();
    merge_stats(
        &mut total,
        vec![TargetStats {
            target: "b".into(),
            pending: 1,
            delivered: 2,
            oldest_pending_ms: Some(50),
            last_error: Some("older".into()),
            last_error_ms: Some(5),
            consecutive_failures: 2,
            ..Default::default()
        }],
    );
    merge_stats(
        &mut total,
        vec![
            TargetStats {
                target: "b".into(),
                pending: 2,
                dead: 1,
                oldest_pending_ms: Some(10),
                last_error: Some("newer".into()),
                last_error_ms: Some(9),
                consecutive_failures: 3,
                ..Default::default()
            },
            TargetStats { target: "a".into(), delivered: 5, ..Default::default() },
        ],
    );
    let b = total.iter().find(|t| t.target == "b").unwrap();
    assert_eq!((b.last_error.as_deref(), b.last_error_ms, b.consecutive_failures), (Some("newer"), Some(9), 5));
    assert_eq!(
        total
            .iter()
            .map(|t| (t.target.as_str(), t.pending, t.delivered, t.dead, t.oldest_pending_ms))
            .collect::<Vec<_>>(),
        [("a", 0, 5, 0, None), ("b", 3, 2, 1, Some(10))]
    );
}

#[test]
fn replay_takes_ids_a_range_or_the_target_alone() {
    let r = |ids: Option<Vec<String>>, from: Option<&str>| ReplayRequest {
        target: "t".into(),
        from: from.map(Into::into),
        to: None,
        ids,
        into: None,
        now_ms: 0,
    };
    assert!(r(None, None).validate().is_ok() && r(None, None).all_dead());
    assert!(!r(Some(vec![]), None).all_dead());
    assert!(r(Some(vec!["msg_1".into()]), None).validate().is_ok());
    assert_eq!(r(None, Some("2026-01-01T00:00:00Z")).validate().unwrap().0, Some(1_767_225_600_000));
    assert!(r(None, Some("yesterday")).validate().is_err());
}
