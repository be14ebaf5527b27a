//! Authenticated input that is not an event: kept raw, deduplicated by the
//! SHA-256 of its exact bytes, and shown through the read API.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::event::Rejected;
use crate::identity::sha256_hex;

/// How the raw bytes are held as text: verbatim when they are UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawEncoding {
    Utf8,
    Base64,
}

/// A quarantine entry on its way into a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineRecord {
    pub content_hash: String,
    pub raw: String,
    pub raw_encoding: RawEncoding,
    pub reason: String,
}

impl QuarantineRecord {
    pub fn from_rejected(r: &Rejected) -> Self {
        let (raw, raw_encoding) = match std::str::from_utf8(&r.raw) {
            Ok(s) => (s.to_owned(), RawEncoding::Utf8),
            Err(_) => (STANDARD.encode(&r.raw), RawEncoding::Base64),
        };
        Self { content_hash: sha256_hex(&r.raw), raw, raw_encoding, reason: r.reason.clone() }
    }

    /// The exact bytes that were received.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self.raw_encoding {
            RawEncoding::Utf8 => Some(self.raw.clone().into_bytes()),
            RawEncoding::Base64 => STANDARD.decode(&self.raw).ok(),
        }
    }
}

/// A quarantine entry as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineItem {
    #[serde(flatten)]
    pub record: QuarantineRecord,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub seen_count: i64,
}
