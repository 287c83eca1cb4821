//! R16: dropping a Hub joins its threads. Alone in its binary so the
//! process's thread count is not disturbed by other tests.

// Tests use the public API from outside the facade; std atomics are fine here.
#![allow(clippy::disallowed_types, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use realtime::Hub;

#[test]
fn r16_dropping_the_hub_closes_clients_and_joins_writer_threads() {
    let before = thread_count();
    let hub = Hub::new();
    let peers: Vec<_> = (0..50).map(|_| connect(&hub)).collect();
    assert!(thread_count() >= before + 50);
    let (c, _) = &peers[0];
    let c = c.clone();
    drop(hub);
    assert!(c.is_closed());
    for (_, p) in &peers {
        until_eof(p);
    }
    assert_eq!(settled_thread_count(before), before);
}
