//! Credential checks for callbacks (HTTP Basic) and the read API (Bearer).
//!
//! Secrets are compared in constant time: both sides are hashed to a fixed
//! length first, so neither content nor length leaks through timing. Nothing
//! here logs or returns a presented secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The challenge Bandwidth waits for before it sends its credentials.
pub const BASIC_CHALLENGE: &str = "Basic realm=\"\"";

/// One configured Basic user/password pair.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredential {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for BasicCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredential").field("user", &self.user).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// No `Authorization` header: answer with the challenge.
    Missing,
    /// A header that is malformed or does not match: the same answer.
    Rejected,
    Accepted,
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.iter().zip(hb.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits `Scheme credentials`, matching the scheme case-insensitively.
fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let header = header.trim();
    let (s, rest) = header.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// Decodes a Basic `Authorization` header into (user, password).
pub fn decode_basic(header: &str) -> Option<(String, String)> {
    let b64 = strip_scheme(header, "Basic")?;
    let bytes = STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Checks a Basic header against every configured pair. All pairs are
/// compared, so timing does not tell which one (if any) matched.
#[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
pub fn check_basic(header: Option<&str>, allowed: &[BasicCredential]) -> AuthOutcome {
    let Some(header) = header else { return AuthOutcome::Missing };
    let Some((user, password)) = decode_basic(header) else { return AuthOutcome::Rejected };
    let mut ok = false;
    for c in allowed {
        let user_ok = constant_time_eq(user.as_bytes(), c.user.as_bytes());
        let pass_ok = constant_time_eq(password.as_bytes(), c.password.as_bytes());
        ok |= user_ok & pass_ok;
    }
    if ok {
        AuthOutcome::Accepted
    } else {
        AuthOutcome::Rejected
    }
}

/// Checks `Authorization: Bearer <token>` against the configured token.
pub fn check_bearer(header: Option<&str>, token: &str) -> AuthOutcome {
    let Some(header) = header else { return AuthOutcome::Missing };
    let Some(presented) = strip_scheme(header, "Bearer") else { return AuthOutcome::Rejected };
    if !token.is_empty() && constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        AuthOutcome::Accepted
    } else {
        AuthOutcome::Rejected
    }
}

/// Builds the callback credential list from the configured values. A pair is
/// used only when both halves are set and non-empty; the second pair is
/// optional because Bandwidth configures inbound and status callbacks apart.
pub fn callback_credentials(
    first: (Option<String>, Option<String>),
    second: (Option<String>, Option<String>),
) -> Vec<BasicCredential> {
    [first, second]
        .into_iter()
        .filter_map(|pair| match pair {
            (Some(user), Some(password)) if !user.is_empty() && !password.is_empty() => {
                Some(BasicCredential { user, password })
            }
            _ => None,
        })
        .collect()
}
