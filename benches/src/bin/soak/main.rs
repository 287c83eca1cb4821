//! `soak`: the client side of the soak and chaos harness (`scripts/soak`,
//! issue 18). One process, long-lived clients, the whole mix for the whole
//! run:
//!
//! - `--connections` WebSocket clients over one or more nodes (`--ports`),
//!   each with a role for life: healthy reader, slow reader, stopped reader
//!   (`--unhealthy-pct`, split evenly); every client on one of
//!   `--public-channels`, `--presence-pct` of them also on one of
//!   `--presence-channels` (joining, leaving and rejoining, sending client
//!   events); churn of `--churn-pct` clients a minute (`client.rs`);
//! - signed HTTP publishes at `--rate` per second spread over every channel
//!   and every node, each carrying its channel's sequence number and its
//!   publish time (`publish.rs`);
//! - a ledger that proves each healthy subscription received every event
//!   published after it was acknowledged, and sorts losses into those inside
//!   a fault window and the rest (`ledger.rs`);
//! - a control file (`--control`) the script appends lines to:
//!   `fault-start NAME`, `fault-end NAME` (a window the script opens around a
//!   kill), `storm` (every client drops at once; the driver holds the window
//!   open until the healthy readers are back, see [`storm_over`]), `stop`.
//!
//! Output on stdout, one JSON object a line: `{"type":"stats",…}` every
//! `--interval` seconds (the script plots these), then `{"type":"final",…}`
//! with the totals, the fault windows and the roster check: after the run
//! the driver stops changing anything, lets every reader drain, and compares
//! each healthy member's presence roster with the membership it knows is
//! true. It exits 0 whatever it found; the script judges.
#![allow(
    clippy::print_stdout,
    reason = "a command-line tool: its report goes to stdout"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;

mod client;
mod ledger;
mod publish;

use client::{new_hist, Final, Role};
use ledger::{Ledger, Settled};

/// The soak driver's settings; the defaults are issue 18's mix.
#[derive(Parser, Debug, Clone)]
#[command(about = "Soak driver: the realistic mix against one or more gateway nodes")]
pub(crate) struct Args {
    /// Node ports on 127.0.0.1, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "6001")]
    ports: Vec<u16>,
    #[arg(long, default_value = "1")]
    app_id: String,
    #[arg(long, default_value = "app-key")]
    app_key: String,
    #[arg(long, default_value = "app-secret")]
    app_secret: String,
    /// WebSocket clients.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    #[arg(long, default_value_t = 1000)]
    public_channels: usize,
    #[arg(long, default_value_t = 200)]
    presence_channels: usize,
    /// Percent of clients that also join a presence channel.
    #[arg(long, default_value_t = 20)]
    presence_pct: usize,
    /// Percent of clients that read slowly or stop reading (half each).
    #[arg(long, default_value_t = 10)]
    unhealthy_pct: usize,
    /// Bytes a second a slow reader reads.
    #[arg(long, default_value_t = 200)]
    slow_bytes_per_s: usize,
    /// Percent of clients reconnecting every minute.
    #[arg(long, default_value_t = 3.0)]
    churn_pct: f64,
    /// Percent of presence members leaving (and rejoining 5-20 s later)
    /// every minute.
    #[arg(long, default_value_t = 5.0)]
    presence_toggle_pct: f64,
    /// Seconds between two client events of one presence member.
    #[arg(long, default_value_t = 30)]
    client_event_s: u64,
    /// Signed HTTP publishes a second, in total.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Publisher threads.
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Bytes of event data.
    #[arg(long, default_value_t = 96)]
    payload: usize,
    /// Seconds of the mix (then the drain and the roster check).
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Client event-loop threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Spread client sockets over 127.0.0.1..=127.0.0.N.
    #[arg(long, default_value_t = 16)]
    source_ips: u8,
    /// Seconds between two stats lines.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// The control file the script appends commands to.
    #[arg(long)]
    control: Option<PathBuf>,
    /// Milliseconds after its publish was answered that an event not yet
    /// received by a healthy subscriber counts as lost.
    #[arg(long, default_value_t = 5000)]
    grace_ms: u32,
    /// Longest drain at the end, seconds.
    #[arg(long, default_value_t = 30)]
    quiesce: u64,
    /// Seconds over which the first connections are spread.
    #[arg(long, default_value_t = 10)]
    ramp: u64,
    /// New connections per client thread per 50 ms tick, at most.
    #[arg(long, default_value_t = 100)]
    connects_per_tick: usize,
}

