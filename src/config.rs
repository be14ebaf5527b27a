//! Configuration names and how they are read from the Worker's Env.
//! Values are read here and validated by the core; nothing here is logged.

use std::rc::Rc;
use std::time::Duration;

use bw_ledger_core::auth::{callback_credentials, BasicCredential};
use bw_ledger_core::client::{parse_client_keys, ClientKey};
use bw_ledger_core::forward::{parse_targets, ForwardTarget};
use bw_ledger_core::lifecycle::parse_retention_days;
use bw_ledger_core::oauth::UpstreamAuth;
use bw_ledger_core::optout::Rules;
use bw_ledger_core::shard::parse_shard_count;
use bw_ledger_core::targets::health::Policy;
use bw_ledger_core::targets::seal::Sealer;
use bw_ledger_core::targets::Target;
use bw_ledger_core::ApiError;
use worker::Env;

pub const CALLBACK_USER: &str = "CALLBACK_USER";
pub const CALLBACK_PASSWORD: &str = "CALLBACK_PASSWORD";
pub const CALLBACK_USER_2: &str = "CALLBACK_USER_2";
pub const CALLBACK_PASSWORD_2: &str = "CALLBACK_PASSWORD_2";
pub const API_TOKEN: &str = "API_TOKEN";
pub const LEDGER_SHARDS: &str = "LEDGER_SHARDS";
pub const BW_ACCOUNT_ID: &str = "BW_ACCOUNT_ID";
pub const BW_APPLICATION_ID: &str = "BW_APPLICATION_ID";
pub const BANDWIDTH_API_BASE: &str = "BANDWIDTH_API_BASE";
pub const BANDWIDTH_TOKEN_URL: &str = "BANDWIDTH_TOKEN_URL";
pub const BW_CLIENT_ID: &str = "BW_CLIENT_ID";
pub const BW_CLIENT_SECRET: &str = "BW_CLIENT_SECRET";
pub const BW_USERNAME: &str = "BW_USERNAME";
pub const BW_PASSWORD: &str = "BW_PASSWORD";
pub const CLIENT_KEYS: &str = "CLIENT_KEYS";
pub const UPSTREAM_TIMEOUT_MS: &str = "UPSTREAM_TIMEOUT_MS";
pub const FORWARD_TARGETS: &str = "FORWARD_TARGETS";
pub const FORWARD_RETRY_BASE_MS: &str = "FORWARD_RETRY_BASE_MS";
pub const FORWARD_RETRY_MAX_MS: &str = "FORWARD_RETRY_MAX_MS";
pub const FORWARD_GIVE_UP_MS: &str = "FORWARD_GIVE_UP_MS";
pub const FORWARD_KEEP_DELIVERED_MS: &str = "FORWARD_KEEP_DELIVERED_MS";
/// How long a rotated-out target secret still signs (ms, default 24 h).
pub const FORWARD_ROTATION_OVERLAP_MS: &str = "FORWARD_ROTATION_OVERLAP_MS";
/// 32 bytes (base64 or hex) that seal API-made targets' secrets at rest.
pub const TARGET_SECRETS_KEY: &str = "TARGET_SECRETS_KEY";
/// Consecutive failed attempts that make a target failing (default 5).
pub const FORWARD_FAILING_AFTER: &str = "FORWARD_FAILING_AFTER";
/// How long a target fails before it is disabled (ms, default 5 days).
pub const FORWARD_DISABLE_AFTER_MS: &str = "FORWARD_DISABLE_AFTER_MS";
/// Where operational events also go, and in what form (`slack`: `{"text"}`).
pub const ALERT_WEBHOOK_URL: &str = "ALERT_WEBHOOK_URL";
pub const ALERT_FORMAT: &str = "ALERT_FORMAT";
/// Optional `whsec_` secret that signs what `ALERT_WEBHOOK_URL` receives.
pub const ALERT_WEBHOOK_SECRET: &str = "ALERT_WEBHOOK_SECRET";
pub const RETENTION_DAYS: &str = "RETENTION_DAYS";
/// Live sockets one client key may hold open at once (default 10).
pub const LIVE_MAX_SOCKETS_PER_KEY: &str = "LIVE_MAX_SOCKETS_PER_KEY";
/// How long an erased message id stays refused (days, default 30).
pub const ERASURE_TOMBSTONE_DAYS: &str = "ERASURE_TOMBSTONE_DAYS";
pub const MEDIA_RETRY_BASE_MS: &str = "MEDIA_RETRY_BASE_MS";
pub const MEDIA_RETRY_MAX_MS: &str = "MEDIA_RETRY_MAX_MS";
pub const MEDIA_GIVE_UP_MS: &str = "MEDIA_GIVE_UP_MS";
/// List rows a shard moves per alarm while it changes their table's layout.
pub const MIGRATION_BATCH_ROWS: &str = "MIGRATION_BATCH_ROWS";
/// The version metadata binding: when this version was uploaded, which
/// orders two versions' `LEDGER_SHARDS` (`shard_client`).
pub const VERSION_METADATA: &str = "CF_VERSION_METADATA";
/// The R2 bucket binding of the media archive.
pub const MEDIA: &str = "MEDIA";
/// Opt-out and opt-in keywords (comma-separated; replace the defaults),
/// how far an opt-out reaches, and the confirmation text.
pub const OPT_OUT_KEYWORDS: &str = "OPT_OUT_KEYWORDS";
pub const OPT_IN_KEYWORDS: &str = "OPT_IN_KEYWORDS";
pub const OPT_OUT_SCOPE: &str = "OPT_OUT_SCOPE";
pub const OPT_OUT_REPLY: &str = "OPT_OUT_REPLY";

