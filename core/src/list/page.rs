//! One answer from the shards' pages: the merge, each item in Bandwidth's
//! shape, and the page links.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::time::format_rfc3339_ms;

use super::query::*;
use super::row::ListRow;

/// One merged page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub rows: Vec<ListRow>,
    pub next: Option<Cursor>,
    pub prev: Option<Cursor>,
}

/// Merges per-shard pages (each in scan order, at most `limit + 1` rows)
/// into the page the client sees.
pub fn merge(q: &ListQuery, shard_pages: Vec<Vec<ListRow>>) -> Page {
    let desc = q.scan_descending();
    let mut rows: Vec<ListRow> = shard_pages.into_iter().flatten().collect();
    rows.sort_by(|a, b| {
        let ord = RowKey::of(a, q.sort).cmp(&RowKey::of(b, q.sort));
        if desc {
            ord.reverse()
        } else {
            ord
        }
    });
    let more = rows.len() > q.limit as usize;
    rows.truncate(q.limit as usize);
    let backwards = matches!(q.cursor.as_ref().map(|c| c.direction), Some(PageDirection::Before));
    if backwards {
        rows.reverse();
    }
    let fingerprint = q.fingerprint();
    let cursor_at = |row: Option<&ListRow>, direction| {
        row.map(|r| Cursor { key: RowKey::of(r, q.sort), direction, fingerprint: fingerprint.clone() })
    };
    // Forward: a next page if more rows remain; a previous page if we came
    // from one. Backward: the mirror image.
    let (has_next, has_prev) = if backwards { (true, more) } else { (more, q.cursor.is_some()) };
    Page {
        next: if has_next { cursor_at(rows.last(), PageDirection::After) } else { None },
        prev: if has_prev { cursor_at(rows.first(), PageDirection::Before) } else { None },
        rows,
    }
}

/// A row in Bandwidth's `listMessageItem` shape; text and media only when
/// the caller asked for content.
pub fn list_item(row: &ListRow, account_id: &str, include_content: bool) -> Value {
    let mut item = serde_json::json!({
        "messageId": row.message_id,
        "accountId": account_id,
        "sourceTn": row.source_tn,
        "destinationTn": row.destination_tn,
        "messageStatus": row.message_status,
        "messageDirection": row.message_direction,
        "messageType": row.message_type,
        "segmentCount": row.segment_count,
        "errorCode": row.error_code,
        "receiveTime": format_rfc3339_ms(row.receive_time_ms),
        "carrierName": row.carrier_name,
        "messageLength": row.message_length,
        "attachmentCount": row.attachment_count,
        "recipientCount": row.recipient_count,
    });
    // Multi-Channel only: absent on an SMS/MMS send, as Bandwidth's item has them.
    if let Some(channel) = &row.channel {
        item["channel"] = Value::String(channel.clone());
    }
    if let Some(ms) = row.read_time_ms {
        item["readTime"] = Value::String(format_rfc3339_ms(ms));
    }
    if include_content {
        item["text"] = Value::String(row.text.clone().unwrap_or_default());
        item["media"] = serde_json::json!(row.media);
        item["status"] = Value::String(row.state.as_str().to_owned());
        item["flags"] = serde_json::json!(row.flags);
    }
    item
}

/// Bandwidth's `pageInfo`: tokens, and links that repeat the query with
/// the token. `base` is the request URL without its query string.
pub fn page_info(page: &Page, base: &str, query: Option<&str>) -> Value {
    let kept: Vec<&str> =
        query.unwrap_or("").split('&').filter(|p| !p.is_empty() && !p.starts_with("pageToken=")).collect();
    let link = |c: &Cursor| {
        let mut parts = kept.clone();
        let token = format!("pageToken={}", c.encode());
        parts.push(&token);
        format!("{base}?{}", parts.join("&"))
    };
    // Absent links are left out, not null: the schema types them as strings.
    let mut info = serde_json::Map::new();
    if let Some(c) = &page.prev {
        info.insert("prevPage".into(), Value::String(link(c)));
        info.insert("prevPageToken".into(), Value::String(c.encode()));
    }
    if let Some(c) = &page.next {
        info.insert("nextPage".into(), Value::String(link(c)));
        info.insert("nextPageToken".into(), Value::String(c.encode()));
    }
    Value::Object(info)
}

/// What one shard answers for a list query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShardPage {
    pub rows: Vec<ListRow>,
    /// The shard's count, `None` when the query asked for none.
    pub total: Option<i64>,
}
