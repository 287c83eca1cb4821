//! Hooks for the fuzz targets in `fuzz/` (issue #7). Not part of the API.
//!
//! Each hook takes arbitrary bytes, never trusts them, and panics only when
//! the Hub breaks a property; the fuzz targets are one-line calls into these
//! functions, and `core/tests/fuzz_replay.rs` replays the committed seeds and
//! regression inputs through them on stable Rust.
//!
//! - [`hub_ops`]: decodes a sequence of Hub operations (add, subscribe,
//!   unsubscribe, broadcast, send, client close, Hub close, ...) over a few
//!   clients and channels, runs them on one thread against a Hub whose
//!   clients are attached with a test [`Transport`] and drained by hand, and
//!   checks after every step against a plain reference model: return
//!   values, counts, rosters, subscriptions, drop counters, close reasons,
//!   wake-ups, presence hooks, authorizer calls, the channel table, and every
//!   frame each client received.
//! - [`presence_info`]: any bytes as a member's id and info; the encoded
//!   presence frames are valid JSON and valid-JSON info is embedded byte for
//!   byte (R10), judged by a small RFC 8259 grammar checker written here.
//! - [`channel_name`]: classification never panics and agrees with a plain
//!   prefix reference, directly and through a Hub (R5).
//!
//! # The `hub_ops` input format
//!
//! Byte 0 configures the Hub: bit 0 per-user presence, bit 1
//! `DisconnectClient`, bits 2–3 outbox capacity − 1 (1 to 4 frames), bit 4
//! no authorizer. Then operations, one opcode byte (`% 16`) and its argument
//! bytes each; decoding stops at the end of the input or after
//! [`MAX_OPS`] operations. Clients and channels are chosen by index modulo
//! the clients added so far and the channel list [`CHANNELS`].
//!
//! | opcode | operation | argument bytes |
//! |---|---|---|
//! | 0, 1 | add a client | auth: bits 0–1 user (3: empty id), bits 2–4 info, bit 5 deny private, bit 6 deny presence |
//! | 2, 3, 4, 14 | subscribe | client, channel |
//! | 5, 6 | unsubscribe | client, channel |
//! | 7, 8, 15 | broadcast | channel, flags (bits 0–2 kind, bits 3–4 count − 1), client (excepted) |
//! | 9 | send to one client | target number, flags (bits 0–1 kind, bit 2 by handle) |
//! | 10 | close a client | client, flags (bit 0: `close_with`) |
//! | 11 | hold: skip the drains of the next `1 + count % 4` steps | count |
//! | 12 | toggle "authorizer denies everything" | — |
//! | 13 | close the Hub | — |
//!
//! # How the model treats order
//!
//! Frames of one Hub call reach a client in the order the call sends them;
//! but a disconnect during a call (an overflow) triggers a clean-up whose
//! leave frames follow the order of the Hub's internal tables (a `HashMap`
//! of subscriptions, a LIFO work list), which no specification fixes. The
//! model therefore tags each expected frame with a group: frames of one group
//! may arrive in any order, groups arrive in order. Presence frames are
//! also checked from the client's side: every client keeps the roster that
//! its received frames imply (roster, then adds and removes in arrival
//! order; a remove of a member it never saw fails), and after every drain
//! that roster must equal the Hub's as a multiset (in per-connection mode
//! two connections of one user are indistinguishable on the wire) (R9).
//!
//! Which clients a clean-up cascade disconnects does not depend on that
//! order (a client overflows iff it is sent more frames than it has room
//! for, and a disconnected client receives nothing more), so the model
//! computes it in its own order.
//!
//! # Bugs found
//!
//! - *Empty channel left in the table* (fixed in af6a222): a presence join
//!   whose roster frame did not fit the newcomer's outbox failed with
//!   `Closed` after creating the channel, leaving it live and empty in the
//!   Hub's table forever. Regression input:
//!   `fuzz/regressions/hub_ops/empty_channel_left_in_table`.
//!
//! Not compiled under `cfg(loom)`: the hooks drive a real Hub on one thread,
//! outside any loom model.
#![cfg(not(loom))]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use bytes::Bytes;

use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::sync::{lock, Arc, Mutex};
use crate::{
    classify_channel, is_json, AuthRequest, AuthResult, ChannelType, Client, Error, Frame, Hub,
    JsonPresenceEncoder, Member, MessageType, PresenceEncoder, PresenceEvent, PresenceMode,
    SlowConsumerPolicy, Transport,
};

/// The channels `hub_ops` uses: public, a bare `presence` (public too),
/// private and two presence channels.
pub const CHANNELS: [&str; 6] = [
    "a",
    "b",
    "presence",
    "private-a",
    "presence-a",
    "presence-b",
];

/// Member infos an authorizer hands out: empty, JSON (with odd spacing),
/// not JSON, control characters, not UTF-8.
const INFOS: [&[u8]; 8] = [
    b"",
    br#"{"name":"Ada"}"#,
    b"not json",
    b" [1, {\"x\":null}] ",
    b"\"s\"",
    b"\x01\"\\",
    b"\xff\x00",
    b"42",
];

/// Clients `hub_ops` adds at most.
pub const MAX_CLIENTS: usize = 8;

/// Operations `hub_ops` decodes at most.
pub const MAX_OPS: usize = 96;

/// Runs a `hub_ops` input (format in the module doc) against the model;
/// panics with the decoded steps when the Hub and the model disagree.
pub fn hub_ops(data: &[u8]) {
    run_hub_ops(data);
}

// ---------------------------------------------------------------------------
// hub_ops: the test transport and the recorders
// ---------------------------------------------------------------------------

