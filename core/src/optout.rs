//! Opt-out compliance: which inbound texts and failures are an opt-out or
//! an opt-in, how far one reaches, and the records the opt-out book keeps.
//!
//! Since 11 April 2025 the FCC's revocation rule (47 CFR
//! 64.1200(a)(10)–(12)) makes "stop", "quit", "end", "revoke", "opt out",
//! "cancel" and "unsubscribe" an opt-out by themselves; CTIA's handbook adds
//! STOPALL and UNSTOP/START. A carrier's own refusal arrives as
//! `message-failed` with error 4775. Everything here is pure: the book (the
//! Worker's `OptOutBook` object) stores, the send proxy asks it.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::event::CallbackEvent;
use crate::identity::hex;
use crate::send::is_e164;

/// The FCC's seven, and CTIA's STOPALL.
pub const DEFAULT_OPT_OUT_KEYWORDS: [&str; 9] =
    ["stop", "quit", "end", "revoke", "opt out", "cancel", "unsubscribe", "stopall", "stop all"];
pub const DEFAULT_OPT_IN_KEYWORDS: [&str; 3] = ["start", "unstop", "yes"];
/// `destination-rejected-due-to-user-opt-out`.
pub const CARRIER_OPT_OUT_CODE: i64 = 4775;
use crate::change::ChangeKind;
/// A second opt-out from the same person within this long gets no reply.
pub const REPLY_QUIET_MS: i64 = 24 * 3_600_000;

/// Lower-cases, drops apostrophes, turns punctuation and emoji into spaces,
/// and collapses spaces: `"  STOP!! 🛑"` → `"stop"`, `"Opt-Out"` → `"opt out"`.
pub fn normalize(text: &str) -> String {
    let mapped: String = text
        .chars()
        .filter(|c| !matches!(c, '\'' | '\u{2019}'))
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `text` is `keyword`, alone or followed by more words ("stop
/// texting me"); a longer message that only contains it ("don't stop") or
/// a longer word ("stopped") is not.
fn says(normalized: &str, keyword: &str) -> bool {
    normalized == keyword || normalized.strip_prefix(keyword).is_some_and(|rest| rest.starts_with(' '))
}

/// How far an opt-out reaches (`OPT_OUT_SCOPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// No number of this account may text the person.
    #[default]
    Account,
    /// Only the number that received the opt-out may not.
    Number,
}

impl Scope {
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        match raw.map(str::trim).filter(|s| !s.is_empty()) {
            None | Some("account") => Ok(Self::Account),
            Some("number") => Ok(Self::Number),
            Some(other) => Err(format!("OPT_OUT_SCOPE must be `account` or `number`; got {other:?}")),
        }
    }
}

/// The keyword lists and the scope, from `OPT_OUT_KEYWORDS`,
/// `OPT_IN_KEYWORDS` (comma-separated, replacing the defaults) and
/// `OPT_OUT_SCOPE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub opt_out: Vec<String>,
    pub opt_in: Vec<String>,
    pub scope: Scope,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            opt_out: DEFAULT_OPT_OUT_KEYWORDS.iter().map(|k| (*k).to_owned()).collect(),
            opt_in: DEFAULT_OPT_IN_KEYWORDS.iter().map(|k| (*k).to_owned()).collect(),
            scope: Scope::Account,
        }
    }
}

impl Rules {
    pub fn from_vars(opt_out: Option<&str>, opt_in: Option<&str>, scope: Option<&str>) -> Result<Self, String> {
        let list = |raw: Option<&str>, default: Vec<String>| -> Vec<String> {
            match raw.map(str::trim).filter(|s| !s.is_empty()) {
                None => default,
                Some(v) => v.split(',').map(normalize).filter(|k| !k.is_empty()).collect(),
            }
        };
        let d = Self::default();
        Ok(Self { opt_out: list(opt_out, d.opt_out), opt_in: list(opt_in, d.opt_in), scope: Scope::parse(scope)? })
    }

    /// What an inbound text says, if anything.
    pub fn action_of(&self, text: &str) -> Option<Action> {
        let n = normalize(text);
        if self.opt_out.iter().any(|k| says(&n, k)) {
            Some(Action::OptOut)
        } else if self.opt_in.iter().any(|k| says(&n, k)) {
            Some(Action::OptIn)
        } else {
            None
        }
    }

    /// The opt-outs and opt-ins a callback's events carry: a
    /// `message-received` whose text is a keyword (of its `from`, at the
    /// number that received it), and a `message-failed` with error 4775 (of
    /// the recipient, at the sending number).
    pub fn signals(&self, events: &[CallbackEvent]) -> Vec<Signal> {
        let mut out = Vec::new();
        for ev in events {
            let message = ev.message();
            let msg_str = |k: &str| message.get(k).and_then(Value::as_str).map(str::to_owned);
            let (person, ours, action, reason) = match ev.kind.as_str() {
                "message-received" => {
                    let Some(action) = msg_str("text").and_then(|t| self.action_of(&t)) else { continue };
                    let ours = ev.recipient.clone().or_else(|| {
                        message
                            .get("to")
                            .and_then(Value::as_array)
                            .and_then(|a| a.first())
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    });
                    (msg_str("from"), ours, action, Reason::Keyword)
                }
                "message-failed" if ev.error_code == Some(CARRIER_OPT_OUT_CODE) => {
                    (ev.recipient.clone(), msg_str("from"), Action::OptOut, Reason::Carrier4775)
                }
                _ => continue,
            };
            let (Some(person), Some(ours)) = (person, ours) else { continue };
            if !is_e164(&person) {
                continue;
            }
            out.push(Signal {
                number: person,
                scope_number: self.scope_number(&ours),
                action,
                reason,
                message_id: ev.message_id.clone(),
                event_ref: format!("{}:{}", ev.message_id, ev.kind.as_str()),
                our_number: ours,
            });
        }
        out
    }

