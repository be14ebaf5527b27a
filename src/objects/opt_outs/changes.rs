//! The book's writes: a callback's signals, the operator's changes, and
//! erasure; each change with its audit row and its forward, in the caller's
//! transaction.

use bw_ledger_core::optout::{
    changed_doc, Action, HistoryEntry, OperatorChange, Reason, RecordRequest, Recorded, Signal, State as OptState,
    ACCOUNT_WIDE, REPLY_QUIET_MS,
};
use serde::Deserialize;
use worker::Result;

use super::reads::OptOutRow;
use super::OptOutBook;

/// How long a recorded event's identity is kept for dedup.
const SEEN_KEEP_MS: i64 = 2 * 86_400_000;

/// One change to record: who, where, what, why.
#[derive(Clone, Copy)]
struct Change<'a> {
    subject: &'a str,
    number: &'a str,
    scope_number: &'a str,
    reason: Reason,
    message_id: Option<&'a str>,
    note: Option<&'a str>,
    now: i64,
}

#[derive(Deserialize)]
struct SeqRow {
    seq: i64,
}

#[derive(Deserialize)]
struct ScopeRow {
    scope_number: String,
}

impl OptOutBook {
    /// Records a callback's signals, each event once; answers how many
    /// changed anything. Confirmations and forwards are queued in the same
    /// transaction, for the alarm.
    pub(super) fn record(&self, req: &RecordRequest) -> Result<Recorded> {
        // Bandwidth retries for 24 hours: an event's identity is kept two
        // days, long enough to recognise every retry.
        self.sql.exec("DELETE FROM seen WHERE at_ms < ?", vec![(req.now_ms - SEEN_KEEP_MS).into()])?;
        let mut changed = 0;
        for s in &req.signals {
            let fresh = self.sql.exec(
                "INSERT INTO seen (event_ref, at_ms) VALUES (?, ?) ON CONFLICT DO NOTHING",
                vec![s.event_ref.clone().into(), req.now_ms.into()],
            )?;
            if fresh.rows_written() == 0 {
                continue;
            }
            let subject = self.subject(&s.number)?;
            let change = Change {
                subject: &subject,
                number: &s.number,
                scope_number: &s.scope_number,
                reason: s.reason,
                message_id: Some(&s.message_id),
                note: None,
                now: req.now_ms,
            };
            let did = match s.action {
                Action::OptOut => self.opt_out(&change)?,
                Action::OptIn => self.opt_in(&change, false)?,
            };
            if did {
                changed += 1;
                if s.action == Action::OptOut && s.reason == Reason::Keyword && req.reply {
                    self.queue_reply(&subject, s, req.now_ms)?;
                }
            }
        }
        Ok(Recorded { changed })
    }

    /// One confirmation per opt-out, none for a second one within 24 hours.
    fn queue_reply(&self, subject: &str, s: &Signal, now: i64) -> Result<()> {
        let recent = self.sql.exec(
            "INSERT INTO replies (subject, last_ms) VALUES (?, ?)
             ON CONFLICT (subject) DO UPDATE SET last_ms = excluded.last_ms WHERE last_ms < ?",
            vec![subject.into(), now.into(), (now - REPLY_QUIET_MS).into()],
        )?;
        if recent.rows_written() > 0 {
            self.sql.exec(
                "INSERT INTO pending_replies (to_number, from_number) VALUES (?, ?)",
                vec![s.number.clone().into(), s.our_number.clone().into()],
            )?;
        }
        Ok(())
    }

