//! The SQL each shard runs for a list query: its filters as a `WHERE`
//! clause with bound parameters, the keyset page query, the count (exact,
//! capped or none), and how the shards' counts add up.

use serde::{Deserialize, Serialize};

use super::query::*;
use super::row::ROW_COLUMNS;

/// A query for one shard: SQL text and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlPlan {
    pub sql: String,
    pub params: Vec<SqlParam>,
}

fn where_clause(f: &Filters) -> (String, Vec<SqlParam>) {
    let mut conds: Vec<String> = Vec::new();
    let mut params = Vec::new();
    let mut eq = |col: &str, v: SqlParam, conds: &mut Vec<String>| {
        conds.push(format!("{col} = ?"));
        params.push(v);
    };
    if let Some(v) = &f.message_id {
        eq("message_id", SqlParam::Text(v.clone()), &mut conds);
    }
    if let Some(v) = &f.message_status {
        eq("message_status", SqlParam::Text(v.clone()), &mut conds);
    }
    if let Some(v) = &f.message_direction {
        eq("message_direction", SqlParam::Text(v.clone()), &mut conds);
    }
    if let Some(v) = &f.message_type {
        eq("message_type", SqlParam::Text(v.clone()), &mut conds);
    }
    if let Some(v) = f.error_code {
        eq("error_code", SqlParam::Int(v), &mut conds);
    }
    if let Some(v) = &f.carrier_name {
        eq("carrier_name", SqlParam::Text(v.clone()), &mut conds);
    }
    if let Some(v) = &f.channel {
        eq("channel", SqlParam::Text(v.clone()), &mut conds);
    }
    for (col, tn) in [("source_tn", &f.source_tn), ("destination_tn", &f.destination_tn)] {
        match tn {
            Some(TnFilter::Exact(list)) => {
                conds.push(format!("{col} IN {NUMBERS_PARAM}"));
                params.push(numbers_param(list));
            }
            Some(TnFilter::Prefix(p)) => {
                // A range on the column, so its index serves it (LIKE would
                // need escaping and, case-insensitive by default, no index).
                conds.push(format!("{col} >= ?"));
                params.push(SqlParam::Text(p.clone()));
                if let Some(upper) = prefix_upper_bound(p) {
                    conds.push(format!("{col} < ?"));
                    params.push(SqlParam::Text(upper));
                }
            }
            None => {}
        }
    }
    for (cond, v) in [
        ("receive_time_ms >= ?", f.from_ms),
        ("receive_time_ms <= ?", f.to_ms),
        ("segment_count >= ?", f.from_segments),
        ("segment_count <= ?", f.to_segments),
    ] {
        if let Some(v) = v {
            conds.push(cond.to_owned());
            params.push(SqlParam::Int(v));
        }
    }
    if let Some((a, b)) = &f.conversation {
        conds.push("((source_tn = ? AND destination_tn = ?) OR (source_tn = ? AND destination_tn = ?))".into());
        params.extend([a, b, b, a].into_iter().cloned().map(SqlParam::Text));
    }
    if let Some(numbers) = &f.scope_numbers {
        conds.push(format!("(source_tn IN {NUMBERS_PARAM} OR destination_tn IN {NUMBERS_PARAM})"));
        params.push(numbers_param(numbers));
        params.push(numbers_param(numbers));
    }
    let sql = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
    (sql, params)
}

/// The least string greater than every string that starts with `prefix`:
/// its last character incremented (UTF-8 orders bytes as code points).
/// `None` when no such string exists (only `char::MAX`).
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A user-sized list of numbers is bound as one JSON array, never as one
/// `?` each: SQLite caps the number of bound parameters per statement.
const NUMBERS_PARAM: &str = "(SELECT value FROM json_each(?))";

fn numbers_param(numbers: &[String]) -> SqlParam {
    SqlParam::Text(serde_json::to_string(numbers).unwrap_or_else(|_| "[]".to_owned()))
}

/// The page query each shard runs: filters, the cursor as a row-value
/// comparison on the sort key, and `limit + 1` rows to tell if more remain.
pub fn page_plan(q: &ListQuery) -> SqlPlan {
    let (mut sql, mut params) = where_clause(&q.filters);
    let col = q.sort.column();
    let desc = q.scan_descending();
    if let Some(c) = &q.cursor {
        let op = if desc { "<" } else { ">" };
        sql.push_str(if sql.is_empty() { " WHERE " } else { " AND " });
        sql.push_str(&format!("({col}, message_id, destination_tn) {op} (?, ?, ?)"));
        params.push(c.key.0.clone());
        params.push(SqlParam::Text(c.key.1.clone()));
        params.push(SqlParam::Text(c.key.2.clone()));
    }
    let dir = if desc { "DESC" } else { "ASC" };
    params.push(SqlParam::Int(i64::from(q.limit) + 1));
    SqlPlan {
        sql: format!(
            "SELECT {ROW_COLUMNS} FROM message_rows{sql} ORDER BY {col} {dir}, message_id {dir}, destination_tn {dir} LIMIT ?"
        ),
        params,
    }
}

/// The count of the rows matching the filters (no cursor), or `None` when
/// the query asks for none. A capped count stops at [`COUNT_CAP`] rows.
pub fn count_plan(q: &ListQuery) -> Option<SqlPlan> {
    let (sql, mut params) = where_clause(&q.filters);
    match q.count {
        CountMode::Skip => None,
        CountMode::Exact => Some(SqlPlan { sql: format!("SELECT COUNT(*) AS n FROM message_rows{sql}"), params }),
        CountMode::Capped => {
            params.push(SqlParam::Int(COUNT_CAP));
            Some(SqlPlan {
                sql: format!("SELECT COUNT(*) AS n FROM (SELECT 1 FROM message_rows{sql} LIMIT ?)"),
                params,
            })
        }
    }
}

/// The `totalCount` of a list from its shards' counts: `None` when not
/// counted, at most [`COUNT_CAP`] when capped.
pub fn total_count(q: &ListQuery, shard_totals: impl IntoIterator<Item = Option<i64>>) -> Option<i64> {
    let total: Option<i64> = shard_totals.into_iter().sum();
    match q.count {
        CountMode::Skip => None,
        CountMode::Exact => total,
        CountMode::Capped => total.map(|t| t.min(COUNT_CAP)),
    }
}
