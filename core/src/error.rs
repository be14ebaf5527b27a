//! The API's error vocabulary, mapped to HTTP in one place.
//!
//! Errors split by whose fault they are: the caller's (4xx, not retryable)
//! or ours (5xx, retryable: Bandwidth retries a callback that gets a 5xx).
//! Descriptions are fixed sentences; causes go to the log, never the client.

use serde::{Deserialize, Serialize};

use crate::send::FieldError;

/// Why a key's request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Refusal {
    /// Over `rate_per_minute` (429).
    Rate,
    /// Over `daily_quota` (429).
    Quota,
    /// A `to` outside the allowed destinations (403).
    Destination,
    /// A `from` the key may not send from (403).
    From,
    /// A browser origin the key does not allow (403).
    Origin,
    /// An `applicationId` the key may not send through (403).
    Application,
    /// Over `reads_per_minute` (429).
    Reads,
    /// Over `LIVE_MAX_SOCKETS_PER_KEY` open live sockets (429).
    Sockets,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Callback without valid Basic credentials: 401 with the Basic challenge.
    CallbackUnauthorized,
    /// Read API without a valid bearer token: 401 with a Bearer challenge.
    ApiUnauthorized,
    NotFound(&'static str),
    MethodNotAllowed {
        allow: &'static str,
    },
    /// The body exceeds `limit` bytes.
    PayloadTooLarge {
        limit: usize,
    },
    BadRequest(String),
    /// A send body broke Bandwidth's rules; every failed rule is listed.
    Validation(Vec<FieldError>),
    /// Authenticated, but this caller may not do this (from number, origin).
    Forbidden(String),
    /// A send to numbers that opted out (`crate::optout`): nothing is sent.
    RecipientOptedOut(Vec<String>),
    /// Over a client key's limit (`crate::limits`): 429 with `Retry-After`.
    Limited {
        reason: Refusal,
        retry_after_s: i64,
        description: String,
    },
    /// The request conflicts with what is stored (an opt-out already in force).
    Conflict(String),
    /// An `Idempotency-Key` reused with a different body.
    IdempotencyMismatch,
    /// An `Idempotency-Key` whose first request is still being sent.
    IdempotencyInFlight,
    /// Bandwidth did not answer in time; the message may or may not be sent.
    UpstreamTimeout,
    /// Bandwidth could not be reached.
    UpstreamUnreachable,
    /// Bandwidth's token endpoint refused the Worker's credentials.
    UpstreamCredentials,
    /// A required secret or var is missing or invalid. Ours, so 5xx.
    NotConfigured(&'static str),
    /// A shard did not confirm a write or read. Retryable.
    StorageUnavailable,
    /// Anything else that is our fault; the cause goes to the log only.
    Internal,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub field_errors: Vec<FieldError>,
    /// The refused recipients of `recipient-opted-out`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub numbers: Vec<String>,
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            Self::CallbackUnauthorized | Self::ApiUnauthorized => 401,
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::PayloadTooLarge { .. } => 413,
            Self::BadRequest(_) | Self::Validation(_) => 400,
            Self::Forbidden(_) | Self::RecipientOptedOut(_) => 403,
            Self::IdempotencyInFlight | Self::Conflict(_) => 409,
            Self::Limited { .. } => 429,
            Self::IdempotencyMismatch => 422,
            Self::UpstreamUnreachable | Self::UpstreamCredentials => 502,
            Self::UpstreamTimeout => 504,
            Self::NotConfigured(_) => 500,
            Self::StorageUnavailable => 503,
            Self::Internal => 500,
        }
    }

    /// Extra headers the status requires (challenge, `Allow`).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::CallbackUnauthorized => {
                vec![("WWW-Authenticate", crate::auth::BASIC_CHALLENGE.to_string())]
            }
            Self::ApiUnauthorized => vec![("WWW-Authenticate", "Bearer".to_string())],
            Self::MethodNotAllowed { allow } => vec![("Allow", (*allow).to_string())],
            Self::StorageUnavailable | Self::IdempotencyInFlight => vec![("Retry-After", "1".to_string())],
            Self::Limited { retry_after_s, .. } => vec![("Retry-After", retry_after_s.to_string())],
            _ => Vec::new(),
        }
    }

    pub fn body(&self) -> ErrorBody {
        let field_errors = match self {
            Self::Validation(errors) => errors.clone(),
            _ => Vec::new(),
        };
        let numbers = match self {
            Self::RecipientOptedOut(numbers) => numbers.clone(),
            _ => Vec::new(),
        };
        let (kind, description) = match self {
            Self::CallbackUnauthorized => {
                ("unauthorized", "Valid callback credentials (HTTP Basic) are required.".to_string())
            }
            Self::ApiUnauthorized => {
                ("unauthorized", "A valid API token is required: Authorization: Bearer <token>.".to_string())
            }
            Self::NotFound(what) => ("not-found", format!("{what} not found.")),
            Self::MethodNotAllowed { allow } => {
                ("method-not-allowed", format!("This path accepts only: {allow}."))
            }
            Self::PayloadTooLarge { limit } => (
                "payload-too-large",
                format!("The body exceeds the limit of {limit} bytes; nothing was stored or sent."),
            ),
            Self::BadRequest(why) => ("bad-request", why.clone()),
            Self::Validation(_) => {
                ("request-validation", "Your request could not be accepted; see fieldErrors.".to_string())
            }
            Self::Forbidden(why) => ("forbidden", why.clone()),
            Self::Conflict(why) => ("conflict", why.clone()),
            Self::RecipientOptedOut(numbers) => (
                "recipient-opted-out",
                format!("{} opted out of messages from this account; nothing was sent.", numbers.join(", ")),
            ),
            Self::Limited { reason, description, .. } => (
                match reason {
                    Refusal::Quota => "daily-quota-exceeded",
                    Refusal::Reads => "read-rate-limited",
                    Refusal::Sockets => "too-many-sockets",
                    _ => "rate-limited",
                },
                description.clone(),
            ),
            Self::IdempotencyMismatch => (
                "idempotency-key-reused",
                "This Idempotency-Key was already used with a different request body.".to_string(),
            ),
            Self::IdempotencyInFlight => (
                "idempotency-key-in-flight",
                "A request with this Idempotency-Key is still being sent; retry shortly.".to_string(),
            ),
            Self::UpstreamTimeout => (
                "upstream-timeout",
                "Bandwidth did not answer in time. The message may or may not have been sent: check callbacks before sending again.".to_string(),
            ),
            Self::UpstreamUnreachable => {
                ("upstream-unreachable", "Bandwidth's API could not be reached.".to_string())
            }
            Self::UpstreamCredentials => (
                "upstream-credentials",
                "Bandwidth refused the Worker's API credentials; nothing was sent.".to_string(),
            ),
            Self::NotConfigured(what) => {
                ("not-configured", format!("The server is not configured: {what} is missing or invalid."))
            }
            Self::StorageUnavailable => (
                "storage-unavailable",
                "Storage did not confirm the operation; retry later.".to_string(),
            ),
            Self::Internal => ("internal", "An internal error occurred; it has been logged.".to_string()),
        };
        ErrorBody { kind, description, field_errors, numbers }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.body();
        write!(f, "{} ({}): {}", self.status(), body.kind, body.description)
    }
}

impl std::error::Error for ApiError {}
