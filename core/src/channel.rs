//! Bandwidth's Multi-Channel messages, as their callbacks tell them: which
//! channel (RBM, SMS, MMS) an event is about, when a recipient read the
//! message, and which sent message a rich reply answers.
//!
//! A multi-channel message is tried channel by channel, in the order of its
//! `channelList`, until one succeeds; every callback names its channel in
//! `message.channel`. Callbacks of earlier builds of Bandwidth's beta carry
//! `channel` beside `message`, and are read the same way.
//!
//! A reply (`suggestion-response`, `requested-location-response`) is an
//! inbound message with its own id, tied to the message it answers by
//! `pairedMessageId`. The ledger stores it under its own id and, as a tied
//! copy ([`tied_copy`]), under the paired message's id too, so that
//! message's timeline shows the reply wherever its shard is.

use serde_json::Value;

use crate::event::{message_of, CallbackEvent, EventKind};

crate::stored_enum! {
    /// A Multi-Channel channel, by Bandwidth's name.
    pub enum Channel {
        Rbm = "RBM",
        Sms = "SMS",
        Mms = "MMS",
    }
}

impl Channel {
    /// The List's `messageType` for a message this channel carried.
    pub fn message_type(self) -> &'static str {
        match self {
            Channel::Rbm => "rcs",
            Channel::Sms => "sms",
            Channel::Mms => "mms",
        }
    }
}

/// The channel an event is about: `message.channel`, else a top-level
/// `channel`. Unknown names are no channel.
pub fn channel_of(event: &Value) -> Option<Channel> {
    let name = message_of(event).and_then(|m| m.get("channel")).or_else(|| event.get("channel"))?;
    Channel::parse(name.as_str()?)
}

/// When the recipient read the message: a `message-read`'s `eventTime`,
/// else its `time`.
pub fn read_time(event: &Value) -> Option<&str> {
    event.get("eventTime").and_then(Value::as_str).or_else(|| event.get("time").and_then(Value::as_str))
}

/// The message a rich reply answers: `pairedMessageId` of its
/// `suggestionResponse` (Bandwidth's field), of its `locationResponse`, or
/// of its `message`.
pub fn paired_message_id(event: &Value) -> Option<&str> {
    let m = message_of(event)?;
    ["suggestionResponse", "locationResponse"]
        .iter()
        .find_map(|f| m.get(*f)?.get("pairedMessageId")?.as_str())
        .or_else(|| m.get("pairedMessageId")?.as_str())
        .filter(|id| !id.trim().is_empty() && id.len() <= 256)
}

/// Whether the event is a rich reply (suggestion or location response).
pub fn is_rich_reply(kind: &EventKind) -> bool {
    matches!(kind, EventKind::SuggestionResponse | EventKind::RequestedLocationResponse)
}

/// A rich reply as stored under the message it answers: the same event,
/// keyed by the paired id and by the number that replied (so replies of
/// two recipients to one message are two events). `None` for any other
/// event, or a reply with no paired message other than its own.
pub fn tied_copy(ev: &CallbackEvent) -> Option<CallbackEvent> {
    if !is_rich_reply(&ev.kind) {
        return None;
    }
    let paired = paired_message_id(&ev.raw).filter(|p| *p != ev.message_id)?;
    let replier = message_of(&ev.raw).and_then(|m| m.get("from")?.as_str()).map(str::to_owned);
    Some(CallbackEvent { message_id: paired.to_owned(), recipient: replier, ..ev.clone() })
}

/// The channels a multi-channel send listed (its `channelList`), in order.
pub fn channel_order(channel_list: &Value) -> Vec<Channel> {
    let Value::Array(list) = channel_list else { return Vec::new() };
    list.iter().filter_map(|e| Channel::parse(e.get("channel")?.as_str()?)).collect()
}

/// The text a multi-channel entry carries (`content.text`), if any.
pub fn entry_text(entry: &Value) -> Option<&str> {
    entry.get("content")?.get("text")?.as_str()
}
