//! The live feed's rules: how a token is taken, and which key still grants
//! an open socket.

use bw_ledger_core::client::parse_client_keys;
use bw_ledger_core::live::*;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

#[test]
fn the_token_comes_only_as_a_subprotocol() {
    let r = parse_live_request(Some("messageId=m1&number=%2B1555"), Some("bw-ledger, token.s3cret"));
    assert_eq!(r.token.as_deref(), Some("s3cret"));
    assert!(!r.token_in_query);
    assert_eq!((r.message_id.as_deref(), r.number.as_deref()), (Some("m1"), Some("+1555")));
    // A token in the query string is flagged (the route refuses it), and
    // never taken as the credential.
    let q = parse_live_request(Some("token=s3cret"), None);
    assert!(q.token_in_query);
    assert_eq!(q.token, None);
    // `token.` without `bw-ledger` is not our protocol.
    assert_eq!(parse_live_request(None, Some("token.s3cret")).token, None);
}

#[test]
fn a_socket_lives_only_while_its_key_grants_it() {
    let keys =
        parse_client_keys(&format!(r#"[{{"id":"web","key_sha256":"{HASH}","allowed_from":["+1555"]}}]"#)).unwrap();
    let sub = Subscription {
        scope: Some(vec!["+1555".into()]),
        key: Some(KeyBinding::of(&keys[0])),
        ..Subscription::default()
    };
    assert!(sub.still_granted(&keys));
    assert!(!sub.still_granted(&[]), "removed");
    let rotated =
        parse_client_keys(&format!(r#"[{{"id":"web","key_sha256":"{}","allowed_from":["+1555"]}}]"#, "b".repeat(64)))
            .unwrap();
    assert!(!sub.still_granted(&rotated), "rotated");
    let narrowed =
        parse_client_keys(&format!(r#"[{{"id":"web","key_sha256":"{HASH}","allowed_from":["+1666"]}}]"#)).unwrap();
    assert!(!sub.still_granted(&narrowed), "numbers changed");
    assert!(Subscription::default().still_granted(&[]), "the operator's socket is not a key's");
    assert_eq!(KeyBinding::of(&keys[0]).tag(), "key:web");
    assert_eq!(max_sockets_per_key(None), 10);
    assert_eq!(max_sockets_per_key(Some("3")), 3);
    assert_eq!(max_sockets_per_key(Some("0")), 10);
}
