//! Parsing real-shaped Bandwidth callbacks, and keeping every byte.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::common::*;
use bw_ledger_core::{parse_callback_body, EventKind};
use serde_json::Value;

#[test]
fn parses_outbound_sms_lifecycle_with_recipient_and_time() {
    let evs = events(SMS_LIFECYCLE);
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].kind, EventKind::MessageSent);
    assert_eq!(evs[1].kind, EventKind::MessageDelivered);
    for ev in &evs {
        assert_eq!(ev.message_id, "1763651045120abcd0001");
        assert_eq!(ev.recipient.as_deref(), Some("+15552220001"));
        assert_eq!(ev.error_code, None);
    }
    assert_eq!(evs[1].time.as_deref(), Some("2026-11-20T15:04:07.450Z"));
    assert_eq!(evs[1].time_ms(), Some(1_795_187_047_450));
}

#[test]
fn parses_group_mms_with_one_event_per_recipient() {
    let evs = events(GROUP_MMS_INVALID);
    let kinds: Vec<&str> = evs.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["message-sending", "message-failed", "message-delivered", "message-delivered", "message-delivered"]
    );
    assert_eq!(evs[1].error_code, Some(4720));
    assert_eq!(evs[1].recipient.as_deref(), Some("+15553330003"));
    assert_eq!(evs[0].message()["to"].as_array().map(Vec::len), Some(3));
}

#[test]
fn parses_inbound_mms_with_text_and_media() {
    let evs = events(INBOUND_MMS);
    assert_eq!(evs.len(), 1);
    let ev = &evs[0];
    assert_eq!(ev.kind, EventKind::MessageReceived);
    assert!(ev.kind.is_inbound());
    assert_eq!(ev.message()["text"], "Here is the photo of the receipt");
    assert_eq!(ev.message()["media"].as_array().map(Vec::len), Some(2));
}

#[test]
fn parses_failed_with_error_code() {
    let evs = events(FAILED);
    assert_eq!(evs[0].kind, EventKind::MessageFailed);
    assert_eq!(evs[0].error_code, Some(4432));
}

#[test]
fn understands_every_current_event_type() {
    let all = [
        ("message-received", EventKind::MessageReceived),
        ("message-sending", EventKind::MessageSending),
        ("message-sent", EventKind::MessageSent),
        ("message-delivered", EventKind::MessageDelivered),
        ("message-failed", EventKind::MessageFailed),
        ("message-read", EventKind::MessageRead),
        ("suggestion-response", EventKind::SuggestionResponse),
        ("requested-location-response", EventKind::RequestedLocationResponse),
    ];
    for (name, kind) in all {
        assert_eq!(EventKind::parse(name), kind);
        assert_eq!(kind.as_str(), name);
    }
    let kinds: Vec<EventKind> = events(RBM).into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::MessageRead, EventKind::SuggestionResponse, EventKind::RequestedLocationResponse]);
}

#[test]
fn keeps_the_exact_json_of_each_element_with_unmodelled_fields() {
    let body = r#"[ {"type":"message-delivered","to":"+15550000001","time":"2026-01-01T00:00:00Z",
        "carrierName":"X","eventTime":"2026-01-01T00:00:00Z","channel":"SMS","bigNumber":123456789012345678901234567890,
        "message":{"id":"m-raw","direction":"out"}} ]"#;
    let parsed = parse_callback_body(body.as_bytes());
    assert_eq!(parsed.events.len(), 1);
    let ev = &parsed.events[0];
    let start = body.find('{').unwrap();
    let end = body.rfind('}').unwrap() + 1;
    assert_eq!(ev.raw_json, &body[start..end], "stored text must be the element verbatim");
    assert!(ev.raw_json.contains("123456789012345678901234567890"), "no precision lost");
    assert_eq!(ev.raw["carrierName"], "X");
    assert_eq!(ev.raw["channel"], "SMS");
}

#[test]
fn accepts_a_single_event_object() {
    let body = r#"{"type":"message-sent","to":"+15550000001","message":{"id":"single"}}"#;
    let parsed = parse_callback_body(body.as_bytes());
    assert_eq!(parsed.events.len(), 1);
    assert!(parsed.rejected.is_empty());
    assert_eq!(parsed.events[0].message_id, "single");
}

#[test]
fn keeps_an_unknown_type_as_an_event() {
    let body = r#"[{"type":"message-teleported","to":"+1","message":{"id":"u1"}}]"#;
    let parsed = parse_callback_body(body.as_bytes());
    assert_eq!(parsed.events.len(), 1);
    assert_eq!(parsed.events[0].kind, EventKind::Unknown("message-teleported".into()));
    assert_eq!(parsed.events[0].kind.as_str(), "message-teleported");
}

#[test]
fn quarantines_a_whole_body_that_is_not_json() {
    for body in [&b"not json at all"[..], b"", b"[1, 2", b"\xff\xfe\x00garbage"] {
        let parsed = parse_callback_body(body);
        assert!(parsed.events.is_empty());
        assert_eq!(parsed.rejected.len(), 1, "body {body:?}");
        assert_eq!(parsed.rejected[0].raw, body);
        assert!(parsed.rejected[0].reason.contains("not JSON"), "{}", parsed.rejected[0].reason);
    }
}

#[test]
fn quarantines_json_that_is_not_events() {
    for body in ["42", "\"hello\"", "null", r#"{"hello":"world"}"#, r#"{"type":"message-sent"}"#] {
        let parsed = parse_callback_body(body.as_bytes());
        assert!(parsed.events.is_empty(), "{body}");
        assert_eq!(parsed.rejected.len(), 1, "{body}");
        assert_eq!(parsed.rejected[0].raw, body.as_bytes());
    }
}

