use super::*;
use crate::optout::{
    CheckReply, CheckRequest, Counts as OptOutCounts, HistoryEntry, ListPage, ListQuery, OperatorChange, RecordRequest,
    Recorded,
};

object! {
    binding = "OPT_OUTS";
    /// Records a callback's opt-outs and opt-ins, each event once.
    Record = "/record": RecordRequest => Recorded;
    /// The numbers of a send that may not be texted from its `from`.
    Check = "/check": CheckRequest => CheckReply;
    /// The operator's opt-out or lift; `None`: nothing to change.
    Operator = "/operator": OperatorChange => Option<HistoryEntry>;
    /// A page of the opt-outs in force.
    List = "/list": ListQuery => ListPage;
    /// A number's audit trail, oldest first.
    History = "/history": NumberQuery => Vec<HistoryEntry>;
    /// Erasure: the number's clear text goes, its suppression stays.
    Erase = "/erase": NumberQuery => u32;
    /// Opt-outs in force by scope.
    Counts = "/counts": Empty => OptOutCounts;
}

/// The one book's object name.
pub const NAME: &str = "opt-outs";