/// The name of channel `i`: public ones first, then presence ones.
pub(crate) fn channel_name(args: &Args, i: usize) -> String {
    if i < args.public_channels {
        format!("soak-{i}")
    } else {
        format!("presence-soak-{}", i - args.public_channels)
    }
}

/// Counters every thread adds to; the stats lines report their deltas.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) open: AtomicI64,
    pub(crate) pending_subs: AtomicI64,
    /// `open` and `pending_subs` of healthy readers only: the storm's
    /// window closes on these (stopped readers answer when they wake).
    pub(crate) healthy_open: AtomicI64,
    pub(crate) healthy_pending_subs: AtomicI64,
    pub(crate) connects: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) delivered_healthy: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) lost_in_fault: AtomicU64,
    /// Counted lost, then arrived (more than the grace after its publish).
    pub(crate) late: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) publish_skipped: AtomicU64,
    pub(crate) client_events_sent: AtomicU64,
    pub(crate) client_events_received: AtomicU64,
    pub(crate) presence_joins: AtomicU64,
    pub(crate) presence_leaves: AtomicU64,
    pub(crate) members_added: AtomicU64,
    pub(crate) members_removed: AtomicU64,
}

/// What the driver's threads share.
pub(crate) struct Shared {
    pub(crate) start: Instant,
    pub(crate) ledger: Ledger,
    pub(crate) counters: Counters,
    reasons: Mutex<BTreeMap<String, u64>>,
    hist: Mutex<Histogram<u64>>,
    examples: Mutex<Vec<String>>,
    /// No more publishes, churn, leaves or sleeps: the drain before the end.
    pub(crate) quiesce: AtomicBool,
    pub(crate) stop: AtomicBool,
    /// Bumped for a reconnect storm.
    pub(crate) storm: AtomicU64,
    /// The publishers' shared channel cursor.
    pub(crate) pick: AtomicU64,
    /// What the client threads hand back at the end, and how many did.
    pub(crate) finals: Mutex<Vec<Final>>,
    pub(crate) snapshots: AtomicUsize,
    /// Set once every thread has taken its snapshot: they may close.
    pub(crate) release: AtomicBool,
}

impl Shared {
    /// Milliseconds since the driver started.
    pub(crate) fn now_ms(&self) -> u32 {
        self.start.elapsed().as_millis().min(u32::MAX as u128 - 1) as u32
    }

    pub(crate) fn count_reason(&self, reason: &str) {
        *lock(&self.reasons).entry(reason.to_owned()).or_default() += 1;
    }

    pub(crate) fn example(&self, what: String) {
        let mut g = lock(&self.examples);
        if g.len() < 20 {
            g.push(what);
        }
    }

    pub(crate) fn merge_hist(&self, h: &mut Histogram<u64>) {
        let _ = lock(&self.hist).add(&*h);
        h.reset();
    }

    pub(crate) fn add_settled(&self, s: Settled, client: usize, channel: usize) {
        if s.lost > 0 {
            self.counters.lost.fetch_add(s.lost, Ordering::Relaxed);
            self.example(format!(
                "client {client} missed {} event(s) of channel {channel} outside fault windows (t={} ms; taken back if it arrives later)",
                s.lost,
                self.now_ms()
            ));
        }
        self.counters
            .lost_in_fault
            .fetch_add(s.lost_in_fault, Ordering::Relaxed);
    }
}

/// The longest a storm's window stays open.
const STORM_CAP: Duration = Duration::from_secs(60);

