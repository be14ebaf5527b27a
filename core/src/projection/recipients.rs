//! One status per recipient, folded from the recipient's events with the
//! transition table of [`crate::status`].
//!
//! A Multi-Channel message is tried channel by channel: its events for one
//! recipient form one attempt per channel, each folded on its own, so an
//! RBM `failed` followed by an SMS `delivered` is a delivery by SMS, not a
//! contradiction. The attempt that carried the message is the first (in the
//! send's `channelList` order) that did not fail, else the last tried; a
//! failed attempt with a listed channel still to try is `sending`, since
//! Bandwidth moves on to that channel. A message of one channel (every
//! SMS/MMS send) is one attempt, folded as it always was.

use serde::Serialize;

use super::parsed::Parsed;
use crate::channel::{channel_of, read_time, Channel};
use crate::event::EventKind;
use crate::status::{next, RecipientState};

/// Bandwidth's error code for "delivery receipt expired".
pub const RECEIPT_EXPIRED: i64 = 9902;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatusFlag {
    /// MMS or group `delivered`: reached Bandwidth's network, not the handset.
    NetworkHandoffOnly,
    /// Error 9902: the receipt expired, delivery is unknown.
    ReceiptExpired,
    /// Both `failed` and `delivered`/`read` arrived; `failed` was kept.
    Contradiction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientStatus {
    pub number: String,
    pub status: RecipientState,
    pub error_code: Option<i64>,
    pub description: Option<String>,
    pub flags: Vec<StatusFlag>,
    /// Event time of the event that set the status.
    pub updated_at: Option<String>,
    /// The channel that carried the message to this recipient (Multi-Channel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Every channel tried for this recipient, in order (Multi-Channel).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channel_history: Vec<ChannelAttempt>,
    /// When the recipient read it: the `eventTime` of `message-read`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_time: Option<String>,
}

impl RecipientStatus {
    /// Who the message went out as to this recipient, when a Multi-Channel
    /// channel carried it: that entry's `from`.
    pub fn sent_from(&self) -> Option<&str> {
        self.channel_history.iter().find(|a| Some(a.channel) == self.channel)?.from.as_deref()
    }
}

/// One channel tried for one recipient, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelAttempt {
    pub channel: Channel,
    /// Who it went out as on this channel (the entry's `from`).
    pub from: Option<String>,
    pub status: RecipientState,
    pub error_code: Option<i64>,
    pub description: Option<String>,
    pub updated_at: Option<String>,
}

/// An event and the state it moves its recipient to.
type Stated<'a> = (&'a Parsed<'a>, RecipientState);

/// A recipient's events on one channel (`None`: no channel named), folded.
struct Attempt<'a> {
    channel: Option<Channel>,
    events: Vec<Stated<'a>>,
    status: RecipientState,
}

impl<'a> Attempt<'a> {
    fn new(channel: Option<Channel>, events: Vec<Stated<'a>>) -> Self {
        let status = events.iter().map(|(_, s)| *s).reduce(next).unwrap_or(RecipientState::Accepted);
        Self { channel, events, status }
    }

    /// The event that set the final state: the earliest carrying it
    /// (events are in canonical order).
    fn winner(&self) -> Option<&'a Parsed<'a>> {
        self.events.iter().find(|(_, s)| *s == self.status).map(|(e, _)| *e)
    }

    fn description(&self) -> Option<String> {
        self.winner().and_then(|e| e.raw.get("description")?.as_str().map(str::to_owned))
    }

    fn view(&self, channel: Channel) -> ChannelAttempt {
        ChannelAttempt {
            channel,
            from: self.events.iter().find_map(|(e, _)| e.msg_str("from")),
            status: self.status,
            error_code: self.winner().and_then(|e| e.stored.record.error_code),
            description: self.description(),
            updated_at: self.winner().and_then(|e| e.stored.record.time.clone()),
        }
    }
}

/// The message facts the recipients' fold depends on.
pub(super) struct Shape<'a> {
    pub to: &'a [String],
    pub direction: Option<&'a str>,
    /// MMS or group: `delivered` is a handoff to Bandwidth's network.
    pub handoff_only: bool,
    /// The channels a multi-channel send listed, in order.
    pub order: &'a [Channel],
}

