//! The `hub_ops` oracle: a sequence of Hub operations decoded from
//! arbitrary bytes (add, subscribe, unsubscribe, broadcast, send, client
//! close, Hub close, ...) over a few clients and channels, run on one
//! thread against a Hub whose clients are attached with a recording
//! [`Transport`](realtime::Transport) and drained by hand, and checked after
//! every step against a plain reference model: return values, counts,
//! rosters, subscriptions, drop counters, close reasons, wake-ups, presence
//! hooks, authorizer calls, the channel table, and every frame each client
//! received. [`crate::fuzz::hub_ops`] is the entry point.
//!
//! The reference model is in `model.rs`, the decoding and running of one
//! operation in `ops.rs`, the comparison of Hub and model after a step in
//! `check.rs`.
//!
//! # The input format
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

mod check;
mod model;
mod ops;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use realtime::{
    AuthRequest, AuthResult, ChannelType, Hub, Member, PresenceMode, SlowConsumerPolicy,
};

use self::model::{outcome, Model, Want};
use self::ops::Bytes8;
use crate::probe::{lock, Recorder};

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

/// One run of the oracle: the Hub, its model, and the decoded steps so far
/// (printed when they disagree).
struct Run<'a> {
    hub: Hub,
    rec: Arc<Recorder>,
    model: Model,
    /// The decoded steps so far, one line each ("  step N: ..."), printed
    /// when Hub and model disagree. One growing buffer rather than a
    /// `String` per step: the allocations were a few percent of the
    /// oracle's time (issue 18).
    log: String,
    /// Steps logged so far.
    steps: usize,
    input: &'a [u8],
    /// Steps whose drain is still to be skipped.
    hold: usize,
    /// Roster members as normalized JSON, memoized (see [`Run::drain`]).
    norms: HashMap<Member, String>,
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
        msg.push_str(&self.log);
        let _ = writeln!(msg, "input: {:02x?}", self.input);
        panic!("{msg}");
    }

    /// Logs one decoded step.
    fn note(&mut self, step: std::fmt::Arguments<'_>) {
        let _ = writeln!(self.log, "  step {}: {step}", self.steps);
        self.steps += 1;
    }

    fn expect(&self, what: &str, got: &realtime::Result<()>, want: &Want) {
        let got = outcome(got);
        if &got != want {
            self.fail(&format!("{what}: Hub returned {got:?}, model {want:?}"));
        }
    }
}

/// Runs a `hub_ops` input (format in the module doc) against the model;
/// panics with the decoded steps when the Hub and the model disagree.
pub(crate) fn run(data: &[u8]) {
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
        log: String::new(),
        steps: 0,
        input: data,
        hold: 0,
        norms: HashMap::new(),
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
    run.note(format_args!("final drain, hub close"));
    run.drain();
    run.hub.close();
    run.model.close_hub();
    run.check();
    run.drain();
}