pub const DEFAULT_API_BASE: &str = "https://messaging.bandwidth.com/api/v2";
pub const DEFAULT_TOKEN_URL: &str = "https://api.bandwidth.com/api/v1/oauth2/token";
pub const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 10_000;

pub struct Config {
    env: Env,
    hot: std::rc::Rc<Hot>,
}

/// The settings every callback reads, read once per isolate: an isolate
/// runs one deployed version, whose vars and secrets never change (a new
/// value is a new deployment, hence new isolates), and reading `env` on
/// every callback showed in the ingest profile (docs/decisions/0001).
struct Hot {
    callback: Vec<BasicCredential>,
    api_token: Option<String>,
    shards: Option<String>,
}

thread_local! {
    static HOT: std::cell::OnceCell<std::rc::Rc<Hot>> = const { std::cell::OnceCell::new() };
    static CLIENT_KEYS_PARSED: std::cell::OnceCell<Result<Rc<Vec<ClientKey>>, String>> =
        const { std::cell::OnceCell::new() };
    static OPT_OUT_RULES: std::cell::OnceCell<Rc<Rules>> = const { std::cell::OnceCell::new() };
}

fn read(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string())
}

impl Config {
    pub fn from_env(env: &Env) -> Self {
        let hot = HOT.with(|h| {
            h.get_or_init(|| {
                std::rc::Rc::new(Hot {
                    callback: callback_credentials(
                        (read(env, CALLBACK_USER), read(env, CALLBACK_PASSWORD)),
                        (read(env, CALLBACK_USER_2), read(env, CALLBACK_PASSWORD_2)),
                    ),
                    api_token: read(env, API_TOKEN).filter(|t| !t.is_empty()),
                    shards: read(env, LEDGER_SHARDS),
                })
            })
            .clone()
        });
        Self { env: env.clone(), hot }
    }

    pub fn callback_credentials(&self) -> &[BasicCredential] {
        &self.hot.callback
    }

    pub fn api_token(&self) -> Option<&str> {
        self.hot.api_token.as_deref()
    }

    pub fn shards(&self) -> Result<u32, ApiError> {
        let raw = self.hot.shards.as_deref().unwrap_or("");
        parse_shard_count(raw).map_err(|why| {
            crate::log::log_error!("config: {why}");
            ApiError::NotConfigured(LEDGER_SHARDS)
        })
    }
}

/// Send-proxy settings, read only on the send path.
impl Config {
    fn get(&self, name: &str) -> Option<String> {
        read(&self.env, name).filter(|v| !v.trim().is_empty())
    }

    pub fn account_id(&self) -> Result<String, ApiError> {
        self.get(BW_ACCOUNT_ID).ok_or(ApiError::NotConfigured(BW_ACCOUNT_ID))
    }

    pub fn application_id(&self) -> Option<String> {
        self.get(BW_APPLICATION_ID)
    }

    pub fn api_base(&self) -> String {
        self.get(BANDWIDTH_API_BASE).unwrap_or_else(|| DEFAULT_API_BASE.to_owned()).trim_end_matches('/').to_owned()
    }

    pub fn token_url(&self) -> String {
        self.get(BANDWIDTH_TOKEN_URL).unwrap_or_else(|| DEFAULT_TOKEN_URL.to_owned())
    }