#[test]
fn splits_a_mixed_array_into_events_and_bad_elements() {
    let body = r#"[{"type":"message-sent","to":"+1","message":{"id":"ok1"}}, 7, {"type":"message-sent"},
        {"type":"message-failed","errorCode":"oops","message":{"id":"x"}},
        {"type":"message-failed","errorCode":"4720","to":"+2","message":{"id":"ok2"}}]"#;
    let parsed = parse_callback_body(body.as_bytes());
    let ids: Vec<&str> = parsed.events.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(ids, ["ok1", "ok2"]);
    assert_eq!(parsed.events[1].error_code, Some(4720), "numeric strings are tolerated");
    let raws: Vec<String> = parsed.rejected.iter().map(|r| String::from_utf8(r.raw.clone()).unwrap()).collect();
    assert_eq!(
        raws,
        ["7", r#"{"type":"message-sent"}"#, r#"{"type":"message-failed","errorCode":"oops","message":{"id":"x"}}"#]
    );
    assert!(parsed.rejected[0].reason.starts_with("element 1:"));
    assert!(parsed.rejected[1].reason.contains("message.id"));
    assert!(parsed.rejected[2].reason.contains("errorCode"));
}

#[test]
fn an_empty_array_is_nothing_to_store() {
    let parsed = parse_callback_body(b"[]");
    assert!(parsed.events.is_empty() && parsed.rejected.is_empty());
}

#[test]
fn every_fixture_round_trips_to_the_same_json_value() {
    for fixture in [SMS_LIFECYCLE, GROUP_MMS_INVALID, INBOUND_MMS, FAILED, RBM] {
        let original: Vec<Value> = serde_json::from_str(fixture).unwrap();
        let kept: Vec<Value> = events(fixture).iter().map(|e| serde_json::from_str(&e.raw_json).unwrap()).collect();
        assert_eq!(kept, original);
    }
}

/// Found by the fuzzer: a number too large for a float makes only its own
/// element unreadable; the valid siblings are still stored.
#[test]
fn an_element_with_an_out_of_range_number_is_quarantined_alone() {
    let body = r#"[{"type":"message-sent","to":"+1","message":{"id":"ok"}},{"type":"message-sent","x":1E800,"message":{"id":"bad"}}]"#;
    let parsed = parse_callback_body(body.as_bytes());
    assert_eq!(parsed.events.len(), 1);
    assert_eq!(parsed.events[0].message_id, "ok");
    assert_eq!(parsed.rejected.len(), 1);
    assert_eq!(parsed.rejected[0].raw, br#"{"type":"message-sent","x":1E800,"message":{"id":"bad"}}"#);
}

/// Values a JavaScript number cannot hold exactly, as JSON text.
const INEXACT: [&str; 6] =
    ["9007199254740993", "-9007199254740993", "1e300", "18446744073709551616", "4.5", "\"9007199254740993\""];

/// A modelled number (one the ledger reads into a column) must be an integer
/// a JS number holds exactly, or the element is quarantined alone with a
/// reason naming the field; its siblings are stored either way.
#[test]
fn a_modelled_number_beyond_exact_range_quarantines_only_its_element() {
    for (field, template) in [
        ("errorCode", r#"{"type":"message-failed","to":"+1","errorCode":N,"message":{"id":"bad"}}"#),
        ("message.segmentCount", r#"{"type":"message-sent","to":"+1","message":{"id":"bad","segmentCount":N}}"#),
    ] {
        for value in INEXACT {
            let bad = template.replace('N', value);
            let body = format!(r#"[{{"type":"message-sent","to":"+1","message":{{"id":"ok"}}}},{bad}]"#);
            let parsed = parse_callback_body(body.as_bytes());
            assert_eq!(parsed.events.len(), 1, "{field} = {value}");
            assert_eq!(parsed.events[0].message_id, "ok");
            assert_eq!(parsed.rejected.len(), 1, "{field} = {value}");
            assert_eq!(parsed.rejected[0].raw, bad.as_bytes(), "kept byte for byte");
            assert!(parsed.rejected[0].reason.contains(field), "{}", parsed.rejected[0].reason);
        }
    }
}

#[test]
fn modelled_numbers_at_the_edge_of_the_exact_range_are_events() {
    for value in ["9007199254740991", "-9007199254740991", "0", "\"4432\""] {
        let body = format!(
            r#"[{{"type":"message-failed","to":"+1","errorCode":{value},"message":{{"id":"m","segmentCount":{value}}}}}]"#
        );
        let parsed = parse_callback_body(body.as_bytes());
        assert_eq!(parsed.rejected, vec![], "{value}");
        let expected: i64 = value.trim_matches('"').parse().unwrap();
        assert_eq!(parsed.events[0].error_code, Some(expected));
    }
}

/// Numbers the ledger does not model are never read into a column: the
/// event is stored, its text exact.
#[test]
fn an_unmodelled_number_of_any_size_is_kept_exactly_in_the_event() {
    for value in INEXACT {
        let body =
            format!(r#"[{{"type":"message-received","to":"+1","n":{value},"message":{{"id":"m","x":{value}}}}}]"#);
        let parsed = parse_callback_body(body.as_bytes());
        assert_eq!(parsed.rejected, vec![], "{value}");
        assert!(parsed.events[0].raw_json.contains(&format!(r#""x":{value}"#)), "{}", parsed.events[0].raw_json);
    }
}
