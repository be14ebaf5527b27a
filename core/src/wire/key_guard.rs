use super::*;
use crate::limits::{GuardRequest, KeyState, Verdict};

object! {
    binding = "KEY_GUARD";
    /// Admits or refuses a send or read, or counts a refusal.
    Admit = "/admit": GuardRequest => Verdict;
    /// Claims an idempotency key and admits its send, in one step.
    Claim = "/claim": crate::idempotency::GuardClaim => crate::idempotency::ClaimReply;
    /// Saves a send's outcome (or releases its key), with any refund.
    Finish = "/finish": crate::idempotency::GuardFinish => Empty;
    /// Deletes the saved answers that mention a number (erasure).
    Erase = "/erase": crate::lifecycle::EraseRequest => crate::lifecycle::EraseReply;
    /// Deletes saved answers past retention or their 24 hours.
    Sweep = "/sweep": crate::lifecycle::SweepRequest => crate::lifecycle::SweepReply;
    /// The key's counters.
    Usage = "/usage": Empty => KeyState;
    /// On the registry guard ([`REGISTRY_NAME`]): this key's guard may
    /// keep saved answers, so erasure and retention must visit it.
    Register = "/register": GuardName => Empty;
    /// On the registry guard: every key id ever registered.
    Registered = "/registered": Empty => Vec<String>;
}

/// Key `key_id`'s guard: a digest, since a key id may hold any
/// character and the name travels in a URL.
pub fn name(key_id: &str) -> String {
    format!("key-{}", &crate::identity::sha256_hex(key_id.as_bytes())[..32])
}

/// The object name of the guard that lists every guard that may hold
/// saved send answers, whether or not its key is still configured.
/// (Key guards are named `key-` and 32 hex digits.)
pub const REGISTRY_NAME: &str = "key-registry";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardName {
    pub key_id: String,
}
