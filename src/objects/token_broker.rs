//! `TokenBroker`: one Durable Object that holds the OAuth2 access token.
//!
//! Concurrent callers that find no fresh token queue behind a single token
//! request (`blockConcurrencyWhile`), so N sends cost one request to the
//! token endpoint. The token lives in memory only: losing it costs one
//! more token request, never correctness. A token Bandwidth answers 401 to
//! is dropped here too, not only in the isolate that saw the 401.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bw_ledger_core::oauth::{basic_header, CachedToken, TokenOutcome, UpstreamAuth, TOKEN_REQUEST_BODY};
use bw_ledger_core::wire::token_broker::{self, Token};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::clock::now_ms;
use crate::config::Config;
use crate::fetch::{fetch_with_timeout, FetchFailure};
use crate::http::post;
use crate::object_call::{reply, request};

#[durable_object]
pub struct TokenBroker {
    state: State,
    env: Env,
    token: Rc<RefCell<Option<CachedToken>>>,
}

impl DurableObject for TokenBroker {
    fn new(state: State, env: Env) -> Self {
        Self { state, env, token: Rc::new(RefCell::new(None)) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match token_broker::Call::from_path(&req.path()) {
            Some(token_broker::Call::Token) => self.serve_token(&mut req).await,
            None => Response::error("unknown token broker method", 404),
        }
    }
}

impl TokenBroker {
    /// A fresh token: the one held, or one fetched for every waiting caller.
    async fn serve_token(&self, req: &mut Request) -> Result<Response> {
        let ask = request::<Token>(req).await?;
        let fresh = |slot: &RefCell<Option<CachedToken>>| slot.borrow().clone().filter(|t| t.is_fresh(now_ms()));
        // Bandwidth refused this token (revoked, rotated): never hand it out again.
        if let Some(rejected) = &ask.rejected {
            let held = self.token.borrow().as_ref().is_some_and(|t| &t.access_token == rejected);
            if held {
                *self.token.borrow_mut() = None;
            }
        }
        // No await before this check: a caller queued behind a refresh sees its result.
        if let Some(token) = fresh(&self.token) {
            return reply::<Token>(&TokenOutcome::Token { token });
        }
        let config = Config::from_env(&self.env);
        let Ok(UpstreamAuth::OAuth { client_id, client_secret }) = config.upstream_auth() else {
            return reply::<Token>(&TokenOutcome::Refused { status: 401 });
        };
        let (url, timeout, slot) = (config.token_url(), config.upstream_timeout(), self.token.clone());
        let outcome = self
            .state
            .block_concurrency_while(async move {
                if let Some(token) = fresh(&slot) {
                    return Ok(TokenOutcome::Token { token });
                }
                let outcome = request_token(&url, &client_id, &client_secret, timeout).await;
                if let TokenOutcome::Token { token } = &outcome {
                    *slot.borrow_mut() = Some(token.clone());
                }
                Ok(outcome)
            })
            .await?;
        reply::<Token>(&outcome)
    }
}

/// Asks the token endpoint for a client-credentials token.
async fn request_token(token_url: &str, client_id: &str, client_secret: &str, timeout: Duration) -> TokenOutcome {
    let authorization = basic_header(client_id, client_secret);
    let headers = [
        ("Authorization", authorization.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept", "application/json"),
    ];
    let req = match post(token_url, &headers, TOKEN_REQUEST_BODY) {
        Ok(r) => r,
        Err(e) => {
            crate::log::log_error!("token request could not be built for {token_url}: {e}");
            return TokenOutcome::Unreachable;
        }
    };
    let now = now_ms();
    match fetch_with_timeout(req, timeout).await {
        Ok(reply) if (200..300).contains(&reply.status) => match CachedToken::from_response(&reply.body, now) {
            Ok(token) => TokenOutcome::Token { token },
            Err(e) => {
                crate::log::log_error!("token endpoint: {e}");
                TokenOutcome::Refused { status: reply.status }
            }
        },
        Ok(reply) => {
            crate::log::log_error!("token endpoint answered {}", reply.status);
            TokenOutcome::Refused { status: reply.status }
        }
        Err(FetchFailure::Timeout) => TokenOutcome::Timeout,
        Err(FetchFailure::Network(e)) => {
            crate::log::log_error!("token endpoint unreachable: {e}");
            TokenOutcome::Unreachable
        }
    }
}
