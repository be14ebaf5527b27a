//! The Worker's clock and randomness, in one place; the core takes both as
//! values. (`std::time::SystemTime::now()` panics on wasm32.)

/// Milliseconds since the Unix epoch. `Date.now()`, not `new Date()`
/// (`worker::Date::now`): no object per call for the collector to sweep.
pub fn now_ms() -> i64 {
    worker::js_sys::Date::now() as i64
}

/// Uniform in [0, 1), for retry jitter; 0.5 if the source fails.
pub fn jitter() -> f64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

/// Fills `bytes` from the platform's secure source (secrets, keys, ids).
pub fn random(bytes: &mut [u8]) -> worker::Result<()> {
    getrandom::fill(bytes).map_err(|e| worker::Error::RustError(format!("no randomness: {e}")))
}
