//! Which handler a request goes to: a pure function of method and path, so
//! that routing and its 404/405 answers are tested without a runtime.

use crate::error::ApiError;
use crate::percent::percent_decode;

pub const CALLBACK_PATH: &str = "/callbacks/bandwidth";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    Callback,
    Message(String),
    Quarantine,
    /// `GET /quarantine/count`: how many items, reading no body.
    QuarantineCount,
    /// `POST /api/v2/users/{accountId}/messages`: the send proxy.
    Send {
        account_id: String,
    },
    /// `POST /api/v2/users/{accountId}/messages/multiChannel`: the send
    /// proxy for Bandwidth's Multi-Channel messages (RBM, SMS, MMS).
    SendMultiChannel {
        account_id: String,
    },
    /// `GET /api/v2/users/{accountId}/messages`: List Messages.
    List {
        account_id: String,
    },
    /// `GET /conversations?number=A&with=B`.
    Conversation,
    /// `OPTIONS` on the Bandwidth-shaped API: a CORS preflight.
    Preflight,
    /// `GET /live`: a WebSocket of normalized changes.
    Live,
    /// `GET /`: the operator console.
    Console,
    /// `GET /outbox`: delivery counts per forwarding target.
    OutboxStats,
    /// `GET /outbox/dead`: dead-lettered forwards.
    OutboxDead,
    /// `POST /outbox/replay`: deliver again, with the original webhook ids.
    OutboxReplay,
    /// `GET /keys`: each client key's use today and its refusals.
    Keys,
    /// `POST /retention/run`: apply `RETENTION_DAYS` now.
    RetentionRun,
    /// `POST /erasure`: delete everything about one number.
    Erasure,
    /// `GET /export`: messages in a time window, as NDJSON or CSV.
    Export,
    /// `GET /media/{messageId}/{path}`: an archived media file.
    Media {
        message_id: String,
        path: String,
    },
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /shards`: the shard layouts and what each shard holds.
    Shards,
    /// `GET /openapi.json`: the API's OpenAPI 3.1 document.
    OpenApi,
    /// `GET /stats/outcomes`: recipient outcomes by hour, last 24 hours.
    Outcomes,
    /// `GET /optouts`: the opt-outs in force.
    OptOuts,
    /// `POST /optouts`: the operator records an opt-out.
    OptOutAdd,
    /// `DELETE /optouts/{number}`: the operator lifts one.
    OptOutLift(String),
    /// `GET /optouts/{number}/history`: a number's audit trail.
    OptOutHistory(String),
    /// `POST /outbox/discard`: delete a target's dead letters.
    OutboxDiscard,
    /// `GET /targets`: every forwarding target, with its state.
    Targets,
    /// `POST /targets`: make a target and its secret.
    TargetCreate,
    /// `GET /targets/{id}`.
    Target(String),
    /// `PATCH /targets/{id}`.
    TargetPatch(String),
    /// `DELETE /targets/{id}`.
    TargetDelete(String),
    /// `POST /targets/{id}/secret/rotate`.
    TargetRotate(String),
    /// `POST /targets/{id}/enable`: deliveries resume.
    TargetEnable(String),
    /// `POST /targets/{id}/disable`: deliveries pause.
    TargetDisable(String),
}

impl Route {
    /// Whether only the API token may call it (a client key gets 401).
    pub fn operator_only(&self) -> bool {
        matches!(
            self,
            Self::Message(_)
                | Self::Quarantine
                | Self::QuarantineCount
                | Self::OutboxStats
                | Self::OutboxDead
                | Self::OutboxReplay
                | Self::Keys
                | Self::RetentionRun
                | Self::Erasure
                | Self::Export
                | Self::Metrics
                | Self::Shards
                | Self::Outcomes
                | Self::OptOuts
                | Self::OptOutAdd
                | Self::OptOutLift(_)
                | Self::OptOutHistory(_)
                | Self::OutboxDiscard
                | Self::Targets
                | Self::TargetCreate
                | Self::Target(_)
                | Self::TargetPatch(_)
                | Self::TargetDelete(_)
                | Self::TargetRotate(_)
                | Self::TargetEnable(_)
                | Self::TargetDisable(_)
        )
    }

    /// The route's name in logs and metrics: method and path template, never
    /// the path itself (which can hold ids, numbers or a `?token=`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Health => "GET /healthz",
            Self::Callback => "POST /callbacks/bandwidth",
            Self::Message(_) => "GET /messages/{id}",
            Self::Quarantine => "GET /quarantine",
            Self::QuarantineCount => "GET /quarantine/count",
            Self::Send { .. } => "POST /api/v2/users/{accountId}/messages",
            Self::SendMultiChannel { .. } => "POST /api/v2/users/{accountId}/messages/multiChannel",
            Self::List { .. } => "GET /api/v2/users/{accountId}/messages",
            Self::Conversation => "GET /conversations",
            Self::Preflight => "OPTIONS /api/v2/...",
            Self::Live => "GET /live",
            Self::Console => "GET /",
            Self::OutboxStats => "GET /outbox",
            Self::OutboxDead => "GET /outbox/dead",
            Self::OutboxReplay => "POST /outbox/replay",
            Self::Keys => "GET /keys",
            Self::RetentionRun => "POST /retention/run",
            Self::Erasure => "POST /erasure",
            Self::Export => "GET /export",
            Self::Media { .. } => "GET /media/{messageId}/{name}",
            Self::Metrics => "GET /metrics",
            Self::Shards => "GET /shards",
            Self::OpenApi => "GET /openapi.json",
            Self::Outcomes => "GET /stats/outcomes",
            Self::OptOuts => "GET /optouts",
            Self::OptOutAdd => "POST /optouts",
            Self::OptOutLift(_) => "DELETE /optouts/{number}",
            Self::OptOutHistory(_) => "GET /optouts/{number}/history",
            Self::OutboxDiscard => "POST /outbox/discard",
            Self::Targets => "GET /targets",
            Self::TargetCreate => "POST /targets",
            Self::Target(_) => "GET /targets/{id}",
            Self::TargetPatch(_) => "PATCH /targets/{id}",
            Self::TargetDelete(_) => "DELETE /targets/{id}",
            Self::TargetRotate(_) => "POST /targets/{id}/secret/rotate",
            Self::TargetEnable(_) => "POST /targets/{id}/enable",
            Self::TargetDisable(_) => "POST /targets/{id}/disable",
        }
    }
}

/// Resolves a request. `path` is the URL path, still percent-encoded.
pub fn resolve(method: &str, path: &str) -> Result<Route, ApiError> {
    let only = |allowed: &'static str, route: Route| {
        let ok = method == allowed || (allowed == "GET" && method == "HEAD");
        if ok {
            Ok(route)
        } else {
            Err(ApiError::MethodNotAllowed { allow: allowed })
        }
    };
    match path.trim_end_matches('/') {
        "" => only("GET", Route::Console),
        "/healthz" => only("GET", Route::Health),
        "/live" => only("GET", Route::Live),
        CALLBACK_PATH => only("POST", Route::Callback),
        "/quarantine" => only("GET", Route::Quarantine),
        "/quarantine/count" => only("GET", Route::QuarantineCount),
        "/conversations" => only("GET", Route::Conversation),
        "/outbox" => only("GET", Route::OutboxStats),
        "/outbox/dead" => only("GET", Route::OutboxDead),
        "/outbox/replay" => only("POST", Route::OutboxReplay),
        "/outbox/discard" => only("POST", Route::OutboxDiscard),
        "/targets" => match method {
            "POST" => Ok(Route::TargetCreate),
            _ => only("GET", Route::Targets).map_err(|_| ApiError::MethodNotAllowed { allow: "GET, POST" }),
        },
        p if p.starts_with("/targets/") => target_route(method, &p["/targets/".len()..]),
        "/keys" => only("GET", Route::Keys),
        "/retention/run" => only("POST", Route::RetentionRun),
        "/erasure" => only("POST", Route::Erasure),
        "/export" => only("GET", Route::Export),
        "/metrics" => only("GET", Route::Metrics),
        "/shards" => only("GET", Route::Shards),
        "/openapi.json" => only("GET", Route::OpenApi),
        "/stats/outcomes" => only("GET", Route::Outcomes),
        "/optouts" => match method {
            "POST" => Ok(Route::OptOutAdd),
            _ => only("GET", Route::OptOuts).map_err(|_| ApiError::MethodNotAllowed { allow: "GET, POST" }),
        },
        p if p.starts_with("/optouts/") => {
            let rest = &p["/optouts/".len()..];
            let decode =
                |s: &str| percent_decode(s).ok_or(ApiError::BadRequest("The number is not valid UTF-8.".into()));
            match rest.split_once('/') {
                Some((n, "history")) => only("GET", Route::OptOutHistory(decode(n)?)),
                Some(_) => Err(ApiError::NotFound("Route")),
                None if method == "DELETE" => Ok(Route::OptOutLift(decode(rest)?)),
                None => Err(ApiError::MethodNotAllowed { allow: "DELETE" }),
            }
        }
        p if p.starts_with("/api/v2/") && method == "OPTIONS" => Ok(Route::Preflight),
        p if p.starts_with("/api/v2/users/") => {
            let rest = &p["/api/v2/users/".len()..];
            let account =
                |a: &str| percent_decode(a).ok_or(ApiError::BadRequest("The account id is not valid UTF-8.".into()));
            match rest.split_once('/') {
                Some((a, "messages")) if !a.is_empty() => match method {
                    "POST" => Ok(Route::Send { account_id: account(a)? }),
                    "GET" | "HEAD" => Ok(Route::List { account_id: account(a)? }),
                    _ => Err(ApiError::MethodNotAllowed { allow: "GET, POST, OPTIONS" }),
                },
                Some((a, "messages/multiChannel")) if !a.is_empty() => match method {
                    "POST" => Ok(Route::SendMultiChannel { account_id: account(a)? }),
                    _ => Err(ApiError::MethodNotAllowed { allow: "POST, OPTIONS" }),
                },
                _ => Err(ApiError::NotFound("Route")),
            }
        }
        p if p.starts_with("/media/") => match crate::media::parse_worker_path(&p["/media/".len()..]) {
            Some((message_id, path)) => only("GET", Route::Media { message_id, path }),
            None => Err(ApiError::NotFound("Media")),
        },
        p => match p.strip_prefix("/messages/") {
            Some(id) if !id.is_empty() && !id.contains('/') => {
                let id = percent_decode(id).ok_or(ApiError::BadRequest("The message id is not valid UTF-8.".into()))?;
                only("GET", Route::Message(id))
            }
            _ => Err(ApiError::NotFound("Route")),
        },
    }
}

/// `/targets/{id}` and what is under it.
fn target_route(method: &str, rest: &str) -> Result<Route, ApiError> {
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if id.is_empty() {
        return Err(ApiError::NotFound("Route"));
    }
    let id = percent_decode(id).ok_or(ApiError::BadRequest("The target id is not valid UTF-8.".into()))?;
    let post =
        |route: Route| if method == "POST" { Ok(route) } else { Err(ApiError::MethodNotAllowed { allow: "POST" }) };
    match (tail, method) {
        ("", "GET" | "HEAD") => Ok(Route::Target(id)),
        ("", "PATCH") => Ok(Route::TargetPatch(id)),
        ("", "DELETE") => Ok(Route::TargetDelete(id)),
        ("", _) => Err(ApiError::MethodNotAllowed { allow: "GET, PATCH, DELETE" }),
        ("secret/rotate", _) => post(Route::TargetRotate(id)),
        ("enable", _) => post(Route::TargetEnable(id)),
        ("disable", _) => post(Route::TargetDisable(id)),
        _ => Err(ApiError::NotFound("Route")),
    }
}

/// A whole number as a query string writes one: digits, with `-` for a
/// negative one; never `+15` or ` 15` (which Rust's `parse` would take).
pub fn query_int<T: std::str::FromStr>(v: &str) -> Option<T> {
    let digits = v.strip_prefix('-').unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Reads `limit` from a query string: default `default`, capped at `max`.
pub fn query_limit(query: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    let raw =
        query.unwrap_or("").split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == "limit").map(|(_, v)| v);
    match raw {
        None => Ok(default),
        Some(v) => match query_int::<u32>(v) {
            Some(n) if n >= 1 => Ok(n.min(max)),
            _ => Err(ApiError::BadRequest(format!("`limit` must be a whole number from 1 to {max}."))),
        },
    }
}
