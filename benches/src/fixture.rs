//! Shared bench fixtures: attached Hub clients without threads, inline
//! draining, and a crew of publisher threads timed together.
//!
//! # Drain policy
//!
//! Every bench drains outboxes **inline, on the bench thread, outside the
//! timed region**: a timed batch enqueues at most half an outbox per client,
//! then [`drain`] (Hub) or [`ClientB::drain`](crate::ClientB::drain)
//! (baseline) empties every outbox before the next batch. Queues therefore
//! never fill, nothing is dropped (benches check `drops() == 0`), and the
//! figure is the publisher's cost alone. A Hub drain ends with
//! [`Client::finish_drain`], as a transport does, so every batch pays the
//! real wake-up protocol (one `scheduled` flip and one [`Transport::wake`]
//! per client per batch).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use realtime::{
    ChannelType, Client, Frame, Hub, JsonPresenceEncoder, Member, PresenceEncoder, RosterView,
    Transport,
};

/// A transport whose wake-up and close do nothing: the bench thread drains
/// the outboxes itself (no thread per client, so 100k clients are cheap).
#[derive(Debug, Default, Clone, Copy)]
pub struct NopTransport;

impl Transport for NopTransport {
    fn wake(&self) {}
    fn closed(&self) {}
}

/// Attaches `n` clients with [`NopTransport`].
///
/// # Panics
///
/// If the Hub is closed.
pub fn attach(hub: &Hub, n: usize) -> Vec<Client> {
    let transport: Arc<dyn Transport> = Arc::new(NopTransport);
    (0..n)
        .map(|_| {
            hub.attach(transport.clone(), ())
                .unwrap_or_else(|e| panic!("attach: {e}"))
        })
        .collect()
}

/// Subscribes every client to `channel`.
///
/// # Panics
///
/// If a subscribe fails (closed Hub, or a private channel without an
/// authorizer).
pub fn subscribe_all(hub: &Hub, clients: &[Client], channel: &str) {
    for c in clients {
        hub.subscribe(c, channel)
            .unwrap_or_else(|e| panic!("subscribe {channel}: {e}"));
    }
}

/// Empties one client's outbox the way a transport does: pop until empty,
/// then re-arm, and drain again if frames arrived meanwhile. Returns the
/// number of frames popped.
pub fn drain_one(client: &Client) -> usize {
    let mut n = 0;
    loop {
        while client.pop_frame().is_some() {
            n += 1;
        }
        if !client.finish_drain() {
            return n;
        }
    }
}

/// [`drain_one`] for every client; returns the total popped.
pub fn drain(clients: &[Client]) -> usize {
    clients.iter().map(drain_one).sum()
}

/// Total frames dropped by the slow-consumer policy over `clients`.
pub fn drops(clients: &[Client]) -> u64 {
    clients.iter().map(Client::drops).sum()
}

/// Splits `iters` into batches of at most `batch`, calling `timed(k)` for
/// each batch of `k` and summing what it returns, and `untimed()` after each
/// batch (the drain).
pub fn batched(
    iters: u64,
    batch: u64,
    mut timed: impl FnMut(u64) -> Duration,
    mut untimed: impl FnMut(),
) -> Duration {
    let mut left = iters;
    let mut total = Duration::ZERO;
    while left > 0 {
        let k = left.min(batch);
        total += timed(k);
        untimed();
        left -= k;
    }
    total
}

/// Times `f(k)` once.
pub fn time(k: u64, f: impl FnOnce(u64)) -> Duration {
    let t0 = Instant::now();
    f(k);
    t0.elapsed()
}

/// A job run by one crew member: called with the number of operations to
/// perform in this round.
pub type Job = Box<dyn FnMut(u64) + Send>;

/// Threads that run their jobs together, one round at a time, so that a
/// round's wall time measures them racing each other.
///
/// A round: every member receives the count, all meet the bench thread at
/// a start barrier, run their job, and meet again at an end barrier; the
/// bench thread's clock runs from the first barrier to the second.
pub struct Crew {
    start: Arc<Barrier>,
    end: Arc<Barrier>,
    orders: Vec<Sender<u64>>,
    threads: Vec<JoinHandle<()>>,
}

impl Crew {
    /// Starts one thread per job.
    ///
    /// # Panics
    ///
    /// If a thread cannot be spawned.
    pub fn new(jobs: Vec<Job>) -> Self {
        let start = Arc::new(Barrier::new(jobs.len() + 1));
        let end = Arc::new(Barrier::new(jobs.len() + 1));
        let mut orders = Vec::new();
        let mut threads = Vec::new();
        for (i, mut job) in jobs.into_iter().enumerate() {
            let (tx, rx) = crossbeam_channel::bounded::<u64>(1);
            let (start, end) = (start.clone(), end.clone());
            let handle = std::thread::Builder::new()
                .name(format!("bench-crew-{i}"))
                .spawn(move || {
                    for k in rx {
                        start.wait();
                        job(k);
                        end.wait();
                    }
                })
                .unwrap_or_else(|e| panic!("spawn crew thread: {e}"));
            orders.push(tx);
            threads.push(handle);
        }
        Self {
            start,
            end,
            orders,
            threads,
        }
    }

