//! The send proxy's rules for Bandwidth's Create Multi-Channel Message
//! (`POST /users/{accountId}/messages/multiChannel`, beta): `to`, and a
//! `channelList` of 1 to 4 entries (RBM, SMS or MMS), each with its own
//! `from`, `applicationId` and content, tried by Bandwidth in order.
//!
//! A body that passes becomes a [`ValidSend`] with one sender per entry, so
//! a client key's `from` and application rules hold for every channel the
//! message may go out on, and its limits count recipients, not entries.
//! Content is checked as far as the ledger relies on it (its text, media
//! URLs) and otherwise passed to Bandwidth as sent: rich cards and
//! suggestions are Bandwidth's to judge. Bandwidth's schema types `to` as
//! one number; a list of numbers is passed on as sent, and Bandwidth
//! answers it.

use serde_json::{Map, Value};

use crate::channel::Channel;
use crate::send::{
    body_object, field_error, is_e164, Endpoint, FieldError, SendCheck, Sender, ValidSend, MAX_MEDIA_PER_SEND,
    MAX_TEXT_CHARS,
};

/// Entries in a `channelList`, at most (Bandwidth's `maxItems`).
pub const MAX_CHANNELS: usize = 4;
/// RBM text, at most (Bandwidth's `maxLength`).
pub const MAX_RBM_TEXT_CHARS: usize = 3270;
/// A media `fileUrl`, at most (Bandwidth's `maxLength`).
pub const MAX_FILE_URL_CHARS: usize = 1000;
/// An RBM sender id (an agent name such as `BandwidthRBM`), at most.
pub const MAX_RBM_SENDER_CHARS: usize = 64;

/// Validates a multi-channel send body at time `now_ms`;
/// `default_application_id` fills an entry's missing `applicationId`.
/// Every broken rule is reported, not only the first.
pub fn validate_multichannel(
    body: &[u8],
    now_ms: i64,
    default_application_id: Option<&str>,
) -> Result<ValidSend, Vec<FieldError>> {
    let obj = body_object(body)?;
    let mut v = SendCheck::new(&obj);
    let to = recipient(&mut v);
    let senders = channel_list(&mut v, default_application_id);
    v.tag();
    v.priority();
    v.expiration(now_ms);
    if !v.errors.is_empty() {
        return Err(v.errors);
    }
    let opt_out_override = v.opt_out_override();
    Ok(ValidSend { endpoint: Endpoint::MultiChannel, senders, to, body: Value::Object(v.out), opt_out_override })
}

/// `to`: one E.164 number (Bandwidth's schema), or a list of them.
fn recipient(v: &mut SendCheck) -> Vec<String> {
    match v.get("to").cloned() {
        Some(Value::String(n)) if is_e164(&n) => {
            v.keep("to", Value::String(n.clone()));
            vec![n]
        }
        Some(Value::Array(_)) => v.recipients(),
        _ => {
            v.fail("to", "`to` must be an E.164 number, like +15554443333.");
            Vec::new()
        }
    }
}

/// `channelList`: 1 to 4 entries, each checked; kept with `applicationId`
/// filled. Returns each entry's sender.
fn channel_list(v: &mut SendCheck, default_application_id: Option<&str>) -> Vec<Sender> {
    let entries = match v.get("channelList") {
        Some(Value::Array(items)) if (1..=MAX_CHANNELS).contains(&items.len()) => items.clone(),
        Some(Value::Array(items)) if !items.is_empty() => {
            let n = items.len();
            v.fail("channelList", &format!("At most {MAX_CHANNELS} channels are allowed; got {n}."));
            return Vec::new();
        }
        _ => {
            v.fail("channelList", "`channelList` must be a list of 1 to 4 channel entries.");
            return Vec::new();
        }
    };
    let mut senders = Vec::new();
    let mut kept = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match check_entry(entry, default_application_id) {
            Ok((sender, entry)) => {
                senders.push(sender);
                kept.push(entry);
            }
            Err(errors) => v.errors.extend(
                errors
                    .into_iter()
                    .map(|e| FieldError { field_name: format!("channelList[{i}].{}", e.field_name), ..e }),
            ),
        }
    }
    v.keep("channelList", Value::Array(kept));
    senders
}

/// One entry: its sender and the entry as forwarded, or why not (fields
/// named within the entry). An entry is read with Create Message's rules
/// where they are the same (`SendCheck`: `applicationId`, an SMS or MMS
/// `from`).
fn check_entry(entry: &Value, default_application_id: Option<&str>) -> Result<(Sender, Value), Vec<FieldError>> {
    let Some(obj) = entry.as_object() else {
        return Err(vec![field_error("channel", "Each channel entry must be an object.")]);
    };
    let mut v = SendCheck::new(obj);
    let channel = v.get("channel").and_then(Value::as_str).and_then(Channel::parse);
    if channel.is_none() {
        v.fail("channel", "`channel` must be RBM, SMS or MMS.");
    }
    let from = match channel {
        Some(Channel::Sms | Channel::Mms) => v.from(),
        Some(Channel::Rbm) => agent_from(&mut v, true),
        None => agent_from(&mut v, false),
    };
    v.application_id(default_application_id);
    match (obj.get("content").filter(|c| !c.is_null()), channel) {
        (Some(Value::Object(content)), Some(c)) => {
            for (f, why) in check_content(c, content) {
                v.fail(&format!("content{f}"), &why);
            }
        }
        (_, Some(_)) => v.fail("content", "`content` is required, as an object."),
        (_, None) => {}
    }
    let application_id = v.out.get("applicationId").and_then(Value::as_str).map(str::to_owned);
    match (v.errors.is_empty(), from, application_id) {
        (true, Some(from), Some(application_id)) => {
            let mut kept: Map<String, Value> = obj.clone();
            kept.insert("applicationId".into(), Value::String(application_id.clone()));
            Ok((Sender { from, application_id }, Value::Object(kept)))
        }
        _ => Err(v.errors),
    }
}

