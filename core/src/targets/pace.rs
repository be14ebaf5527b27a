//! Pacing deliveries to a target across every shard: one pacer per target
//! hands out send times so that any `rate + 1` consecutive send times span
//! at least [`WINDOW_MS`] plus [`MARGIN_MS`]. A delivery starts no earlier
//! than its send time and no later than [`LATE_MS`] after it (one woken
//! later asks again rather than crowd the next), so at most `rate` start in
//! any one-second window, and a receiver sees at most `rate` in any second
//! as long as the time from a start to its arrival varies by less than
//! `MARGIN_MS - LATE_MS`. The price: at most `rate` per 1.2 s.
//!
//! A send time further ahead than [`HORIZON_MS`] is not reserved: the
//! caller is told when to ask again, and its delivery waits (it is not an
//! attempt, and never fails over it).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

pub const WINDOW_MS: i64 = 1_000;
/// Slack for a late start and the spread in the time to arrive.
pub const MARGIN_MS: i64 = 200;
/// A delivery that would start later than this after its send time asks
/// for another.
pub const LATE_MS: i64 = 75;
/// How far ahead a send time is reserved; beyond it, ask again then.
pub const HORIZON_MS: i64 = 2_000;

/// A request for a send time to a target paced at `rate_per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotRequest {
    pub rate_per_second: u32,
}

/// `granted`: send at `at_ms` (reserved); otherwise ask again at `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    pub at_ms: i64,
    pub granted: bool,
}

/// The send times handed out recently, oldest first (at most `rate` kept).
#[derive(Debug, Default)]
pub struct Pacer {
    granted: VecDeque<i64>,
}

impl Pacer {
    /// The earliest send time at or after `now_ms` that keeps the rate,
    /// reserved if it is within the horizon.
    pub fn reserve(&mut self, now_ms: i64, rate_per_second: u32) -> Slot {
        let rate = rate_per_second.max(1) as usize;
        while self.granted.len() > rate {
            self.granted.pop_front();
        }
        let mut at = now_ms;
        if self.granted.len() == rate {
            at = at.max(self.granted[0] + WINDOW_MS + MARGIN_MS);
        }
        if let Some(last) = self.granted.back() {
            at = at.max(*last);
        }
        if at - now_ms > HORIZON_MS {
            return Slot { at_ms: at, granted: false };
        }
        self.granted.push_back(at);
        Slot { at_ms: at, granted: true }
    }
}