/// A transport that records its calls; the hook drains by hand.
#[derive(Default)]
struct Probe {
    wakes: AtomicUsize,
    closes: AtomicUsize,
}

impl Transport for Probe {
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
    fn closed(&self) {
        self.closes.fetch_add(1, Ordering::SeqCst);
    }
}

/// What the Hub's hooks and authorizer saw, shared with their closures.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<PresenceEvent>>,
    auth_calls: Mutex<Vec<(String, ChannelType, String)>>,
    deny_all: AtomicBool,
}

/// The parts of a client's auth byte.
fn decode_auth(auth: u8) -> (String, &'static [u8], bool, bool) {
    let user = auth & 3;
    let id = if user == 3 {
        String::new()
    } else {
        format!("u{user}")
    };
    let info = INFOS[usize::from((auth >> 2) & 7)];
    (id, info, auth & 0x20 != 0, auth & 0x40 != 0)
}

fn authorize(rec: &Recorder, r: &AuthRequest) -> AuthResult {
    lock(&rec.auth_calls).push((r.channel.clone(), r.channel_type, r.client_id.clone()));
    if rec.deny_all.load(Ordering::SeqCst) {
        return AuthResult::deny();
    }
    let auth = r.auth.first().copied().unwrap_or(0);
    let (id, info, deny_private, deny_presence) = decode_auth(auth);
    match r.channel_type {
        ChannelType::Private if deny_private => AuthResult::deny(),
        ChannelType::Presence if deny_presence => AuthResult::deny(),
        _ => AuthResult::allow(Member::new(id, info)),
    }
}

// ---------------------------------------------------------------------------
// hub_ops: the reference model
// ---------------------------------------------------------------------------

/// The outcome of a Hub call, as the model predicts it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    Ok,
    Closed,
    Unauthorized,
    NotFound(String),
    InvalidUtf8,
}

