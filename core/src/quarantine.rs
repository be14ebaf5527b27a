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

impl RawEncoding {
    /// The name stored in a shard's `raw_encoding` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Utf8 => "utf8",
            Self::Base64 => "base64",
        }
    }

    /// Reads a stored name back; anything but `base64` is verbatim text.
    pub fn from_stored(name: &str) -> Self {
        if name == "base64" {
            Self::Base64
        } else {
            Self::Utf8
        }
    }
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

/// Merges the shards' lists: most recently seen first (ties by hash, so the
/// order is stable), at most `limit` items.
pub fn merge_recent(lists: Vec<Vec<QuarantineItem>>, limit: usize) -> Vec<QuarantineItem> {
    let mut items: Vec<QuarantineItem> = lists.into_iter().flatten().collect();
    items.sort_by(|a, b| {
        b.last_seen_ms.cmp(&a.last_seen_ms).then_with(|| a.record.content_hash.cmp(&b.record.content_hash))
    });
    items.truncate(limit);
    items
}
