//! Slow consumers: R14.

// Tests use the public API from outside the facade; std atomics are fine here.
#![allow(clippy::disallowed_types, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use realtime::{AuthResult, Error, Hub, Member, SlowConsumerPolicy};

#[test]
fn r14_drop_message_discards_and_counts_and_the_connection_lives() {
    let hub = Hub::builder().outbox(4).build();
    let (slow, probe) = attach(&hub);
    let (fast, _fp) = attach(&hub);
    hub.subscribe(&slow, "t").unwrap();
    hub.subscribe(&fast, "t").unwrap();
    for i in 0..10 {
        hub.broadcast("t", i.to_string()).unwrap();
        drain(&fast);
    }
    assert_eq!(slow.drops(), 6);
    assert_eq!(fast.drops(), 0);
    assert!(!slow.is_closed());
    assert_eq!(texts(&drain(&slow)), ["0", "1", "2", "3"]);
    // One wake for the whole batch (R30), none per frame.
    assert_eq!(probe.wakes(), 1);
    hub.broadcast("t", "after").unwrap();
    assert_eq!(texts(&drain(&slow)), ["after"]);
    assert_eq!(probe.closes(), 0);
}

#[test]
fn r14_disconnect_client_closes_on_first_overflow_exactly_once() {
    let hub = Hub::builder()
        .outbox(2)
        .slow_consumer_policy(SlowConsumerPolicy::DisconnectClient)
        .build();
    let (slow, probe) = attach(&hub);
    let (fast, _fp) = attach(&hub);
    hub.subscribe(&slow, "t").unwrap();
    hub.subscribe(&fast, "t").unwrap();
    hub.broadcast("t", "1").unwrap();
    hub.broadcast("t", "2").unwrap();
    drain(&fast);
    assert!(!slow.is_closed());
    hub.broadcast("t", "3").unwrap();
    assert!(slow.is_closed());
    let mut fast_got = texts(&drain(&fast));
    for _ in 0..5 {
        hub.broadcast("t", "more").unwrap();
        fast_got.extend(texts(&drain(&fast)));
    }
    assert_eq!(probe.closes(), 1);
    assert_eq!(slow.drops(), 0);
    assert_eq!(hub.channel_count("t"), 1);
    assert_eq!(hub.count(), 1);
    // The fast client is unaffected.
    assert_eq!(fast_got, ["3", "more", "more", "more", "more", "more"]);
    assert_eq!(slow.pop_frame(), None);
}

#[test]
fn r14_send_to_an_overflowing_client_under_disconnect_closes_it() {
    let hub = Hub::builder()
        .outbox(1)
        .slow_consumer_policy(SlowConsumerPolicy::DisconnectClient)
        .build();
    let (c, probe) = attach(&hub);
    hub.send_to(c.id(), "1").unwrap();
    assert_eq!(
        hub.send_to(c.id(), "2"),
        Err(Error::ClientNotFound(c.id().into()))
    );
    assert_eq!(probe.closes(), 1);
    assert_eq!(hub.count(), 0);
}

#[test]
fn r14_a_presence_frame_that_cannot_be_enqueued_disconnects_even_under_drop_message() {
    let hub = Hub::builder()
        .outbox(3)
        .authorizer(|r: &realtime::AuthRequest| {
            AuthResult::allow(Member::new(String::from_utf8_lossy(&r.auth), ()))
        })
        .build();
    let (stalled, probe) = attach(&hub);
    hub.subscribe(&stalled, "presence-p").unwrap(); // roster + own join: 2 frames
    hub.broadcast("presence-p", "fill").unwrap(); // 3: full
    let (other, _op) = attach(&hub);
    hub.subscribe(&other, "presence-p").unwrap(); // member_added cannot fit
    assert!(stalled.is_closed());
    assert_eq!(probe.closes(), 1);
    assert_eq!(stalled.drops(), 0);
    // The roster no longer shows the disconnected member, and the survivor
    // was told.
    assert_eq!(hub.presence("presence-p").len(), 1);
    let got = texts(&drain(&other));
    assert!(
        got.last().unwrap().contains("presence:member_removed"),
        "{got:?}"
    );
}

#[test]
fn r14_enqueue_never_blocks_on_a_stalled_blocking_conn() {
    // A Conn whose writes block forever: the writer thread is stuck, yet
    // broadcasts return and count drops.
    struct Stuck(crossbeam_channel::Receiver<()>);
    impl realtime::Conn for Stuck {
        fn read_message(&self) -> std::io::Result<(realtime::MessageType, bytes::Bytes)> {
            let _ = self.0.recv();
            Err(std::io::ErrorKind::UnexpectedEof.into())
        }
        fn write_message(&self, _: realtime::MessageType, _: &[u8]) -> std::io::Result<()> {
            let _ = self.0.recv();
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn close(&self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (release, gate) = crossbeam_channel::bounded::<()>(0);
    let hub = Hub::builder().outbox(8).build();
    let c = hub.add(Stuck(gate), ()).unwrap();
    hub.subscribe(&c, "t").unwrap();
    for i in 0..1000 {
        hub.broadcast("t", i.to_string()).unwrap();
    }
    // At most 8 queued plus one in the writer's hands.
    assert!(c.drops() >= 1000 - 9, "drops = {}", c.drops());
    drop(release); // unblocks the writer: its write fails, it closes
    c.close();
    assert_eq!(hub.count(), 0);
}

#[test]
fn r14_overflow_and_hub_close_record_their_close_reasons() {
    let hub = Hub::builder()
        .outbox(1)
        .slow_consumer_policy(SlowConsumerPolicy::DisconnectClient)
        .build();
    let (slow, _p) = attach(&hub);
    let (idle, _q) = attach(&hub);
    let (app_closed, _r) = attach(&hub);
    hub.subscribe(&slow, "t").unwrap();
    hub.broadcast("t", "1").unwrap();
    hub.broadcast("t", "2").unwrap();
    assert_eq!(
        slow.close_reason(),
        Some((realtime::CLOSE_SLOW_CONSUMER, "slow consumer"))
    );
    app_closed.close_with(4200, "bye");
    assert_eq!(app_closed.close_reason(), Some((4200, "bye")));
    hub.close();
    assert_eq!(
        idle.close_reason(),
        Some((realtime::CLOSE_GOING_AWAY, "hub closed"))
    );
}
