//! The list row: one per (message, recipient), derived from a message's
//! projected view.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::columns::list_row;
use crate::channel::{channel_of, Channel};
use crate::projection::MessageView;
use crate::status::RecipientState;
use crate::time::parse_rfc3339_ms;

list_row! {
    /// One row per (message, recipient), as stored in each shard. Its fields
    /// are its columns, in this order; `columns` defines the rest from here.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ListRow {
        pub message_id: String,
        pub destination_tn: String,
        pub source_tn: String,
        pub message_status: String,
        pub message_direction: String,
        pub message_type: String,
        pub segment_count: i64,
        pub error_code: i64,
        pub receive_time_ms: i64,
        pub carrier_name: Option<String>,
        pub message_length: i64,
        pub attachment_count: i64,
        pub recipient_count: i64,
        pub text: Option<String>,
        pub media: Vec<String>,
        /// The normalized status (`delivered`, `read`, ...), finer than Bandwidth's.
        pub state: RecipientState,
        /// `network-handoff-only`, `receipt-expired`, `contradiction`.
        pub flags: Vec<String>,
        /// The Multi-Channel channel that carried it (`RBM`, `SMS`, `MMS`).
        /// (Defaulted: a shard of an earlier build sends rows without it.)
        #[serde(default)]
        pub channel: Option<String>,
        /// When the recipient read it (`message-read`'s `eventTime`).
        #[serde(default)]
        pub read_time_ms: Option<i64>,
    }
}

/// Derives the list rows of a message from its projected view.
/// `first_received_ms` stands in for the time when no event carries one.
pub fn rows_for(view: &MessageView, first_received_ms: i64) -> Vec<ListRow> {
    let receive_time_ms = receive_time_ms(view, first_received_ms);
    let inbound =
        view.direction.as_deref() == Some("in") || view.recipients.iter().all(|r| r.status == RecipientState::Received);
    let rcs = view.timeline.iter().any(|t| channel_of(&t.event) == Some(Channel::Rbm));
    let recipient_count = view.to.len().max(1) as i64;
    let message_type = if rcs {
        "rcs"
    } else if !view.media.is_empty() || recipient_count > 1 {
        "mms"
    } else {
        "sms"
    };
    let text = view.text.clone().filter(|t| !t.is_empty());
    view.recipients
        .iter()
        .map(|r| {
            // The latest carrier name reported for this recipient, if any.
            let carrier_name = view
                .timeline
                .iter()
                .rev()
                .filter(|t| t.recipient.as_deref() == Some(r.number.as_str()))
                .find_map(|t| t.event.get("carrierName").and_then(Value::as_str).map(str::to_owned));
            ListRow {
                message_id: view.message_id.clone(),
                destination_tn: r.number.clone(),
                // A Multi-Channel message goes out as its carrying entry's `from`.
                source_tn: r.sent_from().or(view.from.as_deref()).unwrap_or_default().to_owned(),
                message_status: r.status.bandwidth_status().to_owned(),
                message_direction: if inbound { "INBOUND" } else { "OUTBOUND" }.to_owned(),
                message_type: r.channel.map_or(message_type, Channel::message_type).to_owned(),
                segment_count: view.segment_count.unwrap_or(1),
                error_code: r.error_code.unwrap_or(0),
                receive_time_ms,
                carrier_name,
                message_length: text.as_deref().map_or(0, |t| t.chars().count() as i64),
                attachment_count: view.media.len() as i64,
                recipient_count,
                text: text.clone(),
                media: view.media.clone(),
                state: r.status,
                flags: r
                    .flags
                    .iter()
                    .filter_map(|f| serde_json::to_value(f).ok()?.as_str().map(str::to_owned))
                    .collect(),
                channel: r.channel.map(|c| c.as_str().to_owned()),
                read_time_ms: r.read_time.as_deref().and_then(parse_rfc3339_ms),
            }
        })
        .collect()
}

/// A message's receive time (the List's `receiveTime`, and what retention
/// and export go by): Bandwidth's `message.time`, else its earliest event
/// time, else when the ledger first got it.
pub fn receive_time_ms(view: &MessageView, first_received_ms: i64) -> i64 {
    view.time
        .as_deref()
        .and_then(parse_rfc3339_ms)
        .or_else(|| view.timeline.iter().filter_map(|t| t.time.as_deref().and_then(parse_rfc3339_ms)).min())
        .unwrap_or(first_received_ms)
}
