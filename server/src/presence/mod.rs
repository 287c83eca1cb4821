//! Pusher's presence frames, plugged into the Hub as its
//! [`PresenceEncoder`].
//!
//! The Hub runs in [`realtime::PresenceMode::PerUser`]: a member is a user
//! (the `user_id` of the signed `channel_data`), `member_added` goes out on
//! a user's first connection and `member_removed` on its last. This encoder
//! only spells the frames:
//!
//! - `pusher_internal:subscription_succeeded` with
//!   `{"presence":{"ids":[..],"hash":{id:info},"count":N}}`, the subscriber
//!   included;
//! - `pusher_internal:member_added` with `{"user_id","user_info"}`, not sent
//!   to the newcomer itself;
//! - `pusher_internal:member_removed` with `{"user_id"}`;
//! - `pusher_internal:subscription_succeeded` with `{}` for public and
//!   private joins, enqueued by the Hub before any frame of the channel.
//!
//! `Member::info` holds the `user_info` JSON exactly as signed (empty when
//! absent, written as `null`).
//!
//! The roster frame is built from each member's cached encoding
//! (`encode_member`, once per join; issue 16): its `ids` element and its
//! `hash` entry, both already escaped for the frame's `data` string, so a
//! join copies bytes instead of escaping and validating every member again.

use realtime::{ChannelType, Frame, Member, PresenceEncoder, RosterView};

use crate::json;
use crate::protocol::event_frame;

mod cluster;
mod roster;

pub(crate) use cluster::ClusterPresenceEncoder;
pub(crate) use roster::ClusterRoster;

/// The Pusher presence encoder.
#[derive(Debug, Clone, Copy, Default)]
pub struct PusherPresenceEncoder;

fn push_info(out: &mut String, info: &[u8]) {
    match std::str::from_utf8(info) {
        Ok("") => out.push_str("null"),
        Ok(text) if realtime::is_json(info) => out.push_str(text.trim()),
        _ => json::push_str(out, &String::from_utf8_lossy(info)),
    }
}

/// Separates a member's two cached parts (its `ids` element, its `hash`
/// entry): a raw control character, which escaped JSON never holds.
const PART: char = '\u{1}';

/// Appends `s` escaped as the inside of a JSON string (no quotes): what
/// `event_frame` does to the `data` text, piece by piece (escaping works
/// character by character, so the pieces escape to the whole).
fn push_escaped(out: &mut String, s: &str) {
    let mut quoted = String::with_capacity(s.len() + 8);
    json::push_str(&mut quoted, s);
    out.push_str(quoted.get(1..quoted.len() - 1).unwrap_or(""));
}

/// A member's `ids` element and `hash` entry, unescaped.
fn member_parts(member: &Member) -> (String, String) {
    let mut id = String::with_capacity(member.id.len() + 2);
    json::push_str(&mut id, &member.id);
    let mut entry = id.clone();
    entry.push(':');
    push_info(&mut entry, &member.info);
    (id, entry)
}

impl PresenceEncoder for PusherPresenceEncoder {
    /// `ids` element, `PART`, `hash` entry, each escaped for `data`.
    fn encode_member(&self, member: &Member, out: &mut String) {
        let (id, entry) = member_parts(member);
        push_escaped(out, &id);
        out.push(PART);
        push_escaped(out, &entry);
    }

    /// The same frame as `subscription_succeeded`, from the cached parts.
    fn roster_frame(&self, channel: &str, roster: RosterView<'_>, newcomer: &Member) -> Frame {
        let extra = (!roster.members().any(|m| m.id == newcomer.id)).then(|| {
            let (id, entry) = member_parts(newcomer);
            let (mut a, mut b) = (String::new(), String::new());
            push_escaped(&mut a, &id);
            push_escaped(&mut b, &entry);
            (a, b)
        });
        let count = roster.len() + usize::from(extra.is_some());
        let mut out = String::with_capacity(160 + channel.len() + roster.encoded().len());
        out.push_str("{\"event\":");
        json::push_str(&mut out, "pusher_internal:subscription_succeeded");
        out.push_str(",\"channel\":");
        json::push_str(&mut out, channel);
        out.push_str(",\"data\":\"");
        push_escaped(&mut out, "{\"presence\":{\"ids\":[");
        let mut first = true;
        let parts = roster
            .entries()
            .map(|(_, own)| own.split_once(PART).unwrap_or((own, "")));
        for (id, _) in parts.clone() {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            out.push_str(id);
        }
        if let Some((id, _)) = &extra {
            if !first {
                out.push(',');
            }
            out.push_str(id);
        }
        push_escaped(&mut out, "],\"hash\":{");
        first = true;
        for (_, entry) in parts {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            out.push_str(entry);
        }
        if let Some((_, entry)) = &extra {
            if !first {
                out.push(',');
            }
            out.push_str(entry);
        }
        push_escaped(&mut out, &format!("}},\"count\":{count}}}}}"));
        out.push_str("\"}");
        Frame::from_string(out)
    }

