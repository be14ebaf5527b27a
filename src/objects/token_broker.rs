//! `TokenBroker`: one Durable Object that holds the OAuth2 access token.
//!
//! Concurrent callers that find no fresh token queue behind a single token
//! request (`blockConcurrencyWhile`), so N sends cost one request to the
//! token endpoint. The token lives in memory only: losing it costs one
//! more token request, never correctness. A token Bandwidth answers 401 to
//! is dropped here too, not only in the isolate that saw the 401.

use std::cell::RefCell;
use std::rc::Rc;

use bw_ledger_core::oauth::{CachedToken, TokenOutcome, UpstreamAuth};
use bw_ledger_core::wire::token_broker::Token;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::clock::now_ms;
use crate::config::Config;
use crate::object_call::{reply, request};
use crate::upstream::request_token;

/// The one broker's object name.
pub const BROKER_NAME: &str = "bandwidth-oauth";

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
        let ask = request::<Token>(&mut req).await?;
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
