//! Every Durable Object method's path, request and reply JSON, pinned.
//! A change here is a protocol change between the Worker and its objects
//! (deployed together, but an object can outlive a deployment's isolates
//! for a moment): change the method, not just the test.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bw_ledger_core::error::Refusal;
use bw_ledger_core::idempotency::{
    BeginDecision, ClaimReply, GuardClaim, GuardFinish, IdemBegin, IdemFinish, IdemPeek, IdempotencyRecord,
    SavedResponse,
};
use bw_ledger_core::lifecycle::{
    EraseReply, EraseRequest, ExportPage, ExportQuery, ExportedMessage, SweepReply, SweepRequest,
};
use bw_ledger_core::limits::{Ask, GuardRequest, KeyState, Verdict};
use bw_ledger_core::list::{ListQuery, ListRow, ShardPage};
use bw_ledger_core::oauth::{CachedToken, TokenOutcome};
use bw_ledger_core::outbox::{OutboxItem, OutboxState, ReplayRequest, TargetStats};
use bw_ledger_core::quarantine::{
    QuarantineBody, QuarantineCursor, QuarantineIndex, QuarantineMeta, QuarantinePageQuery, QuarantineRecord,
    RawEncoding,
};
use bw_ledger_core::records::{EventRecord, MessageRecords, StoredConflict, StoredEvent};
use bw_ledger_core::wire::live_hub::Published;
use bw_ledger_core::wire::{
    key_guard, ledger, live_hub, opt_outs, shard_map, target_pacer, target_registry, token_broker, DeadQuery,
    DiscardReply, Empty, IngestBatch, IngestReply, MessageQuery, Method, ReplayReply,
};
use serde_json::{json, Value};

/// `M` answers at `path`; its request and reply serialize to exactly the
/// pinned JSON, and the pinned JSON reads back to the same values.
fn pin<M: Method>(path: &str, request: M::Request, request_json: Value, reply: M::Reply, reply_json: Value) {
    assert_eq!(M::PATH, path);
    assert_eq!(serde_json::to_value(&request).unwrap(), request_json, "{path} request");
    assert_eq!(serde_json::to_value(&reply).unwrap(), reply_json, "{path} reply");
    let request_back: M::Request = serde_json::from_value(request_json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&request_back).unwrap(), request_json, "{path} request round trip");
    let reply_back: M::Reply = serde_json::from_value(reply_json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&reply_back).unwrap(), reply_json, "{path} reply round trip");
}

fn event() -> EventRecord {
    EventRecord {
        event_key: "k1".into(),
        message_id: "m1".into(),
        kind: "message-delivered".into(),
        recipient: Some("+15552220001".into()),
        time: Some("2026-11-20T15:04:07.450Z".into()),
        time_ms: Some(1_795_187_047_450),
        error_code: None,
        content_hash: "h1".into(),
        raw: "{}".into(),
    }
}

fn event_json() -> Value {
    json!({"eventKey": "k1", "messageId": "m1", "type": "message-delivered", "recipient": "+15552220001",
        "time": "2026-11-20T15:04:07.450Z", "timeMs": 1_795_187_047_450i64, "errorCode": null,
        "contentHash": "h1", "raw": "{}"})
}

fn quarantine_record() -> QuarantineRecord {
    QuarantineRecord {
        content_hash: "q1".into(),
        raw: "x".into(),
        raw_encoding: RawEncoding::Utf8,
        reason: "why".into(),
    }
}

#[test]
fn ledger_ingest() {
    let batch = IngestBatch { received_at_ms: 5, events: vec![event()], quarantine: vec![quarantine_record()] };
    pin::<ledger::Ingest>(
        "/ingest",
        vec![batch],
        json!([{"receivedAtMs": 5, "events": [event_json()],
            "quarantine": [{"contentHash": "q1", "raw": "x", "rawEncoding": "utf8", "reason": "why"}]}]),
        vec![IngestReply { stored: 1, duplicates: 2, conflicts: 3, quarantined: 4, erased: 0 }],
        json!([{"stored": 1, "duplicates": 2, "conflicts": 3, "quarantined": 4}]),
    );
}

