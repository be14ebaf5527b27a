//! The data lifecycle routes (API token only): `POST /retention/run`,
//! `POST /erasure`, `GET /export`, and the daily cron's sweep. The rules
//! are `bw_ledger_core::lifecycle`'s; shards delete in bounded batches.

use bw_ledger_core::lifecycle::{
    csv_header, csv_lines, parse_erasure, parse_export, retention_cutoff, EraseRequest, ExportCursor, ExportFormat,
    ExportQuery, SweepRequest, BATCH, EXPORT_PAGE,
};
use bw_ledger_core::projection::project;
use bw_ledger_core::wire::{ledger, opt_outs, Method, NumberQuery};
use bw_ledger_core::ApiError;
use futures_util::future::join_all;
use worker::{Env, Headers, Request, Response};

use crate::clock::now_ms;
use crate::config::Config;
use crate::http;
use crate::objects::key_guard;
use crate::objects::opt_outs::book;
use crate::shard_client::ShardClient;

/// Erasure bodies are one number.
const MAX_ERASURE_BODY: usize = 4 * 1024;

fn sweep_request(config: &Config, continue_by_alarm: bool) -> Result<SweepRequest, ApiError> {
    let now = now_ms();
    let cutoff_ms = config.retention_days()?.map(|days| retention_cutoff(days, now));
    Ok(SweepRequest { cutoff_ms, now_ms: now, limit: BATCH, continue_by_alarm })
}

/// `POST /retention/run`: sweeps every shard now, batch by batch (each
/// batch its own shard call, so callbacks run between them), and answers
/// the count of messages deleted.
pub async fn run(env: &Env, config: &Config) -> Result<Response, ApiError> {
    let request = sweep_request(config, false)?;
    let shards = ShardClient::open(env, config).await?;
    let replies = in_batches::<ledger::Sweep>(&shards, &request, |r| r.more).await?;
    let purged: u64 = replies.iter().map(|r| u64::from(r.purged)).sum();
    sweep_guards(env, config, &request).await?;
    let days = config.retention_days()?;
    http::json(&serde_json::json!({ "purged": purged, "retentionDays": days }))
}

/// The daily cron: starts a sweep on every shard; each continues from its
/// own alarm, a batch per wake, until nothing older than the window is left.
pub async fn scheduled(env: &Env, config: &Config) {
    let started = async {
        let request = sweep_request(config, true)?;
        let shards = ShardClient::open(env, config).await?;
        let replies = shards.call_all::<ledger::Sweep>(&request).await?;
        sweep_guards(env, config, &request).await?;
        Ok::<u64, ApiError>(replies.iter().map(|r| u64::from(r.purged)).sum())
    };
    match started.await {
        Ok(purged) => {
            crate::log::log_info!("retention: daily sweep started; {purged} messages deleted in its first batches")
        }
        Err(e) => crate::log::log_error!("retention: daily sweep could not start: {e}"),
    }
}

/// `POST /erasure` with `{"number": "+1..."}`: deletes every message the
/// number sent or received, on every shard, and the quarantine items and
/// saved send answers (in the shards, and with every key's guard) that
/// mention it; answers the counts.
pub async fn erasure(req: &mut Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let body = http::read_bounded(req, MAX_ERASURE_BODY).await?;
    let number = parse_erasure(&body)?;
    let request = EraseRequest { number, now_ms: now_ms(), limit: BATCH };
    let shards = ShardClient::open(env, config).await?;
    let replies = in_batches::<ledger::Erase>(&shards, &request, |r| r.more).await?;
    let erased: u64 = replies.iter().map(|r| u64::from(r.erased)).sum();
    let quarantined: u64 = replies.iter().map(|r| u64::from(r.quarantined)).sum();
    // Saved send answers live with each client key's guard: every guard
    // that ever kept one, whether or not its key is still configured.
    let ids = key_guard::guard_ids(env, &config.client_keys()?).await?;
    for result in join_all(ids.iter().map(|id| key_guard::erase(env, id, &request))).await {
        result?;
    }
    // An opt-out of the number outlives its data, as a keyed hash.
    book::<opt_outs::Erase>(env, &NumberQuery { number: request.number.clone() }).await?;
    http::json(&serde_json::json!({ "erased": erased, "quarantineItems": quarantined }))
}

