//! `bus_select`: why `broadcasting::Memory` publishes ~40-85× slower than
//! the baseline bus at 100 subscriptions (see "Other findings" in
//! `BENCHMARKS.md`), reduced to crossbeam alone.
//!
//! S subscription threads, each with a bounded(256) queue; the publisher
//! `try_send`s to all S, in timed batches of 64, then waits (untimed) until
//! every thread has seen every event, as `benches/broadcasting.rs` does.
//! The threads receive in one of two ways:
//!
//! - `plain`: `for e in rx` (the baseline bus);
//! - `select`: `select! { recv(rx), recv(stop_rx) }` in a loop (the Memory
//!   driver's `dispatch.rs`).
//!
//! `recv` spins with backoff before parking; `select!` parks at once, so
//! every publish pays a futex wake-up per subscription
//! (crossbeam-rs/crossbeam PR #1251 "select_macro: Use Backoff snooze").
//!
//! Run: `cargo run --release -p realtime-benches --example bus_select [S]`
//! (default 100).
#![allow(clippy::print_stdout, reason = "an example that reports figures")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Sender};

/// Per-publish time (µs) with `s` subscription threads receiving by
/// `select!` or by plain `recv`.
fn measure(s: usize, use_select: bool) -> f64 {
    let seen = Arc::new(AtomicU64::new(0));
    let mut txs: Vec<Sender<Arc<str>>> = Vec::new();
    let mut stops: Vec<Sender<()>> = Vec::new();
    let mut threads = Vec::new();
    for _ in 0..s {
        let (tx, rx) = bounded::<Arc<str>>(256);
        let (stop_tx, stop_rx) = bounded::<()>(1);
        let seen = seen.clone();
        threads.push(std::thread::spawn(move || {
            if use_select {
                loop {
                    select! {
                        recv(rx) -> e => {
                            if e.is_err() {
                                return;
                            }
                            seen.fetch_add(1, Ordering::SeqCst);
                        }
                        recv(stop_rx) -> _ => return,
                    }
                }
            } else {
                for _e in rx {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
        txs.push(tx);
        stops.push(stop_tx);
    }
    let event: Arc<str> = Arc::from("event");
    let mut published = 0u64;
    let mut timed = Duration::ZERO;
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        let t0 = Instant::now();
        for _ in 0..64 {
            for tx in &txs {
                let _ = tx.try_send(event.clone());
            }
        }
        timed += t0.elapsed();
        published += 64;
        while seen.load(Ordering::SeqCst) < published * s as u64 {
            std::thread::yield_now();
        }
    }
    drop(txs);
    drop(stops);
    for t in threads {
        let _ = t.join();
    }
    timed.as_secs_f64() * 1e6 / published as f64
}

fn main() {
    let s = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    for (label, use_select) in [("plain", false), ("select", true)] {
        println!(
            "{label:<7} S={s}: {:.1} µs per publish",
            measure(s, use_select)
        );
    }
}
