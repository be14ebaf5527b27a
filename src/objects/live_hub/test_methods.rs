//! The live hub's test method, compiled only into the e2e suite's build
//! (`test-hooks`).

use bw_ledger_core::wire::{live_hub, Empty};
use worker::{Request, Response, Result, State};

use crate::object_call::{reply, request};

bw_ledger_core::methods! {
    object = live_hub::Object;
    /// The `CLIENT_KEYS` JSON the hub checks sockets against from now on
    /// (a running workerd cannot change a secret without restarting, which
    /// would drop every socket anyway); the key check runs now.
    LiveKeys = "/test/live-keys": String => Empty;
}

/// Where the hub keeps that list.
pub const LIVE_KEYS_OVERRIDE: &str = "test-client-keys";

/// Every test method, one arm each.
pub(super) async fn serve(state: &State, call: Call, mut req: Request) -> Result<Response> {
    match call {
        Call::LiveKeys => {
            let keys = request::<LiveKeys>(&mut req).await?;
            state.storage().put(LIVE_KEYS_OVERRIDE, keys).await?;
            // Runs the real alarm now rather than within the minute.
            state.storage().set_alarm(0).await?;
            reply::<LiveKeys>(&Empty {})
        }
    }
}