pub(super) fn project_recipients(events: &[&Parsed], shape: &Shape) -> Vec<RecipientStatus> {
    // Every listed recipient of an outbound message starts as accepted:
    // an event exists, so Bandwidth accepted the message.
    let mut numbers: Vec<String> = if shape.direction == Some("out") { shape.to.to_vec() } else { Vec::new() };
    for e in events {
        if RecipientState::from_kind(&e.kind).is_some() {
            if let Some(r) = &e.stored.record.recipient {
                if !numbers.contains(r) {
                    numbers.push(r.clone());
                }
            }
        }
    }
    numbers.sort();
    numbers.into_iter().map(|number| recipient(events, number, shape)).collect()
}

fn recipient(events: &[&Parsed], number: String, shape: &Shape) -> RecipientStatus {
    let attempts = attempts(events, &number, shape.order);
    let carrying = attempts.iter().find(|a| a.status != RecipientState::Failed).or(attempts.last());
    let untried = carrying.and_then(|a| a.channel).is_some_and(|c| {
        let at = shape.order.iter().position(|o| *o == c);
        at.is_some_and(|i| shape.order[i + 1..].iter().any(|o| !attempts.iter().any(|a| a.channel == Some(*o))))
    });
    let mut status = carrying.map_or(RecipientState::Accepted, |a| a.status);
    // Falling back: not failed, and no error code of its own (the failed
    // channel's stays in `channel_history`).
    let falling_back = status == RecipientState::Failed && untried;
    if falling_back {
        status = RecipientState::Sending;
    }
    let mut flags = Vec::new();
    if let Some(a) = carrying {
        if a.status == RecipientState::Failed
            && a.events.iter().any(|(_, s)| matches!(s, RecipientState::Delivered | RecipientState::Read))
        {
            flags.push(StatusFlag::Contradiction);
        }
        let handoff = match a.channel {
            None => shape.handoff_only,
            Some(c) => c == Channel::Mms,
        };
        if status == RecipientState::Delivered && handoff {
            flags.push(StatusFlag::NetworkHandoffOnly);
        }
        if a.events.iter().any(|(e, _)| e.stored.record.error_code == Some(RECEIPT_EXPIRED)) {
            flags.push(StatusFlag::ReceiptExpired);
        }
    }
    let winner = carrying.and_then(Attempt::winner);
    let read = carrying.and_then(|a| a.events.iter().find(|(e, _)| e.kind == EventKind::MessageRead));
    RecipientStatus {
        number,
        status,
        error_code: winner.and_then(|e| e.stored.record.error_code).filter(|_| !falling_back),
        description: carrying.and_then(Attempt::description),
        flags,
        updated_at: winner.and_then(|e| e.stored.record.time.clone()),
        channel: carrying.and_then(|a| a.channel),
        channel_history: attempts.iter().filter_map(|a| Some(a.view(a.channel?))).collect(),
        read_time: read.and_then(|(e, _)| read_time(&e.raw).map(str::to_owned)),
    }
}

/// A recipient's status events as attempts, one per channel: in the send's
/// channel order, then in the order they were first seen.
fn attempts<'a>(events: &[&'a Parsed<'a>], number: &str, order: &[Channel]) -> Vec<Attempt<'a>> {
    let mut groups: Vec<(Option<Channel>, Vec<Stated<'a>>)> = Vec::new();
    for e in events.iter().filter(|e| e.stored.record.recipient.as_deref() == Some(number)) {
        let Some(state) = RecipientState::from_kind(&e.kind) else { continue };
        let channel = channel_of(&e.raw);
        match groups.iter_mut().find(|(c, _)| *c == channel) {
            Some((_, list)) => list.push((e, state)),
            None => groups.push((channel, vec![(e, state)])),
        }
    }
    // A channel-less event of a multi-channel message (none should come)
    // joins the first attempt rather than standing as one of its own.
    if groups.len() > 1 {
        if let Some(i) = groups.iter().position(|(c, _)| c.is_none()) {
            let (_, loose) = groups.remove(i);
            groups[0].1.extend(loose);
            groups[0].1.sort_by(|a, b| a.0.order().cmp(&b.0.order()));
        }
    }
    let rank = |c: &Option<Channel>| c.and_then(|c| order.iter().position(|o| *o == c)).unwrap_or(order.len());
    groups.sort_by_key(|(c, _)| rank(c)); // stable: unlisted channels stay in first-seen order
    groups.into_iter().map(|(c, list)| Attempt::new(c, list)).collect()
}
