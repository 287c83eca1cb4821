//! Model 8: the outbox's byte accounting (`outbox.rs`, R14, R34).
//!
//! A client's bound is on the bytes it owes its socket: the wire length of
//! the frames in its outbox (`queued`, reserved by a producer before its
//! frame enters the queue, released by the drainer's pop) plus what its
//! transport holds that the socket has not taken (`unsent`, reported by the
//! drainer with `Client::set_unsent`). Every frame here is a 2-byte text
//! payload plus a 2-byte header, 4 wire bytes, unless said otherwise.
//!
//! - Accounting: broadcasts race a transport that writes frames; every frame
//!   is delivered or counted dropped exactly once, and what `pending_bytes`
//!   reports is exactly the frames still queued plus `unsent`, so it returns
//!   to 0 once all is written. Mutant `reserve_not_atomic` (outbox.rs
//!   `push`): the reservation is a load and a store, so a racing push's
//!   bytes are lost from the count.
//! - Keeping up: a burst that fits the bound never disconnects a client
//!   whose transport writes as frames arrive, even under `DisconnectClient`
//!   (R34). Mutant `account_after_push` (outbox.rs `push`): the bytes are
//!   added after the frame is queued, so the drainer can pop and release
//!   them first; `queued` wraps below zero and the next producer finds the
//!   client hopelessly slow. Mutant `refuse_on_stale_count` (outbox.rs
//!   `reserve`): a push refuses on a relaxed load of the count, which may
//!   predate a pop whose bytes the transport already reports unsent, so
//!   they count twice.
//! - Unsent: bytes the socket refused count toward the bound; with the
//!   transport holding 12 of a 16-byte bound, one of two 4-byte broadcasts
//!   fits and the other is dropped (`DropMessage`) or disconnects the client
//!   exactly once (`DisconnectClient`). Mutant `bound_ignores_unsent`
//!   (outbox.rs `push`): the bound counts only what is queued.
//! - Replies (`Client::send_reply`) are never dropped: past the bound they
//!   close the client (1008) exactly once, whatever the policy. Mutant
//!   `reply_dropped` (client.rs `send_reply`): a reply obeys `DropMessage`.
//! - A reply that fits is queued while a racing broadcast that does not is
//!   dropped. Mutant `reserve_then_undo` (outbox.rs `reserve`, the first v2
//!   code): the broadcast reserves its bytes and undoes it; in between the
//!   reply reads them, looks over the bound, and (never dropped) closes a
//!   client that is within it.
#![cfg(loom)]

use std::sync::Arc;

use loom::thread;
use loom_tests::{attach, drain, write_one};
use realtime::{Client, Frame, Hub, SlowConsumerPolicy, CLOSE_SLOW_CONSUMER};

/// One broadcaster thread per list, each broadcasting its payloads in order
/// on "ch".
#[allow(
    clippy::unwrap_used,
    reason = "a test helper: a failed broadcast fails the model"
)]
fn broadcasters(hub: &Hub, lists: [&'static [&'static str]; 2]) -> [thread::JoinHandle<()>; 2] {
    lists.map(|payloads| {
        let hub = hub.clone();
        thread::spawn(move || {
            for p in payloads {
                hub.broadcast("ch", *p).unwrap();
            }
        })
    })
}

/// The wire bytes of `frames` as `Frame::from_string` makes them.
fn wire_bytes(frames: &[String]) -> usize {
    frames
        .iter()
        .map(|f| Frame::from_string(f.clone()).wire_len())
        .sum()
}

/// A client subscribed to "ch" on a Hub with this byte bound and policy.
#[allow(clippy::unwrap_used, reason = "a test helper")]
fn client(bytes: usize, policy: SlowConsumerPolicy) -> (Hub, Client, Arc<loom_tests::Probe>) {
    let hub = Hub::builder()
        .client_buffer(bytes)
        .slow_consumer_policy(policy)
        .build();
    let (a, probe) = attach(&hub);
    hub.subscribe(&a, "ch").unwrap();
    (hub, a, probe)
}

#[test]
fn every_frame_is_delivered_or_dropped_once_and_no_byte_leaks() {
    loom_tests::model(|| {
        // 8 bytes: two frames.
        let (hub, a, _probe) = client(8, SlowConsumerPolicy::DropMessage);
        let threads = broadcasters(&hub, [&["a1", "a2"], &["b1"]]);
        // The transport writes one frame while the broadcasts run.
        let mut delivered: Vec<String> = write_one(&a).into_iter().collect();
        for t in threads {
            t.join().unwrap();
        }

        // What is owed is exactly what is queued (the write left 0 unsent).
        let (frames, owed) = (a.pending(), a.pending_bytes());
        let queued = drain(&a);
        assert_eq!(
            (frames, owed),
            (queued.len(), wire_bytes(&queued)),
            "the count (frames, bytes) is not what is queued"
        );
        assert_eq!((a.pending(), a.pending_bytes()), (0, 0), "leaked bytes");
        let drops = usize::try_from(a.drops()).unwrap();
        delivered.extend(queued);
        assert_eq!(
            delivered.len() + drops,
            3,
            "delivered {delivered:?}, dropped {drops}"
        );
        assert!(drops <= 1, "8 bytes hold two frames: dropped {drops}");
        assert!(!a.is_closed(), "DropMessage never disconnects");
    });
}

