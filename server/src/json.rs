//! Tiny JSON writing helpers for hand-built frames.
//!
//! Frames on the hot path are built by appending to one `String` instead of
//! going through a `serde_json::Value`: a broadcast frame is encoded once
//! and shared by every recipient, and this keeps that one encoding cheap.

/// Appends `s` as a JSON string literal (quotes included): the Hub's
/// escaper, so every frame of the process escapes alike.
pub fn push_str(out: &mut String, s: &str) {
    realtime::push_json_str(out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip_through_serde() {
        for s in ["", "plain", "q\"b\\n\n\r\t", "\u{1}\u{1f}", "é☃🎉"] {
            let mut literal = String::new();
            push_str(&mut literal, s);
            let back: String = serde_json::from_str(&literal).unwrap();
            assert_eq!(back, s);
        }
    }
}