#[test]
fn ledger_message() {
    let mut stored = event_json();
    stored["seq"] = json!(7);
    stored["receivedAtMs"] = json!(9);
    pin::<ledger::Message>(
        "/message",
        MessageQuery { message_id: "m1".into() },
        json!({"messageId": "m1"}),
        MessageRecords {
            events: vec![StoredEvent { seq: 7, record: event(), received_at_ms: 9 }],
            conflicts: vec![StoredConflict {
                event_key: "k1".into(),
                content_hash: "h2".into(),
                raw: "{}".into(),
                received_at_ms: 10,
            }],
            media: Vec::new(),
        },
        json!({"events": [stored],
            "conflicts": [{"eventKey": "k1", "contentHash": "h2", "raw": "{}", "receivedAtMs": 10}]}),
    );
}

#[test]
fn ledger_quarantine() {
    let cursor = QuarantineCursor { last_seen_ms: 2, content_hash: "q0".into() };
    pin::<ledger::QuarantineIndex>(
        "/quarantine/index",
        QuarantinePageQuery { limit: 100, after: Some(cursor) },
        json!({"limit": 100, "after": {"lastSeenMs": 2, "contentHash": "q0"}}),
        QuarantineIndex {
            count: 7,
            items: vec![QuarantineMeta {
                content_hash: "q1".into(),
                raw_bytes: 1,
                raw_encoding: RawEncoding::Utf8,
                reason: "why".into(),
                first_seen_ms: 1,
                last_seen_ms: 2,
                seen_count: 3,
            }],
        },
        json!({"count": 7, "items": [{"contentHash": "q1", "rawBytes": 1, "rawEncoding": "utf8", "reason": "why",
            "firstSeenMs": 1, "lastSeenMs": 2, "seenCount": 3}]}),
    );
    pin::<ledger::QuarantineBodies>(
        "/quarantine/bodies",
        vec!["q1".to_owned()],
        json!(["q1"]),
        vec![QuarantineBody { content_hash: "q1".into(), raw: "x".into() }],
        json!([{"contentHash": "q1", "raw": "x"}]),
    );
}

#[test]
fn idempotency_methods_of_the_shards_and_the_key_guards() {
    let saved = SavedResponse {
        status: 202,
        body: "{}".into(),
        content_type: Some("application/json".into()),
        retry_after: None,
    };
    let saved_json = json!({"status": 202, "body": "{}", "contentType": "application/json", "retryAfter": null});
    // Earlier builds' records, read during a guard's first day.
    pin::<ledger::IdemPeek>(
        "/idempotency/peek",
        IdemPeek { scope_key: "web:k".into() },
        json!({"scopeKey": "web:k"}),
        Some(IdempotencyRecord { body_hash: "b".into(), created_ms: 3, response: Some(saved.clone()) }),
        json!({"bodyHash": "b", "createdMs": 3, "response": saved_json.clone()}),
    );
    assert_eq!(serde_json::to_value(BeginDecision::Proceed).unwrap(), json!({"decision": "proceed"}));
    let begin = IdemBegin { scope_key: "web:k".into(), body_hash: "b".into(), now_ms: 3 };
    let begin_json = json!({"scopeKey": "web:k", "bodyHash": "b", "nowMs": 3});
    pin::<key_guard::Claim>(
        "/claim",
        GuardClaim { begin, ask: Ask::Send { recipients: 1, rate_per_minute: None, daily_quota: Some(5) } },
        json!({"begin": begin_json, "ask": {"kind": "send", "recipients": 1, "ratePerMinute": null, "dailyQuota": 5}}),
        ClaimReply { decision: BeginDecision::Replay { response: saved.clone() }, verdict: None, read_through: true },
        json!({"decision": {"decision": "replay", "response": saved_json.clone()}, "readThrough": true}),
    );
    pin::<key_guard::Finish>(
        "/finish",
        GuardFinish { finish: IdemFinish { scope_key: "web:k".into(), response: Some(saved) }, refund: 2, now_ms: 4 },
        json!({"finish": {"scopeKey": "web:k", "response": saved_json}, "refund": 2, "nowMs": 4}),
        Empty {},
        json!({}),
    );
    pin::<key_guard::Erase>(
        "/erase",
        EraseRequest { number: "+15551230000".into(), now_ms: 9, limit: 100 },
        json!({"number": "+15551230000", "nowMs": 9, "limit": 100}),
        EraseReply { erased: 1, quarantined: 0, more: false },
        json!({"erased": 1, "quarantined": 0, "more": false}),
    );
    pin::<key_guard::Sweep>(
        "/sweep",
        SweepRequest { cutoff_ms: Some(5), now_ms: 9, limit: 100, continue_by_alarm: false },
        json!({"cutoffMs": 5, "nowMs": 9, "limit": 100, "continueByAlarm": false}),
        SweepReply { purged: 2, more: false },
        json!({"purged": 2, "more": false}),
    );
    // The registry of guards that may hold saved answers.
    pin::<key_guard::Register>(
        "/register",
        key_guard::GuardName { key_id: "web".into() },
        json!({"keyId": "web"}),
        Empty {},
        json!({}),
    );
    pin::<key_guard::Registered>("/registered", Empty {}, json!({}), vec!["web".to_owned()], json!(["web"]));
    assert_eq!(key_guard::REGISTRY_NAME, "key-registry");
}

