//! The operator figures: Prometheus text and the outcomes chart's buckets.

use std::collections::BTreeMap;

use bw_ledger_core::metrics::{render, ShardMetrics};
use bw_ledger_core::stats::{merge, window_start, ShardOutcomes, HOUR_MS};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn metrics_add_up_across_shards_and_render_every_known_series() {
    let mut total = ShardMetrics::default();
    total.add(ShardMetrics {
        stored: 5,
        duplicates: 2,
        conflicts: 1,
        quarantined: 3,
        recipients: BTreeMap::from([("delivered".into(), 2), ("failed".into(), 1)]),
        outbox: vec![("main".into(), "pending".into(), 4)],
        media: BTreeMap::from([("archived".into(), 1)]),
    });
    total.add(ShardMetrics {
        stored: 7,
        recipients: BTreeMap::from([("delivered".into(), 1)]),
        outbox: vec![("main".into(), "pending".into(), 1), ("a\"b".into(), "dead".into(), 1)],
        ..ShardMetrics::default()
    });
    let text = render(&total, &["main".into(), "quiet".into()]);
    for line in [
        "# TYPE bw_ledger_events_total counter",
        "bw_ledger_events_total{result=\"stored\"} 12",
        "bw_ledger_events_total{result=\"duplicate\"} 2",
        "bw_ledger_events_total{result=\"conflict\"} 1",
        "bw_ledger_events_total{result=\"quarantined\"} 3",
        "bw_ledger_recipients{status=\"delivered\"} 3",
        "bw_ledger_recipients{status=\"failed\"} 1",
        "bw_ledger_recipients{status=\"sending\"} 0",
        "bw_ledger_outbox_items{target=\"main\",state=\"pending\"} 5",
        "bw_ledger_outbox_items{target=\"quiet\",state=\"dead\"} 0",
        "bw_ledger_outbox_items{target=\"a\\\"b\",state=\"dead\"} 1",
        "bw_ledger_media_items{status=\"archived\"} 1",
        "bw_ledger_media_items{status=\"failed\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn outcomes_fall_into_24_hourly_buckets_and_inbound_is_left_out() {
    let now = 1_795_780_000_000; // some time in 2026
    let start = window_start(now);
    assert_eq!(start % HOUR_MS, 0);
    assert!(now - start < 24 * HOUR_MS && now - start >= 23 * HOUR_MS);
    let last = start + 23 * HOUR_MS;
    let shards = vec![
        ShardOutcomes {
            hours: vec![
                (start, "delivered".into(), 2),
                (start, "read".into(), 1),
                (last, "failed".into(), 3),
                (last, "sending".into(), 1),
                (last, "received".into(), 9),
                (start - HOUR_MS, "delivered".into(), 50), // before the window
            ],
            error_codes: vec![(4720, 2), (9902, 1)],
        },
        ShardOutcomes { hours: vec![(last, "accepted".into(), 1)], error_codes: vec![(4720, 1), (4405, 3)] },
    ];
    let o = merge(now, shards);
    assert_eq!(o.hours.len(), 24);
    assert_eq!((o.hours[0].delivered, o.hours[0].failed, o.hours[0].pending), (3, 0, 0));
    assert_eq!((o.hours[23].delivered, o.hours[23].failed, o.hours[23].pending), (0, 3, 2));
    assert!(o.hours[1..23].iter().all(|h| h.delivered + h.failed + h.pending == 0));
    let codes: Vec<(i64, i64)> = o.error_codes.iter().map(|e| (e.error_code, e.count)).collect();
    assert_eq!(codes, vec![(4405, 3), (4720, 3), (9902, 1)]);
    assert_eq!(o.from, o.hours[0].hour);
}
