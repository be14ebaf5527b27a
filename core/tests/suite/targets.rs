//! Webhook targets made through the API: what POST and PATCH accept,
//! rotation, sealing at rest, pacing, and what a shard delivers with.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bw_ledger_core::change::ChangeKind;
use bw_ledger_core::forward::{parse_targets, sign};
use bw_ledger_core::targets::pace::{Pacer, HORIZON_MS, MARGIN_MS, WINDOW_MS};
use bw_ledger_core::targets::seal::{is_sealed, new_secret, open, seal, Sealer};
use bw_ledger_core::targets::*;

const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn record(secret: &str) -> TargetRecord {
    let new = parse_new(br#"{"url": "https://crm.example/hook", "id": "crm"}"#).unwrap();
    TargetRecord::new(new, "crm".into(), secret.into(), 1_000)
}

#[test]
fn post_takes_the_documented_fields_and_names_what_it_refuses() {
    let t = parse_new(
        br#"{"url": "https://x.example/h", "id": "crm.v2", "events": ["message.status", "message.status"],
             "ratePerSecond": 5, "description": "the CRM"}"#,
    )
    .unwrap();
    assert_eq!(t.id.as_deref(), Some("crm.v2"));
    assert_eq!(t.events, Some(vec![ChangeKind::Status]), "a repeated kind is kept once");
    assert_eq!(t.rate_per_second, Some(5));
    let nulls =
        parse_new(br#"{"url": "http://x.example", "events": null, "ratePerSecond": null, "description": null}"#);
    assert_eq!(nulls.unwrap().events, None);
    for (body, field) in [
        (&br#"{}"#[..], "url"),
        (br#"{"url": "ftp://x.example"}"#, "url"),
        (br#"{"url": "HTTP://x.example"}"#, "url"),
        (br#"{"url": "https://x.example/a b"}"#, "url"),
        (br#"{"url": "https://x", "id": "-x"}"#, "id"),
        (br#"{"url": "https://x", "id": null}"#, "id"),
        (br#"{"url": "https://x", "events": []}"#, "events"),
        (br#"{"url": "https://x", "events": ["message.sent"]}"#, "events"),
        (br#"{"url": "https://x", "ratePerSecond": 0}"#, "ratePerSecond"),
        (br#"{"url": "https://x", "ratePerSecond": 1.5}"#, "ratePerSecond"),
        (br#"{"url": "https://x", "ratePerSecond": 1001}"#, "ratePerSecond"),
        (br#"{"url": "https://x", "event": ["message.status"]}"#, "event"),
        (br#"[]"#, "object"),
    ] {
        let why = parse_new(body).unwrap_err();
        assert!(why.contains(field), "{why} should name {field}");
    }
    assert!(parse_new(format!(r#"{{"url": "https://x", "description": "{}"}}"#, "é".repeat(501)).as_bytes()).is_err());
    assert!(parse_new(format!(r#"{{"url": "https://x", "description": "{}"}}"#, "é".repeat(500)).as_bytes()).is_ok());
}

#[test]
fn patch_keeps_what_is_absent_and_clears_what_is_null() {
    let mut r = record("whsec_AAAA");
    r.events = Some(vec![ChangeKind::Received]);
    r.rate_per_second = Some(3);
    r.apply(&parse_patch(br#"{"description": "new"}"#).unwrap(), 2_000);
    assert_eq!(
        (r.events.clone(), r.rate_per_second, r.description.as_deref()),
        (Some(vec![ChangeKind::Received]), Some(3), Some("new"))
    );
    r.apply(&parse_patch(br#"{"events": null, "ratePerSecond": null, "url": "https://y.example"}"#).unwrap(), 3_000);
    assert_eq!(
        (r.events.clone(), r.rate_per_second, r.url.as_str(), r.updated_ms),
        (None, None, "https://y.example", 3_000)
    );
    assert!(parse_patch(br#"{"id": "other"}"#).is_err(), "an id never changes");
    // The patch travels to the registry and back unchanged, null included.
    let p = parse_patch(br#"{"ratePerSecond": null}"#).unwrap();
    let back: TargetPatch = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.rate_per_second, Some(None));
}

#[test]
fn rotation_signs_with_both_during_the_overlap_then_the_new_alone() {
    let old = new_secret(&[1; 32]);
    let fresh = new_secret(&[2; 32]);
    let mut r = record(&old);
    r.rotate(fresh.clone(), 10_000, 5_000);
    let t = Target::from_record(&r, None);
    let key = |s: &str| bw_ledger_core::forward::secret_key(s).unwrap();
    assert_eq!(t.keys_at(14_999).unwrap(), vec![key(&fresh), key(&old)], "newest first, both");
    assert_eq!(t.keys_at(15_000).unwrap(), vec![key(&fresh)], "the old one stops at the overlap's end");
    // A second rotation never extends the first overlap.
    let third = new_secret(&[3; 32]);
    r.rotate(third.clone(), 12_000, 60_000);
    assert_eq!(r.secrets.len(), 3);
    assert_eq!(r.secrets[2].expires_ms, Some(15_000));
    let view = api_view(&r, 12_000);
    assert_eq!(view["previousSecretExpiresAt"], "1970-01-01T00:01:12.000Z");
    assert!(!view.to_string().contains("whsec_"), "a view never holds a secret");
    assert!(r.without_secrets().secrets.iter().all(|s| s.sealed.is_empty()));
    // Overlap 0: the new secret alone at once.
    r.rotate(new_secret(&[4; 32]), 13_000, 0);
    assert_eq!(Target::from_record(&r, None).keys_at(13_000).unwrap().len(), 1);
}

#[test]
fn secrets_are_32_random_bytes_sealed_per_target_when_a_key_is_set() {
    let secret = new_secret(&[9; 32]);
    assert!(secret.starts_with("whsec_"));
    assert_eq!(bw_ledger_core::forward::secret_key(&secret).unwrap().len(), 32);
    let sealer = Sealer::from_var(Some(KEY)).unwrap().unwrap();
    let sealed = seal(Some(&sealer), "crm", &secret, &[5; 12]);
    assert!(is_sealed(&sealed) && !sealed.contains(&secret[6..]));
    assert_eq!(open(Some(&sealer), "crm", &sealed).unwrap(), secret);
    assert!(open(Some(&sealer), "other", &sealed).is_err(), "bound to its target");
    assert!(open(None, "crm", &sealed).unwrap_err().contains("TARGET_SECRETS_KEY"));
    let other = Sealer::from_var(Some(&"ab".repeat(32))).unwrap().unwrap();
    assert!(open(Some(&other), "crm", &sealed).unwrap_err().contains("key"), "another key does not open it");
    // Without a key a secret is kept as shown, and still opens once a key is set.
    assert_eq!(seal(None, "crm", &secret, &[5; 12]), secret);
    assert_eq!(open(Some(&sealer), "crm", &secret).unwrap(), secret);
    assert!(Sealer::from_var(Some("  ")).unwrap().is_none());
    for bad in ["short", "c2hvcnQ=", &"zz".repeat(32)] {
        let why = Sealer::from_var(Some(bad)).unwrap_err();
        assert!(!why.contains(bad), "the value is never repeated: {why}");
    }
    // A delivery signs with the sealed secret, opened.
    let r = record(&sealed);
    let t = Target::from_record(&r, Some(&sealer));
    let k = t.keys_at(0).unwrap();
    assert_eq!(sign(&k[0], "id", 1, "{}"), sign(&bw_ledger_core::forward::secret_key(&secret).unwrap(), "id", 1, "{}"));
    assert!(Target::from_record(&r, None).keys_at(0).unwrap_err().contains("TARGET_SECRETS_KEY"));
}

#[test]
fn pacing_keeps_any_rate_plus_one_sends_a_window_apart() {
    let mut p = Pacer::default();
    let mut sends = Vec::new();
    let mut now = 0;
    while sends.len() < 40 {
        let slot = p.reserve(now, 3);
        if slot.granted {
            assert!(slot.at_ms >= now && slot.at_ms - now <= HORIZON_MS);
            sends.push(slot.at_ms);
        } else {
            assert!(slot.at_ms - now > HORIZON_MS);
        }
        now += 37;
    }
    for w in sends.windows(4) {
        assert!(w[3] - w[0] >= WINDOW_MS + MARGIN_MS, "{w:?}");
    }
    assert!(sends.windows(2).all(|w| w[1] >= w[0]), "in order");
    let busiest = sends.iter().map(|s| sends.iter().filter(|t| **t >= *s && **t < s + 1000).count()).max();
    assert_eq!(busiest, Some(3));
    // A lower rate applies at once.
    let mut p = Pacer::default();
    let (a, b) = (p.reserve(0, 5), p.reserve(0, 5));
    assert_eq!((a.at_ms, b.at_ms), (0, 0));
    assert_eq!(p.reserve(0, 1).at_ms, WINDOW_MS + MARGIN_MS);
}

#[test]
fn config_targets_win_their_ids_and_may_be_paced() {
    let config = parse_targets(Some(
        r#"[{"id": "crm", "url": "https://a", "secret": "whsec_AAAA", "ratePerSecond": 4, "events": ["message.status"]}]"#,
    ))
    .unwrap();
    assert!(parse_targets(Some(r#"[{"id": "x", "url": "https://a", "secret": "whsec_AAAA", "ratePerSecond": 0}]"#))
        .is_err());
    let mut shadowed = record("whsec_BBBB");
    shadowed.url = "https://b".into();
    let mut other = record("whsec_BBBB");
    other.id = "other".into();
    other.paused = true;
    let all = runtime(&config, &[shadowed, other], None);
    assert_eq!(
        all.iter().map(|t| (t.id.as_str(), t.url.as_str())).collect::<Vec<_>>(),
        [("crm", "https://a"), ("other", "https://crm.example/hook")]
    );
    assert_eq!(all[0].rate_per_second, Some(4));
    assert!(all[0].wants(ChangeKind::Status) && !all[0].wants(ChangeKind::Received));
    assert!(all[1].paused && all[1].wants(ChangeKind::Received));
    assert_eq!(config_view(&config[0])["source"], "config");
    assert!(config_conflict("crm").contains("FORWARD_TARGETS"));
}
