//! `fanout_contended`: two publisher threads racing, the Hub beside the
//! reference-style baseline.
//!
//! - `fanout_contended/{hub,baseline}/shared/N`: N subscribers, each on
//!   channels `a` and `b`; publisher 0 broadcasts to `a` while publisher 1
//!   broadcasts to `b`, so both write to every subscriber's outbox.
//! - `fanout_contended/{hub,baseline}/churn/N`: both publishers broadcast to
//!   one channel of N subscribers while a third thread subscribes and
//!   unsubscribes 16 other clients on it, without pause, for the whole
//!   bench (the churn rate reached is printed on stderr).
//! - `fanout_contended/{hub,baseline}/churn_paced/N`: the same, the churn
//!   paced at 20k subscribe + unsubscribe operations a second for both, so
//!   that both sides do the same churn work (unpaced, the Hub's churner
//!   does about ten times more operations than the baseline's, and takes
//!   that CPU time from the publishers on 2 cores).
//!
//! One iteration is one broadcast by each publisher (2N deliveries;
//! throughput 2N elements, so criterion reports time per delivery). Timed:
//! a round of 32 broadcasts per publisher, from a start barrier to an end
//! barrier; untimed, after each round, the bench thread drains every
//! subscriber's outbox (128 frames, so at most half full). The churning
//! thread drains its own clients after each unsubscribe.
#![allow(
    clippy::expect_used,
    reason = "bench harness: a failed Hub call is a broken bench and aborts it"
)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use realtime::{Client, Frame, Hub};
use realtime_benches::fixture::{attach, batched, drain, drain_one, drops, Crew, Job};
use realtime_benches::{BaselineHub, ClientB};

const SIZES: [usize; 2] = [1_000, 10_000];
const OUTBOX: usize = 128;
/// Broadcasts per publisher per timed round: 64 frames per subscriber.
const BATCH: u64 = 32;
/// Subscribe + unsubscribe operations a second in the paced churn.
const PACE: u64 = 20_000;
/// Clients the churning thread subscribes and unsubscribes.
const CHURNERS: usize = 16;
const PAYLOAD_A: &str = r#"{"event":"a","data":{"id":1}}"#;
const PAYLOAD_B: &str = r#"{"event":"b","data":{"id":2}}"#;

/// A background thread that churns subscriptions until dropped.
struct Churn {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    since: Instant,
    thread: Option<JoinHandle<()>>,
    label: String,
}

