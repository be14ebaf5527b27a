//! The retry schedule shared by every queue that retries against a remote
//! party (forwarding, media archiving): exponential, capped, jittered.

use serde::{Deserialize, Serialize};

/// The retry schedule (vars `FORWARD_RETRY_BASE_MS`, `FORWARD_RETRY_MAX_MS`,
/// `FORWARD_GIVE_UP_MS`), so tests can compress it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub base_ms: i64,
    pub max_ms: i64,
    pub give_up_ms: i64,
}

impl Default for Schedule {
    fn default() -> Self {
        Self { base_ms: 5_000, max_ms: 3_600_000, give_up_ms: 24 * 3_600_000 }
    }
}

/// A var that must be a positive whole number: its value, or `default`
/// when it is unset or anything else.
pub fn positive_var(v: Option<&str>, default: i64) -> i64 {
    v.and_then(|s| s.trim().parse::<i64>().ok()).filter(|n| *n > 0).unwrap_or(default)
}

impl Schedule {
    pub fn from_vars(base: Option<&str>, max: Option<&str>, give_up: Option<&str>) -> Self {
        Self::from_vars_or(Self::default(), base, max, give_up)
    }

    /// As `from_vars`, with other defaults (`d`) for what is unset or not a
    /// positive number.
    pub fn from_vars_or(d: Self, base: Option<&str>, max: Option<&str>, give_up: Option<&str>) -> Self {
        Self {
            base_ms: positive_var(base, d.base_ms),
            max_ms: positive_var(max, d.max_ms),
            give_up_ms: positive_var(give_up, d.give_up_ms),
        }
    }

    /// Delay before retry number `attempts` (1 = after the first failure):
    /// exponential, capped, with "full jitter" in [50%, 100%] of the step.
    /// `jitter` is uniform in [0, 1).
    pub fn backoff_ms(&self, attempts: u32, jitter: f64) -> i64 {
        let exp = self.base_ms.saturating_mul(1i64 << attempts.saturating_sub(1).min(30));
        let step = exp.min(self.max_ms);
        let j = jitter.clamp(0.0, 1.0);
        (step as f64 * (0.5 + 0.5 * j)).round() as i64
    }

    /// Whether a row first queued at `window_start_ms` has run out of time.
    pub fn gives_up(&self, window_start_ms: i64, now_ms: i64) -> bool {
        now_ms - window_start_ms >= self.give_up_ms
    }

    /// The first point of the schedule counted from `start_ms` (start +
    /// each full step, 1, 2, … in turn) that is later than `after_ms`:
    /// when a failing target is probed next, so probes keep to the
    /// schedule however many attempts failed before it.
    pub fn next_point_after(&self, start_ms: i64, after_ms: i64) -> i64 {
        let mut at = start_ms;
        for n in 1..=64u32 {
            let step = self.backoff_ms(n, 1.0).max(1);
            at += step;
            if at > after_ms {
                return at;
            }
            if step >= self.max_ms {
                // Every later step is the cap: jump straight there.
                let steps = (after_ms - at) / step + 1;
                return at + steps * step;
            }
        }
        at.max(after_ms + self.max_ms)
    }
}