#[test]
fn ledger_list() {
    let q = ListQuery::parse(Some("messageStatus=FAILED&sourceTn=%2B15551110000&limit=2"), Some(vec!["+1".into()]))
        .unwrap();
    let row = ListRow {
        message_id: "m1".into(),
        destination_tn: "+2".into(),
        source_tn: "+1".into(),
        message_status: "FAILED".into(),
        message_direction: "OUTBOUND".into(),
        message_type: "sms".into(),
        segment_count: 1,
        error_code: 4432,
        receive_time_ms: 5,
        carrier_name: None,
        message_length: 2,
        attachment_count: 0,
        recipient_count: 1,
        text: Some("hi".into()),
        media: vec![],
        state: bw_ledger_core::status::RecipientState::Failed,
        flags: vec![],
        channel: None,
        read_time_ms: None,
    };
    pin::<ledger::List>(
        "/list",
        q,
        json!({"filters": {"message_id": null, "source_tn": {"Prefix": "+15551110000"}, "destination_tn": null,
            "message_status": "FAILED", "message_direction": null, "message_type": null, "error_code": null,
            "carrier_name": null, "from_ms": null, "to_ms": null, "from_segments": null, "to_segments": null,
            "conversation": null, "scope_numbers": ["+1"]},
            "sort": "ReceiveTime", "descending": true, "limit": 2, "cursor": null, "include_content": false,
            "count": "exact"}),
        ShardPage { rows: vec![row], total: Some(1) },
        json!({"rows": [{"messageId": "m1", "destinationTn": "+2", "sourceTn": "+1", "messageStatus": "FAILED",
            "messageDirection": "OUTBOUND", "messageType": "sms", "segmentCount": 1, "errorCode": 4432,
            "receiveTimeMs": 5, "carrierName": null, "messageLength": 2, "attachmentCount": 0,
            "recipientCount": 1, "text": "hi", "media": [], "state": "failed", "flags": [], "channel": null, "readTimeMs": null}], "total": 1}),
    );
}

#[test]
fn ledger_outbox() {
    pin::<ledger::OutboxStats>(
        "/outbox/stats",
        Empty {},
        json!({}),
        vec![TargetStats {
            target: "main".into(),
            pending: 1,
            delivered: 2,
            dead: 3,
            paused: 7,
            oldest_pending_ms: Some(4),
            last_error: Some("target answered 503".into()),
            last_error_ms: Some(5),
            consecutive_failures: 6,
        }],
        json!([{"target": "main", "pending": 1, "delivered": 2, "dead": 3, "paused": 7, "oldestPendingMs": 4,
            "lastError": "target answered 503", "lastErrorMs": 5, "consecutiveFailures": 6}]),
    );
    pin::<ledger::OutboxDead>(
        "/outbox/dead",
        DeadQuery { target: Some("main".into()), limit: 10 },
        json!({"target": "main", "limit": 10}),
        vec![OutboxItem {
            webhook_id: "msg_1".into(),
            target: "main".into(),
            message_id: "m1".into(),
            kind: bw_ledger_core::change::ChangeKind::Status,
            state: OutboxState::Dead,
            attempts: 5,
            created_ms: 6,
            last_error: Some("target answered 500".into()),
        }],
        json!([{"webhookId": "msg_1", "target": "main", "messageId": "m1", "kind": "message.status",
            "state": "dead", "attempts": 5, "createdMs": 6, "lastError": "target answered 500"}]),
    );
    pin::<ledger::OutboxReplay>(
        "/outbox/replay",
        ReplayRequest {
            target: "main".into(),
            from: None,
            to: None,
            ids: Some(vec!["msg_1".into()]),
            into: None,
            now_ms: 7,
        },
        json!({"target": "main", "from": null, "to": null, "ids": ["msg_1"], "nowMs": 7}),
        ReplayReply { replayed: 1 },
        json!({"replayed": 1}),
    );
}

