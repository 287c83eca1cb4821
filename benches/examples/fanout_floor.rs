//! `fanout_floor`: what the per-recipient cost of a fan-out is made of on
//! this machine, measured on stand-ins for the Hub's outbox rather than on
//! the Hub (see "Why the fan-out misses 15 ns at 10k" in `BENCHMARKS.md`).
//!
//! The first two rows are the real thing, `hub` (`Hub::broadcast_frame`)
//! and `baseline` (`BaselineHub::broadcast`), timed the same way as the
//! models, so that all rows of one run share the machine's conditions.
//!
//! Same shape as `fanout/hub/N`: N clients, batches of 32 broadcasts of one
//! frame timed, then every outbox drained on the same thread, untimed.
//! Every variant walks a `Vec<Arc<_>>` of clients allocated among unrelated
//! allocations, so clients are not contiguous in memory (as the Hub's are
//! not). Variants:
//!
//! - `arrayqueue+rc`: the Hub's per-recipient work today: load `closed`,
//!   `ArrayQueue::push` of an `Arc` clone, load `scheduled`;
//! - `arrayqueue`: the same with a plain word instead of the `Arc` (no
//!   locked refcount increment per recipient);
//! - `ring`: a compact bounded MPSC ring (the same stamp-per-slot algorithm
//!   as `ArrayQueue`) whose producer header (`tail`, `closed`, `scheduled`)
//!   shares one cache line, with the slots in the same allocation;
//! - `ring/2pass`: the same, walking members 16 at a time: first a plain
//!   load of each member's header (no fence, so the 16 misses overlap),
//!   then the pushes;
//! - `ring/2pass+rc` and `ring/2pass+rc_chunk`: with a locked refcount
//!   increment per recipient, or one per 16 recipients.
//!
//! Run: `cargo run --release -p realtime-benches --example fanout_floor [N...]`
//! (default N = 1000 10000 100000). Prints the median and the 10th
//! percentile, over single broadcasts, of the time per recipient. Values stored in the rings are
//! never dereferenced: this is a cost model, not a queue to use.
#![allow(clippy::print_stdout, reason = "an example that reports figures")]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use realtime::{Frame, Hub};
use realtime_benches::fixture::{attach, drain, subscribe_all};
use realtime_benches::BaselineHub;

const CAP: usize = 64;
const BATCH: usize = 32;
const CHUNK: usize = 16;

/// Today's layout: flag, `ArrayQueue` (padded head and tail, separate
/// slot buffer), flag.
struct Crossbeam<T> {
    closed: AtomicBool,
    queue: ArrayQueue<T>,
    scheduled: AtomicBool,
}

impl<T> Crossbeam<T> {
    fn new() -> Self {
        Self {
            closed: AtomicBool::new(false),
            queue: ArrayQueue::new(CAP),
            scheduled: AtomicBool::new(false),
        }
    }

    fn push(&self, item: T) {
        // Relaxed: as in the Hub, a stale flag only admits one more frame.
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        if self.queue.push(item).is_ok()
            && !self.scheduled.load(Ordering::SeqCst)
            && !self.scheduled.swap(true, Ordering::SeqCst)
        {
            black_box(()); // a transport wake would go here
        }
    }

    fn drain(&self) -> usize {
        let mut n = 0;
        while self.queue.pop().is_some() {
            n += 1;
        }
        self.scheduled.store(false, Ordering::SeqCst);
        n
    }
}

/// A compact ring: the producer header on one cache line, the slots
/// (stamp, value) right after it in the same allocation.
#[repr(C, align(64))]
struct Ring {
    tail: AtomicUsize,
    closed: AtomicBool,
    scheduled: AtomicBool,
    /// Consumer side; one drainer in this model.
    head: AtomicUsize,
    slots: [(AtomicUsize, AtomicUsize); CAP],
}

impl Ring {
    fn new() -> Self {
        Self {
            tail: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            scheduled: AtomicBool::new(false),
            head: AtomicUsize::new(0),
            slots: std::array::from_fn(|i| (AtomicUsize::new(i), AtomicUsize::new(0))),
        }
    }

    /// A plain load of the header line: the first pass of a two-pass walk.
    fn touch(&self) -> usize {
        // Relaxed: only brings the line into the cache.
        self.tail.load(Ordering::Relaxed)
    }