fn outcome(r: &crate::Result<()>) -> Want {
    match r {
        Ok(()) => Want::Ok,
        Err(Error::Closed) => Want::Closed,
        Err(Error::Unauthorized) => Want::Unauthorized,
        Err(Error::ClientNotFound(id)) => Want::NotFound(id.clone()),
        Err(Error::InvalidUtf8) => Want::InvalidUtf8,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MKey {
    Conn(u64),
    User(String),
}

/// The model's enqueue outcome (mirrors the Hub's `Enqueued`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Put {
    Queued,
    Dropped,
    Shut,
    Closed,
}

struct MClient {
    handle: Client,
    probe: Arc<Probe>,
    number: u64,
    auth: u8,
    closed: bool,
    reason: Option<(u16, String)>,
    drops: u64,
    /// Frames in the outbox, each with its order group.
    queue: Vec<(Frame, u64)>,
    scheduled: bool,
    wakes: usize,
    subs: BTreeMap<&'static str, Option<(MKey, Member)>>,
    /// The rosters this client's received presence frames imply, as
    /// normalized JSON members.
    view: BTreeMap<&'static str, Vec<String>>,
}

#[derive(Default)]
struct MChannel {
    members: BTreeSet<usize>,
    /// Presence channels: key, member, connections, in join order.
    roster: Vec<(MKey, Member, usize)>,
}

/// A presence event as compared: (channel, joined, id, info, client id or
/// "" in per-user mode, where the client that triggers a leave depends on
/// clean-up order).
type Ev = (String, bool, String, Vec<u8>, String);

struct Model {
    clients: Vec<MClient>,
    channels: BTreeMap<&'static str, MChannel>,
    closed: bool,
    next_id: u64,
    mode: PresenceMode,
    policy: SlowConsumerPolicy,
    cap: usize,
    has_authorizer: bool,
    deny_all: bool,
    group: u64,
    payloads: u64,
    events: Vec<Ev>,
    auth_calls: Vec<(String, ChannelType, String)>,
}

fn reference_class(name: &[u8]) -> ChannelType {
    if name.starts_with(b"private-") {
        ChannelType::Private
    } else if name.starts_with(b"presence-") {
        ChannelType::Presence
    } else {
        ChannelType::Public
    }
}

impl Model {
    fn fresh(&mut self) -> u64 {
        self.group += 1;
        self.group
    }

    fn ev(&self, ch: &str, joined: bool, m: &Member, c: usize) -> Ev {
        let client = match self.mode {
            PresenceMode::PerConnection => self.clients[c].handle.id().to_owned(),
            PresenceMode::PerUser => String::new(),
        };
        (ch.to_owned(), joined, m.id.clone(), m.info.to_vec(), client)
    }

    fn enqueue(&mut self, c: usize, frame: Frame, force: bool, group: u64) -> Put {
        let cap = self.cap;
        let policy = self.policy;
        let cl = &mut self.clients[c];
        if cl.closed {
            return Put::Closed;
        }
        if cl.queue.len() < cap {
            cl.queue.push((frame, group));
            if !cl.scheduled {
                cl.scheduled = true;
                cl.wakes += 1;
            }
            return Put::Queued;
        }
        if !force && policy == SlowConsumerPolicy::DropMessage {
            cl.drops += 1;
            return Put::Dropped;
        }
        if cl.reason.is_none() {
            cl.reason = Some((crate::CLOSE_SLOW_CONSUMER, "slow consumer".to_owned()));
        }
        cl.closed = true;
        cl.queue.clear();
        Put::Shut
    }

    /// Enqueues and collects a client this shuts.
    fn put(&mut self, c: usize, frame: Frame, force: bool, group: u64, shut: &mut Vec<usize>) {
        if self.enqueue(c, frame, force, group) == Put::Shut {
            shut.push(c);
        }
    }

    /// Phase 2 of close for a work list: leave every channel.
    fn cleanup(&mut self, mut work: Vec<usize>, group: u64) {
        while let Some(x) = work.pop() {
            let subs = std::mem::take(&mut self.clients[x].subs);
            for (ch, presence) in subs {
                self.leave(x, ch, presence, group, &mut work);
            }
        }
    }

    fn leave(
        &mut self,
        x: usize,
        ch: &'static str,
        presence: Option<(MKey, Member)>,
        group: u64,
        shut: &mut Vec<usize>,
    ) {
        let Some(mc) = self.channels.get_mut(ch) else {
            panic!("model: client {x} subscribed to missing channel {ch}");
        };
        mc.members.remove(&x);
        if let Some((key, _)) = presence {
            let Some(pos) = mc.roster.iter().position(|(k, _, _)| *k == key) else {
                panic!("model: roster of {ch} lacks {key:?}");
            };
            mc.roster[pos].2 -= 1;
            if mc.roster[pos].2 == 0 {
                let (_, member, _) = mc.roster.remove(pos);
                if !self.closed {
                    let frame = JsonPresenceEncoder.member_removed(ch, &member);
                    let members: Vec<usize> = mc.members.iter().copied().collect();
                    for m in members {
                        self.put(m, frame.clone(), true, group, shut);
                    }
                }
                let ev = self.ev(ch, false, &member, x);
                self.events.push(ev);
            }
        }
        if self
            .channels
            .get(ch)
            .is_some_and(|mc| mc.members.is_empty())
        {
            self.channels.remove(ch);
        }
    }

    fn add(&mut self, handle: Client, probe: Arc<Probe>, auth: u8) {
        let number = self.next_id;
        self.next_id += 1;
        assert_eq!(
            handle.id(),
            format!("client-{number}"),
            "client ids count from 1"
        );
        self.clients.push(MClient {
            handle,
            probe,
            number,
            auth,
            closed: false,
            reason: None,
            drops: 0,
            queue: Vec::new(),
            scheduled: false,
            wakes: 0,
            subs: BTreeMap::new(),
            view: BTreeMap::new(),
        });
    }

    fn subscribe(&mut self, c: usize, ch: &'static str) -> Want {
        if self.closed || self.clients[c].closed {
            return Want::Closed;
        }
        if self.clients[c].subs.contains_key(ch) {
            return Want::Ok;
        }
        let kind = reference_class(ch.as_bytes());
        let id = self.clients[c].handle.id().to_owned();
        let member = match kind {
            ChannelType::Public => None,
            ChannelType::Private | ChannelType::Presence => {
                if !self.has_authorizer {
                    return Want::Unauthorized;
                }
                self.auth_calls.push((ch.to_owned(), kind, id.clone()));
                let (user, info, deny_private, deny_presence) = decode_auth(self.clients[c].auth);
                let denied = self.deny_all
                    || (kind == ChannelType::Private && deny_private)
                    || (kind == ChannelType::Presence && deny_presence);
                if denied {
                    return Want::Unauthorized;
                }
                let mut m = Member::new(user, info);
                if m.id.is_empty() {
                    m.id = id;
                }
                Some(m)
            }
        };
        let mut shut = Vec::new();
        let result = match (kind, member) {
            (ChannelType::Presence, Some(member)) => {
                let roster_frame = {
                    let roster: Vec<&Member> = self
                        .channels
                        .get(ch)
                        .map(|mc| mc.roster.iter().map(|(_, m, _)| m).collect())
                        .unwrap_or_default();
                    JsonPresenceEncoder.subscription_succeeded(ch, &roster, &member)
                };
                let g = self.fresh();
                if self.enqueue(c, roster_frame, true, g) != Put::Queued {
                    shut.push(c);
                    let g = self.fresh();
                    self.cleanup(shut, g);
                    return Want::Closed;
                }
                let key = match self.mode {
                    PresenceMode::PerConnection => MKey::Conn(self.clients[c].number),
                    PresenceMode::PerUser => MKey::User(member.id.clone()),
                };
                let mc = self.channels.entry(ch).or_default();
                mc.members.insert(c);
                let is_new = match mc.roster.iter_mut().find(|(k, _, _)| *k == key) {
                    Some(entry) => {
                        entry.2 += 1;
                        false
                    }
                    None => {
                        mc.roster.push((key.clone(), member.clone(), 1));
                        true
                    }
                };
                if is_new {
                    let frame = JsonPresenceEncoder.member_added(ch, &member);
                    let members: Vec<usize> = mc.members.iter().copied().collect();
                    let g = self.fresh();
                    for m in members {
                        self.put(m, frame.clone(), true, g, &mut shut);
                    }
                    let ev = self.ev(ch, true, &member, c);
                    self.events.push(ev);
                }
                self.clients[c].subs.insert(ch, Some((key, member)));
                Want::Ok
            }
            _ => {
                self.channels.entry(ch).or_default().members.insert(c);
                self.clients[c].subs.insert(ch, None);
                Want::Ok
            }
        };
        let g = self.fresh();
        self.cleanup(shut, g);
        result
    }

    fn unsubscribe(&mut self, c: usize, ch: &'static str) -> Want {
        if self.closed {
            return Want::Closed;
        }
        let mut shut = Vec::new();
        if let Some(presence) = self.clients[c].subs.remove(ch) {
            let g = self.fresh();
            self.leave(c, ch, presence, g, &mut shut);
        }
        let g = self.fresh();
        self.cleanup(shut, g);
        Want::Ok
    }

    /// One broadcast call: `kind` 0 text, 1 binary, 2 text that is not
    /// UTF-8; `except` excludes one client.
    fn broadcast(
        &mut self,
        ch: &'static str,
        frame: &Frame,
        bad: bool,
        except: Option<usize>,
    ) -> Want {
        if self.closed {
            return Want::Closed;
        }
        if bad {
            return Want::InvalidUtf8;
        }
        let Some(mc) = self.channels.get(ch) else {
            return Want::Ok;
        };
        let members: Vec<usize> = mc
            .members
            .iter()
            .copied()
            .filter(|m| Some(*m) != except)
            .collect();
        let g = self.fresh();
        let mut shut = Vec::new();
        for m in members {
            self.put(m, frame.clone(), false, g, &mut shut);
        }
        let g = self.fresh();
        self.cleanup(shut, g);
        Want::Ok
    }

    fn close_client(&mut self, c: usize, reason: Option<(u16, String)>) {
        let cl = &mut self.clients[c];
        if cl.reason.is_none() {
            cl.reason = reason;
        }
        cl.closed = true;
        cl.queue.clear();
        let g = self.fresh();
        self.cleanup(vec![c], g);
    }

    fn close_hub(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let mut live = Vec::new();
        for (i, cl) in self.clients.iter_mut().enumerate() {
            if !cl.closed {
                if cl.reason.is_none() {
                    cl.reason = Some((crate::CLOSE_GOING_AWAY, "hub closed".to_owned()));
                }
                cl.closed = true;
                cl.queue.clear();
                live.push(i);
            }
        }
        let g = self.fresh();
        self.cleanup(live, g);
    }

    fn next_payload(&mut self) -> u64 {
        self.payloads += 1;
        self.payloads
    }
}

// ---------------------------------------------------------------------------
// hub_ops: the run
// ---------------------------------------------------------------------------

struct Bytes8<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes8<'_> {
    fn next(&mut self) -> Option<u8> {
        let b = *self.data.get(self.at)?;
        self.at += 1;
        Some(b)
    }
}

