//! Signing secrets at rest: generated from 32 random bytes, and sealed with
//! AES-256-GCM under `TARGET_SECRETS_KEY` when it is set. The caller draws
//! the randomness (bytes and nonces); nothing here reads a clock or an RNG.
//!
//! A sealed secret is `aes256gcm:` and the base64 of nonce and ciphertext,
//! with the target's id as associated data, so a sealed value moved to
//! another target does not open. Without a key a secret is kept as it is
//! shown (`whsec_...`), and stays readable once a key is set later.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

const SEALED_PREFIX: &str = "aes256gcm:";
pub const NONCE_LEN: usize = 12;
pub const SECRET_BYTES: usize = 32;

/// The Standard Webhooks secret made from 32 random bytes: `whsec_` and
/// their base64.
pub fn new_secret(bytes: &[u8; SECRET_BYTES]) -> String {
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// The key of `TARGET_SECRETS_KEY`: 32 bytes, as base64 (`openssl rand
/// -base64 32`) or as 64 hex digits.
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer { .. }")
    }
}

impl Sealer {
    /// `None` when the var is unset or blank; an error names what is wrong
    /// without repeating the value.
    pub fn from_var(value: Option<&str>) -> Result<Option<Self>, String> {
        let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
        let bytes = if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).map(|i| u8::from_str_radix(&v[2 * i..2 * i + 2], 16).unwrap_or(0)).collect()
        } else {
            STANDARD.decode(v).map_err(|_| "TARGET_SECRETS_KEY is neither base64 nor 64 hex digits".to_string())?
        };
        if bytes.len() != 32 {
            return Err(format!("TARGET_SECRETS_KEY must be 32 bytes, not {}", bytes.len()));
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| "TARGET_SECRETS_KEY: bad key length".to_string())?;
        Ok(Some(Self { cipher }))
    }

    fn seal_with(&self, target_id: &str, secret: &str, nonce: &[u8; NONCE_LEN]) -> String {
        let payload = Payload { msg: secret.as_bytes(), aad: target_id.as_bytes() };
        let sealed = self.cipher.encrypt(Nonce::from_slice(nonce), payload).expect("AES-GCM seals any length here");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(out))
    }

    fn open_sealed(&self, target_id: &str, b64: &str) -> Result<String, String> {
        let raw = STANDARD.decode(b64).map_err(|_| "a sealed secret is not base64".to_string())?;
        if raw.len() <= NONCE_LEN {
            return Err("a sealed secret is too short".into());
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: target_id.as_bytes() })
            .map_err(|_| "a sealed secret does not open with TARGET_SECRETS_KEY (was the key changed?)".to_string())?;
        String::from_utf8(plain).map_err(|_| "a sealed secret is not text".to_string())
    }
}

/// The form a secret is stored in: sealed when there is a key.
pub fn seal(sealer: Option<&Sealer>, target_id: &str, secret: &str, nonce: &[u8; NONCE_LEN]) -> String {
    match sealer {
        Some(s) => s.seal_with(target_id, secret, nonce),
        None => secret.to_owned(),
    }
}

/// A stored secret back in its `whsec_` form.
pub fn open(sealer: Option<&Sealer>, target_id: &str, stored: &str) -> Result<String, String> {
    match (stored.strip_prefix(SEALED_PREFIX), sealer) {
        (Some(b64), Some(s)) => s.open_sealed(target_id, b64),
        (Some(_), None) => Err("the secret is sealed, and TARGET_SECRETS_KEY is not set".into()),
        (None, _) => Ok(stored.to_owned()),
    }
}

/// Whether a stored secret is sealed (not kept in the clear).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}