    pub fn upstream_timeout(&self) -> Duration {
        let ms = self.get(UPSTREAM_TIMEOUT_MS).and_then(|v| v.trim().parse().ok()).filter(|ms| *ms > 0);
        Duration::from_millis(ms.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT_MS))
    }

    pub fn upstream_auth(&self) -> Result<UpstreamAuth, ApiError> {
        UpstreamAuth::choose(
            self.get(BW_CLIENT_ID),
            self.get(BW_CLIENT_SECRET),
            self.get(BW_USERNAME),
            self.get(BW_PASSWORD),
        )
        .ok_or(ApiError::NotConfigured("BW_CLIENT_ID/BW_CLIENT_SECRET (or BW_USERNAME/BW_PASSWORD)"))
    }

    /// `RETENTION_DAYS`: `None` keeps everything forever.
    pub fn retention_days(&self) -> Result<Option<u32>, ApiError> {
        parse_retention_days(self.get(RETENTION_DAYS).as_deref()).map_err(|why| {
            crate::log::log_error!("config: {why}");
            ApiError::NotConfigured(RETENTION_DAYS)
        })
    }

    /// The opt-out keywords and scope, read once per isolate: every
    /// callback asks. A bad `OPT_OUT_SCOPE` falls back to `account`, the
    /// wider scope (it refuses more sends, never fewer), and is logged:
    /// ingest never fails over it, so no STOP is lost.
    pub fn opt_out_rules(&self) -> Rc<Rules> {
        OPT_OUT_RULES.with(|cell| {
            cell.get_or_init(|| {
                let (out, inn) = (self.get(OPT_OUT_KEYWORDS), self.get(OPT_IN_KEYWORDS));
                let rules = Rules::from_vars(out.as_deref(), inn.as_deref(), self.get(OPT_OUT_SCOPE).as_deref());
                Rc::new(rules.unwrap_or_else(|why| {
                    crate::log::log_error!("config: {why}; opt-outs reach the whole account until it is fixed");
                    Rules::from_vars(out.as_deref(), inn.as_deref(), None).unwrap_or_default()
                }))
            })
            .clone()
        })
    }

    /// The confirmation sent once per opt-out, if any.
    pub fn opt_out_reply(&self) -> Option<String> {
        self.get(OPT_OUT_REPLY)
    }

    /// The configured client keys; none configured means none accepted.
    /// Parsed once per isolate, like the settings in `Hot`: every request
    /// to the Bandwidth-shaped API reads them, if only for CORS.
    pub fn client_keys(&self) -> Result<Rc<Vec<ClientKey>>, ApiError> {
        let parsed = CLIENT_KEYS_PARSED.with(|cell| {
            cell.get_or_init(|| match self.get(CLIENT_KEYS) {
                None => Ok(Rc::new(Vec::new())),
                Some(json) => parse_client_keys(&json).map(Rc::new),
            })
            .clone()
        });
        parsed.map_err(|why| {
            crate::log::log_error!("config: {why}");
            ApiError::NotConfigured(CLIENT_KEYS)
        })
    }
}

/// The targets of `FORWARD_TARGETS`, checked (`forward::parse_targets`).
/// Each caller decides what a malformed value means to it.
pub fn forward_targets(env: &Env) -> Result<Vec<ForwardTarget>, String> {
    parse_targets(read(env, FORWARD_TARGETS).as_deref())
}

/// The key of `TARGET_SECRETS_KEY` (`None`: unset); the error names what is
/// wrong, never the value.
pub fn target_sealer(env: &Env) -> Result<Option<Sealer>, String> {
    Sealer::from_var(read(env, TARGET_SECRETS_KEY).as_deref())
}

/// When targets become failing, then disabled.
pub fn health_policy(env: &Env) -> Policy {
    Policy::from_vars(read(env, FORWARD_FAILING_AFTER).as_deref(), read(env, FORWARD_DISABLE_AFTER_MS).as_deref())
}

/// The `ALERT_WEBHOOK_URL` target, if one is set (an empty value is none).
pub fn alert_target(env: &Env) -> Option<Target> {
    let url = read(env, ALERT_WEBHOOK_URL).filter(|u| !u.trim().is_empty())?;
    let secret = read(env, ALERT_WEBHOOK_SECRET).filter(|s| !s.trim().is_empty());
    Some(Target::alert_webhook(url.trim(), secret.as_deref()))
}

/// `ALERT_FORMAT=slack`: the alert webhook gets `{"text": ...}`.
pub fn alerts_for_slack(env: &Env) -> bool {
    read(env, ALERT_FORMAT).is_some_and(|f| f.trim().eq_ignore_ascii_case("slack"))
}
