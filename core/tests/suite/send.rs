//! The send proxy's pure rules: validation, client keys, CORS,
//! idempotency and token freshness.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bw_ledger_core::auth::AuthOutcome;
use bw_ledger_core::client::{authenticate_client, parse_client_keys, preflight_headers};
use bw_ledger_core::event::{accepted_event, EventKind};
use bw_ledger_core::idempotency::{
    decide_begin, parse_key, saves_outcome, scope_key, BeginDecision, IdempotencyRecord, SavedResponse,
    IDEMPOTENCY_TTL_MS,
};
use bw_ledger_core::identity::sha256_hex;
use bw_ledger_core::oauth::{basic_header, CachedToken, UpstreamAuth};
use bw_ledger_core::send::{is_e164, is_sender_id, validate_send, FieldError};
use serde_json::json;

const NOW: i64 = 1_795_187_047_450; // 2026-11-20T15:04:07.450Z

fn check(body: serde_json::Value) -> Result<serde_json::Value, Vec<FieldError>> {
    validate_send(body.to_string().as_bytes(), NOW, Some("app-default")).map(|v| v.body)
}

fn fields(body: serde_json::Value) -> Vec<String> {
    check(body).expect_err("should be rejected").into_iter().map(|e| e.field_name).collect()
}

fn ok_body() -> serde_json::Value {
    json!({"to": ["+15552220001"], "from": "+15551110000", "text": "hello"})
}

#[test]
fn a_minimal_body_passes_and_gets_the_default_application_id() {
    let body = check(ok_body()).unwrap();
    assert_eq!(
        body,
        json!({"applicationId": "app-default", "to": ["+15552220001"], "from": "+15551110000", "text": "hello"})
    );
    let mut explicit = ok_body();
    explicit["applicationId"] = json!("app-x");
    assert_eq!(check(explicit).unwrap()["applicationId"], "app-x");
}

#[test]
fn every_field_is_forwarded_and_nulls_and_unknown_fields_are_dropped() {
    let body = json!({"applicationId": "a", "to": ["+15552220001", "+15552220002"], "from": "+15551110000",
        "text": "t", "media": ["https://example.com/a.jpg"], "tag": "x", "priority": "high",
        "expiration": "2026-11-21T00:00:00Z", "unknown": 1, "channel": null});
    let out = check(body).unwrap();
    assert_eq!(
        out,
        json!({"applicationId": "a", "to": ["+15552220001", "+15552220002"], "from": "+15551110000",
        "text": "t", "media": ["https://example.com/a.jpg"], "tag": "x", "priority": "high",
        "expiration": "2026-11-21T00:00:00Z"})
    );
}

#[test]
fn from_is_e164_or_an_alphanumeric_sender_id() {
    for ok in ["+15551110000", "+442071838750", "MyBrand", "Brand 2", "A1234567890"] {
        let mut b = ok_body();
        b["from"] = json!(ok);
        assert!(check(b).is_ok(), "{ok}");
    }
    for bad in
        ["15551110000", "+0555", "+1", "12345678901", "TooLongBrand1", "", " Brand", "Br@nd", "+1555111000012345"]
    {
        let mut b = ok_body();
        b["from"] = json!(bad);
        assert_eq!(fields(b), ["from"], "{bad}");
    }
    let mut missing = ok_body();
    missing.as_object_mut().unwrap().remove("from");
    assert_eq!(fields(missing), ["from"]);
    assert!(is_e164("+15551110000") && !is_e164("+1555111000a"));
    assert!(is_sender_id("ACME") && !is_sender_id("12345"));
}

#[test]
fn one_to_ten_unique_e164_recipients() {
    let many: Vec<String> = (0..10).map(|i| format!("+1555222000{i}")).collect();
    let mut b = ok_body();
    b["to"] = json!(many);
    assert!(check(b.clone()).is_ok());
    let mut eleven = many.clone();
    eleven.push("+15552229999".into());
    b["to"] = json!(eleven);
    assert_eq!(fields(b.clone()), ["to"]);
    b["to"] = json!([]);
    assert_eq!(fields(b.clone()), ["to"]);
    b["to"] = json!("+15552220001");
    assert_eq!(fields(b.clone()), ["to"]);
    b["to"] = json!(["+15552220001", "+15552220001"]);
    assert_eq!(fields(b.clone()), ["to[1]"]);
    b["to"] = json!(["+15552220001", "5552220002", 7]);
    assert_eq!(fields(b), ["to[1]", "to[2]"]);
}

