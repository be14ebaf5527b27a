//! The recipient status state machine, as an explicit transition table.
//!
//! Each (message, recipient) pair has exactly one current status. Events
//! arrive late, retried and out of order, so the table is built to be a
//! join: `next(a, b) == next(b, a)`, `next(next(a, b), c) == next(a,
//! next(b, c))` and `next(a, a) == a`. Folding any permutation of the same
//! events therefore ends in the same state. Outbound recipients only move
//! forward (accepted -> sending -> sent -> delivered -> read); `failed` is
//! final and wins over `delivered` and `read`. Inbound is `received`.

use crate::event::EventKind;

crate::stored_enum! {
    /// A recipient's normalized status, stored in its list row's `state`.
    pub enum RecipientState {
        Accepted = "accepted",
        Sending = "sending",
        Sent = "sent",
        Delivered = "delivered",
        Read = "read",
        Failed = "failed",
        Received = "received",
    }
}

use RecipientState::{
    Accepted as Acc, Delivered as Del, Failed as Fai, Read as Rea, Received as Rcv, Sending as Sng, Sent as Snt,
};

/// Every state, in table order.
pub const STATES: [RecipientState; 7] = [Acc, Sng, Snt, Del, Rea, Fai, Rcv];

/// `TABLE[current][incoming]` is the next state. Rows and columns follow
/// [`STATES`]. `Received` belongs to inbound recipients only; mixed with an
/// outbound state (which Bandwidth never sends) the outbound state wins, so
/// the table stays a join.
#[rustfmt::skip]
pub const TABLE: [[RecipientState; 7]; 7] = [
    //            Acc  Sng  Snt  Del  Rea  Fai  Rcv
    /* Acc */    [Acc, Sng, Snt, Del, Rea, Fai, Acc],
    /* Sng */    [Sng, Sng, Snt, Del, Rea, Fai, Sng],
    /* Snt */    [Snt, Snt, Snt, Del, Rea, Fai, Snt],
    /* Del */    [Del, Del, Del, Del, Rea, Fai, Del],
    /* Rea */    [Rea, Rea, Rea, Rea, Rea, Fai, Rea],
    /* Fai */    [Fai, Fai, Fai, Fai, Fai, Fai, Fai],
    /* Rcv */    [Acc, Sng, Snt, Del, Rea, Fai, Rcv],
];

fn index(s: RecipientState) -> usize {
    STATES.iter().position(|x| *x == s).unwrap_or(0)
}

/// The next state after `incoming` arrives in state `current`.
pub fn next(current: RecipientState, incoming: RecipientState) -> RecipientState {
    TABLE[index(current)][index(incoming)]
}

impl RecipientState {
    /// The state an event moves its recipient to, if it is a per-recipient
    /// status event. `message-accepted` concerns the whole message.
    pub fn from_kind(kind: &EventKind) -> Option<Self> {
        Some(match kind {
            EventKind::MessageSending => Sng,
            EventKind::MessageSent => Snt,
            EventKind::MessageDelivered => Del,
            EventKind::MessageRead => Rea,
            EventKind::MessageFailed => Fai,
            k if k.is_inbound() => Rcv,
            _ => return None,
        })
    }

    /// Bandwidth's List Messages `messageStatus` for this state. `read`
    /// implies delivered; Bandwidth's enum has no READ.
    pub fn bandwidth_status(self) -> &'static str {
        match self {
            Acc => "ACCEPTED",
            Sng => "SENDING",
            Snt => "SENT",
            Del | Rea => "DELIVERED",
            Fai => "FAILED",
            Rcv => "RECEIVED",
        }
    }
}
