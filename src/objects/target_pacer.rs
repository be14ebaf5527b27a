//! `TargetPacer`: one object per paced target, shared by every shard, that
//! hands out send times keeping the target's `ratePerSecond`
//! (`bw_ledger_core::targets::pace`). It keeps them in memory only: it is
//! evicted only after it has been idle, when no recent send time matters;
//! a restart mid-burst can let one window's worth more through, which the
//! README states.

use std::cell::RefCell;

use bw_ledger_core::targets::pace::Pacer;
use bw_ledger_core::wire::target_pacer::{self, Slot};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::clock::now_ms;
use crate::object_call::{reply, request};

#[durable_object]
pub struct TargetPacer {
    pacer: RefCell<Pacer>,
}

impl DurableObject for TargetPacer {
    fn new(_state: State, _env: Env) -> Self {
        Self { pacer: RefCell::new(Pacer::default()) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match target_pacer::Call::from_path(&req.path()) {
            Some(target_pacer::Call::Slot) => {
                let ask = request::<Slot>(&mut req).await?;
                let slot = self.pacer.borrow_mut().reserve(now_ms(), ask.rate_per_second);
                reply::<Slot>(&slot)
            }
            None => Response::error("unknown pacer method", 404),
        }
    }
}
