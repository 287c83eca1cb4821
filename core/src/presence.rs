//! Presence: members, rosters, the frames that announce them, and the
//! server-side hook (R9–R12).
//!
//! A presence channel's roster lives in the channel's writer state and is
//! changed only under that channel's `state` mutex. The presence frames of a
//! change (the newcomer's roster, `member_added`, `member_removed`) are
//! enqueued while that mutex is held, so every member sees one order of joins
//! and leaves, and a newcomer's roster is in its outbox before the newcomer is
//! visible to any broadcast of the channel (R9). Presence frames are enqueued
//! with `force` semantics: a full outbox disconnects the client whatever the
//! slow-consumer policy, since a dropped presence frame would leave its
//! roster silently wrong (R14).
//!
//! # The roster keeps its members encoded
//!
//! A join sends the newcomer the whole roster, so encoding every member at
//! every join makes a join O(R) in JSON work (escaping, UTF-8 and JSON
//! validation of each member's info: 1.3 ms per join into 10k members,
//! issue 16). Instead the encoder encodes a member once, when it enters
//! the roster ([`PresenceEncoder::encode_member`]), and the roster keeps
//! every member's encoding in join order in one string, joined by commas
//! ([`RosterView::encoded`]); building the roster frame is then one copy
//! of that string ([`PresenceEncoder::roster_frame`]). A leave cuts its
//! member's bytes out of the string (one move of the bytes after it; a
//! leave is O(R) anyway: the roster keeps join order and `member_removed`
//! goes to every member).

use std::fmt::Write as _;

use bytes::Bytes;
use indexmap::IndexMap;

use crate::channel::ChannelType;
use crate::message::{Frame, IntoPayload};

/// One participant's public identity on a presence channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Member {
    /// Stable per user. Empty means "use the client id" (R15).
    pub id: String,
    /// Opaque payload shown to other members, typically JSON.
    pub info: Bytes,
}

impl Member {
    /// A member with this id and info.
    pub fn new(id: impl Into<String>, info: impl IntoPayload) -> Self {
        Self {
            id: id.into(),
            info: info.into_payload(),
        }
    }
}

/// How presence members are counted (R12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PresenceMode {
    /// Every connection is a member: two tabs of one user are two members
    /// (the reference's behaviour). The default.
    #[default]
    PerConnection,
    /// Members are deduplicated by member id with a count, as Pusher does:
    /// `member_added` on a user's first connection, `member_removed` on its
    /// last.
    PerUser,
}

/// A join or leave, as seen by [`crate::Hub::on_presence`] hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceEvent {
    /// The presence channel.
    pub channel: String,
    /// `true` for a join, `false` for a leave.
    pub joined: bool,
    /// The member that joined or left.
    pub member: Member,
    /// The client whose join or leave caused the event.
    pub client_id: String,
}

/// Builds the presence frames a Hub sends. The default,
/// [`JsonPresenceEncoder`], writes the reference's JSON frames (R10); a
/// server plugs in its protocol's frames (Pusher's `pusher_internal:*`).
pub trait PresenceEncoder: Send + Sync + 'static {
    /// The roster sent to a newcomer only. `roster` is the members present
    /// before it, in join order; `newcomer` is its own identity.
    fn subscription_succeeded(&self, channel: &str, roster: &[&Member], newcomer: &Member)
        -> Frame;
    /// Announces a join.
    fn member_added(&self, channel: &str, member: &Member) -> Frame;
    /// Announces a leave.
    fn member_removed(&self, channel: &str, member: &Member) -> Frame;
    /// Whether the newcomer receives its own `member_added` (the reference:
    /// yes; Pusher: no).
    fn newcomer_sees_own_join(&self) -> bool {
        true
    }
    /// A frame to enqueue to a client joining a public or private channel,
    /// before the client can receive any frame of that channel; `None` sends
    /// nothing (the default).
    fn subscribed(&self, channel: &str, channel_type: ChannelType) -> Option<Frame> {
        let _ = (channel, channel_type);
        None
    }
    /// Appends `member`'s encoded form to `out`: called once, when the
    /// member enters a roster; the roster keeps the bytes for
    /// [`PresenceEncoder::roster_frame`]. The default appends nothing
    /// (such an encoder builds rosters from the members alone).
    fn encode_member(&self, member: &Member, out: &mut String) {
        let _ = (member, out);
    }
    /// The roster sent to a newcomer, built from the Hub's roster, which
    /// holds every member's [`PresenceEncoder::encode_member`] bytes. Must
    /// return the frame [`PresenceEncoder::subscription_succeeded`] returns
    /// for the same members; the default calls it.
    fn roster_frame(&self, channel: &str, roster: RosterView<'_>, newcomer: &Member) -> Frame {
        let members: Vec<&Member> = roster.members().collect();
        self.subscription_succeeded(channel, &members, newcomer)
    }
}

