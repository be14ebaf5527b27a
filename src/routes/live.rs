//! `GET /live`: authenticate a WebSocket subscriber, then hand the upgrade
//! to the live hub (`objects::live_hub`), which holds the socket.

use bw_ledger_core::client::Reader;
use bw_ledger_core::live::{parse_live_request, KeyBinding, Subscription};
use bw_ledger_core::percent::percent_encode;
use bw_ledger_core::wire::live_hub::{self, SUBSCRIBE_PATH};
use bw_ledger_core::ApiError;
use worker::{Env, Headers, Method, Request, RequestInit, Response};

use crate::config::Config;
use crate::http::header;
use crate::object_call::namespace;

pub async fn subscribe(req: &Request, env: &Env, config: &Config) -> Result<Response, ApiError> {
    if !header(req, "Upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Err(ApiError::BadRequest("GET /live expects a WebSocket upgrade.".into()));
    }
    let url = req.url().map_err(|_| ApiError::BadRequest("The URL is not valid.".into()))?;
    let protocols = header(req, "Sec-WebSocket-Protocol");
    let live = parse_live_request(url.query(), protocols.as_deref());
    // A token in the URL would land in request logs: refused, never read.
    if live.token_in_query {
        return Err(ApiError::ApiUnauthorized);
    }
    let token = live.token.clone().ok_or(ApiError::ApiUnauthorized)?;
    let key = super::authorize_reader_key(Some(&format!("Bearer {token}")), env, config).await?;
    let sub = Subscription {
        scope: Reader::from(key.as_ref()).scope(),
        message_id: live.message_id,
        number: live.number,
        key: key.as_ref().map(KeyBinding::of),
    };
    let sub_json = serde_json::to_string(&sub).map_err(|_| ApiError::Internal)?;
    let hub_url = format!("https://{}{SUBSCRIBE_PATH}?sub={}", live_hub::NAME, percent_encode(&sub_json));
    let hub = namespace::<live_hub::Object>(env)?;
    let forward = async {
        let headers = Headers::new();
        headers.set("Upgrade", "websocket")?;
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(headers);
        let req = Request::new_with_init(&hub_url, &init)?;
        hub.id_from_name(live_hub::NAME)?.get_stub()?.fetch_with_request(req).await
    };
    forward.await.map_err(|e| {
        crate::log::log_error!("live: hub did not accept the subscriber: {e}");
        ApiError::StorageUnavailable
    })
}
