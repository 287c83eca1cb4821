//! The `presence_info` oracle: any bytes as a presence member's id and
//! info. Every JSON presence frame the encoder builds is valid JSON, judged
//! by the grammar checker in `json.rs` rather than by the serde_json that
//! the product itself might share a bug with; valid-JSON info is embedded
//! byte for byte, other info becomes the lossy-UTF-8 string, empty info is
//! omitted (R10); and `is_json` agrees with the grammar.

use realtime::{is_json, JsonPresenceEncoder, Member, PresenceEncoder};

use crate::json::{json_verdict, Verdict};

/// Byte 0 (low 4 bits) is the length of the member id that follows (lossy
/// UTF-8; the channel is `presence-<id>`); the rest is the member's info.
/// Checks every JSON presence frame (R10).
pub(crate) fn run(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(split & 0x0f).min(rest.len());
    let (id, info) = rest.split_at(split);
    let id = String::from_utf8_lossy(id).into_owned();
    let channel = format!("presence-{id}");
    let member = Member::new(id.clone(), info);
    let text_info = std::str::from_utf8(info).ok();
    let verbatim = text_info.is_some() && is_json(info);
    // Differential: `is_json` agrees with the grammar on UTF-8 input. (It
    // does not check UTF-8 inside strings, so it is only asked about text;
    // `push_info` checks UTF-8 first.)
    match text_info.map(json_verdict) {
        Some(Verdict::Valid) => assert!(is_json(info), "is_json rejects valid JSON {info:?}"),
        Some(Verdict::Invalid) => assert!(!is_json(info), "is_json accepts invalid JSON {info:?}"),
        Some(Verdict::TooDeep) | None => {}
    }
    let enc = JsonPresenceEncoder;
    let frames = [
        (
            "presence:member_added",
            enc.member_added(&channel, &member),
            "}}",
        ),
        (
            "presence:member_removed",
            enc.member_removed(&channel, &member),
            "}}",
        ),
        (
            "presence:subscription_succeeded",
            enc.subscription_succeeded(&channel, &[&member, &member], &member),
            "}]}",
        ),
    ];
    for (event, frame, suffix) in frames {
        let Some(text) = frame.as_str() else {
            panic!("presence frame is not text: {frame:?}");
        };
        assert_ne!(
            json_verdict(text),
            Verdict::Invalid,
            "frame is not JSON: {text}"
        );
        if let Some(info) = text_info.filter(|_| verbatim) {
            // Byte for byte, at the end of the (last) member.
            let tail = format!(",\"info\":{info}{suffix}");
            assert!(text.ends_with(&tail), "info not embedded verbatim: {text}");
        }
        let v = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => v,
            // serde_json's `Value` refuses nesting beyond 128, lone
            // surrogates and numbers out of `f64` range, all valid JSON
            // text; only verbatim info can carry them.
            Err(e) => {
                assert!(verbatim, "frame rejected by serde_json ({e}): {text}");
                continue;
            }
        };
        assert_eq!(v["event"], event, "{text}");
        assert_eq!(v["channel"].as_str(), Some(channel.as_str()), "{text}");
        let members: Vec<&serde_json::Value> = match v.get("members") {
            Some(serde_json::Value::Array(a)) => a.iter().collect(),
            Some(_) => panic!("members is not an array: {text}"),
            None => vec![&v["member"]],
        };
        for m in members {
            assert_eq!(m["id"].as_str(), Some(id.as_str()), "{text}");
            match m.get("info") {
                None => assert!(info.is_empty(), "info dropped: {text}"),
                Some(got) => {
                    assert!(!info.is_empty(), "empty info not omitted: {text}");
                    if !verbatim {
                        let want = String::from_utf8_lossy(info);
                        assert_eq!(got.as_str(), Some(&*want), "{text}");
                    }
                }
            }
        }
    }
}