#[test]
fn a_reader_that_keeps_up_is_never_disconnected_for_a_burst_that_fits() {
    loom_tests::model(|| {
        // 12 bytes: exactly the burst.
        let (hub, a, probe) = client(12, SlowConsumerPolicy::DisconnectClient);
        let threads = broadcasters(&hub, [&["a1", "a2"], &["b1"]]);
        // The transport writes as frames arrive.
        let mut delivered: Vec<String> = Vec::new();
        for _ in 0..2 {
            delivered.extend(write_one(&a));
        }
        for t in threads {
            t.join().unwrap();
        }
        while let Some(f) = write_one(&a) {
            delivered.push(f);
        }

        assert!(!a.is_closed(), "disconnected for a burst that fits");
        assert_eq!(probe.closes(), 0);
        assert_eq!(a.drops(), 0);
        assert_eq!(delivered.len(), 3, "delivered {delivered:?}");
        let a1 = delivered.iter().position(|f| f == "a1");
        let a2 = delivered.iter().position(|f| f == "a2");
        assert!(a1 < a2, "one broadcaster's frames out of order (R17)");
        assert_eq!((a.pending(), a.pending_bytes()), (0, 0), "leaked bytes");
    });
}

#[test]
fn unsent_bytes_count_toward_the_bound_drop_message() {
    loom_tests::model(|| {
        let (hub, a, _probe) = client(16, SlowConsumerPolicy::DropMessage);
        // The socket refused 12 bytes; the transport holds them.
        a.set_unsent(12);
        for t in broadcasters(&hub, [&["b1"], &["b2"]]) {
            t.join().unwrap();
        }

        assert_eq!(a.drops(), 1, "12 unsent + 4 fill the bound: one drop");
        assert_eq!((a.pending(), a.pending_bytes()), (1, 16));
        assert!(!a.is_closed());
        // The socket takes it all.
        a.set_unsent(0);
        assert_eq!(drain(&a).len(), 1);
        assert_eq!(a.pending_bytes(), 0, "leaked bytes");
    });
}

#[test]
fn unsent_bytes_count_toward_the_bound_disconnect_client() {
    loom_tests::model(|| {
        let (hub, a, probe) = client(16, SlowConsumerPolicy::DisconnectClient);
        a.set_unsent(12);
        for t in broadcasters(&hub, [&["b1"], &["b2"]]) {
            t.join().unwrap();
        }

        assert_eq!(probe.closes(), 1, "12 unsent + 8 pass the bound once");
        assert_eq!(a.close_reason().map(|r| r.0), Some(CLOSE_SLOW_CONSUMER));
        assert_eq!(a.drops(), 0);
        assert_eq!(hub.count(), 0);
        assert!(hub.channels().is_empty());
    });
}

/// A reply that fits is queued while a broadcast that does not is dropped,
/// whichever runs first.
#[test]
fn a_reply_is_queued_where_a_broadcast_is_dropped() {
    loom_tests::model(|| {
        let (hub, a, probe) = client(16, SlowConsumerPolicy::DropMessage);
        a.set_unsent(10);
        let broadcaster = {
            let hub = hub.clone();
            // 6 bytes, 8 on the wire: 10 + 8 passes 16.
            thread::spawn(move || hub.broadcast("ch", "bbbbbb").unwrap())
        };
        let replier = {
            let a = a.clone();
            // 1 byte, 3 on the wire: 10 + 3 fits.
            thread::spawn(move || a.send_reply(Frame::from_string("r")))
        };
        broadcaster.join().unwrap();
        let reply = replier.join().unwrap();

        assert!(reply.is_ok(), "a reply within the bound was refused");
        assert_eq!(probe.closes(), 0, "closed for a reply within the bound");
        assert_eq!(a.drops(), 1, "the broadcast past the bound is dropped");
        assert_eq!(a.pending_bytes(), 13);
        assert_eq!(drain(&a), ["r"]);
    });
}

/// A broadcast and two replies race for the room of one frame: the client
/// is closed (1008) exactly once, by the first reply that does not fit; a
/// reply is never dropped, only the broadcast can be.
#[test]
fn replies_past_the_bound_close_the_client_exactly_once() {
    loom_tests::model(|| {
        let (hub, a, probe) = client(16, SlowConsumerPolicy::DropMessage);
        a.set_unsent(12);
        let broadcaster = {
            let hub = hub.clone();
            thread::spawn(move || hub.broadcast("ch", "b1").unwrap())
        };
        let repliers = ["r1", "r2"].map(|r| {
            let a = a.clone();
            thread::spawn(move || a.send_reply(Frame::from_string(r)).is_ok())
        });
        broadcaster.join().unwrap();
        let accepted = repliers.map(|t| t.join().unwrap());
        let accepted = accepted.iter().filter(|ok| **ok).count();

        assert_eq!(probe.closes(), 1, "closed {} times", probe.closes());
        assert_eq!(a.close_reason().map(|r| r.0), Some(CLOSE_SLOW_CONSUMER));
        assert!(a.drops() <= 1, "a reply was dropped: {} drops", a.drops());
        assert!(accepted <= 1, "two replies past a bound that holds one");
        if a.drops() == 1 {
            assert_eq!(accepted, 1, "the broadcast was dropped for no reply");
        }
        assert_eq!(hub.count(), 0);
    });
}
