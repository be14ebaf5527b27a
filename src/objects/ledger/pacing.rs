//! `ratePerSecond`: before a delivery to a paced target, the target's pacer
//! (`TargetPacer`, one object per target, shared by every shard) gives it a
//! send time (`bw_ledger_core::targets::pace`). A delivery whose time is
//! near waits for it; one whose time is further off goes back to its row,
//! due then. Waiting is never an attempt and never a failure.

use std::time::Duration;

use bw_ledger_core::targets::pace::{SlotRequest, HORIZON_MS, LATE_MS, WINDOW_MS};
use bw_ledger_core::wire::target_pacer;
use worker::{Delay, Env};

use crate::clock::now_ms;
use crate::object_call::call;

/// Send times asked for per delivery before it goes back to its row.
const ASKS: u32 = 3;

/// What a delivery to a paced target does now.
pub enum Turn {
    /// Send (its send time has come).
    Now,
    /// Wait: the row is due again at this time.
    Later(i64),
}

/// Waits for a send time of target `id` at `rate_per_second`, if it is
/// near. A pacer that cannot be reached defers the delivery a little: the
/// cap holds whatever fails.
pub async fn wait_turn(env: &Env, id: &str, rate_per_second: u32) -> Turn {
    let request = SlotRequest { rate_per_second };
    for _ in 0..ASKS {
        match call::<target_pacer::Slot>(env, &target_pacer::name(id), &request).await {
            Ok(slot) if slot.granted => {
                let wait = slot.at_ms - now_ms();
                if wait > 0 {
                    Delay::from(Duration::from_millis(wait as u64)).await;
                }
                // Woken (or answered) too late, it would crowd the next
                // send: it asks again.
                if now_ms() - slot.at_ms <= LATE_MS {
                    return Turn::Now;
                }
            }
            Ok(slot) => return Turn::Later(slot.at_ms),
            Err(_) => return Turn::Later(now_ms() + HORIZON_MS),
        }
    }
    Turn::Later(now_ms() + WINDOW_MS)
}
