//! A send's admission by its key's guard (`objects::key_guard`): its rate
//! and quota, its `Idempotency-Key` claim (waiting behind a request with
//! the same key, and reading earlier builds' records in a guard's first
//! day), and giving back what a send that never went out took.

use std::time::Duration;

use bw_ledger_core::client::ClientKey;
use bw_ledger_core::idempotency::{
    decide_begin, scope_key, BeginDecision, GuardClaim, GuardFinish, IdemBegin, IdemFinish, IdemPeek, SavedResponse,
};
use bw_ledger_core::identity::{canonical_json, sha256_hex};
use bw_ledger_core::limits::{limited, Ask, Verdict};
use bw_ledger_core::send::ValidSend;
use bw_ledger_core::wire::ledger;
use bw_ledger_core::ApiError;
use worker::{Delay, Env};

use crate::clock::now_ms;
use crate::config::Config;
use crate::objects::key_guard;
use crate::shard_client::ShardClient;

/// How long a duplicate waits for the first request with its key to finish.
const IN_FLIGHT_WAIT: Duration = Duration::from_millis(100);

/// What the key's guard did with a send.
pub enum Admitted {
    /// Admitted, with no Idempotency-Key.
    Unkeyed,
    /// Admitted, and this request holds the Idempotency-Key.
    Claimed(String),
    /// The key's saved answer: nothing more to do.
    Replay(SavedResponse),
}

/// The key's guard admits the send (and claims its Idempotency-Key).
pub async fn admit_send(
    env: &Env,
    config: &Config,
    key: &ClientKey,
    shards: &ShardClient,
    idempotency_key: Option<String>,
    valid: &ValidSend,
    ask: Ask,
) -> Result<Admitted, ApiError> {
    let Some(k) = idempotency_key else {
        key_guard::enforce(env, key, ask).await?;
        return Ok(Admitted::Unkeyed);
    };
    // The guard will keep the answer: erasure and retention must find it
    // even once the key is gone from CLIENT_KEYS.
    key_guard::register(env, &key.id).await?;
    let begin = IdemBegin {
        scope_key: scope_key(&key.id, &k),
        body_hash: sha256_hex(canonical_json(&valid.body).as_bytes()),
        now_ms: now_ms(),
    };
    Ok(match claim_key(env, key, shards, begin, ask, config.upstream_timeout()).await? {
        Claim::Ours(scope) => Admitted::Claimed(scope),
        Claim::Replay(saved) => Admitted::Replay(saved),
    })
}

/// Gives back what the guard admitted for a send that never went out: the
/// Idempotency-Key is released, the recipients refunded.
pub async fn give_back(env: &Env, key: &ClientKey, admitted: Admitted, recipients: u32) {
    match admitted {
        Admitted::Claimed(scope) => finish_claim(env, &key.id, scope, None, recipients).await,
        Admitted::Unkeyed => refund(env, key, recipients).await,
        Admitted::Replay(_) => {}
    }
}

/// Gives back an admitted send that never went out.
pub async fn refund(env: &Env, key: &ClientKey, recipients: u32) {
    if let Err(e) = key_guard::admit(env, &key.id, Ask::Refund { recipients }).await {
        crate::log::log_error!("send: a refused send of key {} still counts against its quota: {e}", key.id);
    }
}

/// Saves the outcome under the idempotency key, or releases the key
/// (`None`), giving back `refund` recipients, in one call to the key's guard.
pub async fn finish_claim(env: &Env, key_id: &str, scope_key: String, response: Option<SavedResponse>, refund: u32) {
    let finish = GuardFinish { finish: IdemFinish { scope_key, response }, refund, now_ms: now_ms() };
    if key_guard::finish(env, key_id, &finish).await.is_err() {
        crate::log::log_error!(
            "send: idempotency record could not be finished; retries with this key will wait for it to expire"
        );
    }
}

enum Claim {
    Ours(String),
    Replay(SavedResponse),
}

/// Claims an idempotency key and admits its send at the key's guard,
/// waiting (up to about the upstream timeout) while another request with
/// the same key is being sent. In the first day of a guard's records the
/// shards, where earlier builds kept them, are read too (`read_through`).
async fn claim_key(
    env: &Env,
    key: &ClientKey,
    shards: &ShardClient,
    mut begin: IdemBegin,
    ask: Ask,
    wait: Duration,
) -> Result<Claim, ApiError> {
    let deadline = begin.now_ms + wait.as_millis() as i64 + 1000;
    let recipients = match ask {
        Ask::Send { recipients, .. } => recipients,
        _ => 0,
    };
    loop {
        let reply = key_guard::claim(env, &key.id, &GuardClaim { begin: begin.clone(), ask: ask.clone() }).await?;
        match reply.decision {
            BeginDecision::Proceed => {
                if let Some(Verdict::Refuse { reason, retry_after_s }) = reply.verdict {
                    return Err(limited(&key.id, &key.limits, reason, retry_after_s));
                }
                if !reply.read_through {
                    return Ok(Claim::Ours(begin.scope_key));
                }
                // A record an earlier build kept in a shard decides, if any.
                let shard = shards.placement().shard_of_untimed(&begin.scope_key);
                let peek = IdemPeek { scope_key: begin.scope_key.clone() };
                let old = shards.call::<ledger::IdemPeek>(shard, &peek).await?;
                let scope = begin.scope_key.clone();
                let release = |response| finish_claim(env, &key.id, scope.clone(), response, recipients);
                return match decide_begin(old.as_ref(), &begin.body_hash, begin.now_ms) {
                    BeginDecision::Proceed => Ok(Claim::Ours(begin.scope_key.clone())),
                    BeginDecision::Replay { response } => {
                        release(Some(response.clone())).await;
                        Ok(Claim::Replay(response))
                    }
                    BeginDecision::Mismatch => {
                        release(None).await;
                        Err(ApiError::IdempotencyMismatch)
                    }
                    BeginDecision::InFlight => {
                        release(None).await;
                        Err(ApiError::IdempotencyInFlight)
                    }
                };
            }
            BeginDecision::Replay { response } => return Ok(Claim::Replay(response)),
            BeginDecision::Mismatch => return Err(ApiError::IdempotencyMismatch),
            BeginDecision::InFlight if now_ms() < deadline => {
                Delay::from(IN_FLIGHT_WAIT).await;
                begin.now_ms = now_ms();
            }
            BeginDecision::InFlight => return Err(ApiError::IdempotencyInFlight),
        }
    }
}
