//! Each weakness of the Go reference that SPEC.md lists, pinned by a test
//! that fails on the reference's behaviour.

// Tests use the public API from outside the facade; std atomics are fine here.
#![allow(clippy::disallowed_types, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use common::*;
use realtime::{AuthRequest, AuthResult, Error, Hub, Member};

/// R7: the reference leaves a ghost subscriber (and a phantom presence
/// member) when a subscribe races a close.
#[test]
fn subscribe_racing_close_leaves_no_ghost_subscriber_or_phantom_member() {
    let hub = Hub::builder().authorizer(allow_all()).build();
    let joins = Arc::new(AtomicUsize::new(0));
    let leaves = Arc::new(AtomicUsize::new(0));
    let (j, l) = (joins.clone(), leaves.clone());
    hub.on_presence(move |e| {
        if e.joined { &j } else { &l }.fetch_add(1, Ordering::SeqCst);
    });
    for round in 0..300 {
        let (c, _probe) = attach(&hub);
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                let r = hub.subscribe(&c, "presence-race");
                let r2 = hub.subscribe(&c, "public-race");
                assert!(matches!(r, Ok(()) | Err(Error::Closed)), "{r:?}");
                assert!(matches!(r2, Ok(()) | Err(Error::Closed)), "{r2:?}");
            });
            s.spawn(|| {
                barrier.wait();
                c.close();
            });
        });
        assert_eq!(hub.channel_count("presence-race"), 0, "round {round}");
        assert_eq!(hub.channel_count("public-race"), 0, "round {round}");
        assert!(hub.presence("presence-race").is_empty(), "round {round}");
    }
    assert_eq!(hub.count(), 0);
    assert_eq!(joins.load(Ordering::SeqCst), leaves.load(Ordering::SeqCst));
}

/// R9: the reference sends presence frames after releasing its lock, so a
/// newcomer can see `member_added` of a later joiner before its roster.
#[test]
fn roster_precedes_every_other_presence_frame_under_concurrent_joins() {
    let hub = Hub::builder().authorizer(allow_all()).build();
    let peers: Vec<_> = (0..16)
        .map(|i| connect_with(&hub, &format!("u{i}")))
        .collect();
    let barrier = Barrier::new(peers.len());
    std::thread::scope(|s| {
        for (c, _) in &peers {
            let (hub, barrier) = (&hub, &barrier);
            s.spawn(move || {
                barrier.wait();
                hub.subscribe(c, "presence-join").unwrap();
            });
        }
    });
    for (c, p) in &peers {
        let first = next_json(p);
        assert_eq!(
            first["event"],
            "presence:subscription_succeeded",
            "{}",
            c.id()
        );
        // Roster + one member_added per member who joined at or after us
        // equals the final roster size.
        let roster_len = first["members"].as_array().unwrap().len();
        let later = before_marker(&hub, "presence-join", p);
        assert_eq!(roster_len + later.len(), 16, "{}: {later:?}", c.id());
        assert!(later.iter().all(|t| t.contains("presence:member_added")));
    }
}

/// R14: the reference's presence frames obey DropMessage, so rosters
/// silently diverge; here the client is disconnected instead.
#[test]
fn presence_frames_never_silently_drop() {
    let hub = Hub::builder().outbox(2).authorizer(allow_all()).build();
    let (full, _probe) = attach(&hub);
    hub.subscribe(&full, "presence-p").unwrap(); // 2 frames: full
    let (b, _pb) = attach(&hub);
    hub.subscribe(&b, "presence-p").unwrap();
    assert_eq!(full.drops(), 0);
    assert!(full.is_closed());
}

/// R11: the reference's Hub close fires no presence leave events.
#[test]
fn hub_close_fires_presence_leaves() {
    let hub = Hub::builder().authorizer(allow_all()).build();
    let left = Arc::new(Mutex::new(Vec::new()));
    let sink = left.clone();
    hub.on_presence(move |e| {
        if !e.joined {
            sink.lock().unwrap().push(e.member.id.clone());
        }
    });
    let (a, _pa) = connect_with(&hub, "a");
    let (b, _pb) = connect_with(&hub, "b");
    hub.subscribe(&a, "presence-z").unwrap();
    hub.subscribe(&b, "presence-z").unwrap();
    hub.close();
    let mut got = left.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, ["a", "b"]);
}

/// R6: the reference calls the authorizer again on re-subscribe and can
/// fail while still subscribed.
#[test]
fn resubscribe_does_not_ask_the_authorizer_again() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let hub = Hub::builder()
        .authorizer(move |_: &AuthRequest| {
            // Allows the first call only.
            if c2.fetch_add(1, Ordering::SeqCst) == 0 {
                AuthResult::allow(Member::default())
            } else {
                AuthResult::deny()
            }
        })
        .build();
    let (c, _p) = attach(&hub);
    hub.subscribe(&c, "private-x").unwrap();
    hub.subscribe(&c, "private-x").unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(hub.channel_count("private-x"), 1);
}

/// R13: after close, the reference says Unauthorized to a private subscribe.
#[test]
fn private_subscribe_after_close_says_closed_not_unauthorized() {
    let hub = Hub::new(); // no authorizer: would be Unauthorized if open
    let (c, _p) = attach(&hub);
    hub.close();
    assert_eq!(hub.subscribe(&c, "private-x"), Err(Error::Closed));
}

/// The reference holds one global mutex around every operation; here a
/// broadcast proceeds while a channel's writer lock is held by a presence
/// hook (which runs under that channel's lock).
#[test]
fn broadcast_does_not_wait_for_a_channels_writer_lock() {
    let (inside_tx, inside_rx) = crossbeam_channel::bounded::<()>(1);
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
    let hub = Hub::builder().authorizer(allow_all()).build();
    let first = Arc::new(AtomicUsize::new(0));
    hub.on_presence(move |_| {
        if first.fetch_add(1, Ordering::SeqCst) == 1 {
            inside_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        }
    });
    let (a, pa) = connect_with(&hub, "a");
    let (b, _pb) = connect_with(&hub, "b");
    hub.subscribe(&a, "presence-l").unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| hub.subscribe(&b, "presence-l"));
        inside_rx.recv().unwrap();
        // b's join holds presence-l's lock right now.
        hub.broadcast("presence-l", "not blocked").unwrap();
        release_tx.send(()).unwrap();
        t.join().unwrap().unwrap();
    });
    let got: Vec<String> = (0..4).map(|_| next_text(&pa)).collect();
    assert!(got.contains(&"not blocked".to_owned()), "{got:?}");
}

/// Found by the `hub_ops` fuzz model: a join that fails after the channel
/// was created (the roster frame did not fit) must not leave an empty
/// channel in the table.
#[test]
fn failed_presence_join_leaves_no_empty_channel_behind() {
    let hub = Hub::builder().outbox(2).authorizer(allow_all()).build();
    let (a, _pa) = attach(&hub);
    let (b, _pb) = attach(&hub);
    hub.subscribe(&a, "public").unwrap();
    hub.broadcast("public", "1").unwrap();
    hub.broadcast("public", "2").unwrap();
    // a's outbox (2 frames) is full: its roster frame cannot be enqueued.
    assert_eq!(hub.subscribe(&a, "presence-a"), Err(Error::Closed));
    assert!(a.is_closed());
    assert_eq!(hub.channel_count("presence-a"), 0);
    assert!(hub.channels().is_empty(), "{:?}", hub.channels());
    // The name is usable again (roster + own join fit b's 2 frames).
    hub.subscribe(&b, "presence-a").unwrap();
    assert_eq!(hub.channels(), [("presence-a".to_owned(), 1)]);
}
