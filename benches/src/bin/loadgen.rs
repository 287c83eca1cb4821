//! `loadgen`: a loopback load generator for Pusher-compatible servers.
//!
//! It opens C WebSocket connections (spread over source addresses
//! 127.0.0.1..=127.0.0.N so more than ~28k ports are available), subscribes
//! each to one of K channels (`bench-0` … `bench-{K-1}`), then publishes
//! through the signed HTTP API (`batch_events`) at a fixed rate or saturated,
//! and measures what arrives:
//!
//! - delivered frames/s, frames lost (expected minus received after a drain);
//! - publish-to-receive latency p50/p99/p999 (the event data carries the
//!   publish time in ns since the loadgen started: one process, one clock);
//! - with `--server-pid`, the server's CPU seconds and RSS from `/proc`, and
//!   RSS per connection (`--idle` mode measures that alone);
//! - its own CPU seconds, to show it was not the bottleneck.
//!
//! `--raw-tcp` starts a tiny server in this binary that does a minimal
//! WebSocket handshake and writes pre-built frames of the same shape, fanning
//! each "publish" out to every connection from one thread: this machine's
//! ceiling for the same client, so results can be read as a fraction of it.
//!
//! The client side is mio event loops (`--threads`), reading with large
//! buffers and parsing frames itself (no JSON parse on the hot path: it looks
//! for the `\"t\":` and `\"s\":` fields of the event data).
//!
//! Output: one JSON line (machine-readable), then a human summary.
//!
//! Run: `cargo run --release -p realtime-benches --bin loadgen -- --help`;
//! the scenarios and figures are in `BENCHMARKS.md`.
#![allow(
    clippy::print_stdout,
    reason = "a command-line tool: its report goes to stdout"
)]

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream as StdStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use sha2::Sha256;