/// The reference's presence frames (R10):
///
/// ```text
/// {"event":"presence:subscription_succeeded","channel":"presence-x","members":[{"id":"u1","info":{...}}]}
/// {"event":"presence:member_added","channel":"presence-x","member":{"id":"u2","info":{...}}}
/// {"event":"presence:member_removed","channel":"presence-x","member":{"id":"u2"}}
/// ```
///
/// `info` that is valid JSON is embedded byte for byte; anything else is a
/// JSON string (bytes that are not UTF-8 are replaced by U+FFFD); empty info
/// omits the key.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonPresenceEncoder;

impl JsonPresenceEncoder {
    fn head(event: &str, channel: &str) -> String {
        let mut out = String::with_capacity(64 + channel.len());
        out.push_str("{\"event\":");
        push_json_str(&mut out, event);
        out.push_str(",\"channel\":");
        push_json_str(&mut out, channel);
        out
    }
}

impl PresenceEncoder for JsonPresenceEncoder {
    fn subscription_succeeded(&self, channel: &str, roster: &[&Member], _: &Member) -> Frame {
        let mut out = Self::head("presence:subscription_succeeded", channel);
        out.push_str(",\"members\":[");
        for (i, m) in roster.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_member(&mut out, m);
        }
        out.push_str("]}");
        Frame::from_string(out)
    }

    /// `{"id":...,"info":...}`, as in the roster.
    fn encode_member(&self, member: &Member, out: &mut String) {
        push_member(out, member);
    }

    /// The cached members copied between a head and a tail: no member is
    /// encoded again.
    fn roster_frame(&self, channel: &str, roster: RosterView<'_>, _: &Member) -> Frame {
        let members = roster.encoded();
        let mut out = String::with_capacity(96 + channel.len() + members.len());
        out.push_str(&Self::head("presence:subscription_succeeded", channel));
        out.push_str(",\"members\":[");
        out.push_str(members);
        out.push_str("]}");
        Frame::from_string(out)
    }

    fn member_added(&self, channel: &str, member: &Member) -> Frame {
        let mut out = Self::head("presence:member_added", channel);
        out.push_str(",\"member\":");
        push_member(&mut out, member);
        out.push('}');
        Frame::from_string(out)
    }

    fn member_removed(&self, channel: &str, member: &Member) -> Frame {
        let mut out = Self::head("presence:member_removed", channel);
        out.push_str(",\"member\":");
        push_member(&mut out, member);
        out.push('}');
        Frame::from_string(out)
    }
}

/// Appends `s` as a JSON string literal (quotes included). Public so that
/// protocol layers building frames by hand share one escaper.
pub fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `{"id":...,"info":...}` following R10's rules for `info`.
fn push_member(out: &mut String, m: &Member) {
    out.push_str("{\"id\":");
    push_json_str(out, &m.id);
    push_info(out, ",\"info\":", &m.info);
    out.push('}');
}

/// Appends `key` and `info` unless `info` is empty: verbatim when it is valid
/// JSON, as a JSON string otherwise.
pub fn push_info(out: &mut String, key: &str, info: &[u8]) {
    if info.is_empty() {
        return;
    }
    out.push_str(key);
    match std::str::from_utf8(info) {
        Ok(text) if is_json(info) => out.push_str(text),
        _ => push_json_str(out, &String::from_utf8_lossy(info)),
    }
}

/// Whether `bytes` is one valid JSON value (surrounding whitespace allowed).
pub fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// Identity of a roster entry: a connection, or a user in per-user mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RosterKey {
    Conn(u64),
    User(String),
}

/// A presence channel's members in join order, each with a connection count
/// and the length of its encoding in `encoded` (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct Roster {
    entries: IndexMap<RosterKey, Entry>,
    /// Every member's `encode_member` bytes in join order, each followed by
    /// a comma (members whose encoding is empty add nothing).
    encoded: String,
}