#[test]
fn ledger_live_on() {
    pin::<ledger::LiveOn>("/live-on", Empty {}, json!({}), Empty {}, json!({}));
}

#[test]
fn live_hub_publish() {
    pin::<live_hub::Publish>(
        "/publish",
        vec![json!({"type": "message.status", "messageId": "m1"})],
        json!([{"type": "message.status", "messageId": "m1"}]),
        Published { sent: 2, subscribers: 3 },
        json!({"sent": 2, "subscribers": 3}),
    );
    assert_eq!(live_hub::SUBSCRIBE_PATH, "/subscribe");
}

#[test]
fn token_broker_token() {
    pin::<token_broker::Token>(
        "/token",
        token_broker::TokenRequest { rejected: None },
        json!({}),
        TokenOutcome::Token { token: CachedToken { access_token: "t".into(), expires_at_ms: 9 } },
        json!({"outcome": "token", "token": {"accessToken": "t", "expiresAtMs": 9}}),
    );
    assert_eq!(
        serde_json::to_value(token_broker::TokenRequest { rejected: Some("old".into()) }).unwrap(),
        json!({"rejected": "old"})
    );
    assert_eq!(
        serde_json::to_value(TokenOutcome::Refused { status: 401 }).unwrap(),
        json!({"outcome": "refused", "status": 401})
    );
}

#[test]
fn key_guard_admit() {
    pin::<key_guard::Admit>(
        "/admit",
        GuardRequest { ask: Ask::Send { recipients: 2, rate_per_minute: Some(6), daily_quota: None }, now_ms: 5 },
        json!({"ask": {"kind": "send", "recipients": 2, "ratePerMinute": 6, "dailyQuota": null}, "nowMs": 5}),
        Verdict::Refuse { reason: Refusal::Quota, retry_after_s: 7 },
        json!({"decision": "refuse", "reason": "quota", "retryAfterS": 7}),
    );
    for (ask, ask_json) in [
        (Ask::Refund { recipients: 1 }, json!({"kind": "refund", "recipients": 1})),
        (Ask::Read { reads_per_minute: 120 }, json!({"kind": "read", "readsPerMinute": 120})),
        (Ask::Refused { reason: Refusal::Destination }, json!({"kind": "refused", "reason": "destination"})),
    ] {
        assert_eq!(serde_json::to_value(&ask).unwrap(), ask_json);
    }
    assert_eq!(serde_json::to_value(Verdict::Admit).unwrap(), json!({"decision": "admit"}));
}

/// The guard stores its state as this JSON: a change is a migration.
#[test]
fn key_guard_usage() {
    let mut state = KeyState { day: 20_000, sends_today: 3, messages_today: 4, ..KeyState::default() };
    state.refusals_today.insert(Refusal::Rate, 2);
    state.last_refusal_ms = Some(9);
    state.last_refusal = Some(Refusal::Rate);
    state.send_tat_ms = 10;
    pin::<key_guard::Usage>(
        "/usage",
        Empty {},
        json!({}),
        state,
        json!({
            "day": 20000, "sendsToday": 3, "messagesToday": 4, "refusalsToday": {"rate": 2},
            "lastRefusalMs": 9, "lastRefusal": "rate", "sendTatMs": 10, "readTatMs": 0
        }),
    );
}

