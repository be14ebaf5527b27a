//! Shard layouts: what the shard map records for an ask, and where keys go
//! under the layouts a Worker holds.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use bw_ledger_core::shard::{
    current_requests, id_time_ms, record, render_metrics, shard_for, valid_for, view, Ask, Held, Layout, Layouts,
    Placement, Record, Requested, LEAD_MS, REQUEST_FORGOTTEN_AFTER_MS, REQUEST_TOUCH_EVERY_MS,
};

const T0: i64 = 1_795_000_000_000;

fn held(count: u32, since_ms: i64, version_ms: i64) -> Held {
    Held { layout: Layout { count, since_ms }, version_ms }
}

fn ask(count: u32, version_ms: i64) -> Ask {
    Ask { count, version_ms: Some(version_ms) }
}

/// Ids as Bandwidth makes them: the millisecond, then letters.
fn id_at(ms: i64, n: usize) -> String {
    format!("{ms}m{n:05}xk")
}

#[test]
fn the_first_ask_records_the_first_layout() {
    assert_eq!(record(&[], None, ask(4, 50), T0, LEAD_MS), Record::First(held(4, T0, 50)));
    // A build from before layouts changed records one too.
    assert_eq!(record(&[], None, Ask { count: 4, version_ms: None }, T0, LEAD_MS), Record::First(held(4, T0, 0)));
}

/// A newer version's count starts a lead from now; the version it
/// replaces, still asking while the rollout runs (or rolled back to),
/// only notes its count, at most once a minute.
#[test]
fn only_a_newer_version_starts_a_layout() {
    let layouts = [held(4, T0, 50)];
    assert_eq!(record(&layouts, None, ask(4, 90), T0 + 5, LEAD_MS), Record::Nothing);
    assert_eq!(record(&layouts, None, ask(7, 90), T0 + 5, LEAD_MS), Record::Next(held(7, T0 + 5 + LEAD_MS, 90)));
    let now = T0 + 10;
    let noted = Requested { count: 7, first_seen_ms: now, last_seen_ms: now };
    for older in [ask(7, 50), ask(7, 10), Ask { count: 7, version_ms: None }] {
        assert_eq!(record(&layouts, None, older, now, LEAD_MS), Record::Request(noted), "{older:?}");
    }
    assert_eq!(record(&layouts, Some(noted), ask(7, 10), now + REQUEST_TOUCH_EVERY_MS - 1, LEAD_MS), Record::Nothing);
    let later = now + REQUEST_TOUCH_EVERY_MS;
    assert_eq!(
        record(&layouts, Some(noted), ask(7, 10), later, LEAD_MS),
        Record::Request(Requested { last_seen_ms: later, ..noted })
    );
}

/// Layouts only ever append, each starting after the one before, even when
/// a change follows one that has not started.
#[test]
fn a_layout_never_starts_before_the_one_it_follows() {
    let layouts = [held(8, T0, 1), held(16, T0 + 1_000_000, 2)];
    assert_eq!(record(&layouts, None, ask(12, 3), T0 + 10, 5), Record::Next(held(12, T0 + 1_000_001, 3)));
    assert_eq!(record(&layouts, None, ask(12, 3), T0 + 2_000_000, 5), Record::Next(held(12, T0 + 2_000_005, 3)));
    assert_eq!(record(&layouts, None, ask(8, 3), T0 + 2_000_000, 5), Record::Next(held(8, T0 + 2_000_005, 3)));
    assert_eq!(valid_for(LEAD_MS), LEAD_MS / 5);
}

/// A content hash or an idempotency scope can begin with 13 digits; it is
/// still placed by the first layout, so it never changes shard.
#[test]
fn keys_that_are_not_message_ids_stay_with_the_first_layout() {
    let start = T0 + 10;
    let placement =
        Placement::new(vec![Layout { count: 4, since_ms: T0 }, Layout { count: 16, since_ms: start }], i64::MAX);
    let hash = format!("{}af3c9e", start + 5);
    assert_eq!(placement.shard_of_untimed(&hash), shard_for(&hash, 4));
    assert_eq!(placement.layout_of(&hash).count, 16, "as a message id it would be the new layout's");
}

#[test]
fn ids_say_when_they_were_made() {
    assert_eq!(id_time_ms("1589228074636lm4k2je7j7jklbn2"), Some(1_589_228_074_636));
    assert_eq!(id_time_ms("1589228074636"), Some(1_589_228_074_636));
    for other in ["158922807463", "m-1", "", "15892280746x6abc", "０589228074636x"] {
        assert_eq!(id_time_ms(other), None, "{other}");
    }
}

/// Before the change, every key is where one layout puts it; after, only
/// ids made from the new layout's start go elsewhere, and they spread over
/// all of its shards.
#[test]
fn a_new_layout_places_only_ids_made_after_it_starts() {
    let before = Placement::new(vec![Layout { count: 4, since_ms: T0 }], T0 + LEAD_MS);
    let start = T0 + LEAD_MS;
    let after = Placement::new(vec![Layout { count: 4, since_ms: T0 }, Layout { count: 7, since_ms: start }], i64::MAX);
    let mut old_ids: Vec<String> = (0..500).map(|n| id_at(T0 - 86_400_000 + n as i64 * 1000, n)).collect();
    old_ids.extend((0..500).map(|n| id_at(start - 1 - n as i64, n)));
    old_ids.extend(["m-1".to_string(), "9f86d081884c7d659a2feaa0c55ad015".to_string()]);
    for id in &old_ids {
        assert_eq!(before.shard_of(id), shard_for(id, 4), "{id}");
        assert_eq!(after.shard_of(id), before.shard_of(id), "{id}");
    }
    let mut used = [0; 7];
    for n in 0..700 {
        used[after.shard_of(&id_at(start + n as i64, n)) as usize] += 1;
    }
    assert!(used.iter().all(|&u| u > 50), "{used:?}");
    assert_eq!((before.fan_out(), after.fan_out()), (4, 7));
    assert_eq!(Placement::fixed(8).shard_of("anything"), shard_for("anything", 8));
}

