//! The abuse limits of client keys (`bw_ledger_core::limits`): calling
//! codes, destination rules, the quota, the rate and read buckets.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bw_ledger_core::error::Refusal;
use bw_ledger_core::limits::*;

const DAY_MS: i64 = 86_400_000;

const T0: i64 = 1_795_000_000_000;

#[test]
fn calling_codes() {
    assert_eq!(calling_code("+15551110000"), Some("1"));
    assert_eq!(calling_code("+79161234567"), Some("7"));
    assert_eq!(calling_code("+447700900123"), Some("44"));
    assert_eq!(calling_code("+4915112345678"), Some("49"));
    assert_eq!(calling_code("+989121234567"), Some("98"));
    assert_eq!(calling_code("+353861234567"), Some("353"));
    assert_eq!(calling_code("+2348012345678"), Some("234"));
    assert_eq!(calling_code("+8801712345678"), Some("880"));
    assert_eq!(calling_code("ACME"), None);
    assert_eq!(calling_code("+0123"), None);
}

#[test]
fn default_destinations_follow_the_from_numbers() {
    let limits = KeyLimits::default();
    let from = vec!["+15551110000".to_owned(), "+447700900000".to_owned(), "ACME".to_owned()];
    assert_eq!(limits.destination_prefixes(&from), Some(vec!["+1".to_owned(), "+44".to_owned()]));
    let to = vec!["+15552220001".to_owned(), "+33612345678".to_owned(), "+447700900123".to_owned()];
    assert_eq!(limits.refused_destinations(&from, &to), vec!["+33612345678"]);
    // A key with only a sender ID has no default destination.
    assert_eq!(limits.refused_destinations(&["ACME".to_owned()], &to).len(), 3);
    let any = KeyLimits { allowed_destinations: Some(vec!["*".into()]), ..KeyLimits::default() };
    assert!(any.refused_destinations(&from, &to).is_empty());
    let uk = KeyLimits { allowed_destinations: Some(vec!["+4477".into()]), ..KeyLimits::default() };
    assert_eq!(uk.refused_destinations(&from, &to), vec!["+15552220001", "+33612345678"]);
}

#[test]
fn plus_one_means_the_united_states_and_canada_not_every_nanp_country() {
    let to: Vec<String> =
        ["+18765550123", "+14155550123", "+16045550123", "+17875550123", "+18095550123", "+12425550123"]
            .map(str::to_owned)
            .to_vec();
    // The default of a +1 sender, and a configured "+1" (or "+18"): the
    // United States (Puerto Rico is 787), and Canada (604), only.
    let from = vec!["+15551110000".to_owned()];
    let refused = vec!["+18765550123", "+18095550123", "+12425550123"];
    assert_eq!(KeyLimits::default().refused_destinations(&from, &to), refused);
    let plus_one = KeyLimits { allowed_destinations: Some(vec!["+1".into()]), ..KeyLimits::default() };
    assert_eq!(plus_one.refused_destinations(&from, &to), refused);
    let plus_18 = KeyLimits { allowed_destinations: Some(vec!["+18".into()]), ..KeyLimits::default() };
    assert_eq!(
        plus_18.refused_destinations(&from, &to),
        vec!["+18765550123", "+14155550123", "+16045550123", "+17875550123", "+18095550123", "+12425550123"]
    );
    // Jamaica by its own prefix.
    let jamaica = KeyLimits { allowed_destinations: Some(vec!["+1".into(), "+1876".into()]), ..KeyLimits::default() };
    assert_eq!(jamaica.refused_destinations(&from, &to), vec!["+18095550123", "+12425550123"]);
    assert!(prefix_admits("+18765", "+18765550123"));
    assert_eq!(nanp_foreign_area("+18765550123"), Some("876"));
    assert_eq!(nanp_foreign_area("+14155550123"), None);
    assert_eq!(nanp_foreign_area("+447700900000"), None);
}