#[test]
fn ledger_lifecycle() {
    pin::<ledger::Sweep>(
        "/sweep",
        SweepRequest { cutoff_ms: Some(5), now_ms: 9, limit: 100, continue_by_alarm: true },
        json!({"cutoffMs": 5, "nowMs": 9, "limit": 100, "continueByAlarm": true}),
        SweepReply { purged: 3, more: false },
        json!({"purged": 3, "more": false}),
    );
    pin::<ledger::Erase>(
        "/erase",
        EraseRequest { number: "+15551230000".into(), now_ms: 9, limit: 100 },
        json!({"number": "+15551230000", "nowMs": 9, "limit": 100}),
        EraseReply { erased: 2, quarantined: 1, more: true },
        json!({"erased": 2, "quarantined": 1, "more": true}),
    );
    pin::<ledger::Export>(
        "/export",
        ExportQuery { from_ms: Some(1), to_ms: None, after: Some((4, "m0".into())), limit: 100 },
        json!({"fromMs": 1, "toMs": null, "after": [4, "m0"], "limit": 100}),
        ExportPage {
            messages: vec![ExportedMessage {
                message_id: "m1".into(),
                time_ms: 5,
                records: MessageRecords { events: vec![], conflicts: vec![], media: Vec::new() },
            }],
            next: Some((5, "m1".into())),
        },
        json!({"messages": [{"messageId": "m1", "timeMs": 5, "records": {"events": [], "conflicts": []}}],
            "next": [5, "m1"]}),
    );
    // A callback's reply shows `erased` only when it is not zero.
    let reply = IngestReply { stored: 1, erased: 0, ..IngestReply::default() };
    assert_eq!(
        serde_json::to_value(reply).unwrap(),
        json!({"stored": 1, "duplicates": 0, "conflicts": 0, "quarantined": 0})
    );
    let erased: IngestReply = serde_json::from_value(json!({"stored": 0, "duplicates": 0, "conflicts": 0,
        "quarantined": 0, "erased": 2}))
    .unwrap();
    assert_eq!(erased.erased, 2);
}

#[test]
fn ledger_media() {
    use bw_ledger_core::media::{MediaLookup, MediaQuery, MediaRecord};
    let record = MediaRecord {
        message_id: "m1".into(),
        path: "bw/a/0/p.png".into(),
        source_url: "https://h/media/a/0/p.png".into(),
        status: bw_ledger_core::media::MediaStatus::Archived,
        content_type: Some("image/png".into()),
        size: Some(3),
        sha256: Some("ab".into()),
        last_error: None,
    };
    let record_json = json!({"messageId": "m1", "path": "bw/a/0/p.png", "sourceUrl": "https://h/media/a/0/p.png",
        "status": "archived", "contentType": "image/png", "size": 3, "sha256": "ab", "lastError": null});
    pin::<ledger::Media>(
        "/media",
        MediaQuery { message_id: "m1".into(), path: "bw/a/0/p.png".into() },
        json!({"messageId": "m1", "path": "bw/a/0/p.png"}),
        MediaLookup { item: Some(record.clone()), numbers: vec!["+1555".into()] },
        json!({"item": record_json.clone(), "numbers": ["+1555"]}),
    );
    // A message's records carry its media rows only when it has some.
    pin::<ledger::Message>(
        "/message",
        MessageQuery { message_id: "m1".into() },
        json!({"messageId": "m1"}),
        MessageRecords { events: vec![], conflicts: vec![], media: vec![record] },
        json!({"events": [], "conflicts": [], "media": [record_json]}),
    );
}

