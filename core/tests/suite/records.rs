//! Pins the exact JSON of what crosses to and from the shards. If one of
//! these changes, stored data or a running shard may no longer agree with
//! the Worker: a migration is owed, not just a new expectation.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bw_ledger_core::event::Rejected;
use bw_ledger_core::parse_callback_body;
use bw_ledger_core::quarantine::{QuarantineItem, QuarantineRecord};
use bw_ledger_core::records::EventRecord;
use bw_ledger_core::wire::{IngestBatch, IngestReply};

#[test]
fn event_record_shape_is_pinned() {
    let body = r#"[{"type":"message-failed","time":"2026-01-01T00:00:00Z","to":"+15550000001","errorCode":4720,"message":{"id":"m1"}}]"#;
    let ev = &parse_callback_body(body.as_bytes()).events[0];
    // contentHash: SHA-256 of the sorted-key compact JSON, as Python json.dumps(sort_keys=True) computes it.
    let batch = IngestBatch { received_at_ms: 7, events: vec![EventRecord::from_event(ev)], quarantine: vec![] };
    assert_eq!(
        serde_json::to_string(&batch).unwrap(),
        concat!(
            r#"{"receivedAtMs":7,"events":[{"eventKey":"[\"m1\",\"message-failed\",\"+15550000001\",\"2026-01-01T00:00:00Z\",4720]","#,
            r#""messageId":"m1","type":"message-failed","recipient":"+15550000001","time":"2026-01-01T00:00:00Z","timeMs":1767225600000,"#,
            r#""errorCode":4720,"contentHash":"2d750725843b885f5a424c5caf3bb8af453cd26e6e0bc8a40c2960c0ff8eec69","#,
            r#""raw":"{\"type\":\"message-failed\",\"time\":\"2026-01-01T00:00:00Z\",\"to\":\"+15550000001\",\"errorCode\":4720,\"message\":{\"id\":\"m1\"}}"}],"quarantine":[]}"#
        )
    );
}

#[test]
fn quarantine_item_and_reply_shapes_are_pinned() {
    let item = QuarantineItem {
        record: QuarantineRecord::from_rejected(&Rejected { raw: b"x".to_vec(), reason: "why".into() }),
        first_seen_ms: 1,
        last_seen_ms: 2,
        seen_count: 3,
    };
    assert_eq!(
        serde_json::to_string(&item).unwrap(),
        r#"{"contentHash":"2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881","raw":"x","rawEncoding":"utf8","reason":"why","firstSeenMs":1,"lastSeenMs":2,"seenCount":3}"#
    );
    let reply = IngestReply { stored: 1, duplicates: 2, conflicts: 3, quarantined: 4, erased: 0 };
    assert_eq!(serde_json::to_string(&reply).unwrap(), r#"{"stored":1,"duplicates":2,"conflicts":3,"quarantined":4}"#);
}

/// The quarantine's stored encoding names, and the cross-shard page plan:
/// newest first, bounded by count and by bytes of bodies, with a cursor.
#[test]
fn quarantine_encodings_and_pages() {
    use bw_ledger_core::quarantine::{plan_page, QuarantineCursor, QuarantineIndex, QuarantineMeta, RawEncoding};
    for e in [RawEncoding::Utf8, RawEncoding::Base64] {
        assert_eq!(RawEncoding::parse(e.as_str()), Some(e));
        assert_eq!(serde_json::to_value(e).unwrap(), serde_json::json!(e.as_str()));
    }
    assert_eq!(RawEncoding::parse("utf-8"), None);
    assert!(serde_json::from_value::<RawEncoding>(serde_json::json!("utf-8")).is_err());
    let meta = |hash: &str, last_seen_ms: i64, raw_bytes: u64| QuarantineMeta {
        content_hash: hash.into(),
        raw_bytes,
        raw_encoding: RawEncoding::Utf8,
        reason: String::new(),
        first_seen_ms: 0,
        last_seen_ms,
        seen_count: 1,
    };
    let page = |items| QuarantineIndex { count: 2, items };
    let pages = vec![page(vec![meta("b", 5, 10), meta("c", 1, 10)]), page(vec![meta("a", 5, 10), meta("d", 9, 10)])];
    let hashes = |p: &[QuarantineMeta]| p.iter().map(|m| m.content_hash.clone()).collect::<Vec<_>>();
    let plan = plan_page(&pages, 3, 1000, None);
    assert_eq!(hashes(&plan.items), ["d", "a", "b"]);
    let next = plan.next.unwrap();
    assert_eq!(next, QuarantineCursor { last_seen_ms: 5, content_hash: "b".into() });
    assert_eq!(QuarantineCursor::parse(&next.token()), Some(next.clone()));
    assert_eq!(QuarantineCursor::parse("5.xyz"), None);
    assert_eq!(QuarantineCursor::parse("nope"), None);
    // The next page (the shards answer after the cursor) holds the rest.
    let rest = plan_page(&[page(vec![meta("c", 1, 10)]), page(vec![])], 3, 1000, Some(&next));
    assert_eq!(hashes(&rest.items), ["c"]);
    assert_eq!(rest.next, None);
    // Bytes: five 1 MiB bodies in 4 MiB pages are two pages; one body over
    // the budget still goes out alone.
    let mib = 1024 * 1024;
    let five: Vec<_> = (0..5).map(|i| meta(&format!("{i}"), 10 - i, mib)).collect();
    let first = plan_page(&[page(five.clone())], 1000, 4 * mib, None);
    assert_eq!(first.items.len(), 4);
    let second = plan_page(&[page(five)], 1000, 4 * mib, first.next.as_ref());
    assert_eq!((second.items.len(), second.next), (1, None));
    assert_eq!(plan_page(&[page(vec![meta("big", 1, 9 * mib)])], 10, 4 * mib, None).items.len(), 1);
}
