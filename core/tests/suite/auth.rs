//! Callback (Basic) and API (Bearer) credential checks.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bw_ledger_core::auth::*;

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

fn creds() -> Vec<BasicCredential> {
    callback_credentials(
        (Some("bw-status".into()), Some("s3cret:with:colons".into())),
        (Some("bw-inbound".into()), Some("other".into())),
    )
}

#[test]
fn the_challenge_is_exactly_what_bandwidth_expects() {
    assert_eq!(BASIC_CHALLENGE, "Basic realm=\"\"");
}

#[test]
fn missing_header_asks_for_the_challenge() {
    assert_eq!(check_basic(None, &creds()), AuthOutcome::Missing);
}

#[test]
fn either_configured_pair_is_accepted() {
    assert_eq!(check_basic(Some(&basic("bw-status", "s3cret:with:colons")), &creds()), AuthOutcome::Accepted);
    assert_eq!(check_basic(Some(&basic("bw-inbound", "other")), &creds()), AuthOutcome::Accepted);
    assert_eq!(
        check_basic(Some(&basic("bw-inbound", "other").replace("Basic", "basic")), &creds()),
        AuthOutcome::Accepted
    );
}

#[test]
fn wrong_or_crossed_or_malformed_credentials_are_rejected() {
    for header in [
        basic("bw-status", "wrong"),
        basic("bw-status", "other"),
        basic("bw-inbound", "s3cret:with:colons"),
        basic("", ""),
        "Basic !!!not-base64".to_string(),
        "Bearer abc".to_string(),
        "Basic".to_string(),
        String::new(),
    ] {
        assert_eq!(check_basic(Some(&header), &creds()), AuthOutcome::Rejected, "{header}");
    }
}

#[test]
fn nothing_is_accepted_when_nothing_is_configured() {
    let none = callback_credentials((None, None), (Some("u".into()), Some(String::new())));
    assert!(none.is_empty());
    assert_eq!(check_basic(Some(&basic("u", "")), &none), AuthOutcome::Rejected);
}

#[test]
fn bearer_tokens() {
    assert_eq!(check_bearer(None, "tok"), AuthOutcome::Missing);
    assert_eq!(check_bearer(Some("Bearer tok"), "tok"), AuthOutcome::Accepted);
    assert_eq!(check_bearer(Some("bearer  tok "), "tok"), AuthOutcome::Accepted);
    assert_eq!(check_bearer(Some("Bearer tok2"), "tok"), AuthOutcome::Rejected);
    assert_eq!(check_bearer(Some("Basic tok"), "tok"), AuthOutcome::Rejected);
    assert_eq!(check_bearer(Some("Bearer "), ""), AuthOutcome::Rejected, "an empty token never matches");
}

#[test]
fn constant_time_eq_compares_content_and_length() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"abcd"));
    assert!(constant_time_eq(b"", b""));
}

#[test]
fn debug_output_never_shows_the_password() {
    let shown = format!("{:?}", creds());
    assert!(!shown.contains("s3cret") && !shown.contains("other"), "{shown}");
    assert!(shown.contains("bw-status"));
}