/// Whether a reconnect storm is over, `elapsed` after it was called: the
/// healthy readers are back (98 % of the `before` that were open when it
/// was called are open again, at most 1 % of `before` still wait for a
/// subscription reply) and at least 2 s passed, or [`STORM_CAP`] passed.
/// Only healthy readers count: a stopped reader reads its subscription
/// reply only when it wakes, which kept the window open to its cap.
fn storm_over(elapsed: Duration, before: i64, open: i64, pending: i64) -> bool {
    let back =
        elapsed > Duration::from_secs(2) && open * 100 >= before * 98 && pending * 100 <= before;
    back || elapsed > STORM_CAP
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("soak: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    if args.ports.is_empty() || args.public_channels == 0 {
        return Err("need at least one port and one public channel".into());
    }
    let nodes: Vec<SocketAddr> = args
        .ports
        .iter()
        .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, *p)))
        .collect();
    let shared = Arc::new(Shared {
        start: Instant::now(),
        ledger: Ledger::new(args.public_channels + args.presence_channels),
        counters: Counters::default(),
        reasons: Mutex::new(BTreeMap::new()),
        hist: Mutex::new(new_hist()),
        examples: Mutex::new(Vec::new()),
        quiesce: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        storm: AtomicU64::new(0),
        pick: AtomicU64::new(0),
        finals: Mutex::new(Vec::new()),
        snapshots: AtomicUsize::new(0),
        release: AtomicBool::new(false),
    });
    let threads = args.threads.max(1);
    let per = args.connections.div_ceil(threads);
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let (args, nodes, shared) = (args.clone(), nodes.clone(), shared.clone());
            let first = t * per;
            let count = per.min(args.connections.saturating_sub(first));
            std::thread::spawn(move || client::client_loop(t, &args, &nodes, first, count, &shared))
        })
        .collect();
    // Publishing starts once the first connections had time to subscribe.
    let publishers: Vec<_> = (0..args.publishers.max(1))
        .map(|w| {
            let (args, nodes, shared) = (args.clone(), nodes.clone(), shared.clone());
            std::thread::spawn(move || publish::publisher(w, &args, &nodes, &shared))
        })
        .collect();

    let mut control = Control::new(args.control.clone());
    let mut stats = Stats::default();
    let mut overall = new_hist();
    let mut next_stats = Duration::from_secs(args.interval);
    let mut storm: Option<(Instant, i64)> = None;
    let run_for = Duration::from_secs(args.duration);
    let mut stopped_early = false;
    while shared.start.elapsed() < run_for && !stopped_early {
        std::thread::sleep(Duration::from_millis(100));
        for cmd in control.poll() {
            let now = shared.now_ms();
            let mut words = cmd.split_whitespace();
            match (words.next(), words.next()) {
                (Some("fault-start"), Some(name)) => shared.ledger.fault_start(name, now),
                (Some("fault-end"), Some(name)) => shared.ledger.fault_end(name, now),
                (Some("storm"), _) if storm.is_none() => {
                    let open = shared.counters.healthy_open.load(Ordering::Relaxed);
                    shared.ledger.fault_start("storm", now);
                    shared.storm.fetch_add(1, Ordering::SeqCst);
                    storm = Some((Instant::now(), open));
                }
                (Some("stop"), _) => stopped_early = true,
                _ => eprintln!("soak: unknown control line {cmd:?}"),
            }
        }
        if let Some((at, before)) = storm {
            let c = &shared.counters;
            let open = c.healthy_open.load(Ordering::Relaxed);
            let pending = c.healthy_pending_subs.load(Ordering::Relaxed);
            if storm_over(at.elapsed(), before, open, pending) {
                shared.ledger.fault_end("storm", shared.now_ms());
                storm = None;
            }
        }
        if shared.start.elapsed() >= next_stats {
            next_stats += Duration::from_secs(args.interval);
            println!("{}", stats.line(&shared, &mut overall));
        }
    }
    if storm.is_some() {
        shared.ledger.fault_end("storm", shared.now_ms());
    }

    // The drain: nothing changes any more; wait until deliveries stop and
    // every subscription is answered.
    let mix_end = shared.start.elapsed();
    shared.quiesce.store(true, Ordering::SeqCst);
    for p in publishers {
        let _ = p.join();
    }
    let drain_start = Instant::now();
    let mut last = (u64::MAX, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let delivered = shared.counters.delivered.load(Ordering::Relaxed);
        if delivered != last.0 {
            last = (delivered, Instant::now());
        }
        let pending = shared.counters.pending_subs.load(Ordering::Relaxed);
        let quiet = last.1.elapsed() > Duration::from_secs(2) && pending <= 0;
        if (quiet && drain_start.elapsed() > Duration::from_secs(3))
            || drain_start.elapsed() > Duration::from_secs(args.quiesce)
        {
            break;
        }
        if shared.start.elapsed() >= next_stats {
            next_stats += Duration::from_secs(args.interval);
            println!("{}", stats.line(&shared, &mut overall));
        }
    }
    let drained = drain_start.elapsed();
    shared.stop.store(true, Ordering::SeqCst);
    while shared.snapshots.load(Ordering::SeqCst) < threads
        && !clients.iter().any(std::thread::JoinHandle::is_finished)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let finals: Vec<Final> = std::mem::take(&mut *lock(&shared.finals));
    shared.release.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().map_err(|_| "a client thread panicked")?;
    }
    println!("{}", stats.line(&shared, &mut overall));

    let roster = roster_check(&args, &finals);
    let c = &shared.counters;
    let q = |p: f64| overall.value_at_quantile(p);
    let windows: Vec<_> = shared
        .ledger
        .windows()
        .iter()
        .map(|w| {
            json!({"name": w.name, "start_s": f64::from(w.start) / 1000.0,
                        "end_s": w.end.map(|e| f64::from(e) / 1000.0)})
        })
        .collect();
    let final_line = json!({
        "type": "final",
        "mix_s": mix_end.as_secs_f64(),
        "drain_s": drained.as_secs_f64(),
        "connections": args.connections,
        "nodes": args.ports.len(),
        "connects": c.connects.load(Ordering::Relaxed),
        "published": c.published.load(Ordering::Relaxed),
        "publish_failed": c.publish_failed.load(Ordering::Relaxed),
        "publish_skipped": c.publish_skipped.load(Ordering::Relaxed),
        "delivered": c.delivered.load(Ordering::Relaxed),
        "delivered_healthy": c.delivered_healthy.load(Ordering::Relaxed),
        "lost": c.lost.load(Ordering::Relaxed),
        "lost_in_fault": c.lost_in_fault.load(Ordering::Relaxed),
        "late": c.late.load(Ordering::Relaxed),
        "duplicates": c.duplicates.load(Ordering::Relaxed),
        "client_events_sent": c.client_events_sent.load(Ordering::Relaxed),
        "client_events_received": c.client_events_received.load(Ordering::Relaxed),
        "presence_joins": c.presence_joins.load(Ordering::Relaxed),
        "presence_leaves": c.presence_leaves.load(Ordering::Relaxed),
        "latency_us": {"p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": overall.max()},
        "client_side_reasons": *lock(&shared.reasons),
        "fault_windows": windows,
        "roster": roster,
        "examples": *lock(&shared.examples),
    });
    println!("{final_line}");
    Ok(())
}

