//! `subscribe_churn`: one client joining and leaving a channel that already
//! has M members (M = 0, 1k, 100k), the Hub beside the reference-style
//! baseline. The Hub's per-operation cost should not depend on M.
//!
//! - `subscribe_churn/{hub,baseline}/join/M`: each iteration subscribes the
//!   client (timed) and unsubscribes it (untimed).
//! - `subscribe_churn/{hub,baseline}/leave/M`: the same pair, the
//!   unsubscribe timed.
//! - `subscribe_churn/timer`: the cost of the two `Instant::now()` calls
//!   that time each operation (included in the figures above).
//!
//! At M = 0 the join creates the channel and the leave destroys it. Each
//! operation is timed on its own, since a batch could not keep M fixed.
//! Nothing is broadcast: outboxes are 4 frames, so 100k members set up fast.
#![allow(
    clippy::expect_used,
    reason = "bench harness: a failed Hub call is a broken bench and aborts it"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion};
use realtime::{Client, Hub};
use realtime_benches::fixture::{attach, subscribe_all};
use realtime_benches::{BaselineHub, ClientB};

const SIZES: [usize; 3] = [0, 1_000, 100_000];
const OUTBOX: usize = 4;
const CHANNEL: &str = "churn";

fn hub_fx(m: usize) -> (Hub, Vec<Client>, Client) {
    let hub = Hub::builder().outbox(OUTBOX).build();
    let members = attach(&hub, m);
    subscribe_all(&hub, &members, CHANNEL);
    let mut x = attach(&hub, 1);
    let x = x.pop().expect("one client");
    (hub, members, x)
}

fn base_fx(m: usize) -> (BaselineHub, Vec<Arc<ClientB>>, Arc<ClientB>) {
    let hub = BaselineHub::new(OUTBOX);
    let members: Vec<_> = (0..m).map(|_| hub.add()).collect();
    for c in &members {
        hub.subscribe(c, CHANNEL);
    }
    let x = hub.add();
    (hub, members, x)
}

/// Runs `iters` join/leave pairs, timing the join (`timed_join`) or the
/// leave.
fn pairs(iters: u64, timed_join: bool, join: impl Fn(), leave: impl Fn()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        if timed_join {
            let t0 = Instant::now();
            join();
            total += t0.elapsed();
            leave();
        } else {
            join();
            let t0 = Instant::now();
            leave();
            total += t0.elapsed();
        }
    }
    total
}

fn churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("subscribe_churn");
    g.bench_function("timer", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                total += black_box(t0).elapsed();
            }
            total
        });
    });
    for m in SIZES {
        let mut fx = None;
        for (op, timed_join) in [("join", true), ("leave", false)] {
            g.bench_function(BenchmarkId::new(format!("hub/{op}"), m), |b| {
                let (hub, _, x) = fx.get_or_insert_with(|| hub_fx(m));
                b.iter_custom(|iters| {
                    pairs(
                        iters,
                        timed_join,
                        || hub.subscribe(x, black_box(CHANNEL)).expect("subscribe"),
                        || hub.unsubscribe(x, black_box(CHANNEL)).expect("unsubscribe"),
                    )
                });
            });
        }
        if let Some((hub, members, _)) = fx.take() {
            assert_eq!(hub.channel_count(CHANNEL), members.len());
            hub.close();
        }

        let mut fx = None;
        for (op, timed_join) in [("join", true), ("leave", false)] {
            g.bench_function(BenchmarkId::new(format!("baseline/{op}"), m), |b| {
                let (hub, _, x) = fx.get_or_insert_with(|| base_fx(m));
                b.iter_custom(|iters| {
                    pairs(
                        iters,
                        timed_join,
                        || hub.subscribe(x, black_box(CHANNEL)),
                        || hub.unsubscribe(x, black_box(CHANNEL)),
                    )
                });
            });
        }
        if let Some((hub, members, _)) = fx.take() {
            assert_eq!(hub.channel_count(CHANNEL), members.len());
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
        targets = super::churn
    }
}
criterion_main!(group::benches);
