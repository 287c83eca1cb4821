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

use realtime::{ChannelType, Frame, Member, PresenceEncoder};

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

impl PresenceEncoder for PusherPresenceEncoder {
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