/// Retention on every guard that may keep saved send answers (their own
/// 24 hours, or the window if shorter), configured or not.
async fn sweep_guards(env: &Env, config: &Config, request: &SweepRequest) -> Result<(), ApiError> {
    let ids = key_guard::guard_ids(env, &config.client_keys()?).await?;
    for result in join_all(ids.iter().map(|id| key_guard::sweep(env, id, request))).await {
        result?;
    }
    Ok(())
}

/// Calls method `M` on every shard concurrently, each shard again and again
/// (one bounded batch per call, so callbacks run between them) until its
/// reply says no more remain; answers every reply.
async fn in_batches<M: Method<Object = ledger::Object>>(
    shards: &ShardClient,
    request: &M::Request,
    more: impl Fn(&M::Reply) -> bool,
) -> Result<Vec<M::Reply>, ApiError> {
    let per_shard = (0..shards.count()).map(|shard| {
        let more = &more;
        async move {
            let mut replies = Vec::new();
            loop {
                let reply = shards.call::<M>(shard, request).await?;
                let again = more(&reply);
                replies.push(reply);
                if !again {
                    return Ok::<_, ApiError>(replies);
                }
            }
        }
    });
    let mut all = Vec::new();
    for replies in join_all(per_shard).await {
        all.extend(replies?);
    }
    Ok(all)
}

/// Where an export stands: the shard it reads and where in it.
struct Export {
    shards: ShardClient,
    format: ExportFormat,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    shard: u32,
    after: Option<ExportCursor>,
    header_sent: bool,
}

impl Export {
    /// The next chunk of the body, or `None` at the end. One shard page
    /// at a time, so memory stays flat however many messages there are.
    async fn next_chunk(mut self) -> Option<(worker::Result<Vec<u8>>, Self)> {
        if self.format == ExportFormat::Csv && !self.header_sent {
            self.header_sent = true;
            return Some((Ok(csv_header()), self));
        }
        if self.shard >= self.shards.count() {
            return None;
        }
        let q = ExportQuery { from_ms: self.from_ms, to_ms: self.to_ms, after: self.after.take(), limit: EXPORT_PAGE };
        let page = match self.shards.call::<ledger::Export>(self.shard, &q).await {
            Ok(page) => page,
            Err(e) => {
                // The answer is already under way: cutting it is the only
                // signal left, and an incomplete transfer is detectable.
                self.shard = self.shards.count();
                return Some((Err(worker::Error::RustError(format!("export stopped: {e}"))), self));
            }
        };
        let mut chunk = Vec::new();
        for m in page.messages {
            let Some(view) = project(&m.message_id, &m.records) else { continue };
            match self.format {
                ExportFormat::Ndjson => {
                    if serde_json::to_writer(&mut chunk, &view).is_ok() {
                        chunk.push(b'\n');
                    }
                }
                ExportFormat::Csv => chunk.extend(csv_lines(&view, m.time_ms)),
            }
        }
        match page.next {
            Some(next) => self.after = Some(next),
            None => self.shard += 1,
        }
        Some((Ok(chunk), self))
    }
}

/// `GET /export?from=&to=&format=ndjson|csv`: streams the messages whose
/// time is in `[from, to)`, shard by shard in pages.
pub async fn export(req: &Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    let url = req.url().map_err(|_| ApiError::BadRequest("The URL is not valid.".into()))?;
    let (from_ms, to_ms, format) = parse_export(url.query())?;
    let shards = ShardClient::open(env, config).await?;
    let state = Export { shards, format, from_ms, to_ms, shard: 0, after: None, header_sent: false };
    let body = futures_util::stream::unfold(state, Export::next_chunk);
    let headers = Headers::new();
    let _ = headers.set("Content-Type", format.content_type());
    let _ = headers.set("Cache-Control", "no-store");
    let name = if format == ExportFormat::Csv { "bw-ledger-export.csv" } else { "bw-ledger-export.ndjson" };
    let _ = headers.set("Content-Disposition", &format!("attachment; filename=\"{name}\""));
    Ok(Response::from_stream(body).map_err(|_| ApiError::Internal)?.with_headers(headers))
}