#[test]
fn text_or_media_and_their_limits() {
    let mut b = ok_body();
    b.as_object_mut().unwrap().remove("text");
    assert_eq!(fields(b.clone()), ["text"]);
    b["text"] = json!("");
    assert_eq!(fields(b.clone()), ["text"]);
    b["media"] = json!(["https://example.com/cat.gif"]);
    assert!(check(b.clone()).is_ok(), "media alone is enough");

    let mut t = ok_body();
    t["text"] = json!("é".repeat(2048));
    assert!(check(t.clone()).is_ok(), "2048 characters, not bytes");
    t["text"] = json!("x".repeat(2049));
    assert_eq!(fields(t), ["text"]);

    let mut m = ok_body();
    m["media"] = json!([format!("https://example.com/{}", "a".repeat(4096 - 20))]);
    assert!(check(m.clone()).is_ok());
    m["media"] = json!([format!("https://example.com/{}", "a".repeat(4096))]);
    assert_eq!(fields(m.clone()), ["media[0]"]);
    m["media"] = json!(["ftp://example.com/x", 3]);
    assert_eq!(fields(m.clone()), ["media[0]", "media[1]"]);
    m["media"] = json!("https://example.com/x");
    assert_eq!(fields(m.clone()), ["media"]);

    // At most 10 media URLs: each is a download the archive makes.
    let ten: Vec<String> = (0..10).map(|i| format!("https://example.com/{i}.png")).collect();
    m["media"] = json!(ten);
    assert!(check(m.clone()).is_ok());
    let eleven: Vec<String> = (0..11).map(|i| format!("https://example.com/{i}.png")).collect();
    m["media"] = json!(eleven);
    assert_eq!(fields(m), ["media"]);
}

#[test]
fn tag_priority_and_expiration() {
    let mut b = ok_body();
    b["tag"] = json!("t".repeat(1024));
    assert!(check(b.clone()).is_ok());
    b["tag"] = json!("t".repeat(1025));
    assert_eq!(fields(b), ["tag"]);

    for (p, ok) in [("default", true), ("high", true), ("low", false), ("HIGH", false)] {
        let mut b = ok_body();
        b["priority"] = json!(p);
        assert_eq!(check(b).is_ok(), ok, "{p}");
    }

    for (exp, ok) in [
        ("2026-11-20T15:05:00Z", true),
        ("2026-11-20T16:05:00+01:00", false), // 15:05 in UTC... equals, see below
        ("2026-11-20T15:04:07.450Z", false),
        ("2026-11-19T00:00:00Z", false),
        ("tomorrow", false),
        ("2026-11-21", false),
    ] {
        let mut b = ok_body();
        b["expiration"] = json!(exp);
        let result = check(b);
        if exp == "2026-11-20T16:05:00+01:00" {
            assert!(result.is_ok(), "offsets are honoured: 16:05+01:00 is 15:05Z, in the future");
        } else {
            assert_eq!(result.is_ok(), ok, "{exp}");
        }
    }
}

#[test]
fn every_failed_rule_is_reported_at_once() {
    let body = json!({"to": [], "from": "bad!", "priority": "urgent", "tag": 5, "expiration": "nope"});
    let mut got = fields(body);
    got.sort();
    assert_eq!(got, ["expiration", "from", "priority", "tag", "text", "to"]);
    assert_eq!(fields(json!([1, 2])), ["body"]);
    assert!(validate_send(b"not json", NOW, None).is_err());
}

#[test]
fn a_missing_application_id_without_a_default_is_an_error() {
    let err = validate_send(ok_body().to_string().as_bytes(), NOW, None).unwrap_err();
    assert_eq!(err.iter().map(|e| e.field_name.as_str()).collect::<Vec<_>>(), ["applicationId"]);
}