fn text_payload(n: u64) -> String {
    format!("m{n}")
}

/// Binary payloads are not UTF-8, so they never equal a text payload.
fn binary_payload(n: u64) -> Vec<u8> {
    let mut v = vec![0xfe];
    v.extend_from_slice(&n.to_le_bytes());
    v
}

fn bad_text(n: u64) -> Vec<u8> {
    let mut v = vec![0xff];
    v.extend_from_slice(&n.to_le_bytes());
    v
}

struct Run<'a> {
    hub: Hub,
    rec: Arc<Recorder>,
    model: Model,
    log: Vec<String>,
    input: &'a [u8],
    /// Steps whose drain is still to be skipped.
    hold: usize,
}

impl Run<'_> {
    fn fail(&self, what: &str) -> ! {
        let mut msg = String::new();
        let _ = writeln!(msg, "hub_ops: {what}");
        let _ = writeln!(
            msg,
            "config: mode {:?}, policy {:?}, outbox {}, authorizer {}",
            self.model.mode, self.model.policy, self.model.cap, self.model.has_authorizer
        );
        for (i, line) in self.log.iter().enumerate() {
            let _ = writeln!(msg, "  step {i}: {line}");
        }
        let _ = writeln!(msg, "input: {:02x?}", self.input);
        panic!("{msg}");
    }

    fn expect(&self, what: &str, got: &crate::Result<()>, want: &Want) {
        let got = outcome(got);
        if &got != want {
            self.fail(&format!("{what}: Hub returned {got:?}, model {want:?}"));
        }
    }

    fn client(&self, b: u8) -> Option<usize> {
        let n = self.model.clients.len();
        (n > 0).then(|| usize::from(b) % n)
    }

    /// Decodes and runs one operation; `None` at the end of the input.
    fn step(&mut self, r: &mut Bytes8<'_>) -> Option<()> {
        let op = r.next()? % 16;
        match op {
            0 | 1 => {
                let auth = r.next()?;
                if self.model.clients.len() >= MAX_CLIENTS {
                    self.log.push("add (skipped: enough clients)".into());
                    return Some(());
                }
                let probe = Arc::new(Probe::default());
                let got = self.hub.attach(probe.clone(), vec![auth]);
                self.log.push(format!("add auth {auth:#04x}"));
                match got {
                    Ok(client) => {
                        if self.model.closed {
                            self.fail("add succeeded after Hub close");
                        }
                        self.model.add(client, probe, auth);
                    }
                    Err(e) => {
                        if !(self.model.closed && e == Error::Closed) {
                            self.fail(&format!("add failed: {e:?}"));
                        }
                    }
                }
            }
            2 | 3 | 4 | 14 => {
                let (c, ch) = (r.next()?, r.next()?);
                let ch = CHANNELS[usize::from(ch) % CHANNELS.len()];
                let Some(c) = self.client(c) else {
                    return Some(());
                };
                self.log.push(format!("subscribe c{c} {ch}"));
                let got = self.hub.subscribe(&self.model.clients[c].handle, ch);
                let want = self.model.subscribe(c, ch);
                self.expect("subscribe", &got, &want);
            }
            5 | 6 => {
                let (c, ch) = (r.next()?, r.next()?);
                let ch = CHANNELS[usize::from(ch) % CHANNELS.len()];
                let Some(c) = self.client(c) else {
                    return Some(());
                };
                self.log.push(format!("unsubscribe c{c} {ch}"));
                let got = self.hub.unsubscribe(&self.model.clients[c].handle, ch);
                let want = self.model.unsubscribe(c, ch);
                self.expect("unsubscribe", &got, &want);
            }
            7 | 8 | 15 => {
                let (ch, flags, ex) = (r.next()?, r.next()?, r.next()?);
                let ch = CHANNELS[usize::from(ch) % CHANNELS.len()];
                let kind = flags & 7;
                let count = 1 + usize::from((flags >> 3) & 3);
                let except = if kind >= 4 { self.client(ex) } else { None };
                self.log.push(format!(
                    "broadcast {ch} kind {kind} x{count} except {except:?}"
                ));
                for _ in 0..count {
                    let n = self.model.next_payload();
                    let ex = except.map(|c| self.model.clients[c].handle.clone());
                    let (got, frame, bad) = match (kind, &ex) {
                        (0 | 4, None) => {
                            let p = text_payload(n);
                            (
                                self.hub.broadcast(ch, p.as_str()),
                                Frame::from_string(p),
                                false,
                            )
                        }
                        (0 | 4, Some(e)) => {
                            let p = text_payload(n);
                            let got = self.hub.broadcast_except(ch, p.as_str(), e);
                            (got, Frame::from_string(p), false)
                        }
                        (1 | 5, None) => {
                            let p = binary_payload(n);
                            (self.hub.broadcast_binary(ch, &p), Frame::binary(p), false)
                        }
                        (1 | 5, Some(e)) => {
                            let p = binary_payload(n);
                            let got = self.hub.broadcast_binary_except(ch, &p, e);
                            (got, Frame::binary(p), false)
                        }
                        (2, _) => {
                            let p = bad_text(n);
                            (self.hub.broadcast(ch, &p), Frame::binary(p), true)
                        }
                        (3, _) => {
                            // A prepared frame, shared by every recipient.
                            let f = Frame::from_string(text_payload(n));
                            (
                                self.hub.broadcast_frame(ch, f.clone(), ex.as_ref()),
                                f,
                                false,
                            )
                        }
                        _ => {
                            let p = text_payload(n);
                            let got = match &ex {
                                Some(e) => self.hub.broadcast_except(ch, p.as_str(), e),
                                None => self.hub.broadcast(ch, p.as_str()),
                            };
                            (got, Frame::from_string(p), false)
                        }
                    };
                    let want = self.model.broadcast(ch, &frame, bad, except);
                    self.expect("broadcast", &got, &want);
                }
            }
            9 => {
                let (t, flags) = (r.next()?, r.next()?);
                let number = u64::from(t) % (MAX_CLIENTS as u64 + 2);
                let id = format!("client-{number}");
                let kind = flags & 3;
                let by_handle = flags & 4 != 0;
                let n = self.model.next_payload();
                let target = self.model.clients.iter().position(|c| c.number == number);
                self.log.push(format!(
                    "send {id} kind {kind} {}",
                    if by_handle { "by handle" } else { "by id" }
                ));
                let (frame, bad) = match kind {
                    1 => (Frame::binary(binary_payload(n)), false),
                    2 => (Frame::binary(bad_text(n)), true),
                    _ => (Frame::from_string(text_payload(n)), false),
                };
                if by_handle {
                    let Some(c) = target else { return Some(()) };
                    let handle = self.model.clients[c].handle.clone();
                    let got = match kind {
                        1 => handle.send_binary(frame.payload()),
                        _ => handle.send_text(frame.payload()),
                    };
                    let want = if bad {
                        Want::InvalidUtf8
                    } else {
                        let g = self.model.fresh();
                        match self.model.enqueue(c, frame, false, g) {
                            Put::Queued | Put::Dropped => Want::Ok,
                            Put::Shut => {
                                let g = self.model.fresh();
                                self.model.cleanup(vec![c], g);
                                Want::Closed
                            }
                            Put::Closed => Want::Closed,
                        }
                    };
                    self.expect("send by handle", &got, &want);
                } else {
                    let got = match kind {
                        1 => self.hub.send_binary_to(&id, frame.payload()),
                        _ => self.hub.send_to(&id, frame.payload()),
                    };
                    let live = target.filter(|&c| !self.model.clients[c].closed);
                    let want = if self.model.closed {
                        Want::Closed
                    } else if bad {
                        Want::InvalidUtf8
                    } else if let Some(c) = live {
                        let g = self.model.fresh();
                        match self.model.enqueue(c, frame, false, g) {
                            Put::Queued | Put::Dropped => Want::Ok,
                            // Disconnected by this very send: the Hub reports
                            // the client as gone (`send_frame_to`).
                            Put::Shut | Put::Closed => {
                                let g = self.model.fresh();
                                self.model.cleanup(vec![c], g);
                                Want::NotFound(id.clone())
                            }
                        }
                    } else {
                        Want::NotFound(id.clone())
                    };
                    self.expect("send_to", &got, &want);
                }
            }
            10 => {
                let (c, flags) = (r.next()?, r.next()?);
                let Some(c) = self.client(c) else {
                    return Some(());
                };
                let handle = self.model.clients[c].handle.clone();
                if flags & 1 != 0 {
                    self.log.push(format!("close_with c{c}"));
                    handle.close_with(4000, "bye");
                    self.model.close_client(c, Some((4000, "bye".to_owned())));
                } else {
                    self.log.push(format!("close c{c}"));
                    handle.close();
                    self.model.close_client(c, None);
                }
            }
            11 => {
                let n = r.next()?;
                self.log.push(format!("hold {}", n % 4));
                // Skips this step's drain and those of the next `1 + n % 4`.
                self.hold = 2 + usize::from(n % 4);
            }
            12 => {
                self.model.deny_all = !self.model.deny_all;
                self.rec
                    .deny_all
                    .store(self.model.deny_all, Ordering::SeqCst);
                self.log.push(format!("deny_all {}", self.model.deny_all));
            }
            _ => {
                self.log.push("hub close".into());
                self.hub.close();
                self.model.close_hub();
            }
        }
        Some(())
    }
}