    /// Records an opt-out unless one is already in force for this scope.
    fn opt_out(&self, c: &Change) -> Result<bool> {
        let inserted = self.sql.exec(
            "INSERT INTO optouts (subject, scope_number, number, reason, message_id, note, changed_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            vec![
                c.subject.into(),
                c.scope_number.into(),
                c.number.into(),
                c.reason.as_str().into(),
                c.message_id.map(str::to_owned).into(),
                c.note.map(str::to_owned).into(),
                c.now.into(),
            ],
        )?;
        if inserted.rows_written() == 0 {
            return Ok(false);
        }
        self.log(c, OptState::OptedOut)?;
        Ok(true)
    }

    /// Lifts the opt-out of this scope. A keyword opt-in lifts what a
    /// keyword or the carrier set, never what the operator recorded;
    /// the operator lifts any.
    fn opt_in(&self, c: &Change, by_operator: bool) -> Result<bool> {
        let lifted = self.sql.exec(
            "DELETE FROM optouts WHERE subject = ? AND scope_number = ? AND (? OR reason != ?)",
            vec![
                c.subject.into(),
                c.scope_number.into(),
                i64::from(by_operator).into(),
                Reason::Operator.as_str().into(),
            ],
        )?;
        if lifted.rows_written() == 0 {
            return Ok(false);
        }
        self.log(c, OptState::OptedIn)?;
        Ok(true)
    }

    /// The audit row and the `optout.changed` forward of a change.
    fn log(&self, c: &Change, state: OptState) -> Result<()> {
        let rows: Vec<SeqRow> = self
            .sql
            .exec(
                "INSERT INTO history (subject, number, scope_number, state, reason, message_id, note, changed_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                vec![
                    c.subject.into(),
                    c.number.into(),
                    c.scope_number.into(),
                    state.as_str().into(),
                    c.reason.as_str().into(),
                    c.message_id.map(str::to_owned).into(),
                    c.note.map(str::to_owned).into(),
                    c.now.into(),
                ],
            )?
            .to_array()?;
        let seq = rows.first().map_or(0, |r| r.seq);
        let entry = HistoryEntry {
            state,
            opt_out: OptOutRow {
                subject: c.subject.to_owned(),
                scope_number: c.scope_number.to_owned(),
                number: Some(c.number.to_owned()),
                reason: c.reason,
                message_id: c.message_id.map(str::to_owned),
                note: c.note.map(str::to_owned),
                changed_ms: c.now,
            }
            .view(),
        };
        let webhook_id = format!("msg_optout_{}_{seq}", &c.subject[..16]);
        self.sql.exec(
            "INSERT INTO pending_forwards (seq, webhook_id, subject, doc) VALUES (?, ?, ?, ?)",
            vec![
                seq.into(),
                webhook_id.clone().into(),
                c.subject.into(),
                changed_doc(&entry, &webhook_id).to_string().into(),
            ],
        )?;
        Ok(())
    }

    /// An operator's opt-out (account-wide) or lift; `None` when there was
    /// nothing to change.
    pub(super) fn operator(&self, op: &OperatorChange) -> Result<Option<HistoryEntry>> {
        let subject = self.subject(&op.number)?;
        let c = Change {
            subject: &subject,
            number: &op.number,
            scope_number: ACCOUNT_WIDE,
            reason: Reason::Operator,
            message_id: None,
            note: Some(&op.note),
            now: op.now_ms,
        };
        let did = match op.action {
            Action::OptOut => self.opt_out(&c)?,
            // A lift by hand lifts every scope of the number.
            Action::OptIn => {
                let scopes: Vec<ScopeRow> = self
                    .sql
                    .exec("SELECT scope_number FROM optouts WHERE subject = ?", vec![subject.clone().into()])?
                    .to_array()?;
                let mut any = false;
                for s in scopes {
                    any |= self.opt_in(&Change { scope_number: &s.scope_number, ..c }, true)?;
                }
                any
            }
        };
        if !did {
            return Ok(None);
        }
        Ok(self.history(&op.number)?.pop())
    }

    /// Erasure: the number goes, its suppression stays (as its hash).
    pub(super) fn erase(&self, number: &str) -> Result<u32> {
        let subject = self.subject(number)?;
        let kept = self.sql.exec("UPDATE optouts SET number = NULL WHERE subject = ?", vec![subject.clone().into()])?;
        self.sql.exec("UPDATE history SET number = NULL WHERE subject = ?", vec![subject.clone().into()])?;
        self.sql.exec("DELETE FROM pending_replies WHERE to_number = ?", vec![number.into()])?;
        // Forwards not yet handed to the outbox lose the number too.
        self.sql.exec(
            "UPDATE pending_forwards SET doc = json_set(doc, '$.number', NULL) WHERE subject = ?",
            vec![subject.into()],
        )?;
        Ok(kept.rows_written() as u32)
    }
}