/// Compares each healthy member's roster with the true membership: the
/// user ids of the clients that hold an acknowledged presence subscription
/// on an open connection.
fn roster_check(args: &Args, finals: &[Final]) -> serde_json::Value {
    let mut truth: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for f in finals {
        if let Some(ch) = f.member_of {
            truth.entry(ch).or_default().insert(&f.user_id);
        }
    }
    let (mut checked, mut mismatched, mut examples) = (0, 0, Vec::new());
    for f in finals.iter().filter(|f| f.role == Role::Healthy) {
        let Some(ch) = f.member_of else { continue };
        checked += 1;
        let want = truth.get(&ch).cloned().unwrap_or_default();
        let have: BTreeSet<&str> = f.roster.iter().map(String::as_str).collect();
        if want != have {
            mismatched += 1;
            if examples.len() < 10 {
                let missing: Vec<_> = want.difference(&have).collect();
                let extra: Vec<_> = have.difference(&want).collect();
                examples.push(format!(
                    "client {} on {}: missing {missing:?}, extra {extra:?}",
                    f.id,
                    channel_name(args, ch)
                ));
            }
        }
    }
    json!({"checked": checked, "mismatched": mismatched, "members": truth.values().map(BTreeSet::len).sum::<usize>(), "examples": examples})
}

