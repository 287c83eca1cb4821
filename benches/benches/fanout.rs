//! `fanout`: one publisher, N subscribers on one channel, the Hub beside the
//! reference-style baseline.
//!
//! - `fanout/{hub,baseline}/N`: timed, batches of 32 back-to-back
//!   broadcasts of one prepared frame; untimed, after each batch, every
//!   outbox is drained inline on the bench thread (outbox 64, so queues never
//!   fill). The figure is the publisher's cost; throughput is N elements per
//!   broadcast, so criterion reports time per recipient.
//! - `fanout/{hub,baseline}_drained/N`: the same broadcast followed by a
//!   drain of every outbox, both timed: enqueue + dequeue (and the Hub's
//!   re-arm) per recipient, one broadcast at a time.
//!
//! Clients are attached without a thread each (`fixture::NopTransport`), so
//! the 100k setup takes a fraction of a second.
#![allow(
    clippy::expect_used,
    reason = "bench harness: a failed Hub call is a broken bench and aborts it"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use realtime::{Client, Frame, Hub};
use realtime_benches::fixture::{attach, batched, drain, drops, subscribe_all, time};
use realtime_benches::{BaselineHub, ClientB};

const SIZES: [usize; 5] = [1, 100, 1_000, 10_000, 100_000];
/// Outbox capacity, the Hub's default.
const OUTBOX: usize = 64;
/// Broadcasts per timed batch: half an outbox.
const BATCH: u64 = 32;
const CHANNEL: &str = "fanout";
const PAYLOAD: &str = r#"{"event":"OrderShipped","channel":"fanout","data":{"id":42}}"#;

fn hub_fixture(n: usize) -> (Hub, Vec<Client>) {
    let hub = Hub::builder().outbox(OUTBOX).build();
    let clients = attach(&hub, n);
    subscribe_all(&hub, &clients, CHANNEL);
    (hub, clients)
}

fn baseline_fixture(n: usize) -> (BaselineHub, Vec<Arc<ClientB>>) {
    let hub = BaselineHub::new(OUTBOX);
    let clients: Vec<_> = (0..n).map(|_| hub.add()).collect();
    for c in &clients {
        hub.subscribe(c, CHANNEL);
    }
    (hub, clients)
}

fn drain_baseline(clients: &[Arc<ClientB>]) -> usize {
    clients.iter().map(|c| c.drain()).sum()
}

fn check_hub(fx: Option<(Hub, Vec<Client>)>) {
    if let Some((hub, clients)) = fx {
        assert_eq!(
            drops(&clients),
            0,
            "a hub outbox filled: the bench is wrong"
        );
        hub.close();
    }
}

fn check_baseline(fx: Option<(BaselineHub, Vec<Arc<ClientB>>)>) {
    if let Some((_, clients)) = fx {
        let dropped: u64 = clients.iter().map(|c| c.drops()).sum();
        assert_eq!(dropped, 0, "a baseline outbox filled: the bench is wrong");
    }
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    for n in SIZES {
        g.throughput(Throughput::Elements(n as u64));
        let frame = Frame::from_string(PAYLOAD);

        let mut fx = None;
        g.bench_function(BenchmarkId::new("hub", n), |b| {
            let (hub, clients) = fx.get_or_insert_with(|| hub_fixture(n));
            b.iter_custom(|iters| {
                batched(
                    iters,
                    BATCH,
                    |k| {
                        time(k, |k| {
                            for _ in 0..k {
                                hub.broadcast_frame(black_box(CHANNEL), frame.clone(), None)
                                    .expect("broadcast");
                            }
                        })
                    },
                    || {
                        drain(clients);
                    },
                )
            });
        });
        g.bench_function(BenchmarkId::new("hub_drained", n), |b| {
            let (hub, clients) = fx.get_or_insert_with(|| hub_fixture(n));
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    hub.broadcast_frame(black_box(CHANNEL), frame.clone(), None)
                        .expect("broadcast");
                    black_box(drain(clients));
                }
                t0.elapsed()
            });
        });
        check_hub(fx.take());

        let mut fx = None;
        g.bench_function(BenchmarkId::new("baseline", n), |b| {
            let (hub, clients) = fx.get_or_insert_with(|| baseline_fixture(n));
            b.iter_custom(|iters| {
                batched(
                    iters,
                    BATCH,
                    |k| {
                        time(k, |k| {
                            for _ in 0..k {
                                hub.broadcast(black_box(CHANNEL), frame.clone());
                            }
                        })
                    },
                    || {
                        drain_baseline(clients);
                    },
                )
            });
        });
        g.bench_function(BenchmarkId::new("baseline_drained", n), |b| {
            let (hub, clients) = fx.get_or_insert_with(|| baseline_fixture(n));
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    hub.broadcast(black_box(CHANNEL), frame.clone());
                    black_box(drain_baseline(clients));
                }
                t0.elapsed()
            });
        });
        check_baseline(fx.take());
    }
    g.finish();
}

/// The group, in a private module so that the generated function needs no
/// doc.
mod group {
    criterion::criterion_group! {
        name = benches;
        config = realtime_benches::fixture::criterion();
        targets = super::fanout
    }
}
criterion_main!(group::benches);