#[test]
fn limits_are_validated() {
    let bad = |l: KeyLimits| l.validate("k").unwrap_err();
    assert!(bad(KeyLimits { daily_quota: Some(0), ..Default::default() }).contains("daily_quota"));
    assert!(bad(KeyLimits { allowed_destinations: Some(vec!["44".into()]), ..Default::default() }).contains("\"44\""));
    assert!(bad(KeyLimits { allowed_destinations: Some(vec!["+".into()]), ..Default::default() }).contains("\"+\""));
    let ok = KeyLimits { allowed_destinations: Some(vec!["+1".into(), "*".into()]), ..Default::default() };
    assert!(ok.validate("k").is_ok());
}

fn send(n: u32, rate: Option<u32>, quota: Option<u32>) -> Ask {
    Ask::Send { recipients: n, rate_per_minute: rate, daily_quota: quota }
}

#[test]
fn the_quota_counts_recipients_and_resets_at_utc_midnight() {
    let mut s = KeyState::default();
    assert_eq!(s.admit(&send(3, None, Some(4)), T0), Verdict::Admit);
    // 3 + 2 > 4: refused whole, until the next UTC midnight.
    let midnight = (T0.div_euclid(DAY_MS) + 1) * DAY_MS;
    assert_eq!(
        s.admit(&send(2, None, Some(4)), T0),
        Verdict::Refuse { reason: Refusal::Quota, retry_after_s: (midnight - T0 + 999) / 1000 }
    );
    assert_eq!(s.admit(&send(1, None, Some(4)), T0), Verdict::Admit);
    assert_eq!((s.sends_today, s.messages_today), (2, 4));
    // A refund (Bandwidth refused the send) gives the messages back.
    s.admit(&Ask::Refund { recipients: 1 }, T0);
    assert_eq!(s.admit(&send(1, None, Some(4)), T0), Verdict::Admit);
    assert_eq!(s.refusals_today.get(&Refusal::Quota), Some(&1));
    assert_eq!(s.admit(&send(4, None, Some(4)), midnight), Verdict::Admit);
    assert!(s.refusals_today.is_empty());
    assert_eq!(s.last_refusal, Some(Refusal::Quota));
}

#[test]
fn the_rate_allows_a_burst_then_one_per_interval() {
    let mut s = KeyState::default();
    for _ in 0..3 {
        assert_eq!(s.admit(&send(1, Some(3), None), T0), Verdict::Admit);
    }
    // The fourth within the minute waits for one token: 20 s.
    assert_eq!(s.admit(&send(1, Some(3), None), T0), Verdict::Refuse { reason: Refusal::Rate, retry_after_s: 20 });
    assert!(matches!(s.admit(&send(1, Some(3), None), T0 + 19_000), Verdict::Refuse { .. }));
    assert_eq!(s.admit(&send(1, Some(3), None), T0 + 20_000), Verdict::Admit);
    // A refused send counts no message.
    assert_eq!(s.messages_today, 4);
}

#[test]
fn reads_have_their_own_bucket() {
    let mut s = KeyState::default();
    for _ in 0..2 {
        assert_eq!(s.admit(&Ask::Read { reads_per_minute: 2 }, T0), Verdict::Admit);
    }
    assert_eq!(
        s.admit(&Ask::Read { reads_per_minute: 2 }, T0),
        Verdict::Refuse { reason: Refusal::Reads, retry_after_s: 30 }
    );
    assert_eq!(s.admit(&send(1, Some(1), None), T0), Verdict::Admit);
}

#[test]
fn usage_reads_yesterday_as_zero() {
    let mut s = KeyState::default();
    s.admit(&send(2, None, None), T0);
    s.admit(&Ask::Refused { reason: Refusal::Destination }, T0);
    let limits = KeyLimits::default();
    let today = KeyUsage::of("k", &limits, &["+15551110000".into()], s.clone(), T0);
    assert_eq!((today.sends_today, today.messages_today), (1, 2));
    assert_eq!(today.allowed_destinations, Some(vec!["+1".to_owned()]));
    assert_eq!(today.refusals_today.get(&Refusal::Destination), Some(&1));
    let tomorrow = KeyUsage::of("k", &limits, &[], s, T0 + DAY_MS);
    assert_eq!((tomorrow.sends_today, tomorrow.refusals_today.len()), (0, 0));
    assert_eq!(tomorrow.last_refusal, Some(Refusal::Destination));
}