fn keys() -> Vec<bw_ledger_core::client::ClientKey> {
    let json = json!([
        {"id": "web", "key_sha256": sha256_hex(b"web-key").to_uppercase(), "allowed_from": ["+15551110000"], "allowed_origins": ["https://app.example.com"]},
        {"id": "ops", "key_sha256": sha256_hex(b"ops-key"), "allowed_from": ["+15551110001", "ACME"]}
    ]);
    parse_client_keys(&json.to_string()).unwrap()
}

#[test]
fn client_keys_by_bearer_or_basic_password() {
    let keys = keys();
    assert_eq!(authenticate_client(Some("Bearer web-key"), &keys).unwrap().id, "web");
    assert_eq!(authenticate_client(Some(&basic_header("anyone", "ops-key")), &keys).unwrap().id, "ops");
    assert_eq!(authenticate_client(None, &keys).unwrap_err(), AuthOutcome::Missing);
    for bad in ["Bearer nope", "Bearer ", "Token web-key", &basic_header("web-key", "")] {
        assert_eq!(authenticate_client(Some(bad), &keys).unwrap_err(), AuthOutcome::Rejected, "{bad}");
    }
    let web = &keys[0];
    assert!(web.may_send_from("+15551110000") && !web.may_send_from("+15551110001"));
    assert!(!format!("{web:?}").contains(&web.key_sha256), "digests are not printed");
}

/// Readers: the API token reads everything; a client key reads its own
/// numbers; anything else is refused.
#[test]
fn the_api_token_or_else_a_client_key_gives_the_reader_scope() {
    use bw_ledger_core::client::{reader, Reader};
    let keys = keys();
    let op = reader(Some("Bearer api-token"), Some("api-token"), &keys).unwrap();
    assert_eq!((op.clone(), op.scope()), (Reader::Operator, None));
    let key = reader(Some("Bearer web-key"), Some("api-token"), &keys).unwrap();
    assert_eq!(key.scope(), Some(vec!["+15551110000".to_string()]));
    assert_eq!(reader(Some("Bearer web-key"), None, &keys).unwrap().scope(), key.scope(), "no API token configured");
    assert_eq!(Reader::from(None), Reader::Operator);
    assert_eq!(Reader::from(Some(&keys[0])), Reader::Key(&keys[0]));
    assert_eq!(reader(Some("Bearer api-token"), None, &keys).unwrap_err(), AuthOutcome::Rejected);
    assert_eq!(reader(Some("Bearer wrong"), Some("api-token"), &keys).unwrap_err(), AuthOutcome::Rejected);
    assert_eq!(reader(None, Some("api-token"), &keys).unwrap_err(), AuthOutcome::Missing);
}

