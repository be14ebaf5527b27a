//! List Messages: rows, query parsing, SQL plans, page tokens and merging.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::common::*;
use bw_ledger_core::list::*;
use bw_ledger_core::projection::project;
use bw_ledger_core::status::RecipientState;

fn rows(fixture: &str) -> Vec<ListRow> {
    let evs = events(fixture);
    let view = project(&evs[0].message_id, &stored(&evs)).unwrap();
    rows_for(&view, 0)
}

#[test]
fn a_group_message_has_one_row_per_recipient_with_one_outcome_each() {
    let r = rows(GROUP_MMS_INVALID);
    let got: Vec<(&str, &str, i64)> =
        r.iter().map(|x| (x.destination_tn.as_str(), x.message_status.as_str(), x.error_code)).collect();
    assert_eq!(
        got,
        [("+15553330001", "DELIVERED", 0), ("+15553330002", "DELIVERED", 0), ("+15553330003", "FAILED", 4720)]
    );
    for x in &r {
        assert_eq!(x.message_type, "mms");
        assert_eq!(x.recipient_count, 3);
        assert_eq!(x.attachment_count, 1);
        assert_eq!(x.message_direction, "OUTBOUND");
        assert_eq!(x.source_tn, "+15551110000");
        assert_eq!(x.receive_time_ms, bw_ledger_core::time::parse_rfc3339_ms("2026-11-20T16:00:00.000Z").unwrap());
    }
}

#[test]
fn inbound_sms_and_rcs_rows() {
    let inbound = rows(INBOUND_MMS);
    assert_eq!(inbound.len(), 1);
    assert_eq!(inbound[0].message_direction, "INBOUND");
    assert_eq!(inbound[0].message_status, "RECEIVED");
    assert_eq!(inbound[0].message_length, 32);
    assert_eq!(inbound[0].carrier_name.as_deref(), Some("Example Mobile"));
    let sms = rows(SMS_LIFECYCLE);
    assert_eq!((sms[0].message_type.as_str(), sms[0].message_status.as_str()), ("sms", "DELIVERED"));
    assert_eq!(sms[0].carrier_name.as_deref(), Some("Example Wireless"));
    let read = &events(RBM)[..1];
    let rcs = rows_for(&project(&read[0].message_id, &stored(read)).unwrap(), 0);
    assert_eq!(rcs[0].message_type, "rcs");
    assert_eq!(rcs[0].message_status, "DELIVERED", "read maps to DELIVERED");
}

fn parse(q: &str) -> Result<ListQuery, bw_ledger_core::ApiError> {
    ListQuery::parse(Some(q), None)
}

#[test]
fn parses_bandwidths_parameters() {
    let q = parse("messageId=m1&sourceTn=%2B15551110000&destinationTn=%2B15552220001,%2B15552220002&messageStatus=FAILED&messageDirection=OUTBOUND&messageType=mms&errorCode=4720&carrierName=AT%26T&fromDateTime=2026-11-20T00:00:00.000Z&toDateTime=2026-11-21T00:00:00Z&sort=sourceTn:asc&limit=50&include=content&limitTotalCount=true").unwrap();
    let f = &q.filters;
    assert_eq!(f.message_id.as_deref(), Some("m1"));
    assert_eq!(f.source_tn, Some(TnFilter::Prefix("+15551110000".into())));
    assert_eq!(f.destination_tn, Some(TnFilter::Exact(vec!["+15552220001".into(), "+15552220002".into()])));
    assert_eq!(f.message_status.as_deref(), Some("FAILED"));
    assert_eq!(f.error_code, Some(4720));
    assert_eq!(f.carrier_name.as_deref(), Some("AT&T"));
    assert_eq!(f.from_ms, Some(1_795_132_800_000));
    assert_eq!((q.sort, q.descending, q.limit, q.include_content), (SortField::SourceTn, false, 50, true));
    let d = parse("").unwrap();
    assert_eq!((d.sort, d.descending, d.limit, d.include_content), (SortField::ReceiveTime, true, 100, false));
    assert_eq!(parse("sourceTn=%2B191").unwrap_err().status(), 400, "a partial number needs 5 characters");
    assert_eq!(
        parse("sourceTn=%2B1919").unwrap().filters.source_tn,
        Some(TnFilter::Prefix("+1919".into())),
        "Bandwidth's own example"
    );
    assert_eq!(
        parse("sourceTn=+1919555").unwrap().filters.source_tn,
        Some(TnFilter::Prefix("+1919555".into())),
        "a bare + is kept"
    );
}

