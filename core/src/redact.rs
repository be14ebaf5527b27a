//! The last guard of the logs: anything shaped like a credential is cut
//! from a log message before it is written (`src/log.rs`).

/// Replaces what follows a credential marker with `[redacted]`, up to the
/// next whitespace, quote, `&` or `,`.
pub fn redact(msg: &str) -> String {
    const MARKERS: [&str; 5] = ["Bearer ", "Basic ", "token=", "whsec_", "token."];
    let mut out = msg.to_owned();
    for marker in MARKERS {
        let mut from = 0;
        while let Some(at) = out[from..].find(marker).map(|i| i + from) {
            let start = at + marker.len();
            let end = out[start..]
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '&' | ',' | ';' | ')'))
                .map_or(out.len(), |i| i + start);
            if end > start {
                out.replace_range(start..end, "[redacted]");
            }
            from = start + "[redacted]".len().min(out.len() - start);
        }
    }
    out
}
