//! Upstream credentials: OAuth2 client credentials, or legacy Basic.
//!
//! Bandwidth's legacy Basic API users stop working on 2026-12-02; OAuth2
//! client credentials replace them. A token is cached and refreshed 60 s
//! before it expires, so many sends cost one token request.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

pub const REFRESH_MARGIN_MS: i64 = 60_000;
pub const TOKEN_REQUEST_BODY: &str = "grant_type=client_credentials";

#[derive(Clone, PartialEq, Eq)]
pub enum UpstreamAuth {
    OAuth { client_id: String, client_secret: String },
    Basic { username: String, password: String },
}

impl UpstreamAuth {
    /// OAuth when a client id is set, else legacy Basic, else nothing.
    pub fn choose(
        client_id: Option<String>,
        client_secret: Option<String>,
        username: Option<String>,
        password: Option<String>,
    ) -> Option<Self> {
        let set = |v: Option<String>| v.filter(|s| !s.is_empty());
        match (set(client_id), set(client_secret), set(username), set(password)) {
            (Some(client_id), Some(client_secret), _, _) => Some(Self::OAuth { client_id, client_secret }),
            (Some(_), None, _, _) => None,
            (None, _, Some(username), Some(password)) => Some(Self::Basic { username, password }),
            _ => None,
        }
    }
}

pub fn basic_header(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedToken {
    pub access_token: String,
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken").field("expires_at_ms", &self.expires_at_ms).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

impl CachedToken {
    /// Reads a token endpoint's JSON answer received at `now_ms`. A missing
    /// `expires_in` is taken as 1 hour, Bandwidth's documented lifetime.
    pub fn from_response(body: &[u8], now_ms: i64) -> Result<Self, String> {
        let r: TokenResponse = serde_json::from_slice(body).map_err(|e| format!("token response is not valid: {e}"))?;
        if r.access_token.is_empty() {
            return Err("token response has an empty access_token".into());
        }
        let expires_in = r.expires_in.unwrap_or(3600).max(0);
        Ok(Self { access_token: r.access_token, expires_at_ms: now_ms + expires_in * 1000 })
    }

    /// Usable now: not within the refresh margin of its expiry.
    pub fn is_fresh(&self, now_ms: i64) -> bool {
        now_ms < self.expires_at_ms - REFRESH_MARGIN_MS
    }
}

/// What the token broker answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum TokenOutcome {
    Token {
        token: CachedToken,
    },
    /// The token endpoint answered this non-2xx status.
    Refused {
        status: u16,
    },
    Timeout,
    Unreachable,
}
