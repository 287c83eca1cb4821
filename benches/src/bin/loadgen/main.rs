//! `loadgen`: a loopback load generator for Pusher-compatible servers.
//!
//! It opens C WebSocket connections (spread over N source addresses from
//! 127.0.0.1 up through 127.0.0.0/8, so no address runs out of ports), subscribes
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
//! each "publish" out to its channel's connections from the publishing
//! thread (no hop, no HTTP, no parsing): this machine's ceiling for the same
//! client, so results can be read as a fraction of it. With `--rate` it
//! publishes that many events per second in total, one channel after
//! another, as the HTTP publisher does. It holds both ends of every
//! connection, so it needs two descriptors per connection: it refuses a
//! count the open-file limit cannot hold (about 9,990 under a limit of
//! 20,000) instead of stalling at the connect deadline.
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

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hdrhistogram::Histogram;

mod client;
mod publish;
mod raw;

use client::*;
use publish::*;
use raw::*;

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
    /// Spread client sockets over N source addresses counted up from
    /// 127.0.0.1 through 127.0.0.0/8 (127.0.0.255, then 127.0.1.0, ...;
    /// at most 16,777,214), so no address runs out of ports.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_SOURCE_IPS))]
    source_ips: u32,
    /// The server's pid, for CPU and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connect and subscribe only, then report RSS per connection.
    #[arg(long)]
    idle: bool,
    /// With --idle: keep the connections open this many seconds after the
    /// RSS reading (pings answered), e.g. to watch the server's RSS.
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// Control mode: measure against a built-in raw TCP server.
    #[arg(long)]
    raw_tcp: bool,
    /// Give up connecting after this many seconds.
    #[arg(long, default_value_t = 60)]
    connect_timeout: u64,
}

/// Source addresses in 127.0.0.0/8 after 127.0.0.0, short of the
/// broadcast address 127.255.255.255.
const MAX_SOURCE_IPS: i64 = (1 << 24) - 2;

/// The `n`th connection's source address: 127.0.0.1 + (n mod `spread`).
fn source_addr(n: usize, spread: u32) -> Ipv4Addr {
    let k = (n % spread.max(1) as usize) as u32;
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)) + k)
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
        check_raw_descriptors(args.connections)?;
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
        std::thread::sleep(Duration::from_secs(args.hold));
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

/// `--raw-tcp` holds both ends of each connection in this process: two
/// descriptors per connection, plus a margin for the listener, the polls
/// and the publisher. Past the soft open-file limit the in-process server's
/// accepts fail and the run would wait out the connect deadline.
fn check_raw_descriptors(connections: usize) -> Result<(), String> {
    const MARGIN: usize = 64;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    match soft_open_files(&limits) {
        Some(soft) if 2 * connections + MARGIN > soft => Err(format!(
            "--raw-tcp needs two descriptors per connection: {connections} connections need \
             {} under an open-file limit of {soft}; use at most {}",
            2 * connections + MARGIN,
            soft.saturating_sub(MARGIN) / 2
        )),
        _ => Ok(()),
    }
}

/// The soft "Max open files" of a `/proc/<pid>/limits` text.
fn soft_open_files(limits: &str) -> Option<usize> {
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_file_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            20000                40000                files     \n";
        assert_eq!(soft_open_files(limits), Some(20_000));
        assert_eq!(soft_open_files("Max processes 5 5 processes\n"), None);
    }

    #[test]
    fn source_addresses_count_up_through_the_loopback_net_and_wrap() {
        assert_eq!(source_addr(0, 1), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_addr(5, 1), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_addr(254, 1000), Ipv4Addr::new(127, 0, 0, 255));
        assert_eq!(source_addr(255, 1000), Ipv4Addr::new(127, 0, 1, 0));
        assert_eq!(source_addr(1000, 1000), Ipv4Addr::new(127, 0, 0, 1));
        let last = MAX_SOURCE_IPS as u32;
        assert_eq!(
            source_addr(last as usize - 1, last),
            Ipv4Addr::new(127, 255, 255, 254)
        );
    }
}
