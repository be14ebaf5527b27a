//! The media archive's rules: which URLs are archived, their names, where
//! credentials may go, and the retry window.

use bw_ledger_core::change::ChangeKind;
use bw_ledger_core::forward::parse_targets;
use bw_ledger_core::media::*;
use bw_ledger_core::projection::project;
use bw_ledger_core::records::MessageRecords;
use serde_json::json;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const BASE: &str = "https://messaging.bandwidth.com/api/v2";

#[test]
fn inbound_and_accepted_messages_are_archived_status_callbacks_are_not() {
    let raw = json!({"type": "message-received", "message": {"id": "m", "media": [
        "https://messaging.bandwidth.com/api/v2/users/9/media/abc/0/a.png",
        "https://messaging.bandwidth.com/api/v2/users/9/media/abc/1/a.smil", 7, null]}})
    .to_string();
    assert_eq!(urls_to_archive(&"message-received".into(), &raw).len(), 2);
    assert_eq!(urls_to_archive(&"message-accepted".into(), &raw).len(), 2);
    assert!(urls_to_archive(&"message-delivered".into(), &raw).is_empty());
    assert!(urls_to_archive(&"message-received".into(), r#"{"message":{"media":"x"}}"#).is_empty());
    assert!(urls_to_archive(&"message-received".into(), r#"{"message":{}}"#).is_empty());
    assert!(urls_to_archive(&"message-received".into(), "not json").is_empty());
}

#[test]
fn bandwidth_media_is_named_by_its_media_path_others_by_host_and_path() {
    let bw = name_of("https://messaging.bandwidth.com/api/v2/users/9/media/abc-def/0/bw.png", BASE).unwrap();
    assert_eq!(bw.path, "bw/abc-def/0/bw.png");
    let ext = name_of("https://cdn.example.com/pics/a.jpg", BASE).unwrap();
    assert_eq!(ext.path, "ext/cdn.example.com/pics/a.jpg");
    // A `/media/` path on another origin is not Bandwidth's.
    let lookalike = name_of("https://evil.example/api/v2/users/9/media/x.png", BASE).unwrap();
    assert_eq!(lookalike.path, "ext/evil.example/api/v2/users/9/media/x.png");
    // Queries are kept apart by a hash; ports by the host part.
    let q1 = name_of("https://cdn.example.com/a.jpg?sig=1", BASE).unwrap().path;
    let q2 = name_of("https://cdn.example.com/a.jpg?sig=2", BASE).unwrap().path;
    assert_ne!(q1, q2);
    assert!(q1.starts_with("ext/cdn.example.com/a.jpg~"));
    assert_eq!(name_of("http://127.0.0.1:8080/x/y.gif", BASE).unwrap().path, "ext/127.0.0.1_8080/x/y.gif");
    // Names come from the URL as parsed: dot segments are resolved.
    assert_eq!(name_of("https://cdn.example.com/a/%2E%2E/b.png", BASE).unwrap().path, "ext/cdn.example.com/b.png");
    assert!(name_of("ftp://cdn.example.com/a.png", BASE).is_err());
    assert!(name_of("data:image/png;base64,AAAA", BASE).is_err());
    assert!(name_of("not a url", BASE).is_err());
}

#[test]
fn credentials_go_only_to_the_api_origin() {
    assert!(same_origin("https://messaging.bandwidth.com/api/v2/users/9/media/a", BASE));
    assert!(!same_origin("http://messaging.bandwidth.com/api/v2/users/9/media/a", BASE));
    assert!(!same_origin("https://messaging.bandwidth.com:8443/api/v2/users/9/media/a", BASE));
    assert!(!same_origin("https://messaging.bandwidth.com.evil.example/x", BASE));
    assert!(!same_origin("https://user@evil.example/x", BASE));
    assert!(same_origin("http://127.0.0.1:4000/api/v2/users/9/media/a", "http://127.0.0.1:4000/api/v2"));
    assert!(!same_origin("http://127.0.0.1:4001/api/v2/users/9/media/a", "http://127.0.0.1:4000/api/v2"));
}

#[test]
fn redirects_resolve_relative_locations_and_refuse_other_schemes() {
    assert_eq!(redirect_target("https://a.example/x/y", "/z").as_deref(), Some("https://a.example/z"));
    assert_eq!(redirect_target("https://a.example/x/y", "https://b.example/q").as_deref(), Some("https://b.example/q"));
    assert_eq!(redirect_target("https://a.example/x/y", "file:///etc/passwd"), None);
}

#[test]
fn worker_paths_round_trip() {
    let url = worker_path("m/1 x", "bw/abc/0/a.png");
    assert_eq!(url, "/media/m%2F1%20x/bw/abc/0/a.png");
    let rest = url.strip_prefix("/media/").unwrap();
    assert_eq!(parse_worker_path(rest), Some(("m/1 x".to_owned(), "bw/abc/0/a.png".to_owned())));
    assert_eq!(parse_worker_path("only-id"), None);
    assert_eq!(parse_worker_path("/x"), None);
    assert_eq!(object_key("m1", "bw/a.png"), "m1/bw/a.png");
}

#[test]
fn content_type_comes_from_the_server_else_the_extension() {
    assert_eq!(content_type(Some("image/png"), "bw/a.bin"), "image/png");
    assert_eq!(content_type(Some("application/octet-stream"), "bw/a.smil"), "application/smil");
    assert_eq!(content_type(None, "bw/x/0/PIC.JPG"), "image/jpeg");
    assert_eq!(content_type(None, "bw/x/0/noext"), "application/octet-stream");
}

#[test]
fn retries_back_off_until_the_window_closes_then_fail() {
    let s = schedule(Some("1000"), Some("4000"), Some("10000"));
    assert_eq!((s.base_ms, s.max_ms, s.give_up_ms), (1000, 4000, 10_000));
    let d = schedule(None, Some("x"), Some("-5"));
    assert_eq!(d.give_up_ms, WINDOW_MS);
    let retry = Attempt::Retry("answered 503".into());
    // Full jitter 1.0: the whole step.
    assert_eq!(next_state(&s, &retry, 1, 0, 100, 0.999_999), (MediaStatus::Pending, 1100));
    assert_eq!(next_state(&s, &retry, 3, 0, 100, 0.999_999), (MediaStatus::Pending, 4100));
    // The last retry lands when the window closes, not later.
    assert_eq!(next_state(&s, &retry, 5, 0, 9_000, 0.999_999), (MediaStatus::Pending, 10_000));
    assert_eq!(next_state(&s, &retry, 6, 0, 10_000, 0.5), (MediaStatus::Failed, 10_000));
    assert_eq!(next_state(&s, &Attempt::Fail("too large".into()), 1, 0, 100, 0.5), (MediaStatus::Failed, 100));
    let ok = Attempt::Archived { content_type: "image/png".into(), size: 1, sha256: "00".into() };
    assert_eq!(next_state(&s, &ok, 1, 0, 100, 0.5), (MediaStatus::Archived, 100));
}

fn record(path: &str, source: &str, status: MediaStatus) -> MediaRecord {
    let archived = status == MediaStatus::Archived;
    MediaRecord {
        message_id: "m1".into(),
        path: path.into(),
        source_url: source.into(),
        status,
        content_type: archived.then(|| "image/png".into()),
        size: archived.then_some(3),
        sha256: archived.then(|| "ab".into()),
        last_error: Some("answered 404".into()),
    }
}

#[test]
fn a_message_lists_its_archive_in_the_order_of_its_media() {
    let ev = json!({"type": "message-received", "time": "2026-11-20T17:30:00Z", "to": "+15551110000",
        "message": {"id": "m1", "direction": "in", "from": "+15554440001", "to": ["+15551110000"],
        "media": ["https://h/media/b.png", "https://h/media/a.smil"]}});
    let mut records: MessageRecords = common_records(&ev);
    records.media = vec![
        record("bw/a.smil", "https://h/media/a.smil", MediaStatus::Failed),
        record("bw/b.png", "https://h/media/b.png", MediaStatus::Archived),
    ];
    let view = project("m1", &records).unwrap();
    let doc = serde_json::to_value(&view).unwrap();
    assert_eq!(doc["media"], json!(["https://h/media/b.png", "https://h/media/a.smil"]));
    assert_eq!(
        doc["archivedMedia"],
        json!([
            {"url": "/media/m1/bw/b.png", "contentType": "image/png", "size": 3, "sha256": "ab", "status": "archived",
             "sourceUrl": "https://h/media/b.png"},
            {"url": "/media/m1/bw/a.smil", "contentType": null, "size": null, "sha256": null, "status": "failed",
             "sourceUrl": "https://h/media/a.smil", "error": "answered 404"},
        ])
    );
}

fn common_records(ev: &serde_json::Value) -> MessageRecords {
    let parsed = bw_ledger_core::parse_callback_body(json!([ev]).to_string().as_bytes());
    MessageRecords {
        events: parsed
            .events
            .iter()
            .map(|e| bw_ledger_core::records::StoredEvent {
                seq: 1,
                record: bw_ledger_core::records::EventRecord::from_event(e),
                received_at_ms: 0,
            })
            .collect(),
        conflicts: Vec::new(),
        media: Vec::new(),
    }
}

#[test]
fn the_media_forward_has_a_stable_id_and_targets_may_ask_for_it() {
    let a = media_change("m1", &[record("bw/b.png", "https://h/media/b.png", MediaStatus::Archived).view()]);
    let b = media_change("m1", &[]);
    assert_eq!(a.webhook_id, b.webhook_id);
    assert_ne!(a.webhook_id, media_change("m2", &[]).webhook_id);
    assert_eq!(a.kind, ChangeKind::Media);
    assert_eq!(a.doc["archivedMedia"][0]["url"], "/media/m1/bw/b.png");
    let targets = parse_targets(Some(
        r#"[{"id":"t","url":"https://x.example/h","secret":"whsec_AAAA","events":["message.media"]}]"#,
    ))
    .unwrap();
    let t0 = bw_ledger_core::targets::Target::from_config(&targets[0]);
    assert!(t0.wants(ChangeKind::Media) && !t0.wants(ChangeKind::Status));
}

#[test]
fn a_client_key_reads_only_media_of_its_own_numbers() {
    let numbers = vec!["+15551110000".to_owned(), "+15554440001".to_owned()];
    assert!(may_read(None, &numbers));
    assert!(may_read(Some(&["+15554440001".to_owned()]), &numbers));
    assert!(!may_read(Some(&["+15559990000".to_owned()]), &numbers));
    assert!(!may_read(Some(&[]), &numbers));
}

#[test]
fn media_paths_route_to_the_archive() {
    use bw_ledger_core::route::{resolve, Route};
    assert_eq!(
        resolve("GET", "/media/m%201/bw/abc/0/a.png").unwrap(),
        Route::Media { message_id: "m 1".into(), path: "bw/abc/0/a.png".into() }
    );
    assert_eq!(
        resolve("HEAD", "/media/m1/bw/a.png").unwrap(),
        Route::Media { message_id: "m1".into(), path: "bw/a.png".into() }
    );
    assert_eq!(resolve("POST", "/media/m1/bw/a.png").unwrap_err().status(), 405);
    assert_eq!(resolve("GET", "/media/m1").unwrap_err().status(), 404);
}

#[test]
fn credentials_go_only_to_the_accounts_media_from_a_callback() {
    let scope = CredentialScope::new(BASE, Some("9900000")).unwrap();
    let file = "https://messaging.bandwidth.com/api/v2/users/9900000/media/abc/0/a.png";
    assert!(scope.covers(file));
    // Another account's media, any other API path, a look-alike host, a
    // dot segment climbing out of the media path, userinfo: none.
    for url in [
        "https://messaging.bandwidth.com/api/v2/users/1234567/media/abc.png",
        "https://messaging.bandwidth.com/api/v2/users/9900000/messages",
        "https://messaging.bandwidth.com/api/v2/users/9900000/media/",
        "https://messaging.bandwidth.com/api/v2/users/9900000/media/../messages",
        "https://messaging.bandwidth.com/api/v2/users/9900000/media/%2e%2e/messages",
        "https://messaging.bandwidth.com.evil.example/api/v2/users/9900000/media/a.png",
        "https://x@messaging.bandwidth.com/api/v2/users/9900000/media/a.png",
        "http://messaging.bandwidth.com/api/v2/users/9900000/media/a.png",
    ] {
        assert!(!scope.covers(url), "{url}");
    }
    assert!(CredentialScope::new(BASE, None).is_none(), "no account configured: no credentials at all");

    // A send's media never gets them, even on Bandwidth's own media path.
    assert!(!CredentialChain::new(false, Some(&scope)).hop(file));
    // A callback's: while the chain stays on Bandwidth's origin.
    let mut chain = CredentialChain::new(true, Some(&scope));
    assert!(chain.hop(file));
    assert!(!chain.hop("https://cdn.example.com/a.png"));
    assert!(!chain.hop(file), "once the chain left Bandwidth's origin, no hop gets them back");
    // A redirect from another origin back to Bandwidth's gets none either.
    let mut chain = CredentialChain::new(true, Some(&scope));
    assert!(!chain.hop("https://cdn.example.com/start.png"));
    assert!(!chain.hop(file));
}

#[test]
fn inbound_media_has_its_own_lane_and_sends_get_one_per_origin() {
    assert_eq!(lane_of(&"message-received".into(), "https://messaging.bandwidth.com/x"), INBOUND_LANE);
    assert_eq!(lane_of(&"message-accepted".into(), "https://cdn.example.com/a.png"), "out:https://cdn.example.com");
    assert_eq!(lane_of(&"message-accepted".into(), "http://127.0.0.1:81/a.png?x"), "out:http://127.0.0.1:81");
    assert_ne!(
        lane_of(&"message-accepted".into(), "https://a.example/x"),
        lane_of(&"message-accepted".into(), "https://b.example/x")
    );
}

#[test]
fn only_raster_images_are_shown_inline() {
    for t in ["image/png", "image/jpeg", "IMAGE/GIF", "image/webp; charset=x", "image/bmp"] {
        assert!(is_raster(t), "{t}");
    }
    for t in ["image/svg+xml", "text/html", "application/smil", "application/pdf", "", "image/png-but-not"] {
        assert!(!is_raster(t), "{t}");
    }
}