#[derive(Debug)]
struct Entry {
    member: Member,
    conns: usize,
    /// Bytes of `Roster::encoded` that are this member's: its encoding and
    /// the comma after it, or 0 for an empty encoding.
    span: usize,
}

impl Roster {
    /// Adds one connection of `key`; true if `key` is new to the roster,
    /// in which case `encoder` encodes the member, once.
    pub(crate) fn join(
        &mut self,
        key: RosterKey,
        member: &Member,
        encoder: &dyn PresenceEncoder,
    ) -> bool {
        match self.entries.get_mut(&key) {
            Some(entry) => {
                entry.conns += 1;
                false
            }
            None => {
                let start = self.encoded.len();
                encoder.encode_member(member, &mut self.encoded);
                if self.encoded.len() > start {
                    self.encoded.push(',');
                }
                let entry = Entry {
                    member: member.clone(),
                    conns: 1,
                    span: self.encoded.len() - start,
                };
                self.entries.insert(key, entry);
                true
            }
        }
    }

    /// Removes one connection of `key`; the member if that was its last.
    pub(crate) fn leave(&mut self, key: &RosterKey) -> Option<Member> {
        let (index, _, entry) = self.entries.get_full_mut(key)?;
        entry.conns -= 1;
        if entry.conns > 0 {
            return None;
        }
        let span = entry.span;
        if span > 0 {
            let start: usize = self.entries.values().take(index).map(|e| e.span).sum();
            self.encoded.replace_range(start..start + span, "");
        }
        // Keeps join order for the members that stay (O(n), like the fan-out
        // of the leave frame that follows).
        self.entries
            .shift_remove_index(index)
            .map(|(_, e)| e.member)
    }

    pub(crate) fn members(&self) -> impl Iterator<Item = &Member> {
        self.entries.values().map(|e| &e.member)
    }

    pub(crate) fn view(&self) -> RosterView<'_> {
        RosterView { roster: self }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn contains(&self, key: &RosterKey) -> bool {
        self.entries.contains_key(key)
    }
}

/// A presence channel's roster as [`PresenceEncoder::roster_frame`] sees
/// it: the members present before the newcomer, in join order, and their
/// cached encodings.
#[derive(Debug, Clone, Copy)]
pub struct RosterView<'a> {
    roster: &'a Roster,
}

