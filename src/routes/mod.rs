//! The Worker's HTTP routes, one file per concern, and who may call them.
//! Routes authenticate, call the core and the objects, and render; every
//! rule they apply is `bw_ledger_core`'s.

pub mod admission;
pub mod callback;
pub mod keys;
pub mod lifecycle;
pub mod live;
pub mod media;
pub mod ops;
pub mod optouts;
pub mod outbox;
pub mod read;
pub mod send;
pub mod targets;
#[cfg(feature = "test-hooks")]
pub mod test_routes;

use bw_ledger_core::auth::{check_bearer, AuthOutcome};
use bw_ledger_core::client::{reader, ClientKey, Reader};
use bw_ledger_core::limits::Ask;
use bw_ledger_core::ApiError;
use worker::{Env, Request};

use crate::config::Config;
use crate::http::header;
use crate::objects::key_guard;

/// Operator routes: the API token only.
pub fn authorize_api(req: &Request, config: &Config) -> Result<(), ApiError> {
    let token = config.api_token().ok_or(ApiError::NotConfigured("API_TOKEN"))?;
    match check_bearer(header(req, "Authorization").as_deref(), token) {
        AuthOutcome::Accepted => Ok(()),
        AuthOutcome::Missing | AuthOutcome::Rejected => Err(ApiError::ApiUnauthorized),
    }
}

/// Reader routes (lists, conversations, the live feed): the API token, or
/// a client key, which limits what is read to its numbers
/// (`Reader::scope`) and counts against its `reads_per_minute`.
pub async fn authorize_reader(
    header: Option<&str>,
    env: &Env,
    config: &Config,
) -> Result<Option<Vec<String>>, ApiError> {
    let key = authorize_reader_key(header, env, config).await?;
    Ok(Reader::from(key.as_ref()).scope())
}

/// As [`authorize_reader`], answering the client key itself (`None`: the
/// API token).
pub async fn authorize_reader_key(
    header: Option<&str>,
    env: &Env,
    config: &Config,
) -> Result<Option<ClientKey>, ApiError> {
    let keys = config.client_keys()?;
    match reader(header, config.api_token(), &keys).map_err(|_| ApiError::ApiUnauthorized)? {
        Reader::Operator => Ok(None),
        Reader::Key(key) => {
            let ask = Ask::Read { reads_per_minute: key.limits.reads_per_minute() };
            key_guard::enforce(env, key, ask).await?;
            Ok(Some(key.clone()))
        }
    }
}
