//! Live status for frontends: `GET /live` (a WebSocket) and the `LiveHub`
//! Durable Object that holds the sockets.
//!
//! The hub uses the WebSocket Hibernation API: an idle subscriber costs no
//! running object, its filter rides along as the socket's attachment.
//! Shards publish after their commit (outgoing requests wait behind the
//! output gate) and off the ack path (`waitUntil`); a slow or absent
//! subscriber never touches a callback's 2xx, and a dropped notification
//! loses nothing: the client resyncs from the list API.

use std::cell::Cell;
use std::rc::Rc;

use bw_ledger_core::auth::{check_bearer, AuthOutcome};
use bw_ledger_core::client::authenticate_client;
use bw_ledger_core::live::{parse_live_request, Subscription, SUBPROTOCOL};
use bw_ledger_core::route::percent_encode;
use bw_ledger_core::wire::route;
use bw_ledger_core::ApiError;
use serde_json::Value;
use worker::{
    console_error, durable_object, DurableObject, Env, Headers, Method, Request, RequestInit, Response, Result, State,
    WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use crate::config::{Config, LIVE};
use crate::shard_client::{call_object, ShardClient};

const HUB_NAME: &str = "live-hub";

/// `GET /live`: authenticate, then hand the upgrade to the hub.
pub async fn subscribe(req: &Request, env: &Env, config: &Config) -> std::result::Result<Response, ApiError> {
    if !req.headers().get("Upgrade").ok().flatten().is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Err(ApiError::BadRequest("GET /live expects a WebSocket upgrade.".into()));
    }
    let url = req.url().map_err(|_| ApiError::BadRequest("The URL is not valid.".into()))?;
    let protocols = req.headers().get("Sec-WebSocket-Protocol").ok().flatten();
    let live = parse_live_request(url.query(), protocols.as_deref());
    let token = live.token.clone().ok_or(ApiError::ApiUnauthorized)?;
    let bearer = format!("Bearer {token}");
    let scope = match config.api_token() {
        Some(api) if check_bearer(Some(&bearer), api) == AuthOutcome::Accepted => None,
        _ => {
            let keys = config.client_keys()?;
            let key = authenticate_client(Some(&bearer), &keys).map_err(|_| ApiError::ApiUnauthorized)?;
            Some(key.allowed_from.clone())
        }
    };
    let sub = Subscription { scope, message_id: live.message_id, number: live.number };
    let sub_json = serde_json::to_string(&sub).map_err(|_| ApiError::Internal)?;
    let hub_url = format!(
        "https://live-hub{}?sub={}&subprotocol={}",
        route::LIVE_SUBSCRIBE,
        percent_encode(&sub_json),
        live.via_subprotocol
    );
    let forward = async {
        let headers = Headers::new();
        headers.set("Upgrade", "websocket")?;
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(headers);
        let req = Request::new_with_init(&hub_url, &init)?;
        env.durable_object(LIVE)?.id_from_name(HUB_NAME)?.get_stub()?.fetch_with_request(req).await
    };
    forward.await.map_err(|e| {
        console_error!("live: hub did not accept the subscriber: {e}");
        ApiError::StorageUnavailable
    })
}

/// What the hub answers to a publish.
#[derive(serde::Serialize, serde::Deserialize)]
struct Published {
    sent: u32,
    subscribers: u32,
}

/// Whether a shard should publish. The hub's `LIVE_ON` bumps the epoch; a
/// "no subscribers" reply only switches publishing off if no `LIVE_ON`
/// arrived since that publish was sent.
pub struct LiveSwitch {
    on: Cell<bool>,
    epoch: Cell<u64>,
}

impl LiveSwitch {
    pub fn new() -> Rc<Self> {
        Rc::new(Self { on: Cell::new(true), epoch: Cell::new(0) })
    }
    pub fn is_on(&self) -> bool {
        self.on.get()
    }
    pub fn turn_on(&self) {
        self.epoch.set(self.epoch.get() + 1);
        self.on.set(true);
    }
}

/// Sends documents to the hub; failures are logged and dropped. When the
/// hub reports no subscribers, the shard stops publishing until one arrives
/// (the hub calls every shard's `LIVE_ON` before it accepts a socket).
pub async fn publish(env: Env, docs: Vec<Value>, switch: Rc<LiveSwitch>) {
    let epoch = switch.epoch.get();
    let result = async {
        let hub = env.durable_object(LIVE)?;
        call_object::<_, Published>(&hub, HUB_NAME, &format!("https://live-hub{}", route::LIVE_PUBLISH), &docs).await
    }
    .await;
    match result {
        Ok(p) if p.subscribers == 0 && switch.epoch.get() == epoch => switch.on.set(false),
        Ok(_) => {}
        Err(e) => console_error!("live: publish failed (subscribers resync from the list API): {e}"),
    }
}

/// Tells every ledger shard that someone is listening.
async fn wake_shards(env: &Env) -> Result<()> {
    let config = Config::from_env(env);
    let woken = async {
        let shards = ShardClient::new(env, config.shards()?)?;
        shards.call_all::<_, Value>(route::LIVE_ON, &serde_json::json!({})).await
    };
    woken.await.map(|_| ()).map_err(|e| worker::Error::RustError(format!("waking the ledger shards: {e}")))
}

#[durable_object]
pub struct LiveHub {
    state: State,
    env: Env,
}

impl DurableObject for LiveHub {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let url = req.url()?;
        match url.path() {
            route::LIVE_SUBSCRIBE => {
                let param = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
                let sub: Subscription = serde_json::from_str(&param("sub").unwrap_or_default())?;
                // Shards stop publishing while nobody listens: wake them first,
                // so nothing committed after this socket opens is skipped.
                wake_shards(&self.env).await?;
                let pair = WebSocketPair::new()?;
                // Hibernation API: the runtime holds the socket, not this object.
                self.state.accept_web_socket(&pair.server);
                pair.server.serialize_attachment(&sub)?;
                let mut resp = Response::from_websocket(pair.client)?;
                if param("subprotocol").as_deref() == Some("true") {
                    resp.headers_mut().set("Sec-WebSocket-Protocol", SUBPROTOCOL)?;
                }
                Ok(resp)
            }
            route::LIVE_PUBLISH => {
                let docs: Vec<Value> = crate::http::body_json(&mut req).await?;
                let mut sent = 0u32;
                let sockets = self.state.get_websockets();
                let subscribers = sockets.len() as u32;
                for ws in sockets {
                    let Ok(Some(sub)) = ws.deserialize_attachment::<Subscription>() else { continue };
                    for doc in docs.iter().filter(|d| sub.wants(d)) {
                        // A dead socket fails here; it is closed by the runtime.
                        if ws.send_with_str(doc.to_string()).is_ok() {
                            sent += 1;
                        }
                    }
                }
                Response::from_json(&Published { sent, subscribers })
            }
            _ => Response::error("unknown hub route", 404),
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        if let WebSocketIncomingMessage::String(text) = message {
            if text == "ping" {
                ws.send_with_str("pong")?;
            }
        }
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _was_clean: bool) -> Result<()> {
        let code = if code == 1005 || code == 1006 { 1000 } else { code as u16 };
        let _ = ws.close(Some(code), Some("bye"));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        let _ = ws.close(Some(1011), Some("error"));
        Ok(())
    }
}
