//! Credential-shaped text never reaches a log line.

use bw_ledger_core::redact::redact;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn credentials_are_cut_from_log_messages() {
    assert_eq!(redact("auth Bearer abc.def-123 refused"), "auth Bearer [redacted] refused");
    assert_eq!(redact("Authorization: Basic dXNlcjpwYXNz"), "Authorization: Basic [redacted]");
    assert_eq!(redact("GET /live?token=s3cret&number=+1555"), "GET /live?token=[redacted]&number=+1555");
    assert_eq!(redact("secret whsec_AAAA,next"), "secret whsec_[redacted],next");
    assert_eq!(redact("protocol token.abc"), "protocol token.[redacted]");
    assert_eq!(redact("two Bearer a and Bearer b"), "two Bearer [redacted] and Bearer [redacted]");
    assert_eq!(redact("nothing here: 503 from target main"), "nothing here: 503 from target main");
    // A marker at the very end has nothing to cut.
    assert_eq!(redact("ends with Bearer "), "ends with Bearer ");
    assert_eq!(redact("ünïcode Bearer ✓✓ then"), "ünïcode Bearer [redacted] then");
}