#[test]
fn rejects_what_it_cannot_answer_truthfully() {
    for bad in [
        "messageStatus=DLR_EXPIRED",
        "messageDirection=in",
        "messageType=fax",
        "errorCode=x",
        "limit=0",
        "limit=1001",
        "sort=messageStatus:asc",
        "sort=receiveTime:sideways",
        "fromDateTime=yesterday",
        "campaignId=C1",
        "bogus=1",
        "destinationTn=%2B1,%2B2",
        "pageToken=garbage",
        "include=everything",
    ] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.status(), 400, "{bad}");
        assert!(!e.body().description.is_empty());
    }
}

#[test]
fn page_plans_are_keyset_queries_with_bound_parameters() {
    let q = parse("sourceTn=%2B15551110000&messageStatus=FAILED&limit=10").unwrap();
    let plan = page_plan(&q);
    assert_eq!(
        plan.sql,
        format!(
            "SELECT {ROW_COLUMNS} FROM message_rows WHERE message_status = ? AND source_tn >= ? AND source_tn < ? \
ORDER BY receive_time_ms DESC, message_id DESC, destination_tn DESC LIMIT ?"
        )
    );
    assert_eq!(
        plan.params,
        vec![
            SqlParam::Text("FAILED".into()),
            SqlParam::Text("+15551110000".into()),
            SqlParam::Text("+15551110001".into()),
            SqlParam::Int(11)
        ]
    );
    let count = count_plan(&q).unwrap();
    assert_eq!(
        count.sql,
        "SELECT COUNT(*) AS n FROM message_rows WHERE message_status = ? AND source_tn >= ? AND source_tn < ?"
    );

    let cursor = Cursor {
        key: RowKey(SqlParam::Int(5), "m".into(), "+1".into()),
        direction: PageDirection::After,
        fingerprint: q.fingerprint(),
    };
    let token = cursor.encode();
    let next = parse(&format!("sourceTn=%2B15551110000&messageStatus=FAILED&limit=10&pageToken={token}")).unwrap();
    let plan = page_plan(&next);
    assert!(
        plan.sql.contains("AND (receive_time_ms, message_id, destination_tn) < (?, ?, ?) ORDER BY"),
        "{}",
        plan.sql
    );
    // A token is bound to its query: other filters reject it.
    assert!(parse(&format!("messageStatus=SENT&pageToken={token}")).is_err());
}

#[test]
fn conversations_cover_both_directions() {
    let q = ListQuery::conversation(Some("number=%2B15551110000&with=%2B15552220001"), None).unwrap();
    assert!(q.include_content && !q.descending);
    let plan = page_plan(&q);
    assert!(plan.sql.contains("((source_tn = ? AND destination_tn = ?) OR (source_tn = ? AND destination_tn = ?))"));
    assert!(ListQuery::conversation(Some("number=%2B15551110000"), None).is_err());
    let scoped =
        ListQuery::conversation(Some("number=%2B15551110000&with=%2B15552220001"), Some(vec!["+15551110000".into()]))
            .unwrap();
    assert!(page_plan(&scoped).sql.contains(
        "(source_tn IN (SELECT value FROM json_each(?)) OR destination_tn IN (SELECT value FROM json_each(?)))"
    ));
}