/// A member as normalized JSON, from a frame's member object.
fn norm(v: &serde_json::Value) -> String {
    v.to_string()
}

/// A roster member as normalized JSON, through the encoder (whose output
/// `presence_info` checks on its own).
fn norm_member(m: &Member) -> String {
    let f = JsonPresenceEncoder.member_added("x", m);
    match serde_json::from_slice::<serde_json::Value>(f.payload()) {
        Ok(v) => norm(&v["member"]),
        Err(e) => panic!("presence frame is not JSON: {e}: {f:?}"),
    }
}

impl Run<'_> {
    /// Compares the Hub with the model after a step.
    fn check(&mut self) {
        let hub = &self.hub;
        let m = &self.model;
        if hub.is_closed() != m.closed {
            self.fail("is_closed differs");
        }
        let live = m.clients.iter().filter(|c| !c.closed).count();
        if hub.count() != live {
            self.fail(&format!("count {} but model {live}", hub.count()));
        }
        let mut occupied = Vec::new();
        for ch in CHANNELS {
            let want = m.channels.get(ch).map_or(0, |c| c.members.len());
            if hub.channel_count(ch) != want {
                self.fail(&format!(
                    "channel_count({ch}) {} but model {want}",
                    hub.channel_count(ch)
                ));
            }
            if want > 0 {
                occupied.push((ch.to_owned(), want));
            }
            let roster: Vec<Member> = m
                .channels
                .get(ch)
                .map(|c| c.roster.iter().map(|(_, m, _)| m.clone()).collect())
                .unwrap_or_default();
            let got = hub.presence(ch);
            if got != roster {
                self.fail(&format!("presence({ch}) {got:?} but model {roster:?}"));
            }
        }
        occupied.sort();
        if hub.channels() != occupied {
            self.fail(&format!(
                "channels() {:?} but model {occupied:?}",
                hub.channels()
            ));
        }
        // No ghosts: the channel table holds the occupied channels only.
        let table = table_len(hub);
        if table != Some(occupied.len()) {
            self.fail(&format!(
                "the channel table holds {table:?} channels, {} occupied",
                occupied.len()
            ));
        }
        for (i, c) in m.clients.iter().enumerate() {
            let h = &c.handle;
            let who = format!("c{i} ({})", h.id());
            if h.is_closed() != c.closed {
                self.fail(&format!(
                    "{who}: is_closed {} but model {}",
                    h.is_closed(),
                    c.closed
                ));
            }
            if c.probe.closes.load(Ordering::SeqCst) != usize::from(c.closed) {
                self.fail(&format!(
                    "{who}: Transport::closed called {} times",
                    c.probe.closes.load(Ordering::SeqCst)
                ));
            }
            if c.probe.wakes.load(Ordering::SeqCst) != c.wakes {
                self.fail(&format!(
                    "{who}: {} wakes but model {}",
                    c.probe.wakes.load(Ordering::SeqCst),
                    c.wakes
                ));
            }
            if h.drops() != c.drops {
                self.fail(&format!("{who}: drops {} but model {}", h.drops(), c.drops));
            }
            let reason = h.close_reason().map(|(code, r)| (code, r.to_owned()));
            if reason != c.reason {
                self.fail(&format!(
                    "{who}: close reason {reason:?} but model {:?}",
                    c.reason
                ));
            }
            let mut subs = h.channels();
            subs.sort();
            let want: Vec<String> = c.subs.keys().map(|k| (*k).to_owned()).collect();
            if subs != want {
                self.fail(&format!("{who}: channels {subs:?} but model {want:?}"));
            }
            let found = hub.client(h.id());
            if found.as_ref() != (!c.closed).then_some(h) {
                self.fail(&format!("{who}: hub.client() is {found:?}"));
            }
            if !c.closed && h.pending() != c.queue.len() {
                self.fail(&format!(
                    "{who}: {} pending but model {}",
                    h.pending(),
                    c.queue.len()
                ));
            }
        }
        // Presence hooks, as multisets.
        let mut got: Vec<Ev> = std::mem::take(&mut *lock(&self.rec.events))
            .into_iter()
            .map(|e| {
                let client = match m.mode {
                    PresenceMode::PerConnection => e.client_id,
                    PresenceMode::PerUser => String::new(),
                };
                (
                    e.channel,
                    e.joined,
                    e.member.id,
                    e.member.info.to_vec(),
                    client,
                )
            })
            .collect();
        let mut want = std::mem::take(&mut self.model.events);
        got.sort();
        want.sort();
        if got != want {
            self.fail(&format!("presence hooks {got:?} but model {want:?}"));
        }
        let got = std::mem::take(&mut *lock(&self.rec.auth_calls));
        let want = std::mem::take(&mut self.model.auth_calls);
        if got != want {
            self.fail(&format!("authorizer calls {got:?} but model {want:?}"));
        }
    }

    /// Drains every client's outbox and compares with the model's queue.
    fn drain(&mut self) {
        for i in 0..self.model.clients.len() {
            let handle = self.model.clients[i].handle.clone();
            if self.model.clients[i].closed {
                // Nothing is delivered after close (R7). (`finish_drain`
                // is not called: a transport stops on `Transport::closed`.)
                if let Some(f) = handle.pop_frame() {
                    self.fail(&format!("c{i} is closed but delivered {f:?}"));
                }
                continue;
            }
            let mut got = Vec::new();
            loop {
                while let Some(f) = handle.pop_frame() {
                    got.push(f);
                    if got.len() > 64 {
                        self.fail(&format!("c{i} delivered more than its outbox holds"));
                    }
                }
                if !handle.finish_drain() {
                    break;
                }
            }
            let want = std::mem::take(&mut self.model.clients[i].queue);
            self.model.clients[i].scheduled = false;
            if !same_frames(&got, &want) {
                let want: Vec<_> = want.iter().map(|(f, g)| (g, f)).collect();
                self.fail(&format!(
                    "c{i} received {got:?} but model (group, frame) {want:?}"
                ));
            }
            for f in &got {
                if let Err(e) = apply_view(&mut self.model.clients[i].view, f) {
                    self.fail(&format!("c{i}: {e}"));
                }
            }
        }
        // Every live client's view of each presence roster is the Hub's.
        for (i, c) in self.model.clients.iter().enumerate() {
            if c.closed {
                continue;
            }
            for (ch, presence) in &c.subs {
                if presence.is_none() {
                    continue;
                }
                let mut view = c.view.get(ch).cloned().unwrap_or_default();
                let mut hub: Vec<String> = self.hub.presence(ch).iter().map(norm_member).collect();
                view.sort();
                hub.sort();
                if view != hub {
                    self.fail(&format!(
                        "c{i}'s view of {ch} is {view:?}, the Hub's roster {hub:?}"
                    ));
                }
            }
        }
    }
}