/// The previous totals, for per-interval deltas.
#[derive(Default)]
struct Stats {
    last_t: f64,
    last: BTreeMap<&'static str, u64>,
    last_reasons: BTreeMap<String, u64>,
}

impl Stats {
    fn line(&mut self, shared: &Shared, overall: &mut Histogram<u64>) -> serde_json::Value {
        let t = shared.start.elapsed().as_secs_f64();
        let dt = (t - self.last_t).max(1e-3);
        self.last_t = t;
        let c = &shared.counters;
        let mut out = json!({
            "type": "stats",
            "t_s": (t * 10.0).round() / 10.0,
            "open": c.open.load(Ordering::Relaxed),
            "pending_subscriptions": c.pending_subs.load(Ordering::Relaxed),
            "healthy_open": c.healthy_open.load(Ordering::Relaxed),
            "healthy_pending_subscriptions": c.healthy_pending_subs.load(Ordering::Relaxed),
            "fault": shared.ledger.any_fault_open(),
        });
        let totals: [(&'static str, &AtomicU64); 14] = [
            ("connects", &c.connects),
            ("delivered", &c.delivered),
            ("delivered_healthy", &c.delivered_healthy),
            ("lost", &c.lost),
            ("lost_in_fault", &c.lost_in_fault),
            ("late", &c.late),
            ("duplicates", &c.duplicates),
            ("published", &c.published),
            ("publish_failed", &c.publish_failed),
            ("client_events_sent", &c.client_events_sent),
            ("client_events_received", &c.client_events_received),
            ("presence_joins", &c.presence_joins),
            ("presence_leaves", &c.presence_leaves),
            ("members_added", &c.members_added),
        ];
        for (name, a) in totals {
            let now = a.load(Ordering::Relaxed);
            let before = self.last.insert(name, now).unwrap_or(0);
            // Signed: a loss taken back (it arrived late) makes a delta negative.
            out[name] = json!(now as i64 - before as i64);
        }
        out["delivered_per_s"] =
            json!((out["delivered"].as_u64().unwrap_or(0) as f64 / dt).round());
        out["published_per_s"] =
            json!((out["published"].as_u64().unwrap_or(0) as f64 / dt).round());
        let h = std::mem::replace(&mut *lock(&shared.hist), new_hist());
        let _ = overall.add(&h);
        out["p50_us"] = json!(h.value_at_quantile(0.5));
        out["p99_us"] = json!(h.value_at_quantile(0.99));
        let reasons = lock(&shared.reasons).clone();
        let mut delta = serde_json::Map::new();
        for (k, v) in &reasons {
            let d = v - self.last_reasons.get(k).copied().unwrap_or(0);
            if d > 0 {
                delta.insert(k.clone(), json!(d));
            }
        }
        self.last_reasons = reasons;
        out["disconnects"] = serde_json::Value::Object(delta);
        out
    }
}

/// The control file: lines appended by the script, read as they come.
struct Control {
    file: Option<BufReader<std::fs::File>>,
    path: Option<PathBuf>,
    pos: u64,
}

impl Control {
    fn new(path: Option<PathBuf>) -> Self {
        Self {
            file: None,
            path,
            pos: 0,
        }
    }

    fn poll(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if self.file.is_none() {
            if let Some(f) = self.path.as_ref().and_then(|p| std::fs::File::open(p).ok()) {
                self.file = Some(BufReader::new(f));
            }
        }
        let Some(f) = self.file.as_mut() else {
            return out;
        };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return out;
        }
        let mut line = String::new();
        while let Ok(n) = f.read_line(&mut line) {
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            self.pos += n as u64;
            out.push(line.trim().to_owned());
            line.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_storm_ends_when_the_healthy_readers_are_back() {
        let s = Duration::from_secs;
        // 9,000 healthy readers were open when the storm was called.
        assert!(!storm_over(s(1), 9_000, 9_000, 0), "not before 2 s");
        assert!(!storm_over(s(5), 9_000, 8_000, 0), "too few back");
        assert!(
            !storm_over(s(5), 9_000, 9_000, 500),
            "too many still waiting"
        );
        assert!(storm_over(s(5), 9_000, 8_900, 90));
        assert!(storm_over(s(61), 9_000, 0, 9_000), "the cap");
    }
}
