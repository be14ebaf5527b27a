//! What `POST /targets` and `PATCH /targets/{id}` accept, read field by
//! field so that every refusal names its field, an unknown field is
//! refused (a typo such as `event` never passes silently), and `null`
//! clears what may be cleared. The OpenAPI document states the same rules.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::change::ChangeKind;

pub const ID_MAX_LEN: usize = 64;
pub const URL_MAX_LEN: usize = 2048;
pub const DESCRIPTION_MAX_LEN: usize = 500;
pub use crate::forward::RATE_MAX;

/// `POST /targets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewTarget {
    #[serde(default)]
    pub id: Option<String>,
    pub url: String,
    #[serde(default)]
    pub events: Option<Vec<ChangeKind>>,
    #[serde(default)]
    pub rate_per_second: Option<u32>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `PATCH /targets/{id}`: absent fields stay; `null` clears `events` (all
/// kinds), `ratePerSecond` (unpaced) and `description`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TargetPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub events: Option<Option<Vec<ChangeKind>>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub rate_per_second: Option<Option<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub description: Option<Option<String>>,
}

/// A field that is present, `null` or not: `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Ids a target may have: they travel in paths, labels and logs.
pub fn valid_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    id.len() <= ID_MAX_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// The id of a target made without one: `tgt_` and 16 hex digits.
pub fn generated_id(random: &[u8; 8]) -> String {
    format!("tgt_{}", crate::identity::hex(random))
}

fn object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("The body must be a JSON object.".into()),
        Err(e) => Err(format!("The body is not JSON: {e}")),
    }
}

fn url(v: &Value) -> Result<String, String> {
    let s = v.as_str().ok_or("`url` must be a string.")?;
    let parsed = url::Url::parse(s).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if s.len() > URL_MAX_LEN || s.chars().any(char::is_whitespace) || parsed.is_none() {
        return Err(format!("`url` must be an http(s) URL of at most {URL_MAX_LEN} characters."));
    }
    if !(s.starts_with("http://") || s.starts_with("https://")) {
        return Err("`url` must start with http:// or https://.".into());
    }
    Ok(s.to_owned())
}

fn events(v: &Value) -> Result<Option<Vec<ChangeKind>>, String> {
    let why = || {
        let kinds: Vec<&str> = ChangeKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("`events` must be null or a non-empty list of: {}.", kinds.join(", "))
    };
    match v {
        Value::Null => Ok(None),
        Value::Array(items) if !items.is_empty() => {
            let mut kinds = Vec::new();
            for item in items {
                let kind = item.as_str().and_then(ChangeKind::parse).ok_or_else(why)?;
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            Ok(Some(kinds))
        }
        _ => Err(why()),
    }
}

fn rate(v: &Value) -> Result<Option<u32>, String> {
    match v {
        Value::Null => Ok(None),
        _ => v
            .as_u64()
            .filter(|n| (1..=u64::from(RATE_MAX)).contains(n))
            .map(|n| Some(n as u32))
            .ok_or(format!("`ratePerSecond` must be null or a whole number from 1 to {RATE_MAX}.")),
    }
}

fn description(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.chars().count() <= DESCRIPTION_MAX_LEN => Ok(Some(s.clone())),
        _ => Err(format!("`description` must be null or text of at most {DESCRIPTION_MAX_LEN} characters.")),
    }
}

fn unknown(field: &str) -> String {
    format!("Unknown field `{field}`: a target takes url, events, ratePerSecond, description (and id when made).")
}

/// Reads a `POST /targets` body.
pub fn parse_new(body: &[u8]) -> Result<NewTarget, String> {
    let map = object(body)?;
    let mut t = NewTarget { id: None, url: String::new(), events: None, rate_per_second: None, description: None };
    let mut has_url = false;
    for (k, v) in &map {
        match k.as_str() {
            "url" => {
                t.url = url(v)?;
                has_url = true;
            }
            "id" => match v.as_str() {
                Some(id) if valid_id(id) => t.id = Some(id.to_owned()),
                _ => {
                    return Err(format!(
                    "`id` must be 1 to {ID_MAX_LEN} letters, digits, `_`, `.` or `-`, starting with a letter or digit."
                ))
                }
            },
            "events" => t.events = events(v)?,
            "ratePerSecond" => t.rate_per_second = rate(v)?,
            "description" => t.description = description(v)?,
            other => return Err(unknown(other)),
        }
    }
    if !has_url {
        return Err("`url` is required.".into());
    }
    Ok(t)
}

/// Reads a `PATCH /targets/{id}` body.
pub fn parse_patch(body: &[u8]) -> Result<TargetPatch, String> {
    let map = object(body)?;
    let mut p = TargetPatch::default();
    for (k, v) in &map {
        match k.as_str() {
            "url" => p.url = Some(url(v)?),
            "events" => p.events = Some(events(v)?),
            "ratePerSecond" => p.rate_per_second = Some(rate(v)?),
            "description" => p.description = Some(description(v)?),
            other => return Err(unknown(other)),
        }
    }
    Ok(p)
}
