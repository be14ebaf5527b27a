//! All-or-nothing shard writes: `ctx.storage.transactionSync`, which the
//! `worker` crate does not bind.
//!
//! Without it, a handler's statements run in workerd's implicit
//! transaction, which commits whatever the handler returns
//! (`ActorSqlite::onWrite` in workerd's `io/actor-sqlite.c++` schedules the
//! commit as soon as the first statement writes; it rolls back only when the
//! object is reset). So a statement that failed midway left the ones before
//! it committed. `DurableObjectStorage::transactionSync`
//! (`api/actor-state.c++`) wraps the callback in `SAVEPOINT` … `RELEASE`,
//! and on a throw runs `ROLLBACK TO` and rethrows: nothing of it remains.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::{Error, Result, State};

#[wasm_bindgen]
extern "C" {
    #[derive(Clone)]
    type SyncStorage;
    #[wasm_bindgen(method, catch, js_name = transactionSync)]
    fn transaction_sync(
        this: &SyncStorage,
        callback: &mut dyn FnMut() -> std::result::Result<(), JsValue>,
    ) -> std::result::Result<JsValue, JsValue>;
}

/// An object's storage, for running writes all or nothing.
#[derive(Clone)]
pub struct Transactions(SyncStorage);

impl Transactions {
    fn of(state: &State) -> Result<Self> {
        let storage = state.as_raw().storage().map_err(|e| Error::RustError(format!("storage: {e:?}")))?;
        Ok(Self(storage.unchecked_into()))
    }

    /// As [`Transactions::of`], for an object's constructor, which cannot
    /// fail: the runtime gives every object its storage (`State::storage`
    /// in the worker crate unwraps this same call), so its absence is a
    /// panic naming the object.
    pub fn of_object(state: &State, object: &str) -> Self {
        match Self::of(state) {
            Ok(txn) => txn,
            Err(e) => panic!("{object} without storage: {e}"),
        }
    }

    /// Runs `work` inside one SQLite savepoint: if it returns an error,
    /// every statement it ran is rolled back and the error is returned.
    /// `work` cannot await (the savepoint spans one synchronous call).
    #[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
    pub fn atomically<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut work = Some(work);
        let mut outcome: Option<Result<T>> = None;
        let mut callback = || {
            let result = match work.take() {
                Some(work) => work(),
                None => Err(Error::RustError("transaction callback ran twice".into())),
            };
            let failed = result.is_err();
            outcome = Some(result);
            // Throwing is what makes workerd roll the savepoint back.
            if failed {
                Err(JsValue::from_str("rolled back"))
            } else {
                Ok(())
            }
        };
        let committed = self.0.transaction_sync(&mut callback);
        match (outcome, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(_)) => Ok(value),
            (_, Err(e)) => {
                Err(Error::RustError(format!("transaction: {}", e.as_string().unwrap_or_else(|| format!("{e:?}")))))
            }
            (None, Ok(_)) => Err(Error::RustError("transaction callback did not run".into())),
        }
    }
}
