//! `broadcasting`: publishing on the in-process bus to S subscriptions of
//! one channel (S = 1, 100), `broadcasting::Memory` beside the
//! reference-style `BaselineBus`.
//!
//! `broadcasting/{memory,baseline}/S`: timed, batches of 64 publishes (a
//! new `Event` each: two short strings and a shared payload); untimed,
//! after each batch, the bench thread waits until every subscription's
//! thread has handled every event, so the queues (256 events) never fill.
//! Handlers only count. The subscription threads run during the timed
//! batch too, so the publisher pays the wake-ups of sleeping subscribers,
//! as it would in production. Throughput is S elements per publish.
#![allow(
    clippy::expect_used,
    reason = "bench harness: a failed bus call is a broken bench and aborts it"
)]

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use broadcasting::{Broadcaster, BroadcasterExt, Event, Memory};
use bytes::Bytes;
use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use realtime_benches::fixture::{batched, time};
use realtime_benches::BaselineBus;

const SIZES: [usize; 2] = [1, 100];
const BATCH: u64 = 64;
const BUFFER: usize = 256;
const CHANNEL: &str = "orders";
const PAYLOAD: &[u8] = br#"{"id":42,"status":"shipped"}"#;

/// Waits (untimed) until the handlers have seen `expected` events.
fn settle(seen: &AtomicU64, expected: u64) {
    while seen.load(Ordering::SeqCst) < expected {
        std::thread::yield_now();
    }
}

fn event() -> Event {
    Event::new(CHANNEL, "OrderShipped", Bytes::from_static(PAYLOAD))
}

fn bus(c: &mut Criterion) {
    let mut g = c.benchmark_group("broadcasting");
    for s in SIZES {
        g.throughput(Throughput::Elements(s as u64));

        let mut fx: Option<(Memory, Arc<AtomicU64>, Cell<u64>)> = None;
        g.bench_function(BenchmarkId::new("memory", s), |b| {
            let (bus, seen, published) = fx.get_or_insert_with(|| {
                let bus = Memory::builder().buffer(BUFFER).build();
                let seen = Arc::new(AtomicU64::new(0));
                for _ in 0..s {
                    let seen = seen.clone();
                    bus.subscribe(CHANNEL, move |_e: &Event| {
                        seen.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .expect("subscribe");
                }
                (bus, seen, Cell::new(0))
            });
            b.iter_custom(|iters| {
                batched(
                    iters,
                    BATCH,
                    |k| {
                        published.set(published.get() + k);
                        time(k, |k| {
                            for _ in 0..k {
                                bus.publish(event()).expect("publish");
                            }
                        })
                    },
                    || settle(seen, published.get() * s as u64),
                )
            });
        });
        if let Some((bus, _, _)) = fx.take() {
            assert_eq!(bus.dropped(), 0, "a subscription queue filled");
            bus.close();
        }

        let mut fx: Option<(BaselineBus, Arc<AtomicU64>, Cell<u64>)> = None;
        g.bench_function(BenchmarkId::new("baseline", s), |b| {
            let (bus, seen, published) = fx.get_or_insert_with(|| {
                let bus = BaselineBus::new(BUFFER);
                let seen = Arc::new(AtomicU64::new(0));
                for _ in 0..s {
                    let seen = seen.clone();
                    bus.subscribe(CHANNEL, move |_e| {
                        seen.fetch_add(1, Ordering::SeqCst);
                    });
                }
                (bus, seen, Cell::new(0))
            });
            b.iter_custom(|iters| {
                batched(
                    iters,
                    BATCH,
                    |k| {
                        published.set(published.get() + k);
                        time(k, |k| {
                            for _ in 0..k {
                                bus.publish(event());
                            }
                        })
                    },
                    || settle(seen, published.get() * s as u64),
                )
            });
        });
        if let Some((bus, _, _)) = fx.take() {
            assert_eq!(bus.dropped(), 0, "a subscription queue filled");
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
        targets = super::bus
    }
}
criterion_main!(group::benches);
