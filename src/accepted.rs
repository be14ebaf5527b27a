//! A message Bandwidth accepted (`202`), recorded in the ledger so its
//! callbacks attach to it: the send proxy's sends, and the opt-out book's
//! confirmations, which it sends itself.

use bw_ledger_core::event::accepted_event_with;
use bw_ledger_core::multichannel::accepted_message;
use bw_ledger_core::send::Endpoint;
use bw_ledger_core::ParsedCallback;
use worker::Env;

use crate::clock::now_ms;
use crate::config::Config;
use crate::shard_client::ShardClient;
use crate::upstream::create_message;

/// Records the accepted message so later callbacks attach to it. The
/// message is already sent: a failure here is logged, never answered as an
/// error (the caller would retry and send twice).
pub async fn record(shards: &ShardClient, accepted_body: &[u8], opt_out_override: bool, endpoint: Endpoint) {
    let message = match endpoint {
        Endpoint::Message => Ok(accepted_body.to_vec()),
        Endpoint::MultiChannel => accepted_message(accepted_body),
    };
    let event = match message.and_then(|m| accepted_event_with(&m, opt_out_override)) {
        Ok(ev) => ev,
        Err(why) => {
            crate::log::log_error!("send: 202 answer could not be recorded in the ledger: {why}");
            return;
        }
    };
    let parsed = ParsedCallback { events: vec![event], rejected: Vec::new() };
    let result = bw_ledger_core::ingest::ingest(shards, &parsed, shards.placement(), now_ms(), |shard, e| {
        crate::log::log_error!("send: ledger shard {shard} did not record the accepted message: {e}");
    })
    .await;
    if result.is_err() {
        crate::log::log_error!("send: the accepted message is missing from the ledger until its callbacks arrive");
    }
}

/// Sends `OPT_OUT_REPLY` to `to` from `from` (the opt-out book's alarm),
/// through the same upstream path as the proxy, and records it in the
/// ledger like any send. Never retried: a confirmation is sent at most once.
pub async fn send_confirmation(env: &Env, to: &str, from: &str) {
    let config = Config::from_env(env);
    let (Some(text), Ok(account)) = (config.opt_out_reply(), config.account_id()) else { return };
    let mut body = serde_json::json!({ "to": [to], "from": from, "text": text });
    if let Some(app) = config.application_id() {
        body["applicationId"] = app.into();
    }
    match create_message(env, &config, &account, Endpoint::Message, &body.to_string()).await {
        Ok(reply) if (200..300).contains(&reply.status) => match ShardClient::open(env, &config).await {
            Ok(shards) => record(&shards, &reply.body, false, Endpoint::Message).await,
            _ => crate::log::log_error!("opt-outs: confirmation sent, but the ledger is not configured to record it"),
        },
        Ok(reply) => crate::log::log_error!("opt-outs: Bandwidth refused the confirmation: {}", reply.status),
        Err(_) => crate::log::log_error!("opt-outs: the confirmation could not be sent"),
    }
}
