//! Small pure pieces: time, shards, routes, errors, quarantine records.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bw_ledger_core::error::ApiError;
use bw_ledger_core::event::Rejected;
use bw_ledger_core::percent::percent_decode;
use bw_ledger_core::quarantine::{QuarantineRecord, RawEncoding};
use bw_ledger_core::route::{query_int, query_limit, resolve, Route};
use bw_ledger_core::shard::{parse_shard_count, shard_for, shard_name};
use bw_ledger_core::time::{format_rfc3339_ms, parse_rfc3339_ms};

#[test]
fn rfc3339_parses_offsets_and_precision() {
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_rfc3339_ms("2026-11-20T15:04:07.450Z"), Some(1_795_187_047_450));
    assert_eq!(parse_rfc3339_ms("2026-11-20T16:04:07.45+01:00"), Some(1_795_187_047_450));
    assert_eq!(parse_rfc3339_ms("2026-11-20T15:04:07.450999999Z"), Some(1_795_187_047_450));
    assert_eq!(parse_rfc3339_ms("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
    // The offset forms JSON Schema's date-time format accepts besides ±HH:MM.
    assert_eq!(parse_rfc3339_ms("2026-11-20T16:34:07.450+0130"), Some(1_795_187_047_450));
    assert_eq!(parse_rfc3339_ms("2026-11-20T13:04:07.450-02"), Some(1_795_187_047_450));
    for bad in [
        "",
        "2026-11-20",
        "2026-13-01T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2026-11-20T15:04:07",
        "2026-11-20T15:04:07.Z",
        "2026-11-20T15:04:07Zjunk",
        "2026-11-20T15:04:07+1",
        "2026-11-20T15:04:07+01:0",
        "2026-11-20T15:04:07+01-00",
        "2026-11-20T15:04:07+0100Z",
    ] {
        assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
    }
}

#[test]
fn rfc3339_round_trips() {
    for ms in [0, 1_795_187_047_450, 951_782_400_123, -1] {
        assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
    }
    assert_eq!(format_rfc3339_ms(1_795_187_047_450), "2026-11-20T15:04:07.450Z");
}

/// Pinned: changing the mapping would strand stored messages on old shards.
#[test]
fn shard_mapping_is_stable() {
    assert_eq!(shard_name(3), "ledger-shard-3");
    let got: Vec<u32> =
        ["1763651045120abcd0001", "1763654400000grp00002", "m1", ""].iter().map(|id| shard_for(id, 8)).collect();
    // Reference values from an independent FNV-1a 64 implementation (Python).
    assert_eq!(got, [5, 6, 3, 5]);
    assert_eq!(shard_for("anything", 1), 0);
    assert_eq!(shard_for("anything", 0), 0, "zero is treated as one shard");
}

#[test]
fn shard_count_is_validated() {
    assert_eq!(parse_shard_count("8"), Ok(8));
    assert_eq!(parse_shard_count(" 1 "), Ok(1));
    for bad in ["0", "-1", "x", "", "257"] {
        assert!(parse_shard_count(bad).is_err(), "{bad}");
    }
}

#[test]
fn routes_and_methods() {
    assert_eq!(resolve("GET", "/healthz"), Ok(Route::Health));
    assert_eq!(resolve("GET", "/shards"), Ok(Route::Shards));
    assert!(Route::Shards.operator_only());
    assert_eq!(resolve("POST", "/callbacks/bandwidth"), Ok(Route::Callback));
    assert_eq!(resolve("POST", "/callbacks/bandwidth/"), Ok(Route::Callback));
    assert_eq!(resolve("GET", "/messages/abc%2Bdef"), Ok(Route::Message("abc+def".into())));
    assert_eq!(resolve("GET", "/quarantine"), Ok(Route::Quarantine));
    assert_eq!(resolve("GET", "/callbacks/bandwidth"), Err(ApiError::MethodNotAllowed { allow: "POST" }));
    assert_eq!(resolve("PUT", "/callbacks/bandwidth"), Err(ApiError::MethodNotAllowed { allow: "POST" }));
    assert_eq!(resolve("POST", "/messages/x"), Err(ApiError::MethodNotAllowed { allow: "GET" }));
    assert_eq!(resolve("GET", "/messages/"), Err(ApiError::NotFound("Route")));
    assert_eq!(resolve("GET", "/messages/a/b"), Err(ApiError::NotFound("Route")));
    assert_eq!(resolve("GET", "/nope"), Err(ApiError::NotFound("Route")));
    assert!(matches!(resolve("GET", "/messages/%ff"), Err(ApiError::BadRequest(_))));
    assert_eq!(percent_decode("a%20b%"), Some("a b%".into()));
    assert_eq!(resolve("POST", "/api/v2/users/9900000/messages"), Ok(Route::Send { account_id: "9900000".into() }));
    assert_eq!(resolve("OPTIONS", "/api/v2/users/9900000/messages"), Ok(Route::Preflight));
    assert_eq!(
        resolve("POST", "/api/v2/users/9900000/messages/multiChannel"),
        Ok(Route::SendMultiChannel { account_id: "9900000".into() })
    );
    assert_eq!(resolve("OPTIONS", "/api/v2/users/9900000/messages/multiChannel"), Ok(Route::Preflight));
    assert_eq!(
        resolve("GET", "/api/v2/users/9900000/messages/multiChannel"),
        Err(ApiError::MethodNotAllowed { allow: "POST, OPTIONS" })
    );
    assert_eq!(resolve("GET", "/api/v2/users/9900000/messages"), Ok(Route::List { account_id: "9900000".into() }));
    assert_eq!(resolve("GET", "/conversations"), Ok(Route::Conversation));
    assert_eq!(resolve("GET", "/outbox"), Ok(Route::OutboxStats));
    assert_eq!(resolve("GET", "/outbox/dead"), Ok(Route::OutboxDead));
    assert_eq!(resolve("POST", "/outbox/replay"), Ok(Route::OutboxReplay));
    assert_eq!(resolve("GET", "/outbox/replay"), Err(ApiError::MethodNotAllowed { allow: "POST" }));
    assert_eq!(
        resolve("PUT", "/api/v2/users/9900000/messages"),
        Err(ApiError::MethodNotAllowed { allow: "GET, POST, OPTIONS" })
    );
    assert_eq!(resolve("POST", "/api/v2/users/9900000/other"), Err(ApiError::NotFound("Route")));
}

#[test]
fn limits_from_the_query_string() {
    assert_eq!(query_limit(None, 100, 1000), Ok(100));
    assert_eq!(query_limit(Some("limit=5"), 100, 1000), Ok(5));
    assert_eq!(query_limit(Some("x=1&limit=5000"), 100, 1000), Ok(1000));
    assert!(query_limit(Some("limit=0"), 100, 1000).is_err());
    assert!(query_limit(Some("limit=abc"), 100, 1000).is_err());
}

#[test]
fn errors_map_to_status_type_and_headers_in_one_place() {
    let cases = [
        (ApiError::CallbackUnauthorized, 401, "unauthorized"),
        (ApiError::ApiUnauthorized, 401, "unauthorized"),
        (ApiError::NotFound("Message"), 404, "not-found"),
        (ApiError::MethodNotAllowed { allow: "POST" }, 405, "method-not-allowed"),
        (ApiError::PayloadTooLarge { limit: 1024 * 1024 }, 413, "payload-too-large"),
        (ApiError::BadRequest("x".into()), 400, "bad-request"),
        (ApiError::NotConfigured("API_TOKEN"), 500, "not-configured"),
        (ApiError::StorageUnavailable, 503, "storage-unavailable"),
        (ApiError::Internal, 500, "internal"),
    ];
    for (e, status, kind) in cases {
        assert_eq!(e.status(), status, "{e:?}");
        assert_eq!(e.body().kind, kind, "{e:?}");
        assert!(!e.body().description.is_empty());
    }
    assert_eq!(ApiError::CallbackUnauthorized.headers(), vec![("WWW-Authenticate", "Basic realm=\"\"".to_string())]);
    assert_eq!(ApiError::MethodNotAllowed { allow: "POST" }.headers(), vec![("Allow", "POST".to_string())]);
}

#[test]
fn quarantine_keeps_exact_bytes_text_or_base64() {
    let text = QuarantineRecord::from_rejected(&Rejected { raw: b"hello".to_vec(), reason: "r".into() });
    assert_eq!(text.raw_encoding, RawEncoding::Utf8);
    assert_eq!(text.raw, "hello");
    assert_eq!(text.content_hash, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    let bin = vec![0xff, 0x00, 0xfe];
    let b = QuarantineRecord::from_rejected(&Rejected { raw: bin.clone(), reason: "r".into() });
    assert_eq!(b.raw_encoding, RawEncoding::Base64);
    assert_eq!(b.bytes(), Some(bin));
}

#[test]
fn opt_out_routes_and_who_may_call_each_route() {
    assert_eq!(resolve("GET", "/optouts"), Ok(Route::OptOuts));
    assert_eq!(resolve("POST", "/optouts"), Ok(Route::OptOutAdd));
    assert_eq!(resolve("PUT", "/optouts"), Err(ApiError::MethodNotAllowed { allow: "GET, POST" }));
    assert_eq!(resolve("DELETE", "/optouts/%2B15554440001"), Ok(Route::OptOutLift("+15554440001".into())));
    assert_eq!(resolve("GET", "/optouts/%2B15554440001"), Err(ApiError::MethodNotAllowed { allow: "DELETE" }));
    assert_eq!(resolve("GET", "/optouts/%2B15554440001/history"), Ok(Route::OptOutHistory("+15554440001".into())));
    assert_eq!(resolve("GET", "/quarantine/count"), Ok(Route::QuarantineCount));
    // The API token only, for these; the others authenticate themselves
    // (callback credentials, client keys) or are public.
    for (method, path) in [
        ("GET", "/messages/m"),
        ("GET", "/quarantine"),
        ("GET", "/quarantine/count"),
        ("GET", "/outbox"),
        ("POST", "/erasure"),
        ("GET", "/export"),
        ("GET", "/metrics"),
        ("GET", "/optouts"),
        ("POST", "/optouts"),
        ("DELETE", "/optouts/%2B1555"),
        ("GET", "/optouts/%2B1555/history"),
    ] {
        assert!(resolve(method, path).unwrap().operator_only(), "{method} {path}");
    }
    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/"),
        ("POST", "/callbacks/bandwidth"),
        ("POST", "/api/v2/users/9/messages"),
        ("GET", "/api/v2/users/9/messages"),
        ("GET", "/conversations"),
        ("GET", "/live"),
        ("GET", "/media/m/bw/x.png"),
        ("GET", "/openapi.json"),
    ] {
        assert!(!resolve(method, path).unwrap().operator_only(), "{method} {path}");
    }
}

#[test]
fn a_query_integer_is_digits_with_an_optional_minus() {
    assert_eq!(query_int::<i64>("15"), Some(15));
    assert_eq!(query_int::<i64>("-15"), Some(-15));
    for bad in ["+15", " 15", "15 ", "", "-", "1.5", "1e3", "0x10"] {
        assert_eq!(query_int::<i64>(bad), None, "{bad:?}");
    }
    assert_eq!(query_int::<u32>("4294967296"), None);
    assert!(query_limit(Some("limit=+15"), 100, 1000).is_err());
}
