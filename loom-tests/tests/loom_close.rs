//! Model 2: a subscribe racing the subscriber's own close (R7). Close shuts
//! (`closed` swapped to true) and then cleans up under the client's `subs`
//! lock; subscribe re-checks `closed` under that same lock. So the subscribe
//! either completes before the clean-up (which removes it) or fails with
//! `Closed`: no ghost subscriber, no phantom presence member, every count
//! back to zero, and the client's memory is freed.
//!
//! Mutant `ghost` (hub.rs `join`): the subscribe checks `closed` only before
//! taking the lock, as the reference did; a close in between leaves a ghost.
//! The public-channel model catches it. On a presence channel the same
//! mutant survives, and rightly: the newcomer's roster is enqueued with
//! `force` under the channel lock, and that enqueue refuses a closed client,
//! a second line of defence that the presence model checks on its own.
//!
//! Mutant `empty_channel` (hub.rs `join`): a join that created the channel
//! and then found its client closed returns without retiring the channel,
//! which stays empty in the table for good (a leak first found by the
//! fuzz model, since fixed). The presence model catches it.
#![cfg(loom)]

use std::sync::Arc;

use loom::thread;
use loom_tests::{attach, presence_log, read_log};
use realtime::{AuthRequest, AuthResult, Error, Hub};

/// Races `subscribe(a, channel)` against `a.close()` and checks that nothing
/// of `a` is left anywhere.
#[allow(
    clippy::unwrap_used,
    reason = "a test helper: a failed join fails the model"
)]
fn subscribe_racing_close(channel: &'static str) {
    let hub = Hub::builder()
        .authorizer(|_: &AuthRequest| AuthResult::allow_anonymous())
        .build();
    let log = presence_log(&hub);
    let (a, probe) = attach(&hub);

    let subscriber = {
        let (hub, a) = (hub.clone(), a.clone());
        thread::spawn(move || hub.subscribe(&a, channel))
    };
    a.close();
    let result = subscriber.join().unwrap();
    assert!(matches!(result, Ok(()) | Err(Error::Closed)), "{result:?}");

    assert!(a.is_closed());
    assert_eq!(hub.count(), 0, "client table");
    assert!(hub.channels().is_empty(), "ghost subscriber");
    assert_eq!(hub.channel_count(channel), 0);
    assert!(hub.presence(channel).is_empty(), "phantom member");
    assert!(a.channels().is_empty());
    // Every join the hook saw has its leave.
    let log = read_log(&log);
    let joins = log.iter().filter(|e| e.starts_with("added:")).count();
    let leaves = log.iter().filter(|e| e.starts_with("removed:")).count();
    assert_eq!(joins, leaves, "{log:?}");
    assert_eq!(probe.closes(), 1);
    // Nothing else holds the client: its transport is ours alone again.
    drop(a);
    assert_eq!(Arc::strong_count(&probe), 1, "client leaked");
    // No empty channel left in the table either (`channels()` hides empty
    // ones; `Debug` counts the table).
    assert!(format!("{hub:?}").contains("channels: 0"), "{hub:?}");
}

#[test]
fn subscribe_racing_close_leaves_no_ghost() {
    loom_tests::model(|| subscribe_racing_close("room"));
}

#[test]
fn presence_subscribe_racing_close_leaves_no_phantom_member() {
    loom_tests::model(|| subscribe_racing_close("presence-room"));
}