impl<'a> RosterView<'a> {
    /// The members, in join order.
    pub fn members(self) -> impl Iterator<Item = &'a Member> {
        self.roster.members()
    }

    /// Each member with its [`PresenceEncoder::encode_member`] bytes, in
    /// join order.
    pub fn entries(self) -> impl Iterator<Item = (&'a Member, &'a str)> + Clone {
        let mut at = 0;
        let encoded = self.roster.encoded.as_str();
        self.roster.entries.values().map(move |e| {
            let own = encoded.get(at..at + e.span.saturating_sub(1)).unwrap_or("");
            at += e.span;
            (&e.member, own)
        })
    }

    /// Every member's [`PresenceEncoder::encode_member`] bytes in join
    /// order, joined by commas (a JSON array's or object's body when each
    /// encoding is an element or a `"key":value` pair).
    pub fn encoded(self) -> &'a str {
        let s = self.roster.encoded.as_str();
        s.strip_suffix(',').unwrap_or(s)
    }

    /// Number of members.
    pub fn len(self) -> usize {
        self.roster.len()
    }

    /// Whether the roster is empty.
    pub fn is_empty(self) -> bool {
        self.roster.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(f: &Frame) -> serde_json::Value {
        serde_json::from_slice(f.payload()).unwrap()
    }

    #[test]
    fn valid_json_info_is_embedded_byte_for_byte() {
        let m = Member::new("u1", r#"{"name":  "Ada"}"#);
        let f = JsonPresenceEncoder.member_added("presence-x", &m);
        let text = f.as_str().unwrap();
        assert!(text.contains(r#""info":{"name":  "Ada"}"#), "{text}");
        assert_eq!(parse(&f)["member"]["info"]["name"], "Ada");
    }

    #[test]
    fn non_json_info_becomes_a_string_and_empty_info_is_omitted() {
        let f = JsonPresenceEncoder.member_added("presence-x", &Member::new("u\"1", "not json"));
        let v = parse(&f);
        assert_eq!(v["member"]["info"], "not json");
        assert_eq!(v["member"]["id"], "u\"1");
        let f = JsonPresenceEncoder.member_removed("presence-x", &Member::new("u1", ""));
        let v = parse(&f);
        assert!(v["member"].get("info").is_none());
        assert_eq!(v["event"], "presence:member_removed");
    }

    #[test]
    fn empty_roster_is_an_empty_array() {
        let f = JsonPresenceEncoder.subscription_succeeded("presence-x", &[], &Member::default());
        assert_eq!(
            f.as_str().unwrap(),
            r#"{"event":"presence:subscription_succeeded","channel":"presence-x","members":[]}"#
        );
    }

    #[test]
    fn roster_counts_connections_per_key_and_keeps_join_order() {
        let mut r = Roster::default();
        let a = Member::new("a", "");
        let b = Member::new("b", "");
        let enc = JsonPresenceEncoder;
        assert!(r.join(RosterKey::User("a".into()), &a, &enc));
        assert!(r.join(RosterKey::User("b".into()), &b, &enc));
        assert!(!r.join(RosterKey::User("a".into()), &a, &enc));
        assert_eq!(r.leave(&RosterKey::User("a".into())), None);
        let ids: Vec<_> = r.members().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(r.leave(&RosterKey::User("a".into())), Some(a));
        assert_eq!(r.len(), 1);
        assert_eq!(r.leave(&RosterKey::User("zz".into())), None);
    }

    /// The cached roster frame must be byte for byte the frame encoded
    /// from the members, after joins and leaves anywhere in join order.
    #[test]
    fn roster_frame_from_cached_encodings_equals_the_encoded_members() {
        let enc = JsonPresenceEncoder;
        let mut r = Roster::default();
        let members: Vec<Member> = (0..6)
            .map(|i| match i % 3 {
                0 => Member::new(format!("u{i}"), r#"{"n":"é\"x"}"#),
                1 => Member::new(format!("u\"{i}"), "not json"),
                _ => Member::new(format!("u{i}"), ""),
            })
            .collect();
        let newcomer = Member::new("new", "");
        let check = |r: &Roster| {
            let listed: Vec<&Member> = r.members().collect();
            let want = enc.subscription_succeeded("presence-x", &listed, &newcomer);
            let got = enc.roster_frame("presence-x", r.view(), &newcomer);
            assert_eq!(got.as_str(), want.as_str());
            for (m, own) in r.view().entries() {
                let mut one = String::new();
                enc.encode_member(m, &mut one);
                assert_eq!(own, one);
            }
        };
        check(&r);
        for (i, m) in members.iter().enumerate() {
            assert!(r.join(RosterKey::Conn(i as u64), m, &enc));
            check(&r);
        }
        // Leave from the middle, the front and the back.
        for i in [3, 0, 5, 1] {
            assert_eq!(
                r.leave(&RosterKey::Conn(i)),
                Some(members[i as usize].clone())
            );
            check(&r);
        }
        assert!(r.join(RosterKey::Conn(9), &members[0], &enc));
        check(&r);
        for i in [2, 4, 9] {
            assert!(r.leave(&RosterKey::Conn(i)).is_some());
            check(&r);
        }
        assert_eq!((r.len(), r.view().encoded()), (0, ""));
    }

    /// An encoder that caches nothing still gets its own frame through the
    /// default `roster_frame`.
    #[test]
    fn an_encoder_without_a_cache_builds_the_roster_from_members() {
        struct Ids;
        impl PresenceEncoder for Ids {
            fn subscription_succeeded(&self, _: &str, roster: &[&Member], _: &Member) -> Frame {
                let ids: Vec<&str> = roster.iter().map(|m| m.id.as_str()).collect();
                Frame::from_string(ids.join(","))
            }
            fn member_added(&self, _: &str, m: &Member) -> Frame {
                Frame::from_string(m.id.clone())
            }
            fn member_removed(&self, _: &str, m: &Member) -> Frame {
                Frame::from_string(m.id.clone())
            }
        }
        let mut r = Roster::default();
        for id in ["a", "b", "c"] {
            r.join(RosterKey::User(id.into()), &Member::new(id, "{}"), &Ids);
        }
        r.leave(&RosterKey::User("b".into()));
        let f = Ids.roster_frame("p", r.view(), &Member::default());
        assert_eq!(f.as_str(), Some("a,c"));
        assert_eq!(r.view().encoded(), "");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut s = String::new();
        push_json_str(&mut s, "a\u{1}\n");
        assert_eq!(s, "\"a\\u0001\\n\"");
        let v: String = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\u{1}\n");
    }
}
