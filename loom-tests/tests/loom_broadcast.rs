//! Model 4: a broadcast racing the close of a recipient (R7, R16). The
//! broadcast walks the channel's slots lock-free and may still enqueue to a
//! client whose close is under way; but a closed client's outbox yields
//! nothing, so no frame is delivered once `close` has returned; nothing
//! panics; the client leaves the channel and the Hub, and is freed.
//!
//! Mutant `deliver_after_close` (client.rs `pop_frame`): the drain side
//! stops checking `closed`, and a frame queued before the close is handed to
//! the transport after `close` returned.
#![cfg(loom)]

use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use loom_tests::{attach, drain};
use realtime::Hub;

#[test]
fn broadcast_racing_close_delivers_nothing_after_close_returns() {
    loom_tests::model(|| {
        let hub = Hub::new();
        let (a, probe_a) = attach(&hub);
        let (b, _pb) = attach(&hub);
        hub.subscribe(&a, "ch").unwrap();
        hub.subscribe(&b, "ch").unwrap();
        let close_returned = Arc::new(AtomicBool::new(false));

        let broadcaster = {
            let hub = hub.clone();
            thread::spawn(move || hub.broadcast("ch", "x").unwrap())
        };
        let closer = {
            let (a, done) = (a.clone(), close_returned.clone());
            thread::spawn(move || {
                a.close();
                done.store(true, Ordering::SeqCst);
            })
        };
        // The transport of A drains concurrently: once it knows that close
        // returned, it must get nothing.
        let after_close = close_returned.load(Ordering::SeqCst);
        let got = a.pop_frame();
        assert!(
            !(after_close && got.is_some()),
            "frame delivered after close returned"
        );
        broadcaster.join().unwrap();
        closer.join().unwrap();

        assert!(drain(&a).is_empty(), "closed client still yields frames");
        assert_eq!(drain(&b), ["x"]);
        assert_eq!(probe_a.closes(), 1);
        assert_eq!(hub.count(), 1);
        assert_eq!(hub.channel_count("ch"), 1);
        assert!(a.channels().is_empty());
        drop((a, got));
        assert_eq!(Arc::strong_count(&probe_a), 1, "closed client leaked");
    });
}

/// The two clean-ups of one client race: a broadcast that overflows it
/// under `DisconnectClient` (shut inside the fan-out, cleaned up after it)
/// against the application's `close`. Exactly one of them shuts it, both
/// return only once it left every channel, and it is freed. The overflow
/// comes from the optional frame cap (`outbox(1)`), on top of the byte
/// bound: "fill" is queued, so the next frame is over the cap.
#[test]
fn overflow_disconnect_racing_close_shuts_once_and_cleans_up() {
    loom_tests::model(|| {
        let hub = Hub::builder()
            .outbox(1)
            .slow_consumer_policy(realtime::SlowConsumerPolicy::DisconnectClient)
            .build();
        let (a, probe) = attach(&hub);
        hub.subscribe(&a, "ch").unwrap();
        a.send_text("fill").unwrap();

        let broadcaster = {
            let hub = hub.clone();
            thread::spawn(move || hub.broadcast("ch", "overflow").unwrap())
        };
        a.close();
        assert!(a.channels().is_empty(), "close returned before clean-up");
        broadcaster.join().unwrap();

        assert_eq!(probe.closes(), 1);
        assert!(a.pop_frame().is_none());
        assert_eq!(hub.count(), 0);
        assert!(hub.channels().is_empty());
        drop(a);
        assert_eq!(Arc::strong_count(&probe), 1, "closed client leaked");
    });
}
