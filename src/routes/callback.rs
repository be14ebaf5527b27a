//! `POST /callbacks/bandwidth`: the ack path.
//!
//! Order matters: authenticate, bound the size, parse, and answer 2xx only
//! after every shard touched has confirmed its write. A shard's failure is
//! ours (503): Bandwidth retries, and dedup absorbs what did land.

use bw_ledger_core::auth::{check_basic, AuthOutcome};
use bw_ledger_core::event::MAX_CALLBACK_BODY;
use bw_ledger_core::optout::RecordRequest;
use bw_ledger_core::wire::opt_outs;
use bw_ledger_core::{parse_callback_body, ApiError};
use worker::{Env, Request, Response};

use crate::clock::now_ms;
use crate::config::Config;
use crate::http;
use crate::log::Trace;
use crate::objects::opt_outs::book;
use crate::shard_client::ShardClient;

pub async fn receive(req: &mut Request, env: &Env, config: &Config, trace: &mut Trace) -> Result<Response, ApiError> {
    let header = http::header(req, "Authorization");
    let credentials = config.callback_credentials();
    if header.is_some() && credentials.is_empty() {
        // Credentials were presented but none are configured: our fault, and
        // a 5xx keeps Bandwidth retrying until the operator fixes it.
        return Err(ApiError::NotConfigured("CALLBACK_USER/CALLBACK_PASSWORD"));
    }
    match check_basic(header.as_deref(), credentials) {
        AuthOutcome::Accepted => {}
        AuthOutcome::Missing | AuthOutcome::Rejected => return Err(ApiError::CallbackUnauthorized),
    }
    let body = http::read_bounded(req, MAX_CALLBACK_BODY).await?;
    let parsed = parse_callback_body(&body);
    let shards = ShardClient::open(env, config).await?;
    // The log line names the message when the callback is about one (as
    // Bandwidth's almost always are).
    if let Some(first) = parsed.events.first() {
        if parsed.events.iter().all(|e| e.message_id == first.message_id) {
            trace.shard = Some(shards.shard_of(&first.message_id));
            trace.message_id = Some(first.message_id.clone());
        }
    }
    let now = now_ms();
    // Opt-outs and opt-ins (a STOP, a 4775) are stored in the book before
    // the 2xx, alongside the events: a crash after the answer never loses
    // one, and Bandwidth's retry of a failed write records it once.
    let signals = config.opt_out_rules().signals(&parsed.events);
    let ingest = bw_ledger_core::ingest::ingest(&shards, &parsed, shards.placement(), now, |shard, e| {
        crate::log::log_error!("callback ingest: shard {shard} did not confirm: {e}");
    });
    let reply = if signals.is_empty() {
        ingest.await?
    } else {
        let record = RecordRequest { signals, now_ms: now, reply: config.opt_out_reply().is_some() };
        let (stored, booked) = futures_util::future::join(ingest, book::<opt_outs::Record>(env, &record)).await;
        booked?;
        stored?
    };
    http::json(&reply)
}