    /// Runs one round of `k` operations per member; returns its wall time.
    ///
    /// # Panics
    ///
    /// If a crew thread died (its job panicked).
    pub fn round(&self, k: u64) -> Duration {
        for tx in &self.orders {
            tx.send(k)
                .unwrap_or_else(|_| panic!("a crew thread died (its job panicked)"));
        }
        self.start.wait();
        let t0 = Instant::now();
        self.end.wait();
        t0.elapsed()
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        self.orders.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Crew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crew")
            .field("threads", &self.threads.len())
            .finish()
    }
}

/// The suite's criterion settings: short warm-up and measurement, so the
/// whole suite runs in about ten minutes on two cores (see `BENCHMARKS.md`).
/// Command-line flags still override them.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2))
}

/// The default JSON presence encoder with a fill switch: while `filling` is
/// set, every presence frame is one shared stub, so that bench setup can
/// fill a roster of 10k without encoding the roster 10k times (O(R²)).
/// Once it is cleared, every frame is [`JsonPresenceEncoder`]'s.
///
/// While its timer is on ([`FillEncoder::roster_timer`]) it adds the time
/// spent building each roster frame to a counter, so that a bench can split
/// a presence join into roster building and the rest.
#[derive(Debug, Clone)]
pub struct FillEncoder {
    filling: Arc<AtomicBool>,
    stub: Frame,
    timing: Arc<AtomicBool>,
    roster_ns: Arc<AtomicU64>,
}

impl FillEncoder {
    /// An encoder in fill mode, and the switch that ends it.
    pub fn new() -> (Self, Arc<AtomicBool>) {
        let filling = Arc::new(AtomicBool::new(true));
        let encoder = Self {
            filling: filling.clone(),
            stub: Frame::from_string("{}"),
            timing: Arc::new(AtomicBool::new(false)),
            roster_ns: Arc::new(AtomicU64::new(0)),
        };
        (encoder, filling)
    }

    /// The switch of the roster timer (off at first) and its counter of
    /// nanoseconds spent in `roster_frame` while it was on.
    pub fn roster_timer(&self) -> (Arc<AtomicBool>, Arc<AtomicU64>) {
        (self.timing.clone(), self.roster_ns.clone())
    }

    fn filling(&self) -> bool {
        // Relaxed: set and cleared by the bench thread, which also joins.
        self.filling.load(Ordering::Relaxed)
    }
}

impl PresenceEncoder for FillEncoder {
    fn subscription_succeeded(
        &self,
        channel: &str,
        roster: &[&Member],
        newcomer: &Member,
    ) -> Frame {
        if self.filling() {
            return self.stub.clone();
        }
        JsonPresenceEncoder.subscription_succeeded(channel, roster, newcomer)
    }

    fn member_added(&self, channel: &str, member: &Member) -> Frame {
        if self.filling() {
            return self.stub.clone();
        }
        JsonPresenceEncoder.member_added(channel, member)
    }

    fn member_removed(&self, channel: &str, member: &Member) -> Frame {
        if self.filling() {
            return self.stub.clone();
        }
        JsonPresenceEncoder.member_removed(channel, member)
    }

    fn newcomer_sees_own_join(&self) -> bool {
        JsonPresenceEncoder.newcomer_sees_own_join()
    }

    /// Always the real encoding, filling or not: each member is encoded
    /// once, when it joins, so the filled roster holds what a roster
    /// filled by real joins holds.
    fn encode_member(&self, member: &Member, out: &mut String) {
        JsonPresenceEncoder.encode_member(member, out);
    }

    fn roster_frame(&self, channel: &str, roster: RosterView<'_>, newcomer: &Member) -> Frame {
        if self.filling() {
            return self.stub.clone();
        }
        // Relaxed: switched by the bench thread, which also reads the sum.
        if !self.timing.load(Ordering::Relaxed) {
            return JsonPresenceEncoder.roster_frame(channel, roster, newcomer);
        }
        let t0 = Instant::now();
        let frame = JsonPresenceEncoder.roster_frame(channel, roster, newcomer);
        let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.roster_ns.fetch_add(ns, Ordering::Relaxed);
        frame
    }

    fn subscribed(&self, channel: &str, channel_type: ChannelType) -> Option<Frame> {
        JsonPresenceEncoder.subscribed(channel, channel_type)
    }
}