/// The size of the Hub's channel table, from its `Debug` output (the one
/// view of it the crate offers outside `hub.rs`).
fn table_len(hub: &Hub) -> Option<usize> {
    let text = format!("{hub:?}");
    let rest = &text[text.find("channels: ")? + "channels: ".len()..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// Frames equal group by group; within a group in any order.
fn same_frames(got: &[Frame], want: &[(Frame, u64)]) -> bool {
    if got.len() != want.len() {
        return false;
    }
    let key = |f: &Frame| (f.kind() == MessageType::Binary, f.payload().clone());
    let mut i = 0;
    while i < want.len() {
        let g = want[i].1;
        let j = i + want[i..].iter().take_while(|(_, h)| *h == g).count();
        let mut a: Vec<_> = got[i..j].iter().map(key).collect();
        let mut b: Vec<_> = want[i..j].iter().map(|(f, _)| key(f)).collect();
        a.sort();
        b.sort();
        if a != b {
            return false;
        }
        i = j;
    }
    true
}

/// Updates a client's roster views with one received frame.
fn apply_view(view: &mut BTreeMap<&'static str, Vec<String>>, f: &Frame) -> Result<(), String> {
    let Some(text) = f.as_str() else {
        return Ok(());
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Ok(());
    };
    let (Some(event), Some(channel)) = (v["event"].as_str(), v["channel"].as_str()) else {
        return Ok(());
    };
    let Some(ch) = CHANNELS.iter().find(|c| **c == channel) else {
        return Err(format!("presence frame for unknown channel {channel}"));
    };
    let roster = view.entry(ch).or_default();
    match event {
        "presence:subscription_succeeded" => {
            let Some(members) = v["members"].as_array() else {
                return Err(format!("roster without members: {text}"));
            };
            *roster = members.iter().map(norm).collect();
        }
        "presence:member_added" => roster.push(norm(&v["member"])),
        "presence:member_removed" => {
            let m = norm(&v["member"]);
            let Some(pos) = roster.iter().position(|x| *x == m) else {
                return Err(format!("member_removed of a member it never saw: {text}"));
            };
            roster.remove(pos);
        }
        _ => return Err(format!("unknown presence event: {text}")),
    }
    Ok(())
}

fn run_hub_ops(data: &[u8]) {
    let Some((&config, ops)) = data.split_first() else {
        return;
    };
    let mode = if config & 1 != 0 {
        PresenceMode::PerUser
    } else {
        PresenceMode::PerConnection
    };
    let policy = if config & 2 != 0 {
        SlowConsumerPolicy::DisconnectClient
    } else {
        SlowConsumerPolicy::DropMessage
    };
    let cap = 1 + usize::from((config >> 2) & 3);
    let has_authorizer = config & 0x10 == 0;
    let rec = Arc::new(Recorder::default());
    let mut builder = Hub::builder()
        .outbox(cap)
        .slow_consumer_policy(policy)
        .presence_mode(mode);
    if has_authorizer {
        let rec = rec.clone();
        builder = builder.authorizer(move |r: &AuthRequest| authorize(&rec, r));
    }
    let hub = builder.build();
    {
        let rec = rec.clone();
        hub.on_presence(move |e| lock(&rec.events).push(e.clone()));
    }
    let mut run = Run {
        hub,
        rec,
        model: Model {
            clients: Vec::new(),
            channels: BTreeMap::new(),
            closed: false,
            next_id: 1,
            mode,
            policy,
            cap,
            has_authorizer,
            deny_all: false,
            group: 0,
            payloads: 0,
            events: Vec::new(),
            auth_calls: Vec::new(),
        },
        log: Vec::new(),
        input: data,
        hold: 0,
    };
    let mut r = Bytes8 { data: ops, at: 0 };
    for _ in 0..MAX_OPS {
        if run.step(&mut r).is_none() {
            break;
        }
        run.check();
        if run.hold > 0 {
            run.hold -= 1;
        } else {
            run.drain();
        }
    }
    run.log.push("final drain, hub close".into());
    run.drain();
    run.hub.close();
    run.model.close_hub();
    run.check();
    run.drain();
}

// ---------------------------------------------------------------------------
// presence_info
// ---------------------------------------------------------------------------

/// Byte 0 (low 4 bits) is the length of the member id that follows (lossy
/// UTF-8; the channel is `presence-<id>`); the rest is the member's info.
/// Checks every JSON presence frame (R10).
pub fn presence_info(data: &[u8]) {
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

/// What the grammar checker says about a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Valid,
    Invalid,
    /// Nested deeper than the checker follows.
    TooDeep,
}

/// RFC 8259's grammar, checked by recursive descent: one value with
/// optional surrounding whitespace. String escapes are checked for form
/// only (a lone surrogate escape is grammatical).
fn json_verdict(text: &str) -> Verdict {
    let mut p = Grammar {
        b: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    match p.value().and_then(|()| {
        p.ws();
        if p.at == p.b.len() {
            Ok(())
        } else {
            Err(Verdict::Invalid)
        }
    }) {
        Ok(()) => Verdict::Valid,
        Err(v) => v,
    }
}

struct Grammar<'a> {
    b: &'a [u8],
    at: usize,
    depth: usize,
}

impl Grammar<'_> {
    const MAX_DEPTH: usize = 256;

    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> Result<(), Verdict> {
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(Verdict::Invalid)
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn digits(&mut self) -> Result<(), Verdict> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(Verdict::Invalid);
        }
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        Ok(())
    }

    fn value(&mut self) -> Result<(), Verdict> {
        self.ws();
        match self.peek().ok_or(Verdict::Invalid)? {
            b'{' => self.nested(b'}', true),
            b'[' => self.nested(b']', false),
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Verdict::Invalid),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Verdict> {
        if self.b[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(Verdict::Invalid)
        }
    }

    fn number(&mut self) -> Result<(), Verdict> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits()?,
            _ => return Err(Verdict::Invalid),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digits()?;
        }
        Ok(())
    }

    fn string(&mut self) -> Result<(), Verdict> {
        self.eat(b'"')?;
        loop {
            match self.peek().ok_or(Verdict::Invalid)? {
                b'"' => {
                    self.at += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.at += 1;
                    match self.peek().ok_or(Verdict::Invalid)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            self.at += 1;
                            for _ in 0..4 {
                                if !self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                    return Err(Verdict::Invalid);
                                }
                                self.at += 1;
                            }
                        }
                        _ => return Err(Verdict::Invalid),
                    }
                }
                c if c < 0x20 => return Err(Verdict::Invalid),
                _ => self.at += 1,
            }
        }
    }

    /// An object (`keyed`) or an array, from its opening bracket.
    fn nested(&mut self, close: u8, keyed: bool) -> Result<(), Verdict> {
        self.depth += 1;
        if self.depth > Self::MAX_DEPTH {
            return Err(Verdict::TooDeep);
        }
        self.at += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if keyed {
                self.ws();
                self.string()?;
                self.ws();
                self.eat(b':')?;
            }
            self.value()?;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(c) if c == close => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Verdict::Invalid),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// channel_name
