//! The transition table, row by row, and the laws that make it
//! independent of arrival order.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::common::{arrived_together, Rng};
use bw_ledger_core::event::EventKind;
use bw_ledger_core::projection::project;
use bw_ledger_core::status::{next, RecipientState, STATES, TABLE};
use bw_ledger_core::{parse_callback_body, CallbackEvent};
use RecipientState::*;

#[test]
fn table_row_by_row() {
    let expect: [(RecipientState, [RecipientState; 7]); 7] = [
        (Accepted, [Accepted, Sending, Sent, Delivered, Read, Failed, Accepted]),
        (Sending, [Sending, Sending, Sent, Delivered, Read, Failed, Sending]),
        (Sent, [Sent, Sent, Sent, Delivered, Read, Failed, Sent]),
        (Delivered, [Delivered, Delivered, Delivered, Delivered, Read, Failed, Delivered]),
        (Read, [Read, Read, Read, Read, Read, Failed, Read]),
        (Failed, [Failed; 7]),
        (Received, [Accepted, Sending, Sent, Delivered, Read, Failed, Received]),
    ];
    for (current, row) in expect {
        for (incoming, want) in STATES.iter().zip(row) {
            assert_eq!(next(current, *incoming), want, "{current:?} + {incoming:?}");
        }
    }
    assert_eq!(TABLE.len(), STATES.len());
}

#[test]
fn a_late_event_never_moves_a_final_state_backwards() {
    for late in [Accepted, Sending, Sent] {
        assert_eq!(next(Delivered, late), Delivered);
        assert_eq!(next(Read, late), Read);
        assert_eq!(next(Failed, late), Failed);
    }
    assert_eq!(next(Failed, Delivered), Failed, "failed wins over delivered");
    assert_eq!(next(Delivered, Failed), Failed);
    assert_eq!(next(Delivered, Read), Read, "read follows delivered");
}

/// Commutative, associative and idempotent: a join. Folding any
/// permutation of any multiset of states gives the same result.
#[test]
fn the_table_is_a_join() {
    for a in STATES {
        assert_eq!(next(a, a), a, "idempotent {a:?}");
        for b in STATES {
            assert_eq!(next(a, b), next(b, a), "commutative {a:?} {b:?}");
            for c in STATES {
                assert_eq!(next(next(a, b), c), next(a, next(b, c)), "associative {a:?} {b:?} {c:?}");
            }
        }
    }
}

#[test]
fn statuses_map_to_bandwidths_enum() {
    let got: Vec<&str> = STATES.iter().map(|s| s.bandwidth_status()).collect();
    assert_eq!(got, ["ACCEPTED", "SENDING", "SENT", "DELIVERED", "DELIVERED", "FAILED", "RECEIVED"]);
    assert_eq!(RecipientState::from_kind(&EventKind::MessageAccepted), None, "message-level, not per recipient");
    assert_eq!(RecipientState::from_kind(&EventKind::Unknown("x".into())), None);
    assert_eq!(RecipientState::from_kind(&EventKind::SuggestionResponse), Some(Received));
}

fn random_events(rng: &mut Rng) -> Vec<CallbackEvent> {
    let recipients = ["+15550000001", "+15550000002", "+15550000003"];
    let kinds = ["message-sending", "message-sent", "message-delivered", "message-failed", "message-read"];
    let n = 1 + rng.below(8);
    let mut body = Vec::new();
    for i in 0..n {
        let to = recipients[rng.below(recipients.len())];
        let kind = kinds[rng.below(kinds.len())];
        // Few distinct seconds, so equal timestamps are common.
        let time = format!("2026-01-01T00:00:0{}Z", rng.below(3));
        let error = if kind == "message-failed" {
            format!(r#","errorCode":{}"#, [4720, 9902][rng.below(2)])
        } else {
            String::new()
        };
        body.push(format!(
            r#"{{"type":"{kind}","time":"{time}","to":"{to}","description":"d{i}"{error},"message":{{"id":"prop","direction":"out","from":"+15551110000","to":["+15550000001","+15550000002","+15550000003"],"text":"","media":[]}}}}"#
        ));
    }
    let parsed = parse_callback_body(format!("[{}]", body.join(",")).as_bytes());
    assert!(parsed.rejected.is_empty());
    parsed.events
}

/// Property: for random event sets (with duplicates of the same identity
/// removed, as the shard does), every shuffled arrival order projects to
/// the same recipients and timeline.
#[test]
fn random_event_sets_project_the_same_in_any_order() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut checked = 0;
    for _ in 0..300 {
        let mut evs = random_events(&mut rng);
        let mut seen = std::collections::BTreeSet::new();
        evs.retain(|e| seen.insert(bw_ledger_core::EventKey::of(e)));
        let reference = serde_json::to_value(project("prop", &arrived_together(&evs)).unwrap()).unwrap();
        for _ in 0..10 {
            for i in (1..evs.len()).rev() {
                let j = rng.below(i + 1);
                evs.swap(i, j);
            }
            let got = serde_json::to_value(project("prop", &arrived_together(&evs)).unwrap()).unwrap();
            assert_eq!(got["recipients"], reference["recipients"]);
            assert_eq!(got["timeline"], reference["timeline"]);
            checked += 1;
        }
    }
    assert_eq!(checked, 3000);
}
