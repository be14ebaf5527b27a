//! `LiveHub`: the Durable Object that holds every live subscriber's socket.
//!
//! It uses the WebSocket Hibernation API: an idle subscriber costs no running
//! object, its filter rides along as the socket's attachment, and the
//! runtime answers a client's `ping` with `pong` without waking the hub.
//! Shards publish after their commit (outgoing requests wait behind the
//! output gate) and off the ack path (`waitUntil`); a slow or absent
//! subscriber never touches a callback's 2xx, and a dropped notification
//! loses nothing: the client resyncs from the list API.

use std::cell::Cell;
use std::rc::Rc;

use bw_ledger_core::client::ClientKey;
use bw_ledger_core::error::Refusal;
use bw_ledger_core::live::{max_sockets_per_key, KeyBinding, Subscription, SUBPROTOCOL};
use bw_ledger_core::wire::live_hub::{self, Published, SUBSCRIBE_PATH};
use bw_ledger_core::wire::{ledger, Empty};
use bw_ledger_core::ApiError;
use serde_json::Value;
use worker::worker_sys::WebSocketRequestResponsePair;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage,
    WebSocketPair,
};

use crate::clock::now_ms;
use crate::config::{Config, LIVE_MAX_SOCKETS_PER_KEY};
use crate::object_call::{call, reply, request};
use crate::shard_client::ShardClient;

#[cfg(feature = "test-hooks")]
pub(crate) mod test_methods;

/// Whether a shard should publish. The hub's `LiveOn` bumps the epoch; a
/// "no subscribers" reply only switches publishing off if no `LiveOn`
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
/// (the hub calls every shard's `LiveOn` before it accepts a socket).
pub async fn publish(env: Env, docs: Vec<Value>, switch: Rc<LiveSwitch>) {
    let epoch = switch.epoch.get();
    match call::<live_hub::Publish>(&env, live_hub::NAME, &docs).await {
        Ok(p) if p.subscribers == 0 && switch.epoch.get() == epoch => switch.on.set(false),
        Ok(_) => {}
        Err(e) => crate::log::log_error!("live: publish failed (subscribers resync from the list API): {e}"),
    }
}

/// Tells every ledger shard that someone is listening.
async fn wake_shards(env: &Env) -> Result<()> {
    let config = Config::from_env(env);
    let woken = async {
        let shards = ShardClient::open(env, &config).await?;
        shards.call_all::<ledger::LiveOn>(&Empty {}).await
    };
    woken.await.map(|_| ()).map_err(|e| worker::Error::RustError(format!("waking the ledger shards: {e}")))
}

#[durable_object]
pub struct LiveHub {
    state: State,
    env: Env,
    /// `LIVE_MAX_SOCKETS_PER_KEY`.
    max_per_key: u32,
}

/// How often the keys of open sockets are checked against `CLIENT_KEYS`.
const KEY_CHECK_MS: i64 = 60_000;
/// The close code a socket gets when its key stops granting it (a code
/// for applications, 4000 to 4999).
const KEY_REVOKED: u16 = 4001;

impl LiveHub {
    /// A new subscriber's socket, unless its key holds its limit of them.
    async fn subscribe(&self, sub: Subscription) -> Result<Response> {
        let tag = sub.key.as_ref().map(KeyBinding::tag);
        if let Some(tag) = &tag {
            let open = self.state.get_websockets_with_tag(tag).len() as u32;
            if open >= self.max_per_key {
                return crate::http::error_response(&ApiError::Limited {
                    reason: Refusal::Sockets,
                    retry_after_s: 60,
                    description: format!("This key already holds {open} live sockets, its limit."),
                });
            }
        }
        // Shards stop publishing while nobody listens: wake them first,
        // so nothing committed after this socket opens is skipped.
        wake_shards(&self.env).await?;
        let pair = WebSocketPair::new()?;
        // Hibernation API: the runtime holds the socket, not this object.
        let tags: Vec<&str> = tag.as_deref().into_iter().collect();
        self.state.accept_websocket_with_tags(&pair.server, &tags);
        pair.server.serialize_attachment(&sub)?;
        if sub.key.is_some() {
            self.arm_key_check().await?;
        }
        let mut resp = Response::from_websocket(pair.client)?;
        resp.headers_mut().set("Sec-WebSocket-Protocol", SUBPROTOCOL)?;
        Ok(resp)
    }