#[test]
fn client_keys_config_is_checked() {
    assert!(parse_client_keys("nope").is_err());
    assert!(parse_client_keys(r#"[{"id":"x","key_sha256":"abc"}]"#).is_err());
    let star = json!([{"id": "x", "key_sha256": sha256_hex(b"k"), "allowed_origins": ["*"]}]);
    assert!(parse_client_keys(&star.to_string()).is_err(), "no wildcard origins");
}

#[test]
fn preflight_only_for_allowed_origins_and_never_a_wildcard() {
    let keys = keys();
    let h = preflight_headers("https://app.example.com", &keys).unwrap();
    let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("Access-Control-Allow-Origin"), Some("https://app.example.com"));
    assert!(get("Access-Control-Allow-Headers").unwrap().contains("Idempotency-Key"));
    assert!(get("Access-Control-Allow-Headers").unwrap().contains("Authorization"));
    assert!(preflight_headers("https://evil.example.com", &keys).is_none());
    assert!(preflight_headers("", &keys).is_none());
}

#[test]
fn idempotency_state_machine() {
    let saved = SavedResponse { status: 202, body: "{}".into(), content_type: None, retry_after: None };
    let done = IdempotencyRecord { body_hash: "h".into(), created_ms: 0, response: Some(saved.clone()) };
    let flying = IdempotencyRecord { response: None, ..done.clone() };
    assert_eq!(decide_begin(None, "h", 5), BeginDecision::Proceed);
    assert_eq!(decide_begin(Some(&done), "h", 5), BeginDecision::Replay { response: saved });
    assert_eq!(decide_begin(Some(&done), "other", 5), BeginDecision::Mismatch);
    assert_eq!(decide_begin(Some(&flying), "h", 5), BeginDecision::InFlight);
    assert_eq!(decide_begin(Some(&flying), "other", 5), BeginDecision::Mismatch);
    assert_eq!(decide_begin(Some(&done), "other", IDEMPOTENCY_TTL_MS), BeginDecision::Proceed, "expired after 24 h");
    assert_eq!(
        decide_begin(Some(&done), "h", IDEMPOTENCY_TTL_MS - 1),
        BeginDecision::Replay { response: done.response.clone().unwrap() }
    );
}

#[test]
fn which_outcomes_are_saved() {
    for (status, saved) in
        [(202, true), (400, false), (401, false), (429, false), (500, true), (502, true), (504, true)]
    {
        assert_eq!(saves_outcome(status), saved, "{status}");
    }
    assert!(parse_key("abc-123").is_ok());
    assert!(parse_key("").is_err() && parse_key("has space").is_err() && parse_key(&"k".repeat(256)).is_err());
    assert_ne!(scope_key("a", "b:c"), scope_key("a:b", "c"));
}

#[test]
fn tokens_refresh_sixty_seconds_before_expiry() {
    let t =
        CachedToken::from_response(br#"{"access_token":"tok","token_type":"Bearer","expires_in":3600}"#, 1000).unwrap();
    assert_eq!(t.expires_at_ms, 1000 + 3_600_000);
    assert!(t.is_fresh(1000 + 3_540_000 - 1));
    assert!(!t.is_fresh(1000 + 3_540_000));
    assert!(CachedToken::from_response(br#"{"access_token":""}"#, 0).is_err());
    assert!(CachedToken::from_response(b"<html>", 0).is_err());
    assert!(!format!("{t:?}").contains("tok\""), "the token is not printed");
}

#[test]
fn oauth_is_preferred_and_basic_is_the_fallback() {
    let s = |v: &str| Some(v.to_string());
    assert!(matches!(UpstreamAuth::choose(s("id"), s("sec"), s("u"), s("p")), Some(UpstreamAuth::OAuth { .. })));
    assert!(matches!(UpstreamAuth::choose(None, None, s("u"), s("p")), Some(UpstreamAuth::Basic { .. })));
    assert!(matches!(UpstreamAuth::choose(s(""), None, s("u"), s("p")), Some(UpstreamAuth::Basic { .. })));
    assert!(
        UpstreamAuth::choose(s("id"), None, s("u"), s("p")).is_none(),
        "a half-configured OAuth is an error, not a silent fallback"
    );
    assert!(UpstreamAuth::choose(None, None, None, None).is_none());
    assert_eq!(basic_header("u", "p"), "Basic dTpw");
}

#[test]
fn an_accepted_send_becomes_a_ledger_event_with_its_text() {
    let body = br#"{"id":"1589228074636lm4k2je7j7jklbn2","owner":"+15551110000","applicationId":"a","time":"2026-11-20T15:04:04.980Z","segmentCount":1,"direction":"out","to":["+15552220001"],"from":"+15551110000","text":"Hello","tag":"t"}"#;
    let ev = accepted_event(body).unwrap();
    assert_eq!(ev.kind, EventKind::MessageAccepted);
    assert_eq!(ev.kind.as_str(), "message-accepted");
    assert_eq!(ev.message_id, "1589228074636lm4k2je7j7jklbn2");
    assert_eq!(ev.time.as_deref(), Some("2026-11-20T15:04:04.980Z"));
    assert_eq!(ev.message()["text"], "Hello");
    assert!(accepted_event(b"{}").is_err(), "no id, nothing to attach to");
}

#[test]
fn opt_out_override_is_read_but_never_forwarded() {
    let mut b = ok_body();
    let plain = validate_send(b.to_string().as_bytes(), NOW, Some("app")).unwrap();
    assert!(!plain.opt_out_override);
    b["optOutOverride"] = json!(true);
    let over = validate_send(b.to_string().as_bytes(), NOW, Some("app")).unwrap();
    assert!(over.opt_out_override);
    assert_eq!(over.body.get("optOutOverride"), None, "Bandwidth never sees it");
    b["optOutOverride"] = json!("yes");
    assert!(!validate_send(b.to_string().as_bytes(), NOW, Some("app")).unwrap().opt_out_override);
}
