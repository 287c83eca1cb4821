//! Model 7: the outbox's notify/drain wake-up protocol (`outbox.rs`, R30).
//! Producers push and wake the transport only when they flip `scheduled`;
//! the drainer pops until empty, re-arms, and drains again if frames arrived
//! meanwhile. So a frame enqueued concurrently with a drain is never
//! stranded (no lost wake-up), and at most one wake-up is pending at a time
//! (`Probe::wake` asserts it).
//!
//! Mutant `lost_wakeup` (outbox.rs `push`): a relaxed load-then-store of
//! `scheduled`; two producers both wake, or a producer reads a stale `true`
//! and its frame is stranded.
#![cfg(loom)]

use std::sync::Arc;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use loom_tests::attach;
use realtime::{Client, Hub};

/// Pops until empty, then re-arms; repeats while frames arrived meanwhile.
fn drain_batch(client: &Client, probe: &loom_tests::Probe) -> usize {
    let mut n = 0;
    loop {
        while client.pop_frame().is_some() {
            n += 1;
        }
        probe.rearming();
        if !client.finish_drain() {
            return n;
        }
    }
}

#[test]
fn wakeup_is_never_lost_and_never_doubled() {
    loom_tests::model(|| {
        let hub = Hub::new();
        let (client, probe) = attach(&hub);
        let done = Arc::new(AtomicUsize::new(0));

        // One producer sends two frames (the second can land during a
        // drain), the other one.
        let producers: Vec<_> = [&["p1a", "p1b"][..], &["p2"][..]]
            .into_iter()
            .map(|payloads| {
                let (client, done) = (client.clone(), done.clone());
                thread::spawn(move || {
                    for p in payloads {
                        client.send_text(*p).unwrap();
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();

        // The drainer (this thread) runs a batch for every wake-up it gets,
        // and stops once both producers are done and no wake-up is left.
        let mut drained = 0;
        let mut seen = 0;
        loop {
            let finished = done.load(Ordering::SeqCst) == 2;
            let wakes = probe.wakes();
            if wakes > seen {
                seen = wakes;
                drained += drain_batch(&client, &probe);
            } else if finished {
                break;
            } else {
                thread::yield_now();
            }
        }
        for p in producers {
            p.join().unwrap();
        }

        assert_eq!(drained, 3, "a frame was stranded: lost wake-up");
        assert_eq!(client.pending(), 0);
    });
}
