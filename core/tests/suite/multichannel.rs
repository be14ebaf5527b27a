//! Multi-Channel: the send's rules, the per-channel fold of a recipient's
//! events, read receipts, and rich replies tied to their message.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use crate::common::*;
use bw_ledger_core::channel::{tied_copy, Channel};
use bw_ledger_core::ingest::plan;
use bw_ledger_core::list::rows_for;
use bw_ledger_core::multichannel::{accepted_message, validate_multichannel};
use bw_ledger_core::projection::{project, MessageView, RecipientState};
use bw_ledger_core::send::Endpoint;
use bw_ledger_core::shard::{shard_for, Placement};
use bw_ledger_core::{parse_callback_body, CallbackEvent, ParsedCallback};

const NOW: i64 = 1_795_000_000_000;
const ID: &str = "mc-1";

fn status(kind: &str, to: &str, channel: &str, second: u32, extra: Value) -> Value {
    let from = if channel == "RBM" { "Agent" } else { "+15551110000" };
    let mut ev = json!({
        "type": kind, "time": format!("2026-12-02T10:00:{second:02}.000Z"), "to": to, "description": kind,
        "message": {"id": ID, "owner": "Agent", "applicationId": "app", "time": "2026-12-02T10:00:00.000Z",
            "segmentCount": 1, "direction": "out", "to": [to], "from": from, "text": "", "channel": channel},
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        ev[k] = v;
    }
    ev
}

fn accepted(to: &[&str]) -> Value {
    let body = json!({"links": [], "errors": [], "data": {"id": ID, "time": "2026-12-02T10:00:00.000Z",
        "direction": "out", "to": to, "channelList": [
            {"channel": "RBM", "from": "Agent", "applicationId": "app", "owner": "Agent", "content": {"text": "Rich hello"}},
            {"channel": "SMS", "from": "+15551110000", "applicationId": "app", "owner": "+15551110000", "content": {"text": "Plain hello"}}]}});
    let message = accepted_message(body.to_string().as_bytes()).unwrap();
    let ev = bw_ledger_core::event::accepted_event(&message).unwrap();
    ev.raw
}

fn parsed(items: &[Value]) -> Vec<CallbackEvent> {
    parse_callback_body(Value::Array(items.to_vec()).to_string().as_bytes()).events
}

fn view_of(items: &[Value]) -> MessageView {
    project(ID, &stored(&parsed(items))).unwrap()
}

#[test]
fn rbm_failed_then_sms_delivered_is_delivered_by_sms_in_any_order() {
    let to = "+15552220001";
    let items = [
        accepted(&[to]),
        status("message-failed", to, "RBM", 1, json!({"errorCode": 4770})),
        status("message-sending", to, "SMS", 2, json!({})),
        status("message-delivered", to, "SMS", 3, json!({})),
    ];
    for order in [vec![0, 1, 2, 3], vec![3, 2, 1, 0], vec![2, 0, 3, 1]] {
        let v = view_of(&order.iter().map(|i| items[*i].clone()).collect::<Vec<_>>());
        let r = &v.recipients[0];
        assert_eq!(r.status, RecipientState::Delivered, "order {order:?}");
        assert_eq!(r.channel, Some(Channel::Sms));
        assert!(r.flags.is_empty(), "not a contradiction: {:?}", r.flags);
        let history: Vec<(Channel, RecipientState, Option<i64>)> =
            r.channel_history.iter().map(|a| (a.channel, a.status, a.error_code)).collect();
        assert_eq!(
            history,
            vec![(Channel::Rbm, RecipientState::Failed, Some(4770)), (Channel::Sms, RecipientState::Delivered, None)]
        );
        assert_eq!(v.text.as_deref(), Some("Rich hello"), "the text of the send, from its channel list");
        let rows = rows_for(&v, 0);
        assert_eq!((rows[0].channel.as_deref(), rows[0].message_type.as_str()), (Some("SMS"), "sms"));
        assert_eq!(rows[0].source_tn, "+15551110000", "the sender the SMS went out as");
    }
}

#[test]
fn a_failed_channel_with_another_to_try_is_sending_and_the_last_failure_is_final() {
    let to = "+15552220001";
    let failed_rbm = status("message-failed", to, "RBM", 1, json!({"errorCode": 4770}));
    let v = view_of(&[accepted(&[to]), failed_rbm.clone()]);
    assert_eq!(v.recipients[0].status, RecipientState::Sending, "SMS is still to try");
    assert_eq!(v.recipients[0].error_code, None, "the RBM failure's code stays in the history");
    assert_eq!(v.recipients[0].channel_history[0].error_code, Some(4770));
    // The send's channel list counts wherever its record sorts.
    let mut early = failed_rbm.clone();
    early["time"] = json!("2026-12-02T09:59:59.000Z");
    assert_eq!(view_of(&[early, accepted(&[to])]).recipients[0].status, RecipientState::Sending);
    let failed_sms = status("message-failed", to, "SMS", 2, json!({"errorCode": 4720}));
    let v = view_of(&[accepted(&[to]), failed_rbm.clone(), failed_sms]);
    assert_eq!(v.recipients[0].status, RecipientState::Failed);
    assert_eq!(v.recipients[0].error_code, Some(4720));
    // Without the send's channel list (a message sent around the proxy), a
    // failure is the outcome until another channel says otherwise.
    let v = view_of(&[failed_rbm]);
    assert_eq!(v.recipients[0].status, RecipientState::Failed);
}

#[test]
fn read_sets_read_time_from_event_time_and_stays_delivered_for_bandwidth() {
    let to = "+15552220001";
    let v = view_of(&[
        accepted(&[to]),
        status("message-delivered", to, "RBM", 1, json!({})),
        status("message-read", to, "RBM", 9, json!({"eventTime": "2026-12-02T10:00:05.250Z"})),
    ]);
    let r = &v.recipients[0];
    assert_eq!((r.status, r.channel), (RecipientState::Read, Some(Channel::Rbm)));
    assert_eq!(r.read_time.as_deref(), Some("2026-12-02T10:00:05.250Z"));
    let row = &rows_for(&v, 0)[0];
    assert_eq!((row.message_status.as_str(), row.message_type.as_str()), ("DELIVERED", "rcs"));
    assert_eq!(row.read_time_ms, bw_ledger_core::time::parse_rfc3339_ms("2026-12-02T10:00:05.250Z"));
}

#[test]
fn a_reply_is_stored_under_both_ids_in_one_plan_and_shows_only_in_the_originals_timeline() {
    let reply = json!({"type": "suggestion-response", "time": "2026-12-02T10:01:00.000Z", "to": "Agent",
        "description": "Suggestion response received", "message": {"id": "reply-1", "owner": "Agent", "applicationId": "app",
        "time": "2026-12-02T10:01:00.000Z", "direction": "in", "to": ["Agent"], "from": "+15552220001", "channel": "RBM",
        "suggestionResponse": {"text": "Yes", "postbackData": "eWVz", "pairedMessageId": ID}}});
    let events = parsed(std::slice::from_ref(&reply));
    let copy = tied_copy(&events[0]).expect("tied to its message");
    assert_eq!((copy.message_id.as_str(), copy.recipient.as_deref()), (ID, Some("+15552220001")));
    // Both in the same all-or-nothing plan, each on its message's shard.
    let batches = plan(&ParsedCallback { events: events.clone(), rejected: vec![] }, &Placement::fixed(16), 0);
    let where_is =
        |id: &str| batches.iter().find(|(_, b)| b.events.iter().any(|e| e.message_id == id)).map(|(s, _)| *s);
    assert_eq!(where_is("reply-1"), Some(shard_for("reply-1", 16)));
    assert_eq!(where_is(ID), Some(shard_for(ID, 16)));

    let to = "+15552220001";
    let original = [accepted(&[to]), status("message-delivered", to, "RBM", 1, json!({}))];
    let mut with_reply = parsed(&original);
    with_reply.push(copy);
    let v = project(ID, &stored(&with_reply)).unwrap();
    assert_eq!(v.recipients.len(), 1, "the reply adds no recipient");
    assert_eq!(v.recipients[0].status, RecipientState::Delivered);
    assert_eq!(v.text.as_deref(), Some("Rich hello"));
    assert_eq!(v.direction.as_deref(), Some("out"));
    let entry = v.timeline.iter().find(|t| t.kind.as_str() == "suggestion-response").unwrap();
    assert_eq!(entry.reply_message_id.as_deref(), Some("reply-1"));

    let own = project("reply-1", &stored(&events)).unwrap();
    assert_eq!(own.paired_message_id.as_deref(), Some(ID));
    assert_eq!(own.text.as_deref(), Some("Yes"));
    assert_eq!(own.recipients[0].status, RecipientState::Received);
    // A reply with no paired message, or to itself, has no copy.
    let mut lone = reply;
    lone["message"]["suggestionResponse"]["pairedMessageId"] = json!("reply-1");
    assert!(tied_copy(&parsed(&[lone])[0]).is_none());
}

#[test]
fn the_send_checks_every_entry_and_keeps_a_sender_per_entry() {
    let body = json!({"to": "+15552220001", "channelList": [
        {"channel": "RBM", "from": "BandwidthRBM", "content": {"text": "hi", "suggestions": [{"type": "REPLY", "text": "Yes"}]}},
        {"channel": "SMS", "from": "+15551110000", "applicationId": "app-sms", "content": {"text": "hi"}}],
        "tag": "t"});
    let v = validate_multichannel(body.to_string().as_bytes(), NOW, Some("app-default")).unwrap();
    assert_eq!(v.endpoint, Endpoint::MultiChannel);
    assert_eq!(v.to, vec!["+15552220001"]);
    let senders: Vec<(&str, &str)> = v.senders.iter().map(|s| (s.from.as_str(), s.application_id.as_str())).collect();
    assert_eq!(senders, vec![("BandwidthRBM", "app-default"), ("+15551110000", "app-sms")]);
    assert_eq!(v.body["to"], "+15552220001", "`to` passes as sent");
    assert_eq!(v.body["channelList"][0]["applicationId"], "app-default");
    assert_eq!(v.body["channelList"][0]["content"]["suggestions"][0]["text"], "Yes", "rich content passes as sent");

    let bad = json!({"to": ["+15552220001", "+15552220001"], "channelList": [
        {"channel": "FAX", "from": "+15551110000", "content": {"text": "x"}},
        {"channel": "SMS", "from": "not a sender id!", "content": {}},
        {"channel": "MMS", "from": "+15551110000", "content": {"media": [{"fileUrl": "ftp://x"}]}},
        {"channel": "RBM", "from": "Agent", "content": {"text": "x".repeat(3271)}}]});
    let fields: Vec<String> = validate_multichannel(bad.to_string().as_bytes(), NOW, Some("app"))
        .unwrap_err()
        .into_iter()
        .map(|e| e.field_name)
        .collect();
    assert_eq!(
        fields,
        vec![
            "to[1]",
            "channelList[0].channel",
            "channelList[1].from",
            "channelList[1].content",
            "channelList[2].content.media[0].fileUrl",
            "channelList[3].content.text"
        ]
    );
    let five = json!({"to": "+15552220001", "channelList": vec![json!({"channel": "SMS", "from": "+15551110000", "content": {"text": "x"}}); 5]});
    let err = validate_multichannel(five.to_string().as_bytes(), NOW, Some("app")).unwrap_err();
    assert_eq!(err[0].field_name, "channelList");
    let no_app = json!({"to": "+15552220001", "channelList": [{"channel": "SMS", "from": "+15551110000", "content": {"text": "x"}}]});
    let err = validate_multichannel(no_app.to_string().as_bytes(), NOW, None).unwrap_err();
    assert_eq!(err[0].field_name, "channelList[0].applicationId");
}