/// A key's `allowed_from` and a comma list of numbers are user-sized: each
/// is one JSON parameter, however long, so no list can exceed SQLite's cap
/// on bound parameters.
#[test]
fn user_sized_number_lists_bind_one_parameter_each() {
    let numbers: Vec<String> = (0..500).map(|i| format!("+1555{i:07}")).collect();
    let q = ListQuery::conversation(Some("number=%2B15551110000&with=%2B15552220001"), Some(numbers.clone())).unwrap();
    let plan = page_plan(&q);
    let json = SqlParam::Text(serde_json::to_string(&numbers).unwrap());
    assert_eq!(plan.params.iter().filter(|p| **p == json).count(), 2, "{:?}", plan.params.len());
    assert!(plan.params.len() < 10);

    // Bandwidth caps a comma list at 10; it is bound the same way.
    let listed = numbers[..10].join(",");
    let q = parse(&format!("sourceTn={}", listed.replace('+', "%2B"))).unwrap();
    let plan = page_plan(&q);
    assert!(plan.sql.contains("source_tn IN (SELECT value FROM json_each(?))"), "{}", plan.sql);
    assert!(plan.params.contains(&SqlParam::Text(serde_json::to_string(&numbers[..10]).unwrap())));
}

fn row(t: i64, id: &str, to: &str) -> ListRow {
    ListRow {
        message_id: id.into(),
        destination_tn: to.into(),
        source_tn: "+15551110000".into(),
        message_status: "DELIVERED".into(),
        message_direction: "OUTBOUND".into(),
        message_type: "sms".into(),
        segment_count: 1,
        error_code: 0,
        receive_time_ms: t,
        carrier_name: None,
        message_length: 1,
        attachment_count: 0,
        recipient_count: 1,
        text: None,
        media: vec![],
        state: RecipientState::Delivered,
        flags: vec![],
        channel: None,
        read_time_ms: None,
    }
}

/// What a shard's SQL returns for a page: its rows past the cursor in scan
/// order, limit + 1 of them.
fn shard_page(shard: &[ListRow], q: &ListQuery) -> Vec<ListRow> {
    let asc = match q.cursor.as_ref().map(|c| c.direction) {
        Some(PageDirection::Before) => q.descending,
        _ => !q.descending,
    };
    let mut rows: Vec<ListRow> = shard
        .iter()
        .filter(|r| match &q.cursor {
            None => true,
            Some(c) => {
                if asc {
                    RowKey::of(r, q.sort) > c.key
                } else {
                    RowKey::of(r, q.sort) < c.key
                }
            }
        })
        .cloned()
        .collect();
    rows.sort_by(|a, b| {
        if asc {
            RowKey::of(a, q.sort).cmp(&RowKey::of(b, q.sort))
        } else {
            RowKey::of(b, q.sort).cmp(&RowKey::of(a, q.sort))
        }
    });
    rows.truncate(q.limit as usize + 1);
    rows
}

#[test]
fn paging_forward_and_back_across_shards_sees_every_row_once() {
    // 4 shards, 103 rows, many sharing a receive time.
    let mut shards: Vec<Vec<ListRow>> = vec![Vec::new(); 4];
    for i in 0..103 {
        shards[i % 4].push(row((i / 5) as i64, &format!("m{i:03}"), "+15552220001"));
    }
    let mut q = parse("limit=10").unwrap();
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = merge(&q, shards.iter().map(|s| shard_page(s, &q)).collect());
        seen.extend(page.rows.iter().map(|r| r.message_id.clone()));
        pages.push(page.clone());
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 103);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 103, "no row twice");
    let keys: Vec<(i64, String)> =
        pages.iter().flat_map(|p| p.rows.iter().map(|r| (r.receive_time_ms, r.message_id.clone()))).collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(keys, sorted, "descending receive time, then id");
    assert!(pages[0].prev.is_none());

    // Walk back from the last page with prevPageToken: the same pages, reversed.
    let mut back = vec![pages.last().unwrap().rows.clone()];
    let mut cursor = pages.last().unwrap().prev.clone();
    while let Some(c) = cursor {
        q.cursor = Some(c);
        let page = merge(&q, shards.iter().map(|s| shard_page(s, &q)).collect());
        back.push(page.rows.clone());
        cursor = page.prev;
    }
    back.reverse();
    let forward: Vec<Vec<ListRow>> = pages.iter().map(|p| p.rows.clone()).collect();
    assert_eq!(back, forward);
}

