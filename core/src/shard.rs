//! Which Durable Object shard owns a message.
//!
//! The mapping must never change for a given shard count: a message's events
//! and its reads all go to `shard_for(id)`. Changing `LEDGER_SHARDS` on a
//! deployment with data is a migration (see README), never a config tweak.

/// FNV-1a, 64-bit: tiny, stable across platforms and releases.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shard index in `0..shards` for a key (a message id or a content hash).
pub fn shard_for(key: &str, shards: u32) -> u32 {
    let shards = shards.max(1);
    (fnv1a64(key.as_bytes()) % u64::from(shards)) as u32
}

/// The Durable Object name of shard `index`; the object id derives from it.
pub fn shard_name(index: u32) -> String {
    format!("ledger-shard-{index}")
}

/// Upper bound on `LEDGER_SHARDS`: fan-out reads touch every shard.
pub const MAX_SHARDS: u32 = 256;

/// Parses the `LEDGER_SHARDS` var: a whole number in `1..=MAX_SHARDS`.
pub fn parse_shard_count(raw: &str) -> Result<u32, String> {
    match raw.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(n),
        _ => Err(format!("LEDGER_SHARDS must be a whole number from 1 to {MAX_SHARDS}, got {raw:?}")),
    }
}