impl Churn {
    /// Runs `step` (which reports the operations it did) in a loop, as fast
    /// as it goes or, with `pace`, at about that many operations a second.
    fn start(
        label: String,
        pace: Option<u64>,
        mut step: impl FnMut() -> u64 + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let (s, o) = (stop.clone(), ops.clone());
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut done = 0;
            while !s.load(Ordering::Relaxed) {
                done += step();
                o.store(done, Ordering::Relaxed);
                if let Some(rate) = pace {
                    let due = Duration::from_secs_f64(done as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(t0.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        });
        Self {
            stop,
            ops,
            since: Instant::now(),
            thread: Some(thread),
            label,
        }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let ops = self.ops.load(Ordering::Relaxed) as f64;
        let secs = self.since.elapsed().as_secs_f64();
        eprintln!(
            "{}: churn {:.0} subscribe+unsubscribe ops/s over {secs:.1} s",
            self.label,
            ops / secs
        );
    }
}

struct HubFx {
    crew: Crew,
    clients: Vec<Client>,
    hub: Hub,
    _churn: Option<Churn>,
}

struct BaseFx {
    crew: Crew,
    clients: Vec<Arc<ClientB>>,
    _churn: Option<Churn>,
}

fn hub_publisher(hub: &Hub, channel: &'static str, payload: &'static str) -> Job {
    let hub = hub.clone();
    let frame = Frame::from_string(payload);
    Box::new(move |k| {
        for _ in 0..k {
            hub.broadcast_frame(channel, frame.clone(), None)
                .expect("broadcast");
        }
    })
}

fn base_publisher(hub: &Arc<BaselineHub>, channel: &'static str, payload: &'static str) -> Job {
    let hub = hub.clone();
    let frame = Frame::from_string(payload);
    Box::new(move |k| {
        for _ in 0..k {
            hub.broadcast(channel, frame.clone());
        }
    })
}

fn hub_fx(n: usize, churn: Option<Option<u64>>) -> HubFx {
    let hub = Hub::builder().outbox(OUTBOX).build();
    let clients = attach(&hub, n);
    let (ca, cb) = if churn.is_some() {
        ("c", "c")
    } else {
        ("a", "b")
    };
    for c in &clients {
        hub.subscribe(c, ca).expect("subscribe");
        hub.subscribe(c, cb).expect("subscribe");
    }
    let crew = Crew::new(vec![
        hub_publisher(&hub, ca, PAYLOAD_A),
        hub_publisher(&hub, cb, PAYLOAD_B),
    ]);
    let churn = churn.map(|pace| {
        let pool = attach(&hub, CHURNERS);
        let h = hub.clone();
        Churn::start(
            format!("fanout_contended/hub/churn/{n} (pace {pace:?})"),
            pace,
            move || {
                for c in &pool {
                    h.subscribe(c, "c").expect("subscribe");
                }
                for c in &pool {
                    h.unsubscribe(c, "c").expect("unsubscribe");
                    drain_one(c);
                }
                2 * CHURNERS as u64
            },
        )
    });
    HubFx {
        crew,
        clients,
        hub,
        _churn: churn,
    }
}

fn base_fx(n: usize, churn: Option<Option<u64>>) -> BaseFx {
    let hub = Arc::new(BaselineHub::new(OUTBOX));
    let clients: Vec<_> = (0..n).map(|_| hub.add()).collect();
    let (ca, cb) = if churn.is_some() {
        ("c", "c")
    } else {
        ("a", "b")
    };
    for c in &clients {
        hub.subscribe(c, ca);
        if cb != ca {
            hub.subscribe(c, cb);
        }
    }
    let crew = Crew::new(vec![
        base_publisher(&hub, ca, PAYLOAD_A),
        base_publisher(&hub, cb, PAYLOAD_B),
    ]);
    let churn = churn.map(|pace| {
        let pool: Vec<_> = (0..CHURNERS).map(|_| hub.add()).collect();
        let h = hub.clone();
        Churn::start(
            format!("fanout_contended/baseline/churn/{n} (pace {pace:?})"),
            pace,
            move || {
                for c in &pool {
                    h.subscribe(c, "c");
                }
                for c in &pool {
                    h.unsubscribe(c, "c");
                    c.drain();
                }
                2 * CHURNERS as u64
            },
        )
    });
    BaseFx {
        crew,
        clients,
        _churn: churn,
    }
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout_contended");
    for n in SIZES {
        g.throughput(Throughput::Elements(2 * n as u64));
        for (scenario, churn) in [
            ("shared", None),
            ("churn", Some(None)),
            ("churn_paced", Some(Some(PACE))),
        ] {
            let mut fx: Option<HubFx> = None;
            g.bench_function(BenchmarkId::new(format!("hub/{scenario}"), n), |b| {
                let fx = fx.get_or_insert_with(|| hub_fx(n, churn));
                b.iter_custom(|iters| {
                    batched(
                        iters,
                        BATCH,
                        |k| fx.crew.round(k),
                        || {
                            drain(&fx.clients);
                        },
                    )
                });
            });
            if let Some(fx) = fx.take() {
                assert_eq!(drops(&fx.clients), 0, "a hub outbox filled");
                let hub = fx.hub.clone();
                drop(fx);
                hub.close();
            }

            let mut fx: Option<BaseFx> = None;
            g.bench_function(BenchmarkId::new(format!("baseline/{scenario}"), n), |b| {
                let fx = fx.get_or_insert_with(|| base_fx(n, churn));
                b.iter_custom(|iters| {
                    batched(
                        iters,
                        BATCH,
                        |k| fx.crew.round(k),
                        || {
                            for c in &fx.clients {
                                c.drain();
                            }
                        },
                    )
                });
            });
            if let Some(fx) = fx.take() {
                let dropped: u64 = fx.clients.iter().map(|c| c.drops()).sum();
                assert_eq!(dropped, 0, "a baseline outbox filled");
            }
        }
    }
    g.finish();
}

/// The group, in a private module so that the generated function needs no
/// doc.
mod group {
    criterion::criterion_group! {
        name = benches;
        config = realtime_benches::fixture::criterion();
        targets = super::contended
    }
}
criterion_main!(group::benches);