#[test]
fn opt_out_book_methods() {
    use bw_ledger_core::optout::*;
    use bw_ledger_core::wire::{NumberQuery, QueuedChange};
    let signal = Signal {
        number: "+15554440001".into(),
        scope_number: "*".into(),
        action: Action::OptOut,
        reason: Reason::Carrier4775,
        message_id: "m1".into(),
        event_ref: "m1:message-failed".into(),
        our_number: "+15551110000".into(),
    };
    pin::<opt_outs::Record>(
        "/record",
        RecordRequest { signals: vec![signal], now_ms: 5, reply: true },
        json!({"signals": [{"number": "+15554440001", "scopeNumber": "*", "action": "opt-out", "reason": "carrier-4775",
            "messageId": "m1", "eventRef": "m1:message-failed", "ourNumber": "+15551110000"}], "nowMs": 5, "reply": true}),
        Recorded { changed: 1 },
        json!({"changed": 1}),
    );
    pin::<opt_outs::Check>(
        "/check",
        CheckRequest { from: "+15551110000".into(), to: vec!["+15554440001".into()] },
        json!({"from": "+15551110000", "to": ["+15554440001"]}),
        CheckReply { opted_out: vec!["+15554440001".into()] },
        json!({"optedOut": ["+15554440001"]}),
    );
    let entry = HistoryEntry {
        state: State::OptedOut,
        opt_out: OptOut {
            number: None,
            number_hash: "h".into(),
            scope: Scope::Number,
            scope_number: Some("+15551110000".into()),
            reason: Reason::Operator,
            message_id: None,
            note: Some("by phone".into()),
            time: "2026-12-02T00:00:00.000Z".into(),
        },
    };
    pin::<opt_outs::Operator>(
        "/operator",
        OperatorChange { number: "+15554440001".into(), action: Action::OptIn, note: "web".into(), now_ms: 9 },
        json!({"number": "+15554440001", "action": "opt-in", "note": "web", "nowMs": 9}),
        Some(entry.clone()),
        json!({"state": "opted-out", "number": null, "numberHash": "h", "scope": "number", "scopeNumber": "+15551110000",
            "reason": "operator", "note": "by phone", "time": "2026-12-02T00:00:00.000Z"}),
    );
    pin::<opt_outs::History>(
        "/history",
        NumberQuery { number: "+1555".into() },
        json!({"number": "+1555"}),
        vec![],
        json!([]),
    );
    pin::<opt_outs::Erase>("/erase", NumberQuery { number: "+1555".into() }, json!({"number": "+1555"}), 1, json!(1));
    pin::<opt_outs::Counts>(
        "/counts",
        Empty {},
        json!({}),
        Counts { account: 2, number: 0 },
        json!({"account": 2, "number": 0}),
    );
    pin::<opt_outs::List>(
        "/list",
        ListQuery { number: None, cursor: Some("c".into()) },
        json!({"cursor": "c"}),
        ListPage { optouts: vec![], next_cursor: None },
        json!({"optouts": []}),
    );
    pin::<ledger::QueueChanges>(
        "/queue-changes",
        vec![QueuedChange {
            webhook_id: "w".into(),
            kind: bw_ledger_core::change::ChangeKind::OptOut,
            message_id: "optout:h".into(),
            doc: json!({}),
            target: None,
        }],
        json!([{"webhookId": "w", "kind": "optout.changed", "messageId": "optout:h", "doc": {}}]),
        1,
        json!(1),
    );
}

