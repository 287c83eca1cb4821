//! The clients: mio event loops, each owning a share of the long-lived
//! connections for the whole run.
//!
//! Each client has a role for its whole life: a healthy reader (reads all
//! it can at once), a slow reader (reads a few hundred bytes a second) or a
//! stopped reader (sleeps one to four minutes without reading anything,
//! then wakes for a while); the last two have a 4 KiB receive buffer so the
//! server feels them soon. Every client subscribes to one public channel;
//! some also join one presence channel, and leave and rejoin it now and
//! then, and send client events on it. A few percent reconnect every minute
//! (churn), and every client drops at once when the driver calls a storm.
//!
//! Healthy readers prove delivery: each subscription is a [`Period`] of the
//! ledger, settled once a second and when it ends. Their presence rosters
//! (from `subscription_succeeded`, `member_added`, `member_removed`) are
//! handed back at the end for the roster check.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use realtime_benches::wire::{
    connect_from, field_u64, find, parse_frame, push_masked, sign, upgrade_request,
};
use serde_json::Value;

use crate::ledger::{Period, Receipt};
use crate::{channel_name, Args, Counters, Shared};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    Healthy,
    Slow,
    Stopped,
}

/// What a client hands back at the end, for the roster check.
pub(crate) struct Final {
    pub(crate) id: usize,
    pub(crate) role: Role,
    /// Its presence channel, if it is a member of one now.
    pub(crate) member_of: Option<usize>,
    pub(crate) user_id: String,
    /// The roster it saw, if it is a member.
    pub(crate) roster: BTreeSet<String>,
}

#[derive(PartialEq, Eq)]
enum Phase {
    Connecting,
    Handshaking,
    Open,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Sub {
    Off,
    Pending,
    On,
}

struct Conn {
    sock: TcpStream,
    phase: Phase,
    buf: Vec<u8>,
    out: Vec<u8>,
    since: u32,
    socket_id: String,
}

struct Client {
    id: usize,
    role: Role,
    public: usize,
    presence: Option<usize>,
    node: usize,
    gen: u32,
    conn: Option<Conn>,
    connect_at: Option<u32>,
    failures: u32,
    user_id: String,
    public_sub: Sub,
    public_period: Option<Period>,
    pres: Sub,
    pres_period: Option<Period>,
    rejoin_at: u32,
    roster: BTreeSet<String>,
    next_event_at: u32,
    /// Stopped readers: asleep until then (0: awake).
    asleep_until: u32,
    /// Stopped readers: awake until then.
    awake_until: u32,
}

/// What the loop passes to a client's handlers.
struct Ctx<'a> {
    args: &'a Args,
    shared: &'a Shared,
    nodes: &'a [SocketAddr],
    registry: &'a Registry,
    hist: &'a mut Histogram<u64>,
    rng: &'a mut fastrand::Rng,
    rbuf: &'a mut [u8],
    now: u32,
}

/// The role of client `id`: `unhealthy_pct` percent split between slow
/// and stopped readers, spread over the ids.
pub(crate) fn role_of(args: &Args, id: usize) -> Role {
    let r = (id * 7919 + 17) % 100;
    if r * 2 < args.unhealthy_pct {
        Role::Slow
    } else if r < args.unhealthy_pct {
        Role::Stopped
    } else {
        Role::Healthy
    }
}

/// The presence channel (global index) of client `id`, if it has one.
pub(crate) fn presence_of(args: &Args, id: usize) -> Option<usize> {
    ((id * 104_729 + 13) % 100 < args.presence_pct && args.presence_channels > 0)
        .then(|| args.public_channels + (id / 7) % args.presence_channels)
}

