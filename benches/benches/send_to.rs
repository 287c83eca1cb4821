//! `send_to`: a text frame to one client by id, among 10k clients, the Hub
//! beside the reference-style baseline.
//!
//! `send_to/{hub,baseline}/10000`: timed, batches of 1024 sends to
//! consecutive clients (each gets one frame); untimed, the batch's clients
//! are drained. Both sides build the frame from the same `&str` (a copy
//! and a UTF-8 check) and look the id up in a table of 10k clients.
#![allow(
    clippy::expect_used,
    reason = "bench harness: a failed Hub call is a broken bench and aborts it"
)]

use std::hint::black_box;
use std::ops::Range;
use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use realtime::{Frame, Hub};
use realtime_benches::fixture::{attach, drain, drops};
use realtime_benches::BaselineHub;

const CLIENTS: usize = 10_000;
const BATCH: u64 = 1024;
const OUTBOX: usize = 64;
const PAYLOAD: &str = r#"{"event":"pusher:signin_success","data":{"user_id":"42"}}"#;

/// Runs `iters` sends to consecutive clients from `*at`, timed in batches
/// of `BATCH`; after each batch, `drain` gets the range of clients sent to.
fn rounds(
    iters: u64,
    at: &mut usize,
    mut send: impl FnMut(usize),
    mut drain: impl FnMut(Range<usize>),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        // A batch never wraps around the client list.
        let k = left.min(BATCH).min((CLIENTS - *at) as u64);
        let from = *at;
        let t0 = Instant::now();
        for i in 0..k as usize {
            send(from + i);
        }
        total += t0.elapsed();
        *at = (from + k as usize) % CLIENTS;
        drain(from..from + k as usize);
        left -= k;
    }
    total
}

fn send_to(c: &mut Criterion) {
    let mut g = c.benchmark_group("send_to");
    g.throughput(Throughput::Elements(1));

    let mut fx = None;
    g.bench_function(BenchmarkId::new("hub", CLIENTS), |b| {
        let (hub, clients, ids) = fx.get_or_insert_with(|| {
            let hub = Hub::builder().outbox(OUTBOX).build();
            let clients = attach(&hub, CLIENTS);
            let ids: Vec<String> = clients.iter().map(|c| c.id().to_owned()).collect();
            (hub, clients, ids)
        });
        let mut at = 0;
        b.iter_custom(|iters| {
            rounds(
                iters,
                &mut at,
                |at| {
                    hub.send_to(black_box(&ids[at]), PAYLOAD).expect("send_to");
                },
                |range| {
                    drain(&clients[range]);
                },
            )
        });
    });
    if let Some((hub, clients, _)) = fx.take() {
        assert_eq!(drops(&clients), 0);
        hub.close();
    }

    let mut fx = None;
    g.bench_function(BenchmarkId::new("baseline", CLIENTS), |b| {
        let (hub, clients, ids) = fx.get_or_insert_with(|| {
            let hub = BaselineHub::new(OUTBOX);
            let clients: Vec<_> = (0..CLIENTS).map(|_| hub.add()).collect();
            let ids: Vec<String> = clients.iter().map(|c| c.id().to_owned()).collect();
            (hub, clients, ids)
        });
        let mut at = 0;
        b.iter_custom(|iters| {
            rounds(
                iters,
                &mut at,
                |at| {
                    let frame = Frame::text(PAYLOAD).expect("UTF-8");
                    assert!(hub.send_to(black_box(&ids[at]), frame));
                },
                |range| {
                    for c in &clients[range] {
                        c.drain();
                    }
                },
            )
        });
    });
    if let Some((_, clients, _)) = fx.take() {
        let dropped: u64 = clients.iter().map(|c| c.drops()).sum();
        assert_eq!(dropped, 0);
    }
    g.finish();
}

/// The group, in a private module so that the generated function needs no
/// doc.
mod group {
    criterion::criterion_group! {
        name = benches;
        config = realtime_benches::fixture::criterion();
        targets = super::send_to
    }
}
criterion_main!(group::benches);