/// The targets' methods: what the registry and the pacers answer, and the
/// snapshot every shard is handed.
#[test]
fn target_methods_are_pinned() {
    use bw_ledger_core::targets::health::{Health, Report, TargetState};
    use bw_ledger_core::targets::pace::{Slot, SlotRequest};
    use bw_ledger_core::targets::{
        Listing, Outcome, StateEntry, StoredSecret, TargetPatch, TargetRecord, TargetSnapshot, WithSecret,
    };
    let record = TargetRecord {
        id: "crm".into(),
        url: "https://x".into(),
        events: Some(vec![bw_ledger_core::change::ChangeKind::Status]),
        rate_per_second: Some(2),
        description: None,
        paused: false,
        secrets: vec![StoredSecret { sealed: "aes256gcm:AAAA".into(), created_ms: 1, expires_ms: Some(9) }],
        created_ms: 1,
        updated_ms: 2,
    };
    let record_json = json!({"id": "crm", "url": "https://x", "events": ["message.status"], "ratePerSecond": 2,
        "paused": false, "secrets": [{"sealed": "aes256gcm:AAAA", "createdMs": 1, "expiresMs": 9}],
        "createdMs": 1, "updatedMs": 2});
    pin::<ledger::Targets>(
        "/targets",
        TargetSnapshot {
            version: 3,
            targets: vec![record.clone()],
            states: vec![StateEntry { id: "cfg".into(), state: TargetState::Failing, since_ms: 4 }],
        },
        json!({"version": 3, "targets": [record_json.clone()],
            "states": [{"id": "cfg", "state": "failing", "sinceMs": 4}]}),
        Empty {},
        json!({}),
    );
    pin::<ledger::OutboxDiscard>(
        "/outbox/discard",
        bw_ledger_core::outbox::DiscardRequest { target: "gone".into(), ids: None },
        json!({"target": "gone", "ids": null}),
        DiscardReply { discarded: 2 },
        json!({"discarded": 2}),
    );
    let shown = record.without_secrets();
    let shown_json = json!({"id": "crm", "url": "https://x", "events": ["message.status"], "ratePerSecond": 2,
        "paused": false, "secrets": [{"createdMs": 1, "expiresMs": 9}], "createdMs": 1, "updatedMs": 2});
    let mut health = Health::new("cfg", 4);
    health.state = TargetState::Disabled;
    let health_json = json!({"target": "cfg", "state": "disabled", "sinceMs": 4, "consecutiveFailures": 0,
        "firstFailureMs": null, "lastError": null, "lastErrorMs": null, "lastSuccessMs": null, "byHand": false,
        "incidentMs": null, "alertedDisabled": false, "exhaustedSentMs": null, "exhaustedWaiting": [],
        "exhaustedWaitingCount": 0});
    pin::<target_registry::List>(
        "/list",
        Empty {},
        json!({}),
        Listing { targets: vec![shown.clone()], health: vec![health] },
        json!({"targets": [shown_json.clone()], "health": [health_json]}),
    );
    let new = bw_ledger_core::targets::parse_new(br#"{"url": "https://x"}"#).unwrap();
    pin::<target_registry::Create>(
        "/create",
        new,
        json!({"id": null, "url": "https://x", "events": null, "ratePerSecond": null, "description": null}),
        Outcome::Done(WithSecret { target: shown.clone(), secret: "whsec_AAAA".into() }),
        json!({"outcome": "done", "value": {"target": shown_json.clone(), "secret": "whsec_AAAA"}}),
    );
    pin::<target_registry::Patch>(
        "/patch",
        target_registry::PatchRequest {
            id: "crm".into(),
            patch: TargetPatch { rate_per_second: Some(None), ..Default::default() },
        },
        json!({"id": "crm", "patch": {"ratePerSecond": null}}),
        Outcome::NotFound,
        json!({"outcome": "notFound"}),
    );
    pin::<target_registry::Rotate>(
        "/rotate",
        target_registry::TargetId { id: "cfg".into() },
        json!({"id": "cfg"}),
        Outcome::Conflict("edit FORWARD_TARGETS".into()),
        json!({"outcome": "conflict", "value": "edit FORWARD_TARGETS"}),
    );
    pin::<target_registry::SetPaused>(
        "/paused",
        target_registry::PausedRequest { id: "crm".into(), paused: true },
        json!({"id": "crm", "paused": true}),
        Outcome::Done(Empty {}),
        json!({"outcome": "done", "value": {}}),
    );
    pin::<target_registry::Report>(
        "/report",
        vec![Report {
            target: "crm".into(),
            failures: 2,
            first_failure_ms: Some(1),
            last_error: Some("target answered 500".into()),
            last_error_ms: Some(3),
            ..Report::default()
        }],
        json!([{"target": "crm", "succeededMs": null, "failures": 2, "firstFailureMs": 1,
            "lastError": "target answered 500", "lastErrorMs": 3, "exhausted": [], "exhaustedCount": 0}]),
        Empty {},
        json!({}),
    );
    pin::<target_registry::Settle>("/settle", Empty {}, json!({}), Empty {}, json!({}));
    drop(shown_json);
    pin::<target_registry::Delete>(
        "/delete",
        target_registry::TargetId { id: "crm".into() },
        json!({"id": "crm"}),
        Outcome::Done(Empty {}),
        json!({"outcome": "done", "value": {}}),
    );
    pin::<target_pacer::Slot>(
        "/slot",
        SlotRequest { rate_per_second: 2 },
        json!({"ratePerSecond": 2}),
        Slot { at_ms: 5, granted: true },
        json!({"atMs": 5, "granted": true}),
    );
    assert_eq!(target_pacer::name("crm"), target_pacer::name("crm"));
    assert!(target_pacer::name("crm").starts_with("pace-") && target_pacer::name("crm").len() == 37);
}

#[test]
fn shard_map_methods() {
    use bw_ledger_core::shard::{Ask, Layout, Layouts, Requested};
    let layouts = Layouts {
        in_force: Layout { count: 4, since_ms: 5 },
        layouts: vec![Layout { count: 4, since_ms: 5 }, Layout { count: 7, since_ms: 9 }],
        requested: vec![Requested { count: 3, first_seen_ms: 6, last_seen_ms: 8 }],
        valid_ms: 10,
        horizon_ms: 11,
    };
    let layouts_json = json!({"inForce": {"count": 4, "sinceMs": 5},
        "layouts": [{"count": 4, "sinceMs": 5}, {"count": 7, "sinceMs": 9}],
        "requested": [{"count": 3, "firstSeenMs": 6, "lastSeenMs": 8}], "validMs": 10, "horizonMs": 11});
    let ask = Ask { count: 7, version_ms: Some(12) };
    pin::<shard_map::Resolve>("/resolve", ask, json!({"count": 7, "versionMs": 12}), layouts, layouts_json);
    assert_eq!(shard_map::NAME, "shard-map");
}

/// Every method of every object answers at one path, and that path is
/// pinned by a test in this file (a new method without a pin fails here).
#[test]
fn every_method_is_pinned() {
    let source = include_str!("wire.rs");
    let objects: [(&str, Vec<&str>); 8] = [
        ("ledger", ledger::Call::ALL.iter().map(|c| c.path()).collect()),
        ("opt_outs", opt_outs::Call::ALL.iter().map(|c| c.path()).collect()),
        ("live_hub", live_hub::Call::ALL.iter().map(|c| c.path()).collect()),
        ("token_broker", token_broker::Call::ALL.iter().map(|c| c.path()).collect()),
        ("key_guard", key_guard::Call::ALL.iter().map(|c| c.path()).collect()),
        ("target_registry", target_registry::Call::ALL.iter().map(|c| c.path()).collect()),
        ("target_pacer", target_pacer::Call::ALL.iter().map(|c| c.path()).collect()),
        ("shard_map", shard_map::Call::ALL.iter().map(|c| c.path()).collect()),
    ];
    for (object, paths) in objects {
        let mut unique = paths.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), paths.len(), "{object}: two methods share a path");
        for path in paths {
            assert!(source.contains(&format!("pin::<{object}::")), "{object} has no pinned method");
            assert!(source.contains(&format!("\"{path}\",")), "{object} {path} is not pinned");
        }
    }
    assert_eq!(ledger::Call::from_path("/ingest"), Some(ledger::Call::Ingest));
    assert_eq!(ledger::Call::from_path("/nope"), None);
}

#[test]
fn ledger_outcomes_and_metrics() {
    use bw_ledger_core::metrics::ShardMetrics;
    use bw_ledger_core::stats::{OutcomeQuery, ShardOutcomes};
    pin::<ledger::Outcomes>(
        "/outcomes",
        OutcomeQuery { from_ms: 7 },
        json!({"fromMs": 7}),
        ShardOutcomes { hours: vec![(3_600_000, "delivered".into(), 2)], error_codes: vec![(4720, 1)] },
        json!({"hours": [[3_600_000, "delivered", 2]], "errorCodes": [[4720, 1]]}),
    );
    let figures = ShardMetrics {
        stored: 1,
        duplicates: 2,
        conflicts: 3,
        quarantined: 4,
        recipients: [("delivered".to_owned(), 5)].into(),
        outbox: vec![("crm".into(), "pending".into(), 6)],
        media: [("archived".to_owned(), 7)].into(),
    };
    pin::<ledger::Metrics>(
        "/metrics",
        Empty {},
        json!({}),
        figures,
        json!({"stored": 1, "duplicates": 2, "conflicts": 3, "quarantined": 4, "recipients": {"delivered": 5},
            "outbox": [["crm", "pending", 6]], "media": {"archived": 7}}),
    );
}