/// An RBM entry's `from`: an agent's sender id (held to its rule when
/// `check`; an entry of no known channel is only required to have one).
fn agent_from(v: &mut SendCheck, check: bool) -> Option<String> {
    let from = v.string("from");
    match &from {
        Some(f) if !check || is_rbm_sender(f) => {}
        Some(_) => v.fail(
            "from",
            &format!("`from` of an RBM entry must be a sender id of 1 to {MAX_RBM_SENDER_CHARS} printable characters."),
        ),
        None if v.failed("from") => {}
        None => v.fail("from", "`from` is required."),
    }
    from
}

/// An RBM agent's sender id: printable, trimmed, not too long.
fn is_rbm_sender(s: &str) -> bool {
    let n = s.chars().count();
    (1..=MAX_RBM_SENDER_CHARS).contains(&n) && s.trim() == s && !s.chars().any(char::is_control)
}

/// What is wrong with an entry's content, as (field suffix, why).
fn check_content(channel: Channel, content: &Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let text = content.get("text").filter(|t| !t.is_null());
    let max = if channel == Channel::Rbm { MAX_RBM_TEXT_CHARS } else { MAX_TEXT_CHARS };
    match text {
        None => {}
        Some(Value::String(t)) if t.chars().count() <= max => {}
        Some(Value::String(_)) => out.push((".text".into(), format!("`text` must be at most {max} characters."))),
        Some(_) => out.push((".text".into(), "`text` must be a string.".into())),
    }
    let has_text = text.and_then(Value::as_str).is_some_and(|t| !t.is_empty());
    let media = content.get("media").filter(|m| !m.is_null());
    match media {
        None => {}
        Some(Value::Array(files)) if files.len() > MAX_MEDIA_PER_SEND => out.push((
            ".media".into(),
            format!("At most {MAX_MEDIA_PER_SEND} media files are allowed; got {}.", files.len()),
        )),
        Some(Value::Array(files)) => {
            for (i, file) in files.iter().enumerate() {
                let url = file.get("fileUrl").and_then(Value::as_str);
                if !url.is_some_and(|u| {
                    u.chars().count() <= MAX_FILE_URL_CHARS && (u.starts_with("https://") || u.starts_with("http://"))
                }) {
                    let why = format!(
                        "Each media file needs a `fileUrl`: an http(s) URL of at most {MAX_FILE_URL_CHARS} characters."
                    );
                    out.push((format!(".media[{i}].fileUrl"), why));
                }
            }
        }
        Some(_) => out.push((".media".into(), "`media` must be a list of {\"fileUrl\": ...} files.".into())),
    }
    let has_media = media.and_then(Value::as_array).is_some_and(|m| !m.is_empty());
    let has_card = ["cardContent", "cardContents"].iter().any(|k| content.get(*k).is_some_and(|c| !c.is_null()));
    let enough = match channel {
        Channel::Sms => has_text,
        Channel::Mms => has_text || has_media,
        Channel::Rbm => has_text || has_media || has_card,
    };
    if !enough && out.is_empty() {
        let why = match channel {
            Channel::Sms => "An SMS entry needs `content.text`.",
            Channel::Mms => "An MMS entry needs `content.text` or `content.media`.",
            Channel::Rbm => "An RBM entry needs `content.text`, `content.media` or a rich card.",
        };
        out.push((String::new(), why.into()));
    }
    out
}

/// The message of a multi-channel `202` answer (`{links, data, errors}`)
/// as the ledger records it: Bandwidth's `data`, with the first entry's
/// `from`, `owner` and `applicationId` beside it, so the record reads like a
/// Create Message answer and its callbacks attach to it.
pub fn accepted_message(body: &[u8]) -> Result<Vec<u8>, String> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| format!("202 body is not JSON: {e}"))?;
    let Some(Value::Object(mut data)) = answer.get("data").cloned() else {
        return Err("202 body has no `data` object".into());
    };
    let first = data.get("channelList").and_then(|l| l.get(0)).cloned().unwrap_or(Value::Null);
    for (field, from) in [("from", "from"), ("owner", "from"), ("applicationId", "applicationId")] {
        if let Some(v) = first.get(from).filter(|v| v.is_string()) {
            data.entry(field).or_insert_with(|| v.clone());
        }
    }
    serde_json::to_vec(&data).map_err(|e| e.to_string())
}
