//! `GET /keys` (API token): each client key's limits, its use this UTC day
//! and its refusals, as its guard (`objects::key_guard`) counted them.

use bw_ledger_core::limits::KeyUsage;
use bw_ledger_core::ApiError;
use futures_util::future::join_all;
use worker::{Env, Response};

use crate::clock::now_ms;
use crate::config::Config;
use crate::http;
use crate::objects::key_guard;

pub async fn usage(env: &Env, config: &Config) -> Result<Response, ApiError> {
    let keys = config.client_keys()?;
    let states = join_all(keys.iter().map(|k| key_guard::usage(env, &k.id))).await;
    let now = now_ms();
    let mut usage = Vec::with_capacity(keys.len());
    for (key, state) in keys.iter().zip(states) {
        usage.push(KeyUsage::of(&key.id, &key.limits, &key.allowed_from, state?, now));
    }
    http::json(&serde_json::json!({ "keys": usage }))
}
