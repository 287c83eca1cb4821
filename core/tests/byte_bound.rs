//! Pending output bounded in bytes, replies never dropped, and the Hub's
//! subscription and presence limits: R34, R35.

#![allow(clippy::disallowed_types, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use realtime::{
    AuthResult, Error, Frame, Hub, Member, PresenceMode, SlowConsumerPolicy, CLOSE_SLOW_CONSUMER,
};

/// 100 payload bytes: 102 on the wire.
fn hundred() -> String {
    "x".repeat(100)
}

#[test]
fn r34_a_burst_of_thousands_of_frames_within_the_byte_bound_is_never_dropped() {
    for policy in [
        SlowConsumerPolicy::DropMessage,
        SlowConsumerPolicy::DisconnectClient,
    ] {
        let hub = Hub::builder()
            .client_buffer(1 << 20)
            .slow_consumer_policy(policy)
            .build();
        let (reader, _probe) = attach(&hub);
        hub.subscribe(&reader, "t").unwrap();
        // 5,000 frames before the drainer runs once: 510,000 bytes < 1 MiB.
        for _ in 0..5_000 {
            hub.broadcast("t", hundred()).unwrap();
        }
        assert!(!reader.is_closed(), "{policy:?}");
        assert_eq!(reader.drops(), 0, "{policy:?}");
        assert_eq!(reader.pending(), 5_000);
        assert_eq!(reader.pending_bytes(), 5_000 * 102);
        assert_eq!(drain(&reader).len(), 5_000);
        assert_eq!(reader.pending_bytes(), 0);
    }
}

#[test]
fn r34_drop_message_drops_only_past_the_byte_bound_and_resumes_below_it() {
    let hub = Hub::builder().client_buffer(1_020).build();
    let (slow, _p) = attach(&hub);
    let (fast, _fp) = attach(&hub);
    hub.subscribe(&slow, "t").unwrap();
    hub.subscribe(&fast, "t").unwrap();
    for _ in 0..15 {
        hub.broadcast("t", hundred()).unwrap();
        drain(&fast);
    }
    // 10 frames of 102 bytes fit exactly; the other 5 are dropped.
    assert_eq!((slow.pending(), slow.drops()), (10, 5));
    assert!(!slow.is_closed());
    assert_eq!(fast.drops(), 0);
    // Reading frees the budget: delivery resumes.
    drain(&slow);
    hub.broadcast("t", hundred()).unwrap();
    assert_eq!((slow.pending(), slow.drops()), (1, 5));
}

#[test]
fn r34_bytes_the_transport_holds_unsent_count_toward_the_bound() {
    let hub = Hub::builder()
        .client_buffer(1_000)
        .slow_consumer_policy(SlowConsumerPolicy::DisconnectClient)
        .build();
    let (c, probe) = attach(&hub);
    hub.subscribe(&c, "t").unwrap();
    // The transport popped everything but the socket took nothing.
    c.set_unsent(950);
    assert_eq!(c.pending_bytes(), 950);
    hub.broadcast("t", "a".repeat(40)).unwrap(); // 42 bytes: 992, fits
    assert!(!c.is_closed());
    hub.broadcast("t", "b".repeat(40)).unwrap(); // 1,034: past the bound
    assert!(c.is_closed());
    assert_eq!(probe.closes(), 1);
    assert_eq!(
        c.close_reason().map(|(code, _)| code),
        Some(CLOSE_SLOW_CONSUMER)
    );
}

#[test]
fn r34_a_frame_larger_than_the_bound_reaches_a_client_that_caught_up() {
    let hub = Hub::builder()
        .client_buffer(64)
        .slow_consumer_policy(SlowConsumerPolicy::DisconnectClient)
        .build();
    let (c, _p) = attach(&hub);
    hub.subscribe(&c, "t").unwrap();
    hub.broadcast("t", "z".repeat(10_000)).unwrap();
    assert!(!c.is_closed());
    assert_eq!(drain(&c)[0].payload().len(), 10_000);
}

#[test]
fn r34_replies_are_never_dropped_and_a_client_that_floods_without_reading_is_disconnected() {
    let hub = Hub::builder().client_buffer(1_020).build();
    let (c, probe) = attach(&hub);
    hub.subscribe(&c, "t").unwrap();
    // The buffer is full of broadcasts: more broadcasts are dropped...
    for _ in 0..10 {
        hub.broadcast("t", hundred()).unwrap();
    }
    hub.broadcast("t", hundred()).unwrap();
    assert_eq!(c.drops(), 1);
    assert!(!c.is_closed());
    // ...but a reply is not: past the bound it disconnects instead (R34:
    // a client that floods requests and never reads still hits the bound).
    assert_eq!(
        c.send_reply(Frame::from_string("{\"event\":\"pusher:pong\"}")),
        Err(Error::Closed)
    );
    assert!(c.is_closed());
    assert_eq!(probe.closes(), 1);
    assert_eq!(
        c.close_reason().map(|(code, _)| code),
        Some(CLOSE_SLOW_CONSUMER)
    );
    assert_eq!(hub.count(), 0, "cleaned up");
}

