//! Client keys for frontends that send through the proxy, and CORS.
//!
//! Keys are configured (secret `CLIENT_KEYS`) only as SHA-256 digests, so the
//! Worker never holds a frontend's key in clear. A key is presented as
//! `Authorization: Bearer <key>` or as the password of HTTP Basic. Each key
//! may send only from its `allowed_from` numbers, and browsers may use it
//! only from its `allowed_origins`.

use serde::Deserialize;

use crate::auth::{check_bearer, constant_time_eq, decode_basic, AuthOutcome};
use crate::identity::sha256_hex;
use crate::limits::KeyLimits;

#[derive(Clone, Deserialize, PartialEq, Eq)]
pub struct ClientKey {
    pub id: String,
    pub key_sha256: String,
    #[serde(default)]
    pub allowed_from: Vec<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Bandwidth applications this key may send through besides the
    /// configured one (`BW_APPLICATION_ID`).
    #[serde(default)]
    pub allowed_applications: Vec<String>,
    /// Rate, quota, destinations and reads (`crate::limits`).
    #[serde(flatten)]
    pub limits: KeyLimits,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("id", &self.id)
            .field("allowed_from", &self.allowed_from)
            .field("allowed_origins", &self.allowed_origins)
            .field("allowed_applications", &self.allowed_applications)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    pub fn may_send_from(&self, from: &str) -> bool {
        self.allowed_from.iter().any(|f| f == from)
    }

    /// Whether this key may send through application `app`: the configured
    /// one, or one its entry lists. Another application's callbacks would
    /// never reach this ledger.
    pub fn may_use_application(&self, app: &str, configured: Option<&str>) -> bool {
        configured == Some(app) || self.allowed_applications.iter().any(|a| a == app)
    }

    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o == origin)
    }

    /// The recipients of a send this key may not send to.
    pub fn refused_destinations<'a>(&self, to: &'a [String]) -> Vec<&'a str> {
        self.limits.refused_destinations(&self.allowed_from, to)
    }
}

/// Parses and checks the `CLIENT_KEYS` secret.
pub fn parse_client_keys(json: &str) -> Result<Vec<ClientKey>, String> {
    let mut keys: Vec<ClientKey> =
        serde_json::from_str(json).map_err(|e| format!("CLIENT_KEYS is not a JSON list of keys: {e}"))?;
    for k in &mut keys {
        k.key_sha256 = k.key_sha256.to_ascii_lowercase();
        if k.key_sha256.len() != 64 || !k.key_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("CLIENT_KEYS: key {:?} has a key_sha256 that is not 64 hex digits", k.id));
        }
        if k.allowed_origins.iter().any(|o| o == "*") {
            return Err(format!("CLIENT_KEYS: key {:?} may not allow every origin (\"*\")", k.id));
        }
        k.limits.validate(&k.id)?;
    }
    Ok(keys)
}

/// The key presented in an `Authorization` header: Bearer, or Basic's password.
fn presented_key(header: &str) -> Option<String> {
    let trimmed = header.trim();
    let (scheme, rest) = trimmed.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("Bearer") {
        Some(rest.trim().to_owned())
    } else if scheme.eq_ignore_ascii_case("Basic") {
        decode_basic(trimmed).map(|(_, password)| password)
    } else {
        None
    }
}

/// Finds the client key an `Authorization` header presents. Every key is
/// compared, in constant time, whatever matches.
pub fn authenticate_client<'a>(header: Option<&str>, keys: &'a [ClientKey]) -> Result<&'a ClientKey, AuthOutcome> {
    let header = header.ok_or(AuthOutcome::Missing)?;
    let key = presented_key(header).filter(|k| !k.is_empty()).ok_or(AuthOutcome::Rejected)?;
    let digest = sha256_hex(key.as_bytes());
    let mut found = None;
    for k in keys {
        if constant_time_eq(digest.as_bytes(), k.key_sha256.as_bytes()) && found.is_none() {
            found = Some(k);
        }
    }
    found.ok_or(AuthOutcome::Rejected)
}

pub const CORS_ALLOW_METHODS: &str = "GET, POST, OPTIONS";
pub const CORS_ALLOW_HEADERS: &str = "Authorization, Content-Type, Idempotency-Key";
pub const CORS_MAX_AGE: &str = "600";

/// CORS headers for `origin`, or none when no key allows it. Never `*`.
pub fn cors_headers(origin: &str, allowed: bool) -> Vec<(&'static str, String)> {
    if !allowed {
        return Vec::new();
    }
    vec![
        ("Access-Control-Allow-Origin", origin.to_owned()),
        ("Access-Control-Expose-Headers", "Location, Retry-After".to_owned()),
        ("Vary", "Origin".to_owned()),
    ]
}

/// A preflight is answered only for an origin some key allows.
pub fn preflight_headers(origin: &str, keys: &[ClientKey]) -> Option<Vec<(&'static str, String)>> {
    if !keys.iter().any(|k| k.allows_origin(origin)) {
        return None;
    }
    let mut h = cors_headers(origin, true);
    h.push(("Access-Control-Allow-Methods", CORS_ALLOW_METHODS.to_owned()));
    h.push(("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS.to_owned()));
    h.push(("Access-Control-Max-Age", CORS_MAX_AGE.to_owned()));
    Some(h)
}

/// Who is reading the ledger (lists, conversations, the live feed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader<'a> {
    /// The API token: everything.
    Operator,
    /// A client key: only rows that involve its own `allowed_from` numbers.
    Key(&'a ClientKey),
}

impl<'a> From<Option<&'a ClientKey>> for Reader<'a> {
    /// A client key, or the operator (`None`).
    fn from(key: Option<&'a ClientKey>) -> Self {
        key.map_or(Reader::Operator, Reader::Key)
    }
}

impl Reader<'_> {
    /// The numbers a read is limited to; `None` for the operator.
    pub fn scope(&self) -> Option<Vec<String>> {
        match self {
            Reader::Operator => None,
            Reader::Key(key) => Some(key.allowed_from.clone()),
        }
    }
}

/// The API token when one is configured and presented, or else a client key.
pub fn reader<'a>(
    header: Option<&str>,
    api_token: Option<&str>,
    keys: &'a [ClientKey],
) -> Result<Reader<'a>, AuthOutcome> {
    if api_token.is_some_and(|token| check_bearer(header, token) == AuthOutcome::Accepted) {
        return Ok(Reader::Operator);
    }
    authenticate_client(header, keys).map(Reader::Key)
}