    fn subscription_succeeded(
        &self,
        channel: &str,
        roster: &[&Member],
        newcomer: &Member,
    ) -> Frame {
        let mut members: Vec<&Member> = roster.to_vec();
        if !roster.iter().any(|m| m.id == newcomer.id) {
            members.push(newcomer);
        }
        let mut ids = String::from("[");
        let mut hash = String::from("{");
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                ids.push(',');
                hash.push(',');
            }
            json::push_str(&mut ids, &m.id);
            json::push_str(&mut hash, &m.id);
            hash.push(':');
            push_info(&mut hash, &m.info);
        }
        ids.push(']');
        hash.push('}');
        let data = format!(
            "{{\"presence\":{{\"ids\":{ids},\"hash\":{hash},\"count\":{}}}}}",
            members.len()
        );
        Frame::from_string(event_frame(
            "pusher_internal:subscription_succeeded",
            Some(channel),
            &data,
        ))
    }

    fn member_added(&self, channel: &str, member: &Member) -> Frame {
        let mut data = String::from("{\"user_id\":");
        json::push_str(&mut data, &member.id);
        data.push_str(",\"user_info\":");
        push_info(&mut data, &member.info);
        data.push('}');
        Frame::from_string(event_frame(
            "pusher_internal:member_added",
            Some(channel),
            &data,
        ))
    }

    fn member_removed(&self, channel: &str, member: &Member) -> Frame {
        let mut data = String::from("{\"user_id\":");
        json::push_str(&mut data, &member.id);
        data.push('}');
        Frame::from_string(event_frame(
            "pusher_internal:member_removed",
            Some(channel),
            &data,
        ))
    }

    fn newcomer_sees_own_join(&self) -> bool {
        false
    }

    fn subscribed(&self, channel: &str, _: ChannelType) -> Option<Frame> {
        Some(Frame::from_string(event_frame(
            "pusher_internal:subscription_succeeded",
            Some(channel),
            "{}",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn data(f: &Frame) -> Value {
        let outer: Value = serde_json::from_slice(f.payload()).unwrap();
        serde_json::from_str(outer["data"].as_str().unwrap()).unwrap()
    }

    #[test]
    fn roster_includes_the_newcomer_once() {
        let a = Member::new("1", r#"{"name":"Ada"}"#);
        let b = Member::new("2", "");
        let f = PusherPresenceEncoder.subscription_succeeded("presence-x", &[&a], &b);
        let d = data(&f);
        assert_eq!(d["presence"]["ids"], serde_json::json!(["1", "2"]));
        assert_eq!(d["presence"]["hash"]["1"]["name"], "Ada");
        assert!(d["presence"]["hash"]["2"].is_null());
        assert_eq!(d["presence"]["count"], 2);
        // A second tab of user 1: already in the roster.
        let f = PusherPresenceEncoder.subscription_succeeded("presence-x", &[&a], &a);
        assert_eq!(data(&f)["presence"]["count"], 1);
    }

    /// The roster a newcomer gets through the Hub (built from cached
    /// encodings) is byte for byte the frame built from the members.
    #[test]
    fn cached_roster_frame_equals_the_frame_built_from_members() {
        use realtime::{AuthResult, Hub, PresenceMode, Transport};
        struct Nop;
        impl Transport for Nop {
            fn wake(&self) {}
            fn closed(&self) {}
        }
        let hub = Hub::builder()
            .presence_mode(PresenceMode::PerUser)
            .presence_encoder(PusherPresenceEncoder)
            .authorizer(|r: &realtime::AuthRequest| {
                let p = String::from_utf8_lossy(&r.params).into_owned();
                let (id, info) = p.split_once('|').unwrap_or((&p, ""));
                AuthResult::allow(Member::new(id, info.to_owned()))
            })
            .build();
        let joins = [
            "1|{\"name\":\"Ada \\\"A\\\"\"}",
            "q\"2|not json é",
            "3|",
            "1|{\"name\":\"Ada\"}",
            "4| [1, 2] ",
        ];
        let mut clients = Vec::new();
        for (i, params) in joins.iter().enumerate() {
            let before: Vec<Member> = hub.presence("presence-x");
            let c = hub.attach(std::sync::Arc::new(Nop), ()).unwrap();
            hub.subscribe_with(&c, "presence-x", *params).unwrap();
            let got = c.pop_frame().unwrap();
            let (id, info) = params.split_once('|').unwrap();
            let me = Member::new(id, info.to_owned());
            let refs: Vec<&Member> = before.iter().collect();
            let want = PusherPresenceEncoder.subscription_succeeded("presence-x", &refs, &me);
            assert_eq!(got.as_str(), want.as_str(), "join {i}");
            data(&got);
            clients.push(c);
        }
        // A leave from the middle, then a join again.
        hub.unsubscribe(&clients[1], "presence-x").unwrap();
        let before: Vec<Member> = hub.presence("presence-x");
        let c = hub.attach(std::sync::Arc::new(Nop), ()).unwrap();
        hub.subscribe_with(&c, "presence-x", "5|{}").unwrap();
        let refs: Vec<&Member> = before.iter().collect();
        let want = PusherPresenceEncoder.subscription_succeeded(
            "presence-x",
            &refs,
            &Member::new("5", "{}"),
        );
        assert_eq!(c.pop_frame().unwrap().as_str(), want.as_str());
        assert_eq!(data(&want)["presence"]["count"], 4);
    }

    #[test]
    fn member_frames_carry_user_id_and_info() {
        let a = Member::new("7", r#"{"n":1}"#);
        let d = data(&PusherPresenceEncoder.member_added("presence-x", &a));
        assert_eq!(d, serde_json::json!({"user_id":"7","user_info":{"n":1}}));
        let d = data(&PusherPresenceEncoder.member_removed("presence-x", &a));
        assert_eq!(d, serde_json::json!({"user_id":"7"}));
        let f = PusherPresenceEncoder
            .subscribed("x", ChannelType::Public)
            .unwrap();
        assert_eq!(
            f.as_str().unwrap(),
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"x","data":"{}"}"#
        );
    }
}
