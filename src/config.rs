//! Configuration names and how they are read from the Worker's Env.
//! Values are read here and validated by the core; nothing here is logged.

use bw_ledger_core::auth::{callback_credentials, BasicCredential};
use bw_ledger_core::shard::parse_shard_count;
use bw_ledger_core::ApiError;
use worker::{console_error, Env};

pub const CALLBACK_USER: &str = "CALLBACK_USER";
pub const CALLBACK_PASSWORD: &str = "CALLBACK_PASSWORD";
pub const CALLBACK_USER_2: &str = "CALLBACK_USER_2";
pub const CALLBACK_PASSWORD_2: &str = "CALLBACK_PASSWORD_2";
pub const API_TOKEN: &str = "API_TOKEN";
pub const LEDGER_SHARDS: &str = "LEDGER_SHARDS";
/// The Durable Object namespace binding of the ledger shards.
pub const LEDGER: &str = "LEDGER";

pub struct Config {
    callback: Vec<BasicCredential>,
    api_token: Option<String>,
    shards: Option<String>,
}

fn read(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

impl Config {
    pub fn from_env(env: &Env) -> Self {
        Self {
            callback: callback_credentials(
                (read(env, CALLBACK_USER), read(env, CALLBACK_PASSWORD)),
                (read(env, CALLBACK_USER_2), read(env, CALLBACK_PASSWORD_2)),
            ),
            api_token: read(env, API_TOKEN).filter(|t| !t.is_empty()),
            shards: read(env, LEDGER_SHARDS),
        }
    }

    pub fn callback_credentials(&self) -> Vec<BasicCredential> {
        self.callback.clone()
    }

    pub fn api_token(&self) -> Option<&str> {
        self.api_token.as_deref()
    }

    pub fn shards(&self) -> Result<u32, ApiError> {
        let raw = self.shards.as_deref().unwrap_or("");
        parse_shard_count(raw).map_err(|why| {
            console_error!("config: {why}");
            ApiError::NotConfigured(LEDGER_SHARDS)
        })
    }
}
