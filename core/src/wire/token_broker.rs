use super::*;
use crate::oauth::TokenOutcome;

object! {
    binding = "TOKENS";
    /// A fresh access token, fetched once for any number of callers.
    Token = "/token": TokenRequest => TokenOutcome;
}

/// The one broker's object name.
pub const NAME: &str = "bandwidth-oauth";

/// `rejected`: a token Bandwidth answered 401 to; the broker drops it
/// (if it still holds it) before answering, so no caller gets it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}
