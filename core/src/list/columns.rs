//! A list row as stored: its columns, and which of them an update must
//! write.

use super::row::ListRow;

/// A list row column's stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnValue {
    Int(i64),
    Text(String),
    Null,
}

impl ListRow {
    /// Every column but the key (message, recipient), in `ROW_COLUMNS`
    /// order, as stored (`media` and `flags` as JSON text).
    pub fn columns(&self) -> [(&'static str, ColumnValue); 15] {
        let text = |s: &Option<String>| s.clone().map_or(ColumnValue::Null, ColumnValue::Text);
        let json = |v: &Vec<String>| ColumnValue::Text(serde_json::to_string(v).unwrap_or_else(|_| "[]".into()));
        [
            ("source_tn", ColumnValue::Text(self.source_tn.clone())),
            ("message_status", ColumnValue::Text(self.message_status.clone())),
            ("message_direction", ColumnValue::Text(self.message_direction.clone())),
            ("message_type", ColumnValue::Text(self.message_type.clone())),
            ("segment_count", ColumnValue::Int(self.segment_count)),
            ("error_code", ColumnValue::Int(self.error_code)),
            ("receive_time_ms", ColumnValue::Int(self.receive_time_ms)),
            ("carrier_name", text(&self.carrier_name)),
            ("message_length", ColumnValue::Int(self.message_length)),
            ("attachment_count", ColumnValue::Int(self.attachment_count)),
            ("recipient_count", ColumnValue::Int(self.recipient_count)),
            ("text", text(&self.text)),
            ("media", json(&self.media)),
            ("state", ColumnValue::Text(self.state.clone())),
            ("flags", json(&self.flags)),
        ]
    }

    /// The columns of `self` that differ from `before` (the same message
    /// and recipient as stored): all an update has to write. SQLite rewrites
    /// an index only when an update sets one of its columns, and Cloudflare
    /// bills every index entry written, so a status change that leaves the
    /// time, sender and recipient alone costs the row and the status index,
    /// not all five.
    pub fn changed_since(&self, before: &ListRow) -> Vec<(&'static str, ColumnValue)> {
        self.columns().into_iter().zip(before.columns()).filter(|(a, b)| a.1 != b.1).map(|(a, _)| a).collect()
    }
}
