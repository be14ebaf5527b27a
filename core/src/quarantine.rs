//! Authenticated input that is not an event: kept raw, deduplicated by the
//! SHA-256 of its exact bytes, and shown through the read API.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::event::Rejected;
use crate::identity::sha256_hex;

crate::stored_enum! {
    /// How the raw bytes are held as text (the `raw_encoding` column):
    /// verbatim when they are UTF-8.
    pub enum RawEncoding {
        Utf8 = "utf8",
        Base64 = "base64",
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

/// Bytes of raw bodies one `GET /quarantine` answer holds at most: a body
/// can be 1 MiB (1.4 MiB as base64), and a page of them must not be a
/// gigabyte. A single larger item still goes out alone.
pub const MAX_PAGE_BYTES: u64 = 4 * 1024 * 1024;

/// Where a page starts: after this item, most recently seen first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineCursor {
    pub last_seen_ms: i64,
    pub content_hash: String,
}

impl QuarantineCursor {
    /// The opaque page token: `{lastSeenMs}.{contentHash}`.
    pub fn token(&self) -> String {
        format!("{}.{}", self.last_seen_ms, self.content_hash)
    }

    pub fn parse(token: &str) -> Option<Self> {
        let (t, hash) = token.split_once('.')?;
        let ok = !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| Some(Self { last_seen_ms: t.parse().ok()?, content_hash: hash.to_owned() })).flatten()
    }

    /// Whether `item` comes after this cursor in the page order.
    fn before(&self, item: &QuarantineMeta) -> bool {
        (item.last_seen_ms, std::cmp::Reverse(&item.content_hash))
            < (self.last_seen_ms, std::cmp::Reverse(&self.content_hash))
    }
}

/// One shard's page of the quarantine, without bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinePageQuery {
    pub limit: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<QuarantineCursor>,
}

/// An item without its body: what a page is planned from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineMeta {
    pub content_hash: String,
    /// The stored body's length in bytes.
    pub raw_bytes: u64,
    pub raw_encoding: RawEncoding,
    pub reason: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub seen_count: i64,
}

impl QuarantineMeta {
    pub fn cursor(&self) -> QuarantineCursor {
        QuarantineCursor { last_seen_ms: self.last_seen_ms, content_hash: self.content_hash.clone() }
    }

    pub fn with_raw(self, raw: String) -> QuarantineItem {
        QuarantineItem {
            record: QuarantineRecord {
                content_hash: self.content_hash,
                raw,
                raw_encoding: self.raw_encoding,
                reason: self.reason,
            },
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            seen_count: self.seen_count,
        }
    }
}

/// One item's stored body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineBody {
    pub content_hash: String,
    pub raw: String,
}

/// A shard's index page: its items after the cursor, and how many it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineIndex {
    pub count: u64,
    pub items: Vec<QuarantineMeta>,
}

/// A planned page: the items whose bodies to read, and the next page's
/// cursor when more remain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinePlan {
    pub items: Vec<QuarantineMeta>,
    pub next: Option<QuarantineCursor>,
}

/// Merges the shards' index pages (each at most `limit` items after
/// `after`): most recently seen first (ties by hash, so the order is
/// stable), at most `limit` items and `max_bytes` of bodies.
pub fn plan_page(
    pages: &[QuarantineIndex],
    limit: u32,
    max_bytes: u64,
    after: Option<&QuarantineCursor>,
) -> QuarantinePlan {
    let mut all: Vec<&QuarantineMeta> =
        pages.iter().flat_map(|p| &p.items).filter(|m| after.is_none_or(|c| c.before(m))).collect();
    all.sort_by(|a, b| b.last_seen_ms.cmp(&a.last_seen_ms).then_with(|| a.content_hash.cmp(&b.content_hash)));
    let mut items = Vec::new();
    let mut bytes = 0;
    for m in &all {
        if items.len() as u32 >= limit || (!items.is_empty() && bytes + m.raw_bytes > max_bytes) {
            break;
        }
        bytes += m.raw_bytes;
        items.push((*m).clone());
    }
    let shard_full = pages.iter().any(|p| p.items.len() as u32 >= limit);
    let next = (items.len() < all.len() || shard_full).then(|| items.last().map(QuarantineMeta::cursor)).flatten();
    QuarantinePlan { items, next }
}