    /// The book's key for the scope an opt-out at `ours` reaches: `*` for
    /// the whole account, or the number itself.
    pub fn scope_number(&self, ours: &str) -> String {
        match self.scope {
            Scope::Account => ACCOUNT_WIDE.to_owned(),
            Scope::Number => ours.to_owned(),
        }
    }
}

/// The scope key of an account-wide opt-out.
pub const ACCOUNT_WIDE: &str = "*";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    OptOut,
    OptIn,
}

crate::stored_enum! {
    /// Why a number is opted out.
    pub enum Reason {
        /// An opt-out keyword (or opt-in keyword, for a lift) from the person.
        Keyword = "keyword",
        /// The carrier refused a send: error 4775.
        Carrier4775 = "carrier-4775",
        /// The operator recorded (or lifted) it by hand.
        Operator = "operator",
    }
}

/// One opt-out or opt-in found in a callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    /// The person.
    pub number: String,
    /// [`ACCOUNT_WIDE`], or our number it is limited to.
    pub scope_number: String,
    pub action: Action,
    pub reason: Reason,
    pub message_id: String,
    /// The event's identity for dedup: a retried callback records nothing.
    pub event_ref: String,
    /// Our number that received the STOP (or sent the refused message):
    /// where a confirmation comes from.
    pub our_number: String,
}

/// A callback's signals for the book; `reply`: whether `OPT_OUT_REPLY` is
/// set, so a new keyword opt-out queues one confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordRequest {
    pub signals: Vec<Signal>,
    pub now_ms: i64,
    pub reply: bool,
}

/// How many of the signals changed anything (retries and repeats do not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    pub changed: u32,
}

/// The book's key for a number: HMAC-SHA256 under the book's own secret
/// key, hex. It survives erasure of the number, and tells nobody without
/// the key which number it is.
pub fn keyed_hash(key: &[u8], number: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(number.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The send proxy's question: may `from` text these numbers?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRequest {
    pub from: String,
    pub to: Vec<String>,
}

/// The numbers of `to` that opted out of `from` (or of the account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CheckReply {
    pub opted_out: Vec<String>,
}

/// An opt-out in force, as `GET /optouts` lists it. After an erasure of the
/// number, `number` is gone and only its keyed hash remains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OptOut {
    pub number: Option<String>,
    pub number_hash: String,
    pub scope: Scope,
    /// The number it is limited to (scope `number`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_number: Option<String>,
    pub reason: Reason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub time: String,
}

/// One change in a number's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub state: State,
    #[serde(flatten)]
    pub opt_out: OptOut,
}

crate::stored_enum! {
    /// Where a number stands in one scope, as its history records it.
    pub enum State {
        OptedOut = "opted-out",
        OptedIn = "opted-in",
    }
}

/// `GET /optouts?number=&cursor=`: a page of opt-outs in force (the book
/// sets the page size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListPage {
    pub optouts: Vec<OptOut>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The operator's change (`POST /optouts`, `DELETE /optouts/{number}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorChange {
    pub number: String,
    pub action: Action,
    pub note: String,
    pub now_ms: i64,
}

/// Counts of opt-outs in force by scope, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub account: u64,
    pub number: u64,
}

impl Counts {
    /// The `bw_ledger_optouts{scope}` gauge, in Prometheus' text format.
    pub fn render(&self) -> String {
        format!(
            "# HELP bw_ledger_optouts Opt-outs in force, by scope.\n# TYPE bw_ledger_optouts gauge\n\
             bw_ledger_optouts{{scope=\"account\"}} {}\nbw_ledger_optouts{{scope=\"number\"}} {}\n",
            self.account, self.number
        )
    }
}

/// The body of `POST /optouts`.
#[derive(Debug, Clone, Deserialize)]
pub struct OperatorBody {
    pub number: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// The `optout.changed` document forwarded to targets that take it.
pub fn changed_doc(entry: &HistoryEntry, webhook_id: &str) -> Value {
    let o = &entry.opt_out;
    serde_json::json!({
        "type": ChangeKind::OptOut,
        "version": crate::change::DOC_VERSION,
        "number": o.number,
        "state": entry.state,
        "scope": o.scope,
        "scopeNumber": o.scope_number,
        "reason": o.reason,
        "messageId": o.message_id,
        "note": o.note,
        "time": o.time,
        "webhookId": webhook_id,
    })
}