#[derive(Parser, Debug, Clone)]
#[command(about = "Loopback load generator for Pusher-compatible servers")]
struct Args {
    /// Server host (loopback only).
    #[arg(long, default_value = "127.0.0.1")]
    host: Ipv4Addr,
    /// Server port.
    #[arg(long, default_value_t = 6001)]
    port: u16,
    /// App id (the server's development app is `1`).
    #[arg(long, default_value = "1")]
    app_id: String,
    #[arg(long, default_value = "app-key")]
    app_key: String,
    #[arg(long, default_value = "app-secret")]
    app_secret: String,
    /// WebSocket connections.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Channels; connection i subscribes to bench-(i % channels).
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Published events per second in total; 0 = saturated.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Payload bytes per event (padding inside the event data).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Events per HTTP request (batch_events holds at most 10).
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Concurrent publisher connections (saturated mode).
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Client event-loop threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Spread client sockets over 127.0.0.1..=127.0.0.N.
    #[arg(long, default_value_t = 1)]
    source_ips: u8,
    /// The server's pid, for CPU and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connect and subscribe only, then report RSS per connection.
    #[arg(long)]
    idle: bool,
    /// Control mode: measure against a built-in raw TCP server.
    #[arg(long)]
    raw_tcp: bool,
    /// Give up connecting after this many seconds.
    #[arg(long, default_value_t = 60)]
    connect_timeout: u64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

/// Counters shared by every client thread.
#[derive(Default)]
struct Shared {
    open: AtomicUsize,
    subscribed: AtomicUsize,
    failed: AtomicUsize,
    received: AtomicU64,
    /// Highest sequence number seen per channel is not needed: loss is
    /// expected minus received.
    stop: AtomicBool,
    /// Set by the publisher when it is done; readers then drain.
    hist: Mutex<Option<Histogram<u64>>>,
}

fn run(args: Args) -> Result<(), String> {
    if !args.host.is_loopback() {
        return Err("only loopback targets are allowed".into());
    }
    let start = Instant::now();
    let mut raw = None;
    let target = if args.raw_tcp {
        let r = RawServer::start(&args, start).map_err(|e| format!("raw server: {e}"))?;
        let addr = r.addr;
        raw = Some(r);
        addr
    } else {
        SocketAddr::new(IpAddr::V4(args.host), args.port)
    };
    let server_pid = if args.raw_tcp {
        Some(std::process::id())
    } else {
        args.server_pid
    };
    let rss_before = server_pid.and_then(proc_rss_kib);

    let shared = Arc::new(Shared::default());
    let per_thread = args.connections.div_ceil(args.threads.max(1));
    let mut readers = Vec::new();
    for t in 0..args.threads.max(1) {
        let first = t * per_thread;
        let count = per_thread.min(args.connections.saturating_sub(first));
        if count == 0 {
            break;
        }
        let (args, shared) = (args.clone(), shared.clone());
        readers.push(std::thread::spawn(move || {
            client_loop(&args, target, first, count, &shared, start)
        }));
    }

    // Wait for every connection to be subscribed.
    let deadline = Instant::now() + Duration::from_secs(args.connect_timeout);
    loop {
        let subscribed = shared.subscribed.load(Ordering::SeqCst);
        let failed = shared.failed.load(Ordering::SeqCst);
        if subscribed + failed >= args.connections {
            break;
        }
        if Instant::now() > deadline {
            shared.stop.store(true, Ordering::SeqCst);
            return Err(format!(
                "only {subscribed}/{} subscribed ({failed} failed)",
                args.connections
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let connected = shared.subscribed.load(Ordering::SeqCst);
    let failed = shared.failed.load(Ordering::SeqCst);
    let ready_at = start.elapsed();
    // Let the server settle before reading its idle RSS.
    std::thread::sleep(Duration::from_millis(500));
    let rss_connected = server_pid.and_then(proc_rss_kib);
    let cpu_before = server_pid.and_then(proc_cpu_s);
    let self_cpu_before = proc_cpu_s(std::process::id());

    let mut published = 0u64;
    let mut per_channel = vec![0u64; args.channels.max(1)];
    let pub_elapsed;
    if args.idle {
        pub_elapsed = Duration::ZERO;
    } else {
        let t0 = Instant::now();
        let counts = if let Some(raw) = &raw {
            raw.publish(&args, start)
        } else {
            publish(&args, target, start)?
        };
        pub_elapsed = t0.elapsed();
        for (k, n) in counts.iter().enumerate() {
            per_channel[k] += n;
            published += n;
        }
    }
    // Expected deliveries: events per channel times its subscribers.
    let mut subs_per_channel = vec![0u64; args.channels.max(1)];
    for i in 0..args.connections {
        subs_per_channel[i % args.channels.max(1)] += 1;
    }
    let expected: u64 = per_channel
        .iter()
        .zip(&subs_per_channel)
        .map(|(p, s)| p * s)
        .sum();
    // Drain: until everything arrived or 3 s without progress.
    let mut last = shared.received.load(Ordering::SeqCst);
    let mut idle_since = Instant::now();
    while shared.received.load(Ordering::SeqCst) < expected {
        std::thread::sleep(Duration::from_millis(20));
        let now = shared.received.load(Ordering::SeqCst);
        if now != last {
            last = now;
            idle_since = Instant::now();
        } else if idle_since.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let recv_elapsed = pub_elapsed.max(Duration::from_millis(1));
    let cpu_after = server_pid.and_then(proc_cpu_s);
    let self_cpu_after = proc_cpu_s(std::process::id());
    shared.stop.store(true, Ordering::SeqCst);
    for r in readers {
        let _ = r.join();
    }
    let received = shared.received.load(Ordering::SeqCst);
    let hist = shared.hist.lock().map_err(|_| "poisoned")?.take();
    let q = |h: &Option<Histogram<u64>>, p: f64| {
        h.as_ref().map_or(0, |h| h.value_at_quantile(p)) as f64 / 1000.0
    };

    let rss_per_conn = match (rss_before, rss_connected) {
        (Some(b), Some(a)) if connected > 0 && !args.raw_tcp => {
            Some((a.saturating_sub(b) * 1024) as f64 / connected as f64)
        }
        _ => None,
    };
    let server_cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    };
    let self_cpu = match (self_cpu_before, self_cpu_after) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    };
    let fps = received as f64 / recv_elapsed.as_secs_f64();
    let json = serde_json::json!({
        "mode": if args.raw_tcp { "raw-tcp" } else if args.idle { "idle" } else { "pusher" },
        "connections": args.connections,
        "connected": connected,
        "failed": failed,
        "channels": args.channels,
        "payload_bytes": args.payload,
        "rate": args.rate,
        "duration_s": pub_elapsed.as_secs_f64(),
        "connect_s": ready_at.as_secs_f64(),
        "published": published,
        "expected": expected,
        "delivered": received,
        "lost": expected.saturating_sub(received),
        "delivered_per_s": fps,
        "latency_us": { "p50": q(&hist, 0.5), "p99": q(&hist, 0.99), "p999": q(&hist, 0.999), "max": q(&hist, 1.0) },
        "server_cpu_s": server_cpu,
        "server_rss_kib": rss_connected,
        "server_rss_before_kib": rss_before,
        "rss_per_connection_bytes": rss_per_conn,
        "loadgen_cpu_s": self_cpu,
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    });
    println!("{json}");
    if args.idle {
        println!(
            "{connected} idle conns ({failed} failed) subscribed in {:.2}s; server rss {}",
            ready_at.as_secs_f64(),
            match (rss_connected, rss_per_conn) {
                (Some(r), Some(p)) => format!(
                    "{r} KiB ({p:.0} B/conn over the {} KiB before)",
                    rss_before.unwrap_or(0)
                ),
                _ => "n/a (give --server-pid)".into(),
            }
        );
        return Ok(());
    }
    println!(
        "{} conns ({} failed) on {} channel(s), {} B payload, {}: published {} events in {:.2}s, delivered {}/{} ({} lost) = {:.0} frames/s; latency p50 {:.0}us p99 {:.0}us p999 {:.0}us; server cpu {}, rss {}; loadgen cpu {}",
        connected,
        failed,
        args.channels,
        args.payload,
        if args.rate == 0 { "saturated".to_string() } else { format!("{} ev/s", args.rate) },
        published,
        pub_elapsed.as_secs_f64(),
        received,
        expected,
        expected.saturating_sub(received),
        fps,
        q(&hist, 0.5),
        q(&hist, 0.99),
        q(&hist, 0.999),
        server_cpu.map_or("n/a".into(), |c| format!("{c:.2}s")),
        match (rss_connected, rss_per_conn) {
            (Some(r), Some(p)) => format!("{r} KiB ({p:.0} B/conn)"),
            (Some(r), None) => format!("{r} KiB"),
            _ => "n/a".into(),
        },
        self_cpu.map_or("n/a".into(), |c| format!("{c:.2}s")),
    );
    Ok(())
}

// ---------------------------------------------------------------- clients

enum State {
    Connecting,
    Handshaking,
    Open,
    Closed,
}

struct Conn {
    sock: TcpStream,
    state: State,
    buf: Vec<u8>,
    out: Vec<u8>,
    channel: String,
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn client_loop(
    args: &Args,
    target: SocketAddr,
    first: usize,
    count: usize,
    shared: &Shared,
    start: Instant,
) {
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("poll: {e}");
            shared.failed.fetch_add(count, Ordering::SeqCst);
            return;
        }
    };
    let mut conns: Vec<Option<Conn>> = Vec::with_capacity(count);
    for i in 0..count {
        let n = first + i;
        let src = Ipv4Addr::new(127, 0, 0, 1 + (n % args.source_ips.max(1) as usize) as u8);
        match connect_from(src, target) {
            Ok(mut sock) => {
                if poll
                    .registry()
                    .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
                    .is_err()
                {
                    shared.failed.fetch_add(1, Ordering::SeqCst);
                    conns.push(None);
                    continue;
                }
                conns.push(Some(Conn {
                    sock,
                    state: State::Connecting,
                    buf: Vec::new(),
                    out: Vec::new(),
                    channel: format!("bench-{}", n % args.channels.max(1)),
                }));
            }
            Err(e) => {
                if n == first {
                    eprintln!("connect: {e}");
                }
                shared.failed.fetch_add(1, Ordering::SeqCst);
                conns.push(None);
            }
        }
    }
    let path = format!(
        "/app/{}?protocol=7&client=loadgen&version=1.0",
        args.app_key
    );
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).ok();
    let mut events = Events::with_capacity(1024);
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut received_local = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        if poll
            .poll(&mut events, Some(Duration::from_millis(50)))
            .is_err()
        {
            continue;
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(c) = conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let mut dead = false;
            if matches!(c.state, State::Connecting) && ev.is_writable() {
                if c.sock.peer_addr().is_ok() {
                    let req = format!(
                        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                    );
                    c.out.extend_from_slice(req.as_bytes());
                    c.state = State::Handshaking;
                } else if ev.is_error() || ev.is_write_closed() {
                    dead = true;
                }
            }
            if ev.is_readable() || ev.is_read_closed() {
                loop {
                    match c.sock.read(&mut rbuf) {
                        Ok(0) => {
                            dead = true;
                            break;
                        }
                        Ok(n) => c.buf.extend_from_slice(&rbuf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            dead = true;
                            break;
                        }
                    }
                }
                if !dead {
                    let n = process(c, shared, start, hist.as_mut());
                    received_local += n;
                    if n > 0 {
                        shared.received.fetch_add(n, Ordering::Relaxed);
                    }
                    if matches!(c.state, State::Closed) {
                        dead = true;
                    }
                }
            }
            if !c.out.is_empty() && !dead {
                match c.sock.write(&c.out) {
                    Ok(n) => {
                        c.out.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => dead = true,
                }
            }
            if dead {
                let was_subscribed = matches!(c.state, State::Open | State::Closed);
                let _ = poll.registry().deregister(&mut c.sock);
                conns[i] = None;
                if !was_subscribed {
                    shared.failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
    let _ = received_local;
    if let (Some(h), Ok(mut g)) = (hist, shared.hist.lock()) {
        match g.as_mut() {
            Some(all) => {
                let _ = all.add(&h);
            }
            None => *g = Some(h),
        }
    }
}

fn connect_from(src: Ipv4Addr, target: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    if src != Ipv4Addr::new(127, 0, 0, 1) {
        s.bind(&SocketAddr::new(IpAddr::V4(src), 0).into())?;
    }
    match s.connect(&target.into()) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(libc_einprogress())
                || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(StdStream::from(s)))
}

fn libc_einprogress() -> i32 {
    115 // EINPROGRESS on Linux
}

/// Parses what `c.buf` holds; returns bench events received.
fn process(
    c: &mut Conn,
    shared: &Shared,
    start: Instant,
    mut hist: Option<&mut Histogram<u64>>,
) -> u64 {
    let mut got = 0;
    if matches!(c.state, State::Handshaking) {
        let Some(end) = find(&c.buf, b"\r\n\r\n") else {
            return 0;
        };
        if !c.buf.starts_with(b"HTTP/1.1 101") {
            c.state = State::Closed;
            return 0;
        }
        c.buf.drain(..end + 4);
        c.state = State::Open;
        shared.open.fetch_add(1, Ordering::SeqCst);
    }
    let mut pos = 0;
    while let Some((opcode, start_payload, end)) = parse_frame(&c.buf[pos..]) {
        let payload = &c.buf[pos + start_payload..pos + end];
        match opcode {
            0x1 => {
                if let Some(t) = field_u64(payload, b"\\\"t\\\":") {
                    got += 1;
                    if let Some(h) = hist.as_deref_mut() {
                        let now = start.elapsed().as_nanos() as u64;
                        let _ = h.record(now.saturating_sub(t).max(1));
                    }
                } else if find(payload, b"pusher:connection_established").is_some() {
                    let sub = format!(
                        r#"{{"event":"pusher:subscribe","data":{{"channel":"{}"}}}}"#,
                        c.channel
                    );
                    push_masked(&mut c.out, 0x1, sub.as_bytes());
                } else if find(payload, b"subscription_succeeded").is_some() {
                    shared.subscribed.fetch_add(1, Ordering::SeqCst);
                } else if find(payload, b"pusher:ping").is_some() {
                    push_masked(&mut c.out, 0x1, br#"{"event":"pusher:pong","data":{}}"#);
                } else if find(payload, b"pusher:error").is_some() {
                    eprintln!("server error: {}", String::from_utf8_lossy(payload));
                }
            }
            0x8 => c.state = State::Closed,
            0x9 => {
                let p = payload.to_vec();
                push_masked(&mut c.out, 0xA, &p);
            }
            _ => {}
        }
        pos += end;
    }
    c.buf.drain(..pos);
    got
}

/// (opcode, payload start, frame end) of the first complete unmasked frame.
fn parse_frame(b: &[u8]) -> Option<(u8, usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let (len, mut at) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => {
            let mut x = [0u8; 8];
            x.copy_from_slice(b.get(2..10)?);
            (u64::from_be_bytes(x) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if masked {
        at += 4;
    }
    if b.len() < at + len {
        return None;
    }
    Some((opcode, at, at + len))
}

fn push_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The unsigned integer after `key` in `b`.
fn field_u64(b: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(b, key)? + key.len();
    let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&b[at..at + digits]).ok()?.parse().ok()
}

// -------------------------------------------------------------- publisher

fn event_data(args: &Args, start: Instant, seq: u64) -> String {
    let t = start.elapsed().as_nanos() as u64;
    let head = format!(r#"{{"t":{t},"s":{seq},"p":""#);
    let pad = args.payload.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// Publishes for `duration`; events published per channel.
fn publish(args: &Args, target: SocketAddr, start: Instant) -> Result<Vec<u64>, String> {
    let k = args.channels.max(1);
    let stop_at = Instant::now() + Duration::from_secs(args.duration);
    let workers = if args.rate == 0 {
        args.publishers.max(1)
    } else {
        1
    };
    let counts: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || -> Result<Vec<u64>, String> {
                    let mut http = Http::connect(target)?;
                    let mut counts = vec![0u64; k];
                    let mut seq = w as u64;
                    let batch = args.batch.clamp(1, 10);
                    let interval = (args.rate > 0)
                        .then(|| Duration::from_secs_f64(batch as f64 / args.rate as f64));
                    let mut next = Instant::now();
                    while Instant::now() < stop_at {
                        if let Some(iv) = interval {
                            let now = Instant::now();
                            if now < next {
                                std::thread::sleep(next - now);
                            }
                            next += iv;
                        }
                        let mut events = Vec::with_capacity(batch);
                        let mut chans = Vec::with_capacity(batch);
                        for _ in 0..batch {
                            let ch = (seq as usize) % k;
                            events.push(serde_json::json!({
                                "name": "bench",
                                "channel": format!("bench-{ch}"),
                                "data": event_data(args, start, seq),
                            }));
                            chans.push(ch);
                            seq += workers as u64;
                        }
                        let body = serde_json::json!({ "batch": events }).to_string();
                        let path = format!("/apps/{}/batch_events", args.app_id);
                        let status = http.post_signed(args, &path, &body)?;
                        if status != 200 {
                            return Err(format!("publish answered HTTP {status}"));
                        }
                        for ch in chans {
                            counts[ch] += 1;
                        }
                    }
                    Ok(counts)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("publisher panicked".into()))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut total = vec![0u64; k];
    for c in counts {
        for (i, n) in c.into_iter().enumerate() {
            total[i] += n;
        }
    }
    Ok(total)
}

/// A keep-alive HTTP/1.1 client that reconnects when the server closes.
struct Http {
    target: SocketAddr,
    sock: Option<StdStream>,
    buf: Vec<u8>,
}

impl Http {
    fn connect(target: SocketAddr) -> Result<Self, String> {
        let mut h = Self {
            target,
            sock: None,
            buf: Vec::new(),
        };
        h.reconnect()?;
        Ok(h)
    }

    fn reconnect(&mut self) -> Result<(), String> {
        let s = StdStream::connect(self.target).map_err(|e| format!("publisher connect: {e}"))?;
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        self.sock = Some(s);
        self.buf.clear();
        Ok(())
    }

    fn post_signed(&mut self, args: &Args, path: &str, body: &str) -> Result<u16, String> {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let md5 = hex::encode(Md5::digest(body.as_bytes()));
        let query = format!(
            "auth_key={}&auth_timestamp={ts}&auth_version=1.0&body_md5={md5}",
            args.app_key
        );
        let to_sign = format!("POST\n{path}\n{query}");
        let mut mac = Hmac::<Sha256>::new_from_slice(args.app_secret.as_bytes())
            .map_err(|e| e.to_string())?;
        mac.update(to_sign.as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        let req = format!(
            "POST {path}?{query}&auth_signature={sig} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.target,
            body.len()
        );
        for attempt in 0..2 {
            if self.sock.is_none() {
                self.reconnect()?;
            }
            match self.exchange(req.as_bytes()) {
                Ok(status) => return Ok(status),
                Err(e) if attempt == 0 => {
                    let _ = e;
                    self.sock = None;
                }
                Err(e) => return Err(format!("publish: {e}")),
            }
        }
        Err("publish failed".into())
    }

    fn exchange(&mut self, req: &[u8]) -> io::Result<u16> {
        let sock = self.sock.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        sock.write_all(req)?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let status: u16 = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    let n = sock.read(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                if head.contains("connection: close") {
                    self.sock = None;
                }
                return Ok(status);
            }
            let n = sock.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

// ------------------------------------------------------------- raw server

/// The control server: minimal handshake, then pre-built frames fanned out
/// from one thread with large non-blocking writes.
struct RawServer {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl RawServer {
    fn start(args: &Args, _start: Instant) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let conns = Arc::new(Mutex::new(Vec::new()));
        let sink = conns.clone();
        let channels = args.channels.max(1);
        std::thread::spawn(move || {
            let mut n = 0usize;
            for s in listener.incoming() {
                let Ok(mut s) = s else { continue };
                let ch = n % channels;
                n += 1;
                // Handshake: read the request, answer 101, then the events a
                // Pusher server sends on connect and subscribe.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                while find(&buf, b"\r\n\r\n").is_none() {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let mut out = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n".to_vec();
                push_unmasked(
                    &mut out,
                    br#"{"event":"pusher:connection_established","data":"{}"}"#,
                );
                push_unmasked(&mut out, format!(r#"{{"event":"pusher_internal:subscription_succeeded","channel":"bench-{ch}","data":"{{}}"}}"#).as_bytes());
                if s.write_all(&out).is_err() {
                    continue;
                }
                s.set_nonblocking(true).ok();
                s.set_nodelay(true).ok();
                if let Ok(mut g) = sink.lock() {
                    g.push(s);
                }
            }
        });
        Ok(Self { addr, conns })
    }

    /// Fans out events for `duration` from this thread; per-channel counts.
    fn publish(&self, args: &Args, start: Instant) -> Vec<u64> {
        let k = args.channels.max(1);
        let mut counts = vec![0u64; k];
        let Ok(mut conns) = self.conns.lock() else {
            return counts;
        };
        let mut pending: Vec<Vec<u8>> = vec![Vec::new(); conns.len()];
        let stop_at = Instant::now() + Duration::from_secs(args.duration);
        let interval = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64));
        let mut next = Instant::now();
        let mut seq = 0u64;
        while Instant::now() < stop_at {
            if let Some(iv) = interval {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep(next - now);
                }
                next += iv;
            }
            // One event per channel per round, encoded once; saturated
            // rounds carry 32 events so each write moves many frames.
            let round = if interval.is_some() { 1 } else { 32 };
            for r in 0..round * k {
                let ch = r % k;
                let data = serde_json::to_string(&event_data(args, start, seq)).unwrap_or_default();
                seq += 1;
                let mut frame = Vec::new();
                push_unmasked(
                    &mut frame,
                    format!(r#"{{"event":"bench","channel":"bench-{ch}","data":{data}}}"#)
                        .as_bytes(),
                );
                for (i, p) in pending.iter_mut().enumerate() {
                    if i % k == ch && p.len() < 1 << 20 {
                        p.extend_from_slice(&frame);
                    }
                }
                counts[ch] += 1;
            }
            for (s, p) in conns.iter_mut().zip(pending.iter_mut()) {
                if p.is_empty() {
                    continue;
                }
                if let Ok(n) = s.write(p) {
                    p.drain(..n);
                }
            }
        }
        // Flush the rest.
        let flush_until = Instant::now() + Duration::from_secs(5);
        while pending.iter().any(|p| !p.is_empty()) && Instant::now() < flush_until {
            for (s, p) in conns.iter_mut().zip(pending.iter_mut()) {
                if let Ok(n) = s.write(p) {
                    p.drain(..n);
                }
            }
        }
        counts
    }
}

fn push_unmasked(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

// ----------------------------------------------------------------- /proc

fn proc_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// utime + stime of a process, in seconds.
fn proc_cpu_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces).
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // USER_HZ is 100 on Linux
}
