//! Structured logs: every request is one JSON line (`route`, `status`,
//! `durationMs`, `shard` and `messageId` where known), and every warning and
//! error is a JSON line of the same shape with a `msg`. Workers Logs (and
//! `wrangler tail`) index the fields.
//!
//! Nothing secret is logged: routes are logged by their template
//! (`Route::label`), never by path or query (a `?token=` lives there), no
//! header is ever logged, and as a last guard every `msg` is scrubbed of
//! anything shaped like a credential (`Bearer …`, `Basic …`, `token=…`,
//! `whsec_…`) before it is written.

use bw_ledger_core::redact::redact;
use serde::Serialize;

/// What a request's handler learned for its log line.
#[derive(Default)]
pub struct Trace {
    pub shard: Option<u32>,
    pub message_id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    level: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg: Option<&'a str>,
}

impl Line<'_> {
    fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"level\":\"{}\"}}", self.level))
    }
}

/// The request's line, once it is answered.
#[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
pub fn request(route: &str, status: u16, duration_ms: i64, trace: &Trace) {
    let line = Line {
        level: "info",
        route: Some(route),
        status: Some(status),
        duration_ms: Some(duration_ms),
        shard: trace.shard,
        message_id: trace.message_id.as_deref(),
        msg: None,
    };
    worker::console_log!("{}", line.text());
}

fn line<'a>(level: &'static str, msg: &'a str) -> Line<'a> {
    Line { level, route: None, status: None, duration_ms: None, shard: None, message_id: None, msg: Some(msg) }
}

pub fn info(msg: &str) {
    let msg = redact(msg);
    worker::console_log!("{}", line("info", &msg).text());
}

pub fn warn(msg: &str) {
    let msg = redact(msg);
    worker::console_warn!("{}", line("warn", &msg).text());
}

pub fn error(msg: &str) {
    let msg = redact(msg);
    worker::console_error!("{}", line("error", &msg).text());
}

/// `log_warn!("fmt", args…)`: a structured warning.
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::log::warn(&format!($($arg)*)) };
}

/// `log_info!("fmt", args…)`: a structured note.
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log::info(&format!($($arg)*)) };
}

/// `log_error!("fmt", args…)`: a structured error.
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log::error(&format!($($arg)*)) };
}

pub(crate) use {log_error, log_info, log_warn};
