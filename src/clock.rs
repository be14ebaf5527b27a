//! The Worker's clock and randomness, in one place; the core takes both as
//! values. (`std::time::SystemTime::now()` panics on wasm32.)

use worker::Date;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    Date::now().as_millis() as i64
}

/// Uniform in [0, 1), for retry jitter; 0.5 if the source fails.
pub fn jitter() -> f64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}