/// Runs clients `first..first + count` until the driver stops; then adds
/// what the roster check needs to `shared.finals` and holds the
/// connections open until the driver releases them.
pub(crate) fn client_loop(
    t: usize,
    args: &Args,
    nodes: &[SocketAddr],
    first: usize,
    count: usize,
    shared: &Shared,
) {
    let Ok(mut poll) = Poll::new() else {
        shared.count_reason("poll_error");
        shared.snapshots.fetch_add(1, Ordering::SeqCst);
        return;
    };
    let ramp = args.ramp * 1000;
    let mut clients: Vec<Client> = (0..count)
        .map(|i| {
            let id = first + i;
            Client {
                id,
                role: role_of(args, id),
                public: id % args.public_channels.max(1),
                presence: presence_of(args, id),
                node: id % nodes.len(),
                gen: 0,
                conn: None,
                connect_at: Some((i as u64 * ramp / count.max(1) as u64) as u32),
                failures: 0,
                user_id: String::new(),
                public_sub: Sub::Off,
                public_period: None,
                pres: Sub::Off,
                pres_period: None,
                rejoin_at: 0,
                roster: BTreeSet::new(),
                next_event_at: 0,
                asleep_until: 0,
                awake_until: 0,
            }
        })
        .collect();
    let mut hist = new_hist();
    let mut rng = fastrand::Rng::with_seed(0x50a6 + t as u64);
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut events = Events::with_capacity(1024);
    let mut storm = shared.storm.load(Ordering::SeqCst);
    let mut last_tick = 0u32;
    let mut last_second = 0u32;
    while !shared.stop.load(Ordering::SeqCst) {
        if poll
            .poll(&mut events, Some(Duration::from_millis(20)))
            .is_err()
        {
            continue;
        }
        let registry = poll.registry();
        let mut cx = Ctx {
            args,
            shared,
            nodes,
            registry,
            hist: &mut hist,
            rng: &mut rng,
            rbuf: &mut rbuf,
            now: shared.now_ms(),
        };
        for ev in events.iter() {
            if let Some(c) = clients.get_mut(ev.token().0) {
                c.on_event(&mut cx, ev.is_writable(), ev.is_error());
            }
        }
        let now = cx.now;
        let epoch = shared.storm.load(Ordering::SeqCst);
        if epoch != storm {
            storm = epoch;
            for c in clients.iter_mut() {
                c.disconnect(&mut cx, "storm", true);
            }
        }
        if now.wrapping_sub(last_tick) >= 50 {
            last_tick = now;
            let second = now / 1000 != last_second / 1000;
            if second {
                last_second = now;
            }
            let mut connects = 0;
            for (i, c) in clients.iter_mut().enumerate() {
                c.tick(&mut cx, i, second, &mut connects);
            }
            if second {
                shared.merge_hist(&mut hist);
            }
        }
    }
    // The end: settle every healthy subscription (the driver drained
    // first, so nothing owed is still in flight) and report memberships.
    let mut cx = Ctx {
        args,
        shared,
        nodes,
        registry: poll.registry(),
        hist: &mut hist,
        rng: &mut rng,
        rbuf: &mut rbuf,
        now: shared.now_ms(),
    };
    let mut out = Vec::new();
    for c in clients.iter_mut() {
        c.end_periods(&mut cx, 0);
        let member = c.conn.as_ref().is_some_and(|k| k.phase == Phase::Open) && c.pres == Sub::On;
        if c.presence.is_some() {
            out.push(Final {
                id: c.id,
                role: c.role,
                member_of: if member { c.presence } else { None },
                user_id: c.user_id.clone(),
                roster: std::mem::take(&mut c.roster),
            });
        }
    }
    shared.merge_hist(&mut hist);
    // Keep the sockets open until every thread has taken its snapshot: a
    // thread that closed its clients first would change the others' rosters.
    lock_finals(shared).extend(out);
    shared.snapshots.fetch_add(1, Ordering::SeqCst);
    while !shared.release.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Adds `delta` to the open connections (and the healthy ones).
fn count_open(c: &Counters, role: Role, delta: i64) {
    c.open.fetch_add(delta, Ordering::Relaxed);
    if role == Role::Healthy {
        c.healthy_open.fetch_add(delta, Ordering::Relaxed);
    }
}

/// Adds `delta` to the subscriptions waiting for a reply (and the healthy
/// readers' ones).
fn count_pending(c: &Counters, role: Role, delta: i64) {
    c.pending_subs.fetch_add(delta, Ordering::Relaxed);
    if role == Role::Healthy {
        c.healthy_pending_subs.fetch_add(delta, Ordering::Relaxed);
    }
}

fn lock_finals(shared: &Shared) -> std::sync::MutexGuard<'_, Vec<Final>> {
    shared
        .finals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn new_hist() -> Histogram<u64> {
    // Bounds are constants that `new_with_bounds` accepts (1 <= low, high >= 2 * low).
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

impl Client {
    fn reads_now(&self, cx: &Ctx<'_>) -> bool {
        let quiet = cx.shared.quiesce.load(Ordering::Relaxed);
        match self.role {
            Role::Healthy => true,
            _ if quiet => true,
            _ if self.conn.as_ref().is_some_and(|c| c.phase != Phase::Open) => true,
            Role::Slow => false,
            Role::Stopped => self.asleep_until == 0,
        }
    }

    fn on_event(&mut self, cx: &mut Ctx<'_>, writable: bool, error: bool) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.phase == Phase::Connecting {
            if conn.sock.peer_addr().is_ok() {
                let req = upgrade_request(&cx.args.app_key, "soak", cx.nodes[self.node]);
                conn.out.extend_from_slice(req.as_bytes());
                conn.phase = Phase::Handshaking;
            } else if error || writable {
                self.disconnect(cx, "connect_error", false);
                return;
            } else {
                return;
            }
        }
        if self.reads_now(cx) {
            self.read(cx, usize::MAX);
        }
        self.flush(cx);
    }

    /// Reads up to `budget` bytes (all there is with `usize::MAX`) and
    /// handles the frames.
    fn read(&mut self, cx: &mut Ctx<'_>, budget: usize) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let mut left = budget;
        let mut gone = None;
        while left > 0 {
            let n = left.min(cx.rbuf.len());
            match conn.sock.read(&mut cx.rbuf[..n]) {
                Ok(0) => {
                    gone = Some("eof");
                    break;
                }
                Ok(k) => {
                    conn.buf.extend_from_slice(&cx.rbuf[..k]);
                    left = left.saturating_sub(k);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    gone = Some("read_error");
                    break;
                }
            }
        }
        if let Some(reason) = self.process(cx).or(gone) {
            self.disconnect(cx, reason, false);
        }
    }

    /// Handles the complete frames in the buffer; why the connection ended,
    /// if it did.
    fn process(&mut self, cx: &mut Ctx<'_>) -> Option<&'static str> {
        let conn = self.conn.as_mut()?;
        if conn.phase == Phase::Handshaking {
            let end = find(&conn.buf, b"\r\n\r\n")?;
            if !conn.buf.starts_with(b"HTTP/1.1 101") {
                let status =
                    String::from_utf8_lossy(conn.buf.get(9..12).unwrap_or(b"???")).into_owned();
                cx.shared.count_reason(&format!("handshake_{status}"));
                return Some("handshake_refused");
            }
            conn.buf.drain(..end + 4);
            conn.phase = Phase::Open;
            self.failures = 0;
            count_open(&cx.shared.counters, self.role, 1);
        }
        let mut buf = std::mem::take(&mut conn.buf);
        let mut pos = 0;
        let mut ended = None;
        while let Some((opcode, at, end)) = parse_frame(&buf[pos..]) {
            let payload = &buf[pos + at..pos + end];
            match opcode {
                0x1 => self.on_text(cx, payload),
                0x8 => {
                    let code = payload
                        .get(..2)
                        .map_or(1005, |b| u16::from_be_bytes([b[0], b[1]]));
                    ended = Some(close_reason(code));
                }
                0x9 => {
                    let p = payload.to_vec();
                    self.send(0xA, &p);
                }
                _ => {}
            }
            pos += end;
            if ended.is_some() {
                break;
            }
        }
        buf.drain(..pos);
        if let Some(c) = self.conn.as_mut() {
            c.buf = buf;
        }
        ended
    }

    fn on_text(&mut self, cx: &mut Ctx<'_>, payload: &[u8]) {
        let head = &payload[..payload.len().min(32)];
        if find(head, br#""event":"soak""#).is_some() {
            let (Some(ch), Some(seq), Some(t)) = (
                field_u64(payload, br#"\"c\":"#),
                field_u64(payload, br#"\"s\":"#),
                field_u64(payload, br#"\"t\":"#),
            ) else {
                cx.shared.count_reason("malformed_event");
                return;
            };
            let c = &cx.shared.counters;
            c.delivered.fetch_add(1, Ordering::Relaxed);
            if self.role != Role::Healthy {
                return;
            }
            c.delivered_healthy.fetch_add(1, Ordering::Relaxed);
            let now_ns = cx.shared.start.elapsed().as_nanos() as u64;
            let _ = cx.hist.record((now_ns.saturating_sub(t) / 1000).max(1));
            let period = if ch as usize == self.public {
                self.public_period.as_mut()
            } else if Some(ch as usize) == self.presence {
                self.pres_period.as_mut()
            } else {
                None
            };
            if let Some(p) = period {
                match p.receive(seq) {
                    Receipt::Fine => {}
                    Receipt::Late { in_fault } => {
                        let from = if in_fault { &c.lost_in_fault } else { &c.lost };
                        from.fetch_sub(1, Ordering::Relaxed);
                        c.late.fetch_add(1, Ordering::Relaxed);
                    }
                    Receipt::Duplicate => {
                        c.duplicates.fetch_add(1, Ordering::Relaxed);
                        cx.shared.example(format!(
                            "client {} got channel {ch} number {seq} twice (t={} ms)",
                            self.id, cx.now
                        ));
                    }
                }
            }
            return;
        }
        if find(head, br#""event":"client-soak""#).is_some() {
            cx.shared
                .counters
                .client_events_received
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            cx.shared.count_reason("malformed_frame");
            return;
        };
        let event = v["event"].as_str().unwrap_or("");
        let data: Value = match &v["data"] {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            other => other.clone(),
        };
        let channel = v["channel"].as_str().unwrap_or("");
        let is_pres = self
            .presence
            .is_some_and(|p| channel_name(cx.args, p) == channel);
        let c = &cx.shared.counters;
        match event {
            "pusher:connection_established" => {
                let sid = data["socket_id"].as_str().unwrap_or("").to_owned();
                if let Some(conn) = self.conn.as_mut() {
                    conn.socket_id = sid;
                }
                let sub = serde_json::json!({"event": "pusher:subscribe",
                    "data": {"channel": channel_name(cx.args, self.public)}});
                self.send(0x1, sub.to_string().as_bytes());
                self.public_sub = Sub::Pending;
                count_pending(c, self.role, 1);
                if self.presence.is_some() && cx.now >= self.rejoin_at {
                    self.join_presence(cx);
                }
            }
            "pusher_internal:subscription_succeeded" if is_pres => {
                if self.pres == Sub::Pending {
                    count_pending(c, self.role, -1);
                }
                self.pres = Sub::On;
                c.presence_joins.fetch_add(1, Ordering::Relaxed);
                self.roster = data["presence"]["ids"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if self.role == Role::Healthy {
                    self.pres_period = self.presence.map(|p| cx.shared.ledger.subscribe(p));
                }
                self.next_event_at =
                    cx.now + cx.rng.u32(0..(cx.args.client_event_s * 1000).max(1) as u32);
            }
            "pusher_internal:subscription_succeeded" => {
                if self.public_sub == Sub::Pending {
                    count_pending(c, self.role, -1);
                }
                self.public_sub = Sub::On;
                if self.role == Role::Healthy {
                    self.public_period = Some(cx.shared.ledger.subscribe(self.public));
                }
            }
            "pusher_internal:member_added" if is_pres => {
                c.members_added.fetch_add(1, Ordering::Relaxed);
                if let Some(u) = data["user_id"].as_str() {
                    self.roster.insert(u.to_owned());
                }
            }
            "pusher_internal:member_removed" if is_pres => {
                c.members_removed.fetch_add(1, Ordering::Relaxed);
                if let Some(u) = data["user_id"].as_str() {
                    self.roster.remove(u);
                }
            }
            "pusher:subscription_error" => {
                cx.shared
                    .count_reason(&format!("subscription_error_{}", data["status"]));
                if is_pres && self.pres == Sub::Pending {
                    self.pres = Sub::Off;
                    count_pending(c, self.role, -1);
                    self.rejoin_at = cx.now + 10_000;
                } else if self.public_sub == Sub::Pending {
                    self.public_sub = Sub::Off;
                    count_pending(c, self.role, -1);
                }
            }
            "pusher:error" => {
                cx.shared
                    .count_reason(&format!("pusher_error_{}", data["code"]));
            }
            "pusher:ping" => self.send(0x1, br#"{"event":"pusher:pong","data":{}}"#),
            _ => {}
        }
    }

    fn join_presence(&mut self, cx: &mut Ctx<'_>) {
        let (Some(p), Some(conn)) = (self.presence, self.conn.as_ref()) else {
            return;
        };
        if conn.socket_id.is_empty() || self.pres != Sub::Off {
            return;
        }
        let channel = channel_name(cx.args, p);
        let data =
            serde_json::json!({"user_id": self.user_id, "user_info": {"id": self.id}}).to_string();
        let sig = sign(
            &cx.args.app_secret,
            &format!("{}:{channel}:{data}", conn.socket_id),
        );
        let msg = serde_json::json!({"event": "pusher:subscribe", "data": {
            "channel": channel, "auth": format!("{}:{sig}", cx.args.app_key), "channel_data": data}});
        self.send(0x1, msg.to_string().as_bytes());
        self.pres = Sub::Pending;
        count_pending(&cx.shared.counters, self.role, 1);
    }

    fn leave_presence(&mut self, cx: &mut Ctx<'_>) {
        let Some(p) = self.presence else { return };
        let msg = serde_json::json!({"event": "pusher:unsubscribe",
            "data": {"channel": channel_name(cx.args, p)}});
        self.send(0x1, msg.to_string().as_bytes());
        self.pres = Sub::Off;
        self.roster.clear();
        if let Some(mut period) = self.pres_period.take() {
            let s = cx
                .shared
                .ledger
                .settle(&mut period, cx.now, cx.args.grace_ms, true);
            cx.shared.add_settled(s, self.id, p);
        }
        cx.shared
            .counters
            .presence_leaves
            .fetch_add(1, Ordering::Relaxed);
        self.rejoin_at = cx.now + cx.rng.u32(5_000..20_000);
    }

    fn send(&mut self, opcode: u8, payload: &[u8]) {
        if let Some(c) = self.conn.as_mut() {
            push_masked(&mut c.out, opcode, payload);
        }
    }

    fn flush(&mut self, cx: &mut Ctx<'_>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.out.is_empty() {
            return;
        }
        match conn.sock.write(&conn.out) {
            Ok(n) => {
                conn.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) if conn.phase == Phase::Connecting => {}
            Err(_) => self.disconnect(cx, "write_error", false),
        }
    }

    fn end_periods(&mut self, cx: &mut Ctx<'_>, grace: u32) {
        for period in [self.public_period.take(), self.pres_period.take()]
            .into_iter()
            .flatten()
        {
            let mut period = period;
            let s = cx.shared.ledger.settle(&mut period, cx.now, grace, true);
            cx.shared.add_settled(s, self.id, period.channel);
        }
    }

    /// Ends the connection (if any) for `reason` and plans the next one.
    fn disconnect(&mut self, cx: &mut Ctx<'_>, reason: &str, voluntary: bool) {
        let had = self.conn.is_some();
        if let Some(mut conn) = self.conn.take() {
            let _ = cx.registry.deregister(&mut conn.sock);
            if conn.phase == Phase::Open {
                count_open(&cx.shared.counters, self.role, -1);
            }
        }
        self.end_periods(cx, cx.args.grace_ms);
        let c = &cx.shared.counters;
        for s in [&mut self.public_sub, &mut self.pres] {
            if *s == Sub::Pending {
                count_pending(c, self.role, -1);
            }
            *s = Sub::Off;
        }
        self.roster.clear();
        if !had && reason != "connect_error" {
            return;
        }
        cx.shared.count_reason(reason);
        let refused = reason == "connect_error"
            || reason == "connect_timeout"
            || reason == "handshake_refused";
        self.node = if refused {
            // The node may be down: fail over to the next one.
            (self.node + 1) % cx.nodes.len()
        } else {
            // Back to its own node, as a load balancer would send it: the
            // load on each node stays the same across faults.
            self.id % cx.nodes.len()
        };
        let delay = if voluntary {
            cx.rng.u32(0..2_000)
        } else {
            self.failures = (self.failures + 1).min(4);
            cx.rng.u32(250..1_000) << self.failures.min(3)
        };
        self.connect_at = Some(cx.now + delay);
    }

    fn connect(&mut self, cx: &mut Ctx<'_>, token: usize) {
        self.connect_at = None;
        self.gen += 1;
        self.user_id = format!("u{}-{}", self.id, self.gen);
        let src = Ipv4Addr::new(
            127,
            0,
            0,
            1 + (self.id % cx.args.source_ips.max(1) as usize) as u8,
        );
        let sock = connect_from(src, cx.nodes[self.node], self.role != Role::Healthy);
        let registered = sock.and_then(|mut s| {
            cx.registry
                .register(
                    &mut s,
                    Token(token),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map(|()| s)
        });
        match registered {
            Ok(sock) => {
                cx.shared.counters.connects.fetch_add(1, Ordering::Relaxed);
                self.conn = Some(Conn {
                    sock,
                    phase: Phase::Connecting,
                    buf: Vec::new(),
                    out: Vec::new(),
                    since: cx.now,
                    socket_id: String::new(),
                });
            }
            Err(_) => self.disconnect(cx, "connect_error", false),
        }
    }

    fn tick(&mut self, cx: &mut Ctx<'_>, token: usize, second: bool, connects: &mut usize) {
        let quiet = cx.shared.quiesce.load(Ordering::Relaxed);
        if self.conn.is_none() {
            if self.connect_at.is_some_and(|t| t <= cx.now) && *connects < cx.args.connects_per_tick
            {
                *connects += 1;
                self.connect(cx, token);
            }
            return;
        }
        let (phase_open, since) = match self.conn.as_ref() {
            Some(c) => (c.phase == Phase::Open, c.since),
            None => return,
        };
        if !phase_open && cx.now.saturating_sub(since) > 10_000 {
            self.disconnect(cx, "connect_timeout", false);
            return;
        }
        match self.role {
            Role::Slow if phase_open && !quiet => self.read(cx, cx.args.slow_bytes_per_s / 20),
            Role::Stopped if phase_open => {
                if quiet {
                    self.asleep_until = 0;
                } else if self.asleep_until == 0 && self.awake_until == 0 {
                    self.awake_until = cx.now + cx.rng.u32(20_000..60_000);
                } else if self.asleep_until == 0 && cx.now >= self.awake_until {
                    self.asleep_until = cx.now + cx.rng.u32(60_000..240_000);
                } else if self.asleep_until != 0 && cx.now >= self.asleep_until {
                    self.asleep_until = 0;
                    self.awake_until = cx.now + cx.rng.u32(20_000..60_000);
                }
                if self.asleep_until == 0 {
                    self.read(cx, usize::MAX);
                }
            }
            _ if quiet => self.read(cx, usize::MAX),
            _ => {}
        }
        if self.conn.is_none() {
            return;
        }
        if second && phase_open {
            let asleep = self.asleep_until != 0;
            if !quiet && !asleep {
                if cx.rng.f64() * 100.0 < cx.args.churn_pct / 60.0 {
                    self.disconnect(cx, "churn", true);
                    return;
                }
                if self.pres == Sub::On && cx.rng.f64() * 100.0 < cx.args.presence_toggle_pct / 60.0
                {
                    self.leave_presence(cx);
                } else if self.pres == Sub::Off
                    && self.public_sub != Sub::Pending
                    && cx.now >= self.rejoin_at
                {
                    self.join_presence(cx);
                }
                if self.pres == Sub::On && cx.now >= self.next_event_at {
                    if let Some(p) = self.presence {
                        let msg = serde_json::json!({"event": "client-soak",
                            "channel": channel_name(cx.args, p), "data": {"from": self.user_id}});
                        self.send(0x1, msg.to_string().as_bytes());
                        cx.shared
                            .counters
                            .client_events_sent
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    self.next_event_at = cx.now + (cx.args.client_event_s * 1000) as u32;
                }
            }
            for period in [self.public_period.as_mut(), self.pres_period.as_mut()]
                .into_iter()
                .flatten()
            {
                let s = cx
                    .shared
                    .ledger
                    .settle(period, cx.now, cx.args.grace_ms, false);
                cx.shared.add_settled(s, self.id, period.channel);
            }
        }
        if self.asleep_until == 0 {
            self.flush(cx);
        }
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        1000 => "close_1000",
        1001 => "close_1001",
        1002 => "close_1002",
        1005 => "close_1005",
        1006 => "close_1006",
        1008 => "close_1008",
        1011 => "close_1011",
        4000..=4099 => "close_40xx",
        4100..=4199 => "close_41xx",
        4200..=4299 => "close_42xx",
        4300..=4399 => "close_43xx",
        _ => "close_other",
    }
}
