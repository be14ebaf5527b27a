//! The core's tests, one module per concern, in one test binary: each
//! binary costs a link natively and a wasm-bindgen pass and a Node start on
//! wasm32, so one binary runs the suite in a fraction of the time 21 did.
//! `fuzz.rs` stays apart: `npm test` runs it on its own, with output.

mod common;

mod auth;
mod forward;
mod group;
mod identity;
mod ingest;
mod layouts;
mod limits;
mod list;
mod live;
mod media;
mod multichannel;
mod ops;
mod optout;
mod parse;
mod projection;
mod records;
mod redact;
mod send;
mod status;
mod targets;
mod units;
mod wire;