/// Lowering the count: new ids use fewer shards, and reads still reach
/// every shard that holds older messages.
#[test]
fn a_lower_count_keeps_reading_every_shard() {
    let start = T0 + 1000;
    let placement =
        Placement::new(vec![Layout { count: 7, since_ms: T0 }, Layout { count: 3, since_ms: start }], i64::MAX);
    assert_eq!(placement.fan_out(), 7);
    for n in 0..300 {
        assert!(placement.shard_of(&id_at(start + n as i64, n)) < 3);
        let old = id_at(T0 + n as i64 % 1000, n);
        assert_eq!(placement.shard_of(&old), shard_for(&old, 7));
    }
}

/// An id whose time is past the horizon (minutes ahead of the map's clock:
/// not Bandwidth's) belongs to the first layout, as an id without a time.
#[test]
fn ids_from_past_the_horizon_belong_to_the_first_layout() {
    let placement =
        Placement::new(vec![Layout { count: 4, since_ms: T0 }, Layout { count: 16, since_ms: T0 + 10 }], T0 + 100);
    let far = id_at(T0 + 100, 1);
    assert_eq!(placement.layout_of(&far), Layout { count: 4, since_ms: T0 });
    assert_eq!(placement.layout_of(&id_at(T0 + 99, 1)), Layout { count: 16, since_ms: T0 + 10 });
}

/// A map of a build before layouts changed answers without `layouts`: its
/// one layout is the placement. And such a build's ask has no version.
#[test]
fn answers_and_asks_of_the_previous_build_are_understood() {
    let old: Layouts =
        serde_json::from_str(r#"{"inForce":{"count":4,"sinceMs":5},"requested":[]}"#).expect("old answer");
    assert_eq!(Placement::of(&old), Placement::new(vec![Layout { count: 4, since_ms: 5 }], i64::MAX));
    let ask: Ask = serde_json::from_str(r#"{"count":7}"#).expect("old ask");
    assert_eq!(ask.version_ms, None);
}

#[test]
fn requests_not_asked_for_in_a_day_are_forgotten() {
    let r = |count, last_seen_ms| Requested { count, first_seen_ms: 0, last_seen_ms };
    let now = REQUEST_FORGOTTEN_AFTER_MS + 10;
    let shown = current_requests(vec![r(7, 10), r(16, 11), r(12, 500), r(3, 500), r(9, 600)], 9, now);
    assert_eq!(shown, vec![r(3, 500), r(12, 500), r(16, 11)]);
}

fn answer(layouts: Vec<Layout>, requested: Vec<Requested>) -> Layouts {
    Layouts { in_force: layouts[0], layouts, requested, valid_ms: 1, horizon_ms: i64::MAX }
}

#[test]
fn the_layouts_are_in_the_metrics_and_at_get_shards() {
    let two = vec![Layout { count: 8, since_ms: T0 }, Layout { count: 16, since_ms: T0 + 100 }];
    let asked = vec![Requested { count: 12, first_seen_ms: 1, last_seen_ms: 2 }];
    let waiting = render_metrics(&answer(two.clone(), asked.clone()), T0 + 99);
    assert!(waiting.contains("\nbw_ledger_shards 8\n"), "{waiting}");
    assert!(waiting.contains("\nbw_ledger_reshard_pending 1\n"), "{waiting}");
    assert!(waiting.contains("\nbw_ledger_shards_requested{count=\"12\"} 1\n"), "{waiting}");
    let started = render_metrics(&answer(two.clone(), vec![]), T0 + 100);
    assert!(started.contains("\nbw_ledger_shards 16\n") && started.contains("\nbw_ledger_reshard_pending 0\n"));
    assert!(!started.contains("bw_ledger_shards_requested{"), "{started}");

    let rows: Vec<i64> = (0..16).collect();
    let shown = view(&answer(two.clone(), asked), &rows, Some(30), T0 + 99);
    assert_eq!(shown["inForce"]["count"], 8);
    assert_eq!(shown["next"]["count"], 16);
    assert_eq!(shown["layouts"].as_array().map(Vec::len), Some(2));
    assert_eq!(shown["requested"][0]["count"], 12);
    assert_eq!(shown["shards"][15]["listRows"], 15);
    assert_eq!(shown["shards"][15]["newMessages"], true);
    let lowered = vec![Layout { count: 16, since_ms: T0 }, Layout { count: 12, since_ms: T0 + 100 }];
    let shown = view(&answer(lowered.clone(), vec![]), &rows, Some(30), T0 + 100);
    assert_eq!(shown["next"], serde_json::Value::Null);
    assert_eq!(shown["shards"][11].get("emptyBy"), None, "a shard in use has no end");
    let by = T0 + 100 + 32 * 24 * 3600 * 1000;
    assert_eq!(shown["shards"][12]["emptyBy"], bw_ledger_core::time::format_rfc3339_ms(by));
    let kept = view(&answer(lowered, vec![]), &rows, None, T0 + 100);
    assert_eq!(kept["shards"][12]["emptyBy"], serde_json::Value::Null, "no retention: never");
    assert_eq!(
        (shown["shards"][11]["newMessages"].clone(), shown["shards"][12]["newMessages"].clone()),
        (true.into(), false.into())
    );
}
