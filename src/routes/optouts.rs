//! The opt-out routes (API token only): `GET /optouts`, `POST /optouts`,
//! `DELETE /optouts/{number}`, `GET /optouts/{number}/history`. The rules
//! are `bw_ledger_core::optout`'s; the book (`objects::opt_outs`) keeps them.

use bw_ledger_core::optout::{Action, ListQuery, OperatorBody, OperatorChange};
use bw_ledger_core::send::is_e164;
use bw_ledger_core::wire::{opt_outs, NumberQuery};
use bw_ledger_core::ApiError;
use serde::Deserialize;
use worker::{Env, Request, Response};

use crate::clock::now_ms;
use crate::http;
use crate::objects::opt_outs::book;

/// Bodies here are a number and a note.
const MAX_BODY: usize = 8 * 1024;
const MAX_NOTE_CHARS: usize = 1024;

fn number(raw: &str) -> Result<String, ApiError> {
    if is_e164(raw) {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::BadRequest(format!("`number` must be an E.164 number, like +15554443333; got {raw:?}.")))
    }
}

fn note(raw: Option<String>) -> Result<String, ApiError> {
    match raw.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) {
        Some(n) if n.chars().count() <= MAX_NOTE_CHARS => Ok(n),
        Some(_) => Err(ApiError::BadRequest(format!("`note` must be at most {MAX_NOTE_CHARS} characters."))),
        None => Err(ApiError::BadRequest(
            "A `note` is required: say how and when the person asked (it is kept in the audit trail).".into(),
        )),
    }
}

/// `GET /optouts?number=&cursor=`: the opt-outs in force, a page at a time.
pub async fn list(req: &Request, env: &Env) -> Result<Response, ApiError> {
    let url = req.url().map_err(|_| ApiError::BadRequest("The URL is not valid.".into()))?;
    let param = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
    let q = ListQuery { number: param("number").map(|n| number(&n)).transpose()?, cursor: param("cursor") };
    http::json(&book::<opt_outs::List>(env, &q).await?)
}

/// `POST /optouts {"number", "note"}`: an opt-out received another way
/// (phone, email, a web form): account-wide, reason `operator`.
pub async fn add(req: &mut Request, env: &Env) -> Result<Response, ApiError> {
    let body = http::read_bounded(req, MAX_BODY).await?;
    let b: OperatorBody = serde_json::from_slice(&body).map_err(|_| {
        ApiError::BadRequest("The body must be {\"number\": \"+15554443333\", \"note\": \"…\"}.".into())
    })?;
    let change =
        OperatorChange { number: number(&b.number)?, action: Action::OptOut, note: note(b.note)?, now_ms: now_ms() };
    match book::<opt_outs::Operator>(env, &change).await? {
        Some(entry) => Ok(http::json(&entry.opt_out)?.with_status(201)),
        None => Err(ApiError::Conflict(format!("{} is already opted out.", change.number))),
    }
}

#[derive(Deserialize)]
struct LiftBody {
    note: Option<String>,
}

/// `DELETE /optouts/{number}` with `{"note"}`: lifts every opt-out of the
/// number, keeping the change in the audit trail.
pub async fn lift(req: &mut Request, env: &Env, raw_number: &str) -> Result<Response, ApiError> {
    let body = http::read_bounded(req, MAX_BODY).await?;
    let given = if body.is_empty() {
        None
    } else {
        serde_json::from_slice::<LiftBody>(&body)
            .map_err(|_| ApiError::BadRequest("The body must be {\"note\": \"…\"}.".into()))?
            .note
    };
    let change =
        OperatorChange { number: number(raw_number)?, action: Action::OptIn, note: note(given)?, now_ms: now_ms() };
    match book::<opt_outs::Operator>(env, &change).await? {
        Some(entry) => http::json(&entry),
        None => Err(ApiError::NotFound("Opt-out")),
    }
}

/// `GET /optouts/{number}/history`: every change, oldest first.
pub async fn history(env: &Env, raw_number: &str) -> Result<Response, ApiError> {
    let q = NumberQuery { number: number(raw_number)? };
    let history = book::<opt_outs::History>(env, &q).await?;
    http::json(&serde_json::json!({ "history": history }))
}