#[test]
fn r34_replies_within_the_bound_are_queued_in_order_with_broadcasts() {
    let hub = Hub::builder().client_buffer(1 << 20).build();
    let (c, _p) = attach(&hub);
    hub.subscribe(&c, "t").unwrap();
    hub.broadcast("t", "b1").unwrap();
    c.send_reply(Frame::from_string("r1")).unwrap();
    hub.broadcast("t", "b2").unwrap();
    assert_eq!(texts(&drain(&c)), ["b1", "r1", "b2"]);
}

#[test]
fn r35_subscriptions_past_the_per_client_limit_are_refused_and_change_nothing() {
    let hub = Hub::builder().max_subscriptions(3).build();
    let (c, _p) = attach(&hub);
    for ch in ["a", "b", "c"] {
        hub.subscribe(&c, ch).unwrap();
    }
    assert_eq!(hub.subscribe(&c, "d"), Err(Error::TooManySubscriptions(3)));
    // Re-subscribing is not a new subscription.
    hub.subscribe(&c, "a").unwrap();
    assert_eq!(c.subscription_count(), 3);
    assert_eq!(hub.channel_count("d"), 0);
    assert!(hub.channels().iter().all(|(name, _)| name != "d"));
    hub.unsubscribe(&c, "a").unwrap();
    hub.subscribe(&c, "d").unwrap();
    assert_eq!(c.subscription_count(), 3);
}

#[test]
fn r35_member_past_the_presence_limit_is_refused_and_nobody_hears_of_it() {
    let hub = Hub::builder()
        .max_presence_members(2)
        .presence_mode(PresenceMode::PerUser)
        .authorizer(|r: &realtime::AuthRequest| {
            // The auth bytes name the user.
            AuthResult::allow(Member::new(
                String::from_utf8_lossy(&r.auth).into_owned(),
                "",
            ))
        })
        .build();
    let (a, _pa) = attach_with(&hub, "ada");
    let (b, _pb) = attach_with(&hub, "bob");
    let (a2, _pa2) = attach_with(&hub, "ada");
    let (c, _pc) = attach_with(&hub, "cy");
    hub.subscribe(&a, "presence-r").unwrap();
    hub.subscribe(&b, "presence-r").unwrap();
    drain(&a);
    drain(&b);
    // Another connection of a present user is not a new member.
    hub.subscribe(&a2, "presence-r").unwrap();
    drain(&a2);
    assert_eq!(hub.subscribe(&c, "presence-r"), Err(Error::PresenceFull(2)));
    assert!(drain(&c).is_empty(), "no roster for a refused member");
    assert!(
        drain(&a).is_empty() && drain(&b).is_empty(),
        "no member_added"
    );
    let ids: Vec<String> = hub
        .presence("presence-r")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, ["ada", "bob"]);
    assert_eq!(hub.channel_count("presence-r"), 3);
    assert_eq!(c.subscription_count(), 0);
    // A leave makes room.
    hub.unsubscribe(&b, "presence-r").unwrap();
    hub.subscribe(&c, "presence-r").unwrap();
}

#[test]
fn r35_channels_past_the_hub_limit_are_refused_and_existing_ones_stay_joinable() {
    let hub = Hub::builder().max_channels(2).build();
    let (a, _pa) = attach(&hub);
    let (b, _pb) = attach(&hub);
    hub.subscribe(&a, "one").unwrap();
    hub.subscribe(&a, "two").unwrap();
    assert_eq!(hub.subscribe(&a, "three"), Err(Error::TooManyChannels(2)));
    assert_eq!(hub.channels().len(), 2);
    assert_eq!(a.subscription_count(), 2);
    // Joining an existing channel is not a new channel.
    hub.subscribe(&b, "two").unwrap();
    // A channel that empties frees its place.
    hub.unsubscribe(&a, "one").unwrap();
    hub.subscribe(&b, "three").unwrap();
    assert_eq!(hub.subscribe(&b, "four"), Err(Error::TooManyChannels(2)));
    assert_eq!(
        hub.channels(),
        [("three".to_owned(), 1), ("two".to_owned(), 2)]
    );
}
