//! Fuzzing the two parsers that face the outside: the callback parser and
//! the send validator. Arbitrary bytes, and structured mutations of real
//! payloads; every input must get a defined result and never a panic.
//!
//! `FUZZ_CASES` sets the inputs per strategy (default 2,000; the bench runs
//! far more in release mode). Each run prints how many inputs it tried.
#![cfg(not(target_arch = "wasm32"))]

#[path = "suite/common.rs"]
mod common;
use std::cell::Cell;

use bw_ledger_core::parse_callback_body;
use bw_ledger_core::projection::project;
use bw_ledger_core::records::EventRecord;
use bw_ledger_core::send::validate_send;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

fn run<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value)) {
    let tried = Cell::new(0u64);
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    runner
        .run(&strategy, |v| {
            tried.set(tried.get() + 1);
            check(v);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    println!("fuzz {name}: {} inputs tried, no panic, every result defined", tried.get());
}

/// The callback parser's contract on any input.
fn check_callback(body: &[u8]) {
    let parsed = parse_callback_body(body);
    // Oracle: a syntactically valid JSON array is split element by element
    // (an element whose value serde cannot hold, like 1E800, is quarantined
    // alone); anything else is one item.
    match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(body) {
        Ok(items) => assert_eq!(parsed.events.len() + parsed.rejected.len(), items.len()),
        Err(_) => assert_eq!(parsed.events.len() + parsed.rejected.len(), 1),
    }
    for r in &parsed.rejected {
        assert!(!r.reason.is_empty());
    }
    for ev in &parsed.events {
        assert!(!ev.message_id.trim().is_empty());
        let rec = EventRecord::from_event(ev);
        assert_eq!(serde_json::from_str::<Value>(&rec.raw).ok(), Some(ev.raw.clone()));
    }
    if let Some(first) = parsed.events.first() {
        let same: Vec<_> = parsed.events.iter().filter(|e| e.message_id == first.message_id).collect();
        let records = arrived_together(same.iter().copied());
        let view = project(&first.message_id, &records).expect("events exist");
        assert_eq!(view.timeline.len(), same.len());
        let _ = bw_ledger_core::list::rows_for(&view, 0);
    }
}

/// The send validator's contract on any input.
fn check_send(body: &[u8]) {
    match validate_send(body, 1_795_187_047_450, Some("app")) {
        Ok(v) => {
            assert!(!v.to.is_empty() && v.to.len() <= 10);
            assert_eq!(v.body["from"], Value::String(v.senders[0].from.clone()));
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            assert!(errors.iter().all(|e| !e.field_name.is_empty() && !e.description.is_empty()));
        }
    }
}

const SEND_SEED: &str = r#"{"applicationId":"a","to":["+15552220001","+15552220002"],"from":"+15551110000","text":"hi","media":["https://example.com/a.png"],"tag":"t","priority":"high","expiration":"2026-11-21T00:00:00Z"}"#;

/// Applies random structural edits to a JSON value.
fn mutate(v: &mut Value, ops: &[(u8, u32)]) {
    for (op, seed) in ops {
        mutate_one(v, *op, *seed, 0);
    }
}

fn mutate_one(v: &mut Value, op: u8, seed: u32, depth: u32) {
    let replacement = |seed: u32| match seed % 7 {
        0 => Value::Null,
        1 => Value::Bool(seed.is_multiple_of(2)),
        2 => Value::from(seed as i64 - 1000),
        3 => Value::from(f64::from(seed) / 7.0),
        4 => Value::String("x".repeat((seed % 40) as usize)),
        5 => Value::Array(vec![Value::from(seed)]),
        _ => serde_json::json!({ "k": seed }),
    };
    match v {
        Value::Object(map) if !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[seed as usize % keys.len()];
            match op % 4 {
                0 => {
                    map.remove(key);
                }
                1 => {
                    map.insert(key.clone(), replacement(seed / 3));
                }
                2 if depth < 4 => {
                    if let Some(child) = map.get_mut(key) {
                        mutate_one(child, op / 4, seed / 5, depth + 1);
                    }
                }
                _ => {
                    map.insert(format!("extra{seed}"), replacement(seed));
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = seed as usize % items.len();
            match op % 3 {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.push(copy);
                }
                _ if depth < 4 => mutate_one(&mut items[i], op / 3, seed / 7, depth + 1),
                _ => items[i] = replacement(seed),
            }
        }
        other => *other = replacement(seed),
    }
}

/// Serialises, then optionally truncates or splices a byte in.
fn damage(mut bytes: Vec<u8>, cut: Option<(u16, u8)>) -> Vec<u8> {
    if let Some((at, b)) = cut {
        let at = at as usize % (bytes.len() + 1);
        if b % 2 == 0 {
            bytes.truncate(at);
        } else {
            bytes.insert(at, b);
        }
    }
    bytes
}

#[test]
fn fuzz_callback_parser_on_arbitrary_bytes() {
    run("callback parser, arbitrary bytes", proptest::collection::vec(any::<u8>(), 0..1024), |b| check_callback(&b));
}

#[test]
fn fuzz_callback_parser_on_mutated_real_payloads() {
    let fixtures = [SMS_LIFECYCLE, GROUP_MMS_INVALID, INBOUND_MMS, FAILED, RBM];
    let strategy = (
        0..fixtures.len(),
        proptest::collection::vec((any::<u8>(), any::<u32>()), 0..6),
        proptest::option::weighted(0.2, (any::<u16>(), any::<u8>())),
    );
    run("callback parser, mutated payloads", strategy, |(i, ops, cut)| {
        let mut v: Value = serde_json::from_str(fixtures[i]).unwrap();
        mutate(&mut v, &ops);
        check_callback(&damage(serde_json::to_vec(&v).unwrap(), cut));
    });
}

#[test]
fn fuzz_send_validator_on_arbitrary_bytes() {
    run("send validator, arbitrary bytes", proptest::collection::vec(any::<u8>(), 0..512), |b| check_send(&b));
}

#[test]
fn fuzz_send_validator_on_mutated_bodies() {
    let strategy = (
        proptest::collection::vec((any::<u8>(), any::<u32>()), 0..6),
        proptest::option::weighted(0.2, (any::<u16>(), any::<u8>())),
    );
    run("send validator, mutated bodies", strategy, |(ops, cut)| {
        let mut v: Value = serde_json::from_str(SEND_SEED).unwrap();
        mutate(&mut v, &ops);
        check_send(&damage(serde_json::to_vec(&v).unwrap(), cut));
    });
}