    /// Sends each document to the subscribers that want it.
    fn publish_to_sockets(&self, docs: &[Value]) -> Published {
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
        Published { sent, subscribers }
    }

    /// Sets the key check's alarm, unless one is already due sooner.
    async fn arm_key_check(&self) -> Result<()> {
        let storage = self.state.storage();
        if storage.get_alarm().await?.is_none_or(|at| at > now_ms() + KEY_CHECK_MS) {
            storage.set_alarm(KEY_CHECK_MS).await?;
        }
        Ok(())
    }

    /// The client keys in force; `None` when `CLIENT_KEYS` cannot be read,
    /// in which case no socket is closed for it (the send and read routes
    /// refuse everything meanwhile).
    async fn current_keys(&self) -> Option<Vec<ClientKey>> {
        #[cfg(feature = "test-hooks")]
        if let Ok(Some(json)) = self.state.storage().get::<String>(test_methods::LIVE_KEYS_OVERRIDE).await {
            return bw_ledger_core::client::parse_client_keys(&json).ok();
        }
        Config::from_env(&self.env).client_keys().ok().map(|k| k.to_vec())
    }
}

impl DurableObject for LiveHub {
    fn new(state: State, env: Env) -> Self {
        match WebSocketRequestResponsePair::new("ping", "pong") {
            Ok(pair) => state.set_websocket_auto_response(&pair),
            Err(e) => crate::log::log_error!("live: no auto-response for ping: {e:?}"),
        }
        let max_per_key = max_sockets_per_key(env.var(LIVE_MAX_SOCKETS_PER_KEY).ok().map(|v| v.to_string()).as_deref());
        Self { state, env, max_per_key }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let url = req.url()?;
        if url.path() == SUBSCRIBE_PATH {
            let param = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
            let sub: Subscription = serde_json::from_str(&param("sub").unwrap_or_default())?;
            return self.subscribe(sub).await;
        }
        let Some(call) = live_hub::Call::from_path(url.path()) else {
            #[cfg(feature = "test-hooks")]
            if let Some(call) = test_methods::Call::from_path(url.path()) {
                return test_methods::serve(&self.state, call, req).await;
            }
            return Response::error("unknown hub method", 404);
        };
        match call {
            live_hub::Call::Publish => {
                let docs = request::<live_hub::Publish>(&mut req).await?;
                reply::<live_hub::Publish>(&self.publish_to_sockets(&docs))
            }
        }
    }

    /// Closes the sockets of keys that no longer grant them (removed from
    /// `CLIENT_KEYS`, rotated, or given other numbers); comes back every
    /// minute while any key's socket is open.
    async fn alarm(&self) -> Result<Response> {
        let keys = self.current_keys().await;
        let mut keyed = 0;
        for ws in self.state.get_websockets() {
            let Ok(Some(sub)) = ws.deserialize_attachment::<Subscription>() else { continue };
            if sub.key.is_none() {
                continue;
            }
            match &keys {
                Some(keys) if !sub.still_granted(keys) => {
                    let _ = ws.close(Some(KEY_REVOKED), Some("key no longer valid"));
                }
                _ => keyed += 1,
            }
        }
        if keyed > 0 {
            self.arm_key_check().await?;
        }
        Response::empty()
    }

    /// Subscribers only listen; `ping` is answered by the runtime.
    async fn websocket_message(&self, _ws: WebSocket, _message: WebSocketIncomingMessage) -> Result<()> {
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
