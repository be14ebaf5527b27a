//! Shared by the core's test files, natively and on wasm32.
#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bw_ledger_core::records::{EventRecord, MessageRecords, StoredEvent};
use bw_ledger_core::{parse_callback_body, CallbackEvent};

pub const SMS_LIFECYCLE: &str = include_str!("../fixtures/sms_outbound_lifecycle.json");
pub const GROUP_MMS_INVALID: &str = include_str!("../fixtures/group_mms_invalid_number.json");
pub const INBOUND_MMS: &str = include_str!("../fixtures/inbound_mms.json");
pub const FAILED: &str = include_str!("../fixtures/failed_with_error.json");
pub const RBM: &str = include_str!("../fixtures/rbm_read_and_responses.json");

pub fn events(fixture: &str) -> Vec<CallbackEvent> {
    let parsed = parse_callback_body(fixture.as_bytes());
    assert!(parsed.rejected.is_empty(), "fixture has rejected elements: {:?}", parsed.rejected);
    parsed.events
}

/// Stored rows as a shard would return them, in the given arrival order.
pub fn stored(events: &[CallbackEvent]) -> MessageRecords {
    MessageRecords {
        events: events
            .iter()
            .enumerate()
            .map(|(i, ev)| StoredEvent {
                seq: i as i64 + 1,
                record: EventRecord::from_event(ev),
                received_at_ms: 1_800_000_000_000 + i as i64,
            })
            .collect(),
        conflicts: Vec::new(),
        media: Vec::new(),
    }
}

/// The same, all received at one instant (time 0): a projection of them
/// then depends on nothing but the events and their order.
pub fn arrived_together<'a>(events: impl IntoIterator<Item = &'a CallbackEvent>) -> MessageRecords {
    MessageRecords {
        events: events
            .into_iter()
            .enumerate()
            .map(|(i, ev)| StoredEvent { seq: i as i64, record: EventRecord::from_event(ev), received_at_ms: 0 })
            .collect(),
        conflicts: Vec::new(),
        media: Vec::new(),
    }
}

/// Runs a future that never waits (in-memory stores) to completion.
pub fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("future was expected to complete without waiting"),
    }
}

/// xorshift64*: a small deterministic generator, the same natively and on
/// wasm32, so randomized tests reproduce from their seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