#[test]
fn list_items_match_bandwidths_field_names() {
    let r = &rows(GROUP_MMS_INVALID)[2];
    let item = list_item(r, "9900000", false);
    let mut keys: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "accountId",
            "attachmentCount",
            "carrierName",
            "destinationTn",
            "errorCode",
            "messageDirection",
            "messageId",
            "messageLength",
            "messageStatus",
            "messageType",
            "receiveTime",
            "recipientCount",
            "segmentCount",
            "sourceTn"
        ]
    );
    assert_eq!(item["receiveTime"], "2026-11-20T16:00:00.000Z");
    let with = list_item(r, "9900000", true);
    assert!(with.get("text").is_some() && with.get("media").is_some());
    assert_eq!(with["status"], "failed");
    assert_eq!(with["flags"], serde_json::json!(["contradiction"]));
}

#[test]
fn limit_total_count_chooses_the_count() {
    let exact = parse("messageStatus=FAILED").unwrap();
    assert_eq!(exact.count, CountMode::Exact);
    assert_eq!(total_count(&exact, [Some(7_000), Some(6_000)]), Some(13_000));
    // true: Bandwidth's cap of 10,000, counted with a bounded scan per shard.
    let capped = parse("messageStatus=FAILED&limitTotalCount=true").unwrap();
    let plan = count_plan(&capped).unwrap();
    assert_eq!(plan.sql, "SELECT COUNT(*) AS n FROM (SELECT 1 FROM message_rows WHERE message_status = ? LIMIT ?)");
    assert_eq!(plan.params.last(), Some(&SqlParam::Int(10_000)));
    assert_eq!(total_count(&capped, [Some(7_000), Some(6_000)]), Some(10_000));
    // false: no count query, no totalCount.
    let skip = parse("messageStatus=FAILED&limitTotalCount=false").unwrap();
    assert_eq!(count_plan(&skip), None);
    assert_eq!(total_count(&skip, [None, None]), None);
    assert_eq!(parse("limitTotalCount=yes").unwrap_err().status(), 400);
}

#[test]
fn a_prefix_is_a_range_up_to_its_successor() {
    let plan = |q: &str| page_plan(&parse(q).unwrap()).params;
    assert_eq!(
        plan("destinationTn=%2B1555"),
        vec![SqlParam::Text("+1555".into()), SqlParam::Text("+1556".into()), SqlParam::Int(101)]
    );
    // '9' + 1 is ':', which sorts after every digit.
    assert_eq!(plan("destinationTn=%2B1559")[1], SqlParam::Text("+155:".into()));
    assert_eq!(plan("destinationTn=ab%C3%BFz%F4%8F%BF%BF")[1], SqlParam::Text("ab\u{ff}{".into()));
}

#[test]
fn an_update_writes_only_the_columns_that_changed() {
    let mut before = row(5, "m1", "+15552220001");
    before.message_status = "SENT".into();
    before.state = RecipientState::Sent;
    let mut after = before.clone();
    assert!(after.changed_since(&before).is_empty());
    after.message_status = "DELIVERED".into();
    after.state = RecipientState::Delivered;
    after.carrier_name = Some("Example".into());
    after.flags = vec!["network-handoff-only".into()];
    let changed: Vec<&str> = after.changed_since(&before).into_iter().map(|(c, _)| c).collect();
    assert_eq!(changed, vec!["message_status", "carrier_name", "state", "flags"]);
    let flags = after.changed_since(&before).into_iter().find(|(c, _)| *c == "flags").unwrap().1;
    assert_eq!(flags, ColumnValue::Text(r#"["network-handoff-only"]"#.into()));
    // Every stored column, in ROW_COLUMNS order, and read back from them.
    let names: Vec<&str> = after.values().iter().map(|(c, _)| *c).collect();
    assert_eq!(names.join(", "), ROW_COLUMNS);
    assert_eq!(INSERT_ROW.matches('?').count(), names.len());
    let values = after.values().into_iter().map(|(_, v)| v).collect();
    assert_eq!(ListRow::from_values(values), Ok(after.clone()));
    let mut short: Vec<ColumnValue> = after.values().into_iter().map(|(_, v)| v).collect();
    short.pop();
    assert_eq!(ListRow::from_values(short), Err("no column read_time_ms".into()));
}
