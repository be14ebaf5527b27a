//! Opt-out rules: which texts are an opt-out or an opt-in, who and where a
//! callback's signal names, the keyed hash, and the configuration.

use bw_ledger_core::optout::*;
use bw_ledger_core::parse_callback_body;
use serde_json::json;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn the_fcc_keywords_in_any_case_and_with_punctuation_opt_out() {
    let rules = Rules::default();
    for text in [
        "STOP",
        " stop! ",
        "Quit.",
        "END",
        "revoke 🛑",
        "Opt-Out",
        "opt out",
        "CANCEL!!!",
        "unsubscribe",
        "stopall",
        "STOP ALL",
        "stop texting me",
        "Stop, please",
        "“stop”",
    ] {
        assert_eq!(rules.action_of(text), Some(Action::OptOut), "{text:?}");
    }
    for text in ["don't stop", "STOPPED", "unstoppable", "please stop", "the end", "hi", "", "🛑"] {
        assert_eq!(rules.action_of(text), None, "{text:?}");
    }
    for text in ["START", "unstop", "Yes!", "yes please"] {
        assert_eq!(rules.action_of(text), Some(Action::OptIn), "{text:?}");
    }
    assert_eq!(normalize("  Don’t   STOP!! "), "dont stop");
}

#[test]
fn keyword_lists_and_scope_come_from_the_vars() {
    let rules = Rules::from_vars(Some("ALTO, parar"), Some("COMENZAR"), Some("number")).unwrap();
    assert_eq!(rules.action_of("Alto"), Some(Action::OptOut));
    assert_eq!(rules.action_of("stop"), None, "the list replaces the defaults");
    assert_eq!(rules.action_of("comenzar"), Some(Action::OptIn));
    assert_eq!(rules.scope, Scope::Number);
    assert_eq!(Rules::from_vars(None, None, None).unwrap(), Rules::default());
    assert!(Rules::from_vars(None, None, Some("everyone")).is_err());
}

#[test]
fn signals_name_the_person_and_our_number() {
    let body = json!([
        {"type": "message-received", "time": "2026-11-20T10:00:00Z", "to": "+15551110000",
         "message": {"id": "in-1", "direction": "in", "from": "+15554440001", "to": ["+15551110000"], "text": "STOP"}},
        {"type": "message-received", "time": "2026-11-20T10:00:01Z", "to": "+15551110000",
         "message": {"id": "in-2", "direction": "in", "from": "+15554440002", "to": ["+15551110000"], "text": "thanks"}},
        {"type": "message-failed", "time": "2026-11-20T10:00:02Z", "to": "+15554440003", "errorCode": 4775,
         "message": {"id": "out-1", "direction": "out", "from": "+15551110009", "to": ["+15554440003"], "text": ""}},
        {"type": "message-failed", "time": "2026-11-20T10:00:03Z", "to": "+15554440004", "errorCode": 4720,
         "message": {"id": "out-2", "direction": "out", "from": "+15551110009", "to": ["+15554440004"], "text": ""}}
    ])
    .to_string();
    let parsed = parse_callback_body(body.as_bytes());
    let account = Rules::default().signals(&parsed.events);
    assert_eq!(account.len(), 2);
    assert_eq!(
        (account[0].number.as_str(), account[0].scope_number.as_str(), account[0].action, account[0].reason),
        ("+15554440001", ACCOUNT_WIDE, Action::OptOut, Reason::Keyword)
    );
    assert_eq!(account[0].our_number, "+15551110000");
    assert_eq!(account[0].event_ref, "in-1:message-received");
    assert_eq!((account[1].number.as_str(), account[1].reason), ("+15554440003", Reason::Carrier4775));
    let by_number = Rules::from_vars(None, None, Some("number")).unwrap().signals(&parsed.events);
    assert_eq!(by_number[0].scope_number, "+15551110000");
    assert_eq!(by_number[1].scope_number, "+15551110009", "the number whose send was refused");
}

#[test]
fn the_keyed_hash_hides_the_number_and_is_stable() {
    let a = keyed_hash(b"key-1", "+15554440001");
    assert_eq!(a, keyed_hash(b"key-1", "+15554440001"));
    assert_ne!(a, keyed_hash(b"key-2", "+15554440001"));
    assert_eq!(a.len(), 64);
    assert!(!a.contains("5554440001"));
    let c = Counts { account: 3, number: 1 };
    assert!(c.render().contains("bw_ledger_optouts{scope=\"account\"} 3\n"));
    assert!(c.render().contains("bw_ledger_optouts{scope=\"number\"} 1\n"));
}
