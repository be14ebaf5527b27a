//! The book's reads: the send check, the list, a number's history, and
//! the counts for `/metrics`.

use bw_ledger_core::optout::{
    CheckReply, CheckRequest, Counts, HistoryEntry, ListPage, ListQuery, OptOut, Reason, Scope, State as OptState,
    ACCOUNT_WIDE,
};
use bw_ledger_core::time::format_rfc3339_ms;
use serde::Deserialize;
use worker::Result;

use super::OptOutBook;

/// Entries per `GET /optouts` page.
const PAGE: i64 = 100;

#[derive(Deserialize)]
pub(super) struct OptOutRow {
    pub(super) subject: String,
    pub(super) scope_number: String,
    pub(super) number: Option<String>,
    pub(super) reason: Reason,
    pub(super) message_id: Option<String>,
    pub(super) note: Option<String>,
    pub(super) changed_ms: i64,
}

impl OptOutRow {
    pub(super) fn view(self) -> OptOut {
        let (scope, scope_number) = if self.scope_number == ACCOUNT_WIDE {
            (Scope::Account, None)
        } else {
            (Scope::Number, Some(self.scope_number))
        };
        OptOut {
            number: self.number,
            number_hash: self.subject,
            scope,
            scope_number,
            reason: self.reason,
            message_id: self.message_id,
            note: self.note,
            time: format_rfc3339_ms(self.changed_ms),
        }
    }
}

#[derive(Deserialize)]
struct HistoryRow {
    state: OptState,
    subject: String,
    scope_number: String,
    number: Option<String>,
    reason: Reason,
    message_id: Option<String>,
    note: Option<String>,
    changed_ms: i64,
}

impl HistoryRow {
    fn entry(self) -> HistoryEntry {
        let state = self.state;
        let row = OptOutRow {
            subject: self.subject,
            scope_number: self.scope_number,
            number: self.number,
            reason: self.reason,
            message_id: self.message_id,
            note: self.note,
            changed_ms: self.changed_ms,
        };
        HistoryEntry { state, opt_out: row.view() }
    }
}

#[derive(Deserialize)]
struct CountRow {
    account_wide: i64,
    n: i64,
}

impl OptOutBook {
    pub(super) fn check(&self, q: &CheckRequest) -> Result<CheckReply> {
        let mut opted_out = Vec::new();
        for n in &q.to {
            let found: Vec<serde::de::IgnoredAny> = self
                .sql
                .exec(
                    "SELECT 1 AS x FROM optouts WHERE subject = ? AND scope_number IN (?, ?)",
                    vec![self.subject(n)?.into(), ACCOUNT_WIDE.into(), q.from.clone().into()],
                )?
                .to_array()?;
            if !found.is_empty() {
                opted_out.push(n.clone());
            }
        }
        Ok(CheckReply { opted_out })
    }

    pub(super) fn list(&self, q: &ListQuery) -> Result<ListPage> {
        let subject = q.number.as_deref().map(|n| self.subject(n)).transpose()?;
        let after = q.cursor.clone().unwrap_or_default();
        let rows: Vec<OptOutRow> = self
            .sql
            .exec(
                "SELECT subject, scope_number, number, reason, message_id, note, changed_ms FROM optouts
                 WHERE (? IS NULL OR subject = ?) AND subject || '|' || scope_number > ?
                 ORDER BY subject, scope_number LIMIT ?",
                vec![subject.clone().into(), subject.into(), after.into(), PAGE.into()],
            )?
            .to_array()?;
        let next_cursor =
            (rows.len() as i64 >= PAGE).then(|| rows.last().map(|r| format!("{}|{}", r.subject, r.scope_number)));
        Ok(ListPage { optouts: rows.into_iter().map(OptOutRow::view).collect(), next_cursor: next_cursor.flatten() })
    }

    pub(super) fn history(&self, number: &str) -> Result<Vec<HistoryEntry>> {
        let rows: Vec<HistoryRow> = self
            .sql
            .exec(
                "SELECT state, subject, scope_number, number, reason, message_id, note, changed_ms FROM history
                 WHERE subject = ? ORDER BY seq",
                vec![self.subject(number)?.into()],
            )?
            .to_array()?;
        Ok(rows.into_iter().map(HistoryRow::entry).collect())
    }

    pub(super) fn counts(&self) -> Result<Counts> {
        let rows: Vec<CountRow> = self
            .sql
            .exec(
                "SELECT scope_number = ? AS account_wide, COUNT(*) AS n FROM optouts GROUP BY 1",
                vec![ACCOUNT_WIDE.into()],
            )?
            .to_array()?;
        let mut c = Counts::default();
        for r in rows {
            if r.account_wide != 0 {
                c.account = r.n as u64;
            } else {
                c.number = r.n as u64;
            }
        }
        Ok(c)
    }
}