// ---------------------------------------------------------------------------

/// Any bytes (lossy UTF-8) as a channel name: `classify_channel` agrees with
/// a byte-prefix reference (R5), and a Hub treats the channel accordingly:
/// the authorizer is asked exactly for private and presence channels, with
/// that type, and only presence joins send a roster.
pub fn channel_name(data: &[u8]) {
    let name = String::from_utf8_lossy(data);
    let want = reference_class(name.as_bytes());
    assert_eq!(classify_channel(&name), want, "{name:?}");

    let rec = Arc::new(Recorder::default());
    let hub = {
        let rec = rec.clone();
        Hub::builder()
            .authorizer(move |r: &AuthRequest| {
                lock(&rec.auth_calls).push((
                    r.channel.clone(),
                    r.channel_type,
                    r.client_id.clone(),
                ));
                AuthResult::allow(Member::new("u", ""))
            })
            .build()
    };
    let probe = Arc::new(Probe::default());
    let Ok(client) = hub.attach(probe, ()) else {
        panic!("attach to an open Hub failed");
    };
    assert_eq!(hub.subscribe(&client, &name), Ok(()), "{name:?}");
    let calls = std::mem::take(&mut *lock(&rec.auth_calls));
    match want {
        ChannelType::Public => assert!(calls.is_empty(), "{name:?}: public join authorized"),
        _ => assert_eq!(calls, [(name.to_string(), want, client.id().to_owned())]),
    }
    let mut frames = 0;
    while client.pop_frame().is_some() {
        frames += 1;
    }
    let expected = if want == ChannelType::Presence { 2 } else { 0 };
    assert_eq!(frames, expected, "{name:?}: frames on join");
    assert_eq!(
        hub.presence(&name).len(),
        usize::from(want == ChannelType::Presence)
    );
    assert_eq!(hub.channel_count(&name), 1);
    assert_eq!(hub.broadcast(&name, "x"), Ok(()));
    assert_eq!(
        client.pop_frame().map(|f| f.payload().clone()),
        Some(Bytes::from_static(b"x"))
    );
    assert_eq!(hub.unsubscribe(&client, &name), Ok(()));
    assert_eq!(hub.channel_count(&name), 0);
    assert!(hub.channels().is_empty());
    assert_eq!(
        table_len(&hub),
        Some(0),
        "{name:?}: channel left in the table"
    );
}
