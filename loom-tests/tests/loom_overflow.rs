//! Model 5: outbox overflow with two concurrent broadcasters (R14).
//!
//! The outbox is bounded in bytes (R34): a 7-byte `client_buffer` holding
//! "fill" (6 wire bytes) has no room for a 4-byte broadcast, while an empty
//! one takes one frame. `loom_bytes.rs` models the byte accounting itself.
//!
//! - Under `DisconnectClient` both broadcasts overflow a full outbox; the
//!   client is shut exactly once (`closed` is swapped, one caller wins and
//!   tells the transport) and cleaned up. Mutant `double_close` (client.rs
//!   `shut`): a load-then-store instead of the swap; both overflowing
//!   broadcasters win and the transport is closed twice.
//! - Under `DropMessage`, with a drainer running, every frame is either
//!   delivered or counted as dropped, exactly once. Mutant `lost_drop`
//!   (client.rs `enqueue`): the drop counter is bumped with a load and a
//!   store, and one of two concurrent drops is lost.
#![cfg(loom)]

use std::sync::Arc;

use loom::thread;
use loom_tests::{attach, drain};
use realtime::{Hub, SlowConsumerPolicy};

#[allow(
    clippy::unwrap_used,
    reason = "a test helper: a failed broadcast fails the model"
)]
fn two_broadcasters(hub: &Hub) -> [thread::JoinHandle<()>; 2] {
    ["b1", "b2"].map(|payload| {
        let hub = hub.clone();
        thread::spawn(move || hub.broadcast("ch", payload).unwrap())
    })
}

#[test]
fn disconnect_client_overflow_closes_exactly_once() {
    loom_tests::model(|| {
        let hub = Hub::builder()
            .client_buffer(7)
            .slow_consumer_policy(SlowConsumerPolicy::DisconnectClient)
            .build();
        let (a, probe) = attach(&hub);
        hub.subscribe(&a, "ch").unwrap();
        a.send_text("fill").unwrap();

        for t in two_broadcasters(&hub) {
            t.join().unwrap();
        }

        assert_eq!(probe.closes(), 1, "transport closed more than once");
        assert!(a.is_closed());
        assert_eq!(
            a.close_reason().map(|r| r.0),
            Some(realtime::CLOSE_SLOW_CONSUMER)
        );
        assert_eq!(hub.count(), 0);
        assert!(hub.channels().is_empty());
        assert_eq!(a.drops(), 0);
        drop(a);
        assert_eq!(Arc::strong_count(&probe), 1, "closed client leaked");
    });
}

#[test]
fn drop_message_overflow_counts_every_dropped_frame() {
    loom_tests::model(|| {
        let hub = Hub::builder().client_buffer(7).build();
        let (a, _probe) = attach(&hub);
        hub.subscribe(&a, "ch").unwrap();
        a.send_text("fill").unwrap();

        let broadcasters = two_broadcasters(&hub);
        // The transport drains one frame while the broadcasts run.
        let mut delivered = usize::from(a.pop_frame().is_some());
        for t in broadcasters {
            t.join().unwrap();
        }
        delivered += drain(&a).len();

        assert!(!a.is_closed(), "DropMessage never disconnects");
        let drops = usize::try_from(a.drops()).unwrap();
        assert_eq!(
            delivered + drops,
            3,
            "delivered {delivered}, dropped {drops}"
        );
        assert!(
            drops >= 1,
            "7 bytes hold one frame: 3 cannot pass with one pop"
        );
    });
}