    fn push(&self, value: usize) {
        // Relaxed: as in the Hub, a stale flag only admits one more frame.
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        // Relaxed: a hint, validated by the slot stamp and the CAS.
        let mut tail = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[tail % CAP];
            // Acquire: pairs with the drainer's Release of the stamp.
            let stamp = slot.0.load(Ordering::Acquire);
            if stamp == tail {
                // Failure Relaxed: the loop re-validates with the stamp.
                match self.tail.compare_exchange_weak(
                    tail,
                    tail + 1,
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // Relaxed: published by the Release stamp store.
                        slot.1.store(value, Ordering::Relaxed);
                        // Release: publishes the value to the drainer.
                        slot.0.store(tail + 1, Ordering::Release);
                        break;
                    }
                    Err(t) => tail = t,
                }
            } else if stamp + CAP == tail + 1 {
                return; // full
            } else {
                // Relaxed: a fresh hint.
                tail = self.tail.load(Ordering::Relaxed);
            }
        }
        if !self.scheduled.load(Ordering::SeqCst) && !self.scheduled.swap(true, Ordering::SeqCst) {
            black_box(());
        }
    }

    fn drain(&self) -> usize {
        let mut n = 0;
        loop {
            // Relaxed: written only by this (the one) drainer.
            let head = self.head.load(Ordering::Relaxed);
            let slot = &self.slots[head % CAP];
            // Acquire: pairs with the producer's Release of the stamp.
            if slot.0.load(Ordering::Acquire) != head + 1 {
                break;
            }
            // Relaxed: ordered by the Acquire above.
            black_box(slot.1.load(Ordering::Relaxed));
            // Release: hands the slot back to producers.
            slot.0.store(head + CAP, Ordering::Release);
            // Relaxed: read only by this drainer.
            self.head.store(head + 1, Ordering::Relaxed);
            n += 1;
        }
        self.scheduled.store(false, Ordering::SeqCst);
        n
    }
}

/// Allocates `n` clients, each after an unrelated allocation.
fn clients<C>(n: usize, junk: &mut Vec<Vec<u8>>, new: impl Fn() -> C) -> Vec<Arc<C>> {
    (0..n)
        .map(|_| {
            junk.push(vec![0; 200]);
            Arc::new(new())
        })
        .collect()
}

/// Times each broadcast of each batch on its own (a broadcast to 1k-100k
/// clients takes 5 µs to 10 ms, so a sample is rarely cut by preemption
/// on a shared machine); prints the median and the 10th percentile of the
/// time per recipient.
fn run(label: &str, n: usize, mut broadcast: impl FnMut(), mut drain: impl FnMut() -> usize) {
    let batches = (4_000_000 / (n * BATCH)).clamp(10, 200);
    for _ in 0..3 {
        for _ in 0..BATCH {
            broadcast();
        }
        drain();
    }
    let mut per: Vec<f64> = Vec::with_capacity(batches * BATCH);
    for _ in 0..batches {
        for _ in 0..BATCH {
            let t0 = Instant::now();
            broadcast();
            per.push(t0.elapsed().as_nanos() as f64 / n as f64);
        }
        assert_eq!(drain(), n * BATCH, "{label}: an outbox filled");
    }
    let mean = per.iter().sum::<f64>() / per.len() as f64;
    per.sort_by(f64::total_cmp);
    println!(
        "{label:<22} N={n:<7} ns/recipient: median {:>6.1}  p10 {:>6.1}  mean {:>6.1}",
        per[per.len() / 2],
        per[per.len() / 10],
        mean
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let sizes = if args.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        args
    };
    for n in sizes {
        let mut junk = Vec::new();
        let frame = Arc::new(0u64);
        let word = Arc::as_ptr(&frame) as usize;
        let refs = AtomicUsize::new(0);

        let hub = Hub::builder().outbox(CAP).build();
        let members = attach(&hub, n);
        subscribe_all(&hub, &members, "floor");
        let hub_frame = Frame::from_string("{}");
        run(
            "hub",
            n,
            || {
                hub.broadcast_frame("floor", hub_frame.clone(), None)
                    .unwrap_or_else(|e| panic!("broadcast: {e}"));
            },
            || drain(&members),
        );
        hub.close();
        drop(members);
        let base = BaselineHub::new(CAP);
        let members: Vec<_> = (0..n).map(|_| base.add()).collect();
        for c in &members {
            base.subscribe(c, "floor");
        }
        run(
            "baseline",
            n,
            || base.broadcast("floor", hub_frame.clone()),
            || members.iter().map(|c| c.drain()).sum(),
        );
        drop(members);
        drop(base);
        let a = clients(n, &mut junk, Crossbeam::<Arc<u64>>::new);
        run(
            "arrayqueue+rc",
            n,
            || a.iter().for_each(|c| c.push(frame.clone())),
            || a.iter().map(|c| c.drain()).sum(),
        );
        drop(a);
        let b = clients(n, &mut junk, Crossbeam::<usize>::new);
        run(
            "arrayqueue",
            n,
            || b.iter().for_each(|c| c.push(word)),
            || b.iter().map(|c| c.drain()).sum(),
        );
        drop(b);
        let r = clients(n, &mut junk, Ring::new);
        let drain_r = || r.iter().map(|c| c.drain()).sum();
        run("ring", n, || r.iter().for_each(|c| c.push(word)), drain_r);
        let two_pass = |rc_each: bool, rc_chunk: bool| {
            for chunk in r.chunks(CHUNK) {
                if rc_chunk {
                    refs.fetch_add(chunk.len(), Ordering::SeqCst);
                }
                black_box(chunk.iter().fold(0, |x, c| x ^ c.touch()));
                for c in chunk {
                    if rc_each {
                        refs.fetch_add(1, Ordering::SeqCst);
                    }
                    c.push(word);
                }
            }
        };
        run("ring/2pass", n, || two_pass(false, false), drain_r);
        run("ring/2pass+rc", n, || two_pass(true, false), drain_r);
        run("ring/2pass+rc_chunk", n, || two_pass(false, true), drain_r);
        println!();
    }
}
