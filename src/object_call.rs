//! The one way the Worker calls its Durable Objects, and the one way an
//! object reads a call and answers it, both typed by
//! `bw_ledger_core::wire::Method`: the caller names the method, the method
//! names the request and reply types.
//!
//! Calls go through the object stub's JavaScript `fetch` and read the answer
//! with `text()`: the `worker` crate's wrappers build each request from
//! `Headers`/`RequestInit` objects and read a response body chunk by chunk
//! through a stream reader, which the ingest path pays on every callback
//! (docs/decisions/0001 has the profile).

use std::borrow::Borrow;

use bw_ledger_core::wire::{Method, Object};
use bw_ledger_core::ApiError;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{js_sys, web_sys, Env, ObjectNamespace, Request, Response};

#[wasm_bindgen]
extern "C" {
    type JsNamespace;
    #[wasm_bindgen(method, catch, js_name = idFromName)]
    fn id_from_name(this: &JsNamespace, name: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn get(this: &JsNamespace, id: &JsValue) -> Result<JsStub, JsValue>;

    type JsStub;
    #[wasm_bindgen(method, catch)]
    fn fetch(this: &JsStub, url: &str, init: &web_sys::RequestInit) -> Result<js_sys::Promise, JsValue>;
}

fn js_error(what: &str, e: JsValue) -> worker::Error {
    worker::Error::RustError(format!("{what}: {}", e.as_string().unwrap_or_else(|| format!("{e:?}"))))
}

/// Calls method `M` of the object named `name` of `M`'s kind. A missing
/// binding is `NotConfigured`; an object that fails or answers non-2xx is
/// logged and becomes `StorageUnavailable` (503, retryable).
pub async fn call<M: Method>(env: &Env, name: &str, request: &M::Request) -> Result<M::Reply, ApiError> {
    call_in::<M, _>(&namespace::<M::Object>(env)?, name, request).await.map_err(|e| {
        crate::log::log_error!("{} {name} {}: {e}", <M::Object as Object>::BINDING, M::PATH);
        ApiError::StorageUnavailable
    })
}

/// The namespace of kind `O`'s objects.
pub fn namespace<O: Object>(env: &Env) -> Result<ObjectNamespace, ApiError> {
    env.durable_object(O::BINDING).map_err(|e| {
        crate::log::log_error!("config: Durable Object binding {}: {e}", O::BINDING);
        ApiError::NotConfigured(O::BINDING)
    })
}

/// Calls method `M` of the object `name` in `namespace` (a namespace of
/// `M`'s kind, which a caller holding one for many calls looked up once); a
/// non-2xx answer is an error. `request` is `M::Request` or a borrowed form
/// of it that serializes the same (a slice for a `Vec`), so no caller
/// copies a body.
pub async fn call_in<M, Q>(namespace: &ObjectNamespace, name: &str, request: &Q) -> worker::Result<M::Reply>
where
    M: Method,
    M::Request: Borrow<Q>,
    Q: Serialize + ?Sized,
{
    let url = format!("https://{name}{}", M::PATH);
    let ns: &JsNamespace = namespace.as_ref().unchecked_ref();
    let stub =
        ns.get(&ns.id_from_name(name).map_err(|e| js_error("idFromName", e))?).map_err(|e| js_error("get", e))?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&encode(request)?);
    let resp: web_sys::Response = JsFuture::from(stub.fetch(&url, &init).map_err(|e| js_error(&url, e))?)
        .await
        .map_err(|e| js_error(&url, e))?
        .unchecked_into();
    let text = JsFuture::from(resp.text().map_err(|e| js_error(&url, e))?).await.map_err(|e| js_error(&url, e))?;
    if !resp.ok() {
        return Err(worker::Error::RustError(format!("{url} answered {}", resp.status())));
    }
    decode(&text.as_string().unwrap_or_default())
}

/// A method's request or reply as the JSON text a call carries.
#[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
fn encode<Q: Serialize + ?Sized>(value: &Q) -> worker::Result<JsValue> {
    Ok(JsValue::from_str(&serde_json::to_string(value)?))
}

#[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
fn decode<T: serde::de::DeserializeOwned>(text: &str) -> worker::Result<T> {
    Ok(serde_json::from_str(text)?)
}

/// The object's side: reads `M`'s request. Parsed from text in wasm:
/// `Request::json` converts the JS object field by field.
pub async fn request<M: Method>(req: &mut Request) -> worker::Result<M::Request> {
    decode(&req.text().await?)
}

/// The object's side: answers `M`'s reply.
#[inline(never)] // a phase of `BENCH_ONLY=profile` (bench/phases.mjs)
pub fn reply<M: Method>(reply: &M::Reply) -> worker::Result<Response> {
    Response::from_json(reply)
}
