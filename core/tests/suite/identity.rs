//! Event identity, content hashing and the dedup decision.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::common::*;
use bw_ledger_core::identity::{canonical_json, decide, sha256_hex, DedupDecision};
use bw_ledger_core::{content_hash, parse_callback_body, CallbackEvent, EventKey};

fn one(body: &str) -> CallbackEvent {
    let mut p = parse_callback_body(body.as_bytes());
    assert_eq!(p.events.len(), 1, "{body}");
    p.events.remove(0)
}

const BASE: &str = r#"{"type":"message-failed","time":"2026-01-01T00:00:00.000Z","to":"+15550000001","errorCode":4720,"description":"x","message":{"id":"m1"}}"#;

#[test]
fn identity_is_id_type_recipient_time_and_error_code() {
    let base = EventKey::of(&one(BASE));
    assert_eq!(base.as_str(), r#"["m1","message-failed","+15550000001","2026-01-01T00:00:00.000Z",4720]"#);
    let variants = [
        BASE.replace(r#""id":"m1""#, r#""id":"m2""#),
        BASE.replace("message-failed", "message-delivered"),
        BASE.replace("+15550000001", "+15550000002"),
        BASE.replace("00:00:00.000Z", "00:00:01.000Z"),
        BASE.replace("4720", "4721"),
    ];
    for v in variants {
        assert_ne!(EventKey::of(&one(&v)), base, "{v}");
    }
    // The description is content, not identity.
    assert_eq!(EventKey::of(&one(&BASE.replace(r#""x""#, r#""y""#))), base);
}

#[test]
fn identity_cannot_be_forged_by_separators_inside_fields() {
    let a = one(r#"{"type":"message-sent","to":"a|b","message":{"id":"m"}}"#);
    let b = one(r#"{"type":"message-sent|a","to":"b","message":{"id":"m"}}"#);
    assert_ne!(EventKey::of(&a), EventKey::of(&b));
}

#[test]
fn every_event_of_a_group_message_has_its_own_identity() {
    let evs = events(GROUP_MMS_INVALID);
    let mut keys: Vec<EventKey> = evs.iter().map(EventKey::of).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), evs.len());
}

#[test]
fn a_retry_with_other_key_order_or_whitespace_has_the_same_content_hash() {
    let a = one(BASE);
    let b = one(r#"{ "message": {"id":"m1"}, "description":"x", "errorCode":4720,
        "to":"+15550000001", "time":"2026-01-01T00:00:00.000Z", "type":"message-failed" }"#);
    assert_eq!(EventKey::of(&a), EventKey::of(&b));
    assert_eq!(content_hash(&a.raw), content_hash(&b.raw));
    let changed = one(&BASE.replace(r#""x""#, r#""y""#));
    assert_ne!(content_hash(&a.raw), content_hash(&changed.raw));
}

#[test]
fn canonical_json_sorts_keys_at_every_depth() {
    let v: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"é"}}"#).unwrap();
    assert_eq!(canonical_json(&v), r#"{"a":{"c":"é","d":[{"y":2,"z":1}]},"b":1}"#);
}

#[test]
fn canonical_strings_are_written_exactly_as_serde_json_writes_them() {
    // Stored content hashes depend on this: every ASCII character, and
    // text beyond it, as a key and as a value.
    let mut samples: Vec<String> = (0u8..0x80).map(|b| format!("a{}b", b as char)).collect();
    samples.extend(["", "plain", "é\u{2028}😀", "quote\"back\\slash", "\u{7f}del", "tab\tnew\nline"].map(String::from));
    for text in samples {
        let v = serde_json::json!({ text.clone(): text.clone() });
        let expected =
            format!("{{{}:{}}}", serde_json::to_string(&text).unwrap(), serde_json::to_string(&text).unwrap());
        assert_eq!(canonical_json(&v), expected, "{text:?}");
    }
}

#[test]
fn sha256_matches_the_standard_vector() {
    assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn dedup_decision_table() {
    assert_eq!(decide(None, "h1"), DedupDecision::Insert);
    assert_eq!(decide(Some("h1"), "h1"), DedupDecision::Duplicate);
    assert_eq!(decide(Some("h1"), "h2"), DedupDecision::Conflict);
}

#[test]
fn a_messages_key_range_holds_its_events_and_no_others() {
    use bw_ledger_core::EventKey;
    let key = |id: &str, kind: &str, to: Option<&str>| {
        let ev = serde_json::json!({"type": kind, "to": to, "time": "2026-11-20T15:04:07.450Z",
            "message": {"id": id, "direction": "out", "to": [to], "from": "+15551110000"}});
        let parsed = bw_ledger_core::parse_callback_body(serde_json::json!([ev]).to_string().as_bytes());
        EventKey::of(&parsed.events[0]).as_str().to_owned()
    };
    let inside = |k: &str, id: &str| {
        let (lo, hi) = EventKey::range_of(id);
        lo.as_str() <= k && k < hi.as_str()
    };
    let ids = ["m", "m2", "m,", "m\"x", "m-", "ü-unicode", "m\\", "m\u{7f}"];
    for id in ids {
        for other in ids {
            for kind in ["message-delivered", "message-failed", "message-sending"] {
                let k = key(other, kind, Some("+15552220001"));
                assert_eq!(inside(&k, id), id == other, "key {k} against the range of {id:?}");
            }
        }
    }
}
