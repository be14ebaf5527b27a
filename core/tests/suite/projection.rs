//! The message view: content, one status per recipient, timeline.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::common::*;
use bw_ledger_core::projection::{project, MessageView, RecipientState, StatusFlag};
use bw_ledger_core::records::MessageRecords;
use bw_ledger_core::{parse_callback_body, CallbackEvent, EventKind};

fn view(evs: &[CallbackEvent]) -> MessageView {
    project(&evs[0].message_id, &stored(evs)).expect("events exist")
}

fn status_of<'a>(v: &'a MessageView, number: &str) -> &'a bw_ledger_core::projection::RecipientStatus {
    v.recipients.iter().find(|r| r.number == number).unwrap_or_else(|| panic!("no recipient {number}"))
}

#[test]
fn no_events_no_message() {
    assert!(project("nope", &MessageRecords::default()).is_none());
}

#[test]
fn group_mms_with_an_invalid_number_has_one_outcome_per_recipient() {
    let v = view(&events(GROUP_MMS_INVALID));
    assert_eq!(v.recipients.len(), 3);
    let bad = status_of(&v, "+15553330003");
    assert_eq!(bad.status, RecipientState::Failed);
    assert_eq!(bad.error_code, Some(4720));
    assert!(bad.flags.contains(&StatusFlag::Contradiction));
    for good in ["+15553330001", "+15553330002"] {
        let r = status_of(&v, good);
        assert_eq!(r.status, RecipientState::Delivered);
        assert_eq!(r.flags, vec![StatusFlag::NetworkHandoffOnly], "MMS/group delivered is only a handoff");
    }
    // The timeline keeps both events for the invalid number and marks the contradiction.
    let marked: Vec<(&str, bool)> = v
        .timeline
        .iter()
        .filter(|t| t.recipient.as_deref() == Some("+15553330003"))
        .map(|t| (t.kind.as_str(), t.contradicted))
        .collect();
    assert_eq!(marked, [("message-failed", false), ("message-delivered", true)]);
    assert_eq!(v.timeline.len(), 5);
}

#[test]
fn a_late_event_never_moves_a_status_backwards() {
    let mut evs = events(SMS_LIFECYCLE);
    evs.reverse(); // delivered arrives before sent
    let v = view(&evs);
    let r = status_of(&v, "+15552220001");
    assert_eq!(r.status, RecipientState::Delivered);
    assert!(r.flags.is_empty(), "single-recipient SMS delivered is a handset receipt");
    // The timeline is in event-time order, whatever the arrival order.
    let kinds: Vec<&str> = v.timeline.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(kinds, ["message-sent", "message-delivered"]);
}

#[test]
fn content_comes_from_the_richest_event() {
    let mut evs = events(INBOUND_MMS);
    // A status-like event with empty text for the same message must not erase it.
    let status = INBOUND_MMS
        .replace("message-received", "message-unknown-status")
        .replace("Here is the photo of the receipt", "")
        .replace("17:30:00.000Z\",\n    \"description", "17:31:00.000Z\",\n    \"description");
    evs.extend(parse_callback_body(status.as_bytes()).events);
    let v = view(&evs);
    assert_eq!(v.text.as_deref(), Some("Here is the photo of the receipt"));
    assert_eq!(v.media.len(), 2);
    assert_eq!(v.direction.as_deref(), Some("in"));
    assert_eq!(v.from.as_deref(), Some("+15554440001"));
    assert_eq!(status_of(&v, "+15551110000").status, RecipientState::Received);
}

#[test]
fn outbound_recipients_without_events_are_accepted() {
    let evs: Vec<CallbackEvent> = events(GROUP_MMS_INVALID).into_iter().take(1).collect();
    let v = view(&evs);
    assert_eq!(status_of(&v, "+15553330001").status, RecipientState::Sending);
    assert_eq!(status_of(&v, "+15553330002").status, RecipientState::Accepted);
}

#[test]
fn receipt_expired_is_flagged() {
    let body = FAILED.replace("4432", "9902").replace("rejected-unallocated-to-number", "delivery-receipt-expired");
    let v = view(&parse_callback_body(body.as_bytes()).events);
    let r = status_of(&v, "+15556660001");
    assert_eq!(r.status, RecipientState::Failed);
    assert!(r.flags.contains(&StatusFlag::ReceiptExpired));
}

#[test]
fn read_follows_delivered() {
    let v = view(&events(RBM)[..1]);
    assert_eq!(status_of(&v, "+15557770001").status, RecipientState::Read);
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

/// The projection ignores arrival order: all 120 orders of the group
/// message's five events give the same recipients, content and timeline.
#[test]
fn every_arrival_order_yields_the_same_view() {
    let evs = events(GROUP_MMS_INVALID);
    let reference = serde_json::to_value(view(&evs)).unwrap();
    let perms = permutations(evs.len());
    assert_eq!(perms.len(), 120);
    for p in perms {
        let shuffled: Vec<CallbackEvent> = p.iter().map(|&i| evs[i].clone()).collect();
        let mut v = serde_json::to_value(view(&shuffled)).unwrap();
        // Arrival stamps differ by construction; everything else must match.
        for t in v["timeline"].as_array_mut().unwrap() {
            t["receivedAt"] = serde_json::Value::Null;
        }
        let mut r = reference.clone();
        for t in r["timeline"].as_array_mut().unwrap() {
            t["receivedAt"] = serde_json::Value::Null;
        }
        assert_eq!(v, r, "order {p:?}");
    }
}

/// The send proxy's record and the callbacks merge in either order: the
/// text comes from the accepted record, statuses from the callbacks.
#[test]
fn the_accepted_record_and_callbacks_merge_in_any_order() {
    let accepted_body = br#"{"id":"1763651045120abcd0001","owner":"+15551110000","applicationId":"93de2206-9669-4e07-948d-329f4b722ee2","time":"2026-11-20T15:04:04.980Z","segmentCount":1,"direction":"out","to":["+15552220001"],"from":"+15551110000","text":"Your order shipped","tag":"order-1234","priority":"default"}"#;
    let accepted = bw_ledger_core::event::accepted_event(accepted_body).unwrap();
    let callbacks = events(SMS_LIFECYCLE);
    let before: Vec<CallbackEvent> = std::iter::once(accepted.clone()).chain(callbacks.clone()).collect();
    let after: Vec<CallbackEvent> = callbacks.into_iter().chain(std::iter::once(accepted)).collect();
    for evs in [before, after] {
        let v = view(&evs);
        assert_eq!(v.text.as_deref(), Some("Your order shipped"));
        assert_eq!(status_of(&v, "+15552220001").status, RecipientState::Delivered);
        assert_eq!(v.timeline[0].kind, EventKind::MessageAccepted);
        assert_eq!(v.timeline.len(), 3);
    }
}
