//! Model 9: the outbox's order through its ring and its overflow
//! (`outbox.rs`, "The ring and the overflow, in order"). Under loom the ring
//! has 2 slots, so a third frame queued before the drainer takes one goes
//! to the overflow, and frames after it follow it there until the drainer
//! has emptied it. Whatever the interleaving, every frame leaves exactly
//! once and each producer's frames leave in the order it queued them (R30's
//! per-producer order; the Hub's cross-producer order, by locks, rests on
//! the same rules).
//!
//! Mutants (`realtime::mutants`, `outbox.rs`):
//! - `ring_after_spill`: a producer uses a free ring slot while frames wait
//!   in the overflow; its later frame passes them.
//! - `pop_skips_unwritten`: the drainer passes over a ring slot that a
//!   producer has claimed but not yet written and takes the overflow's
//!   frame, which is later.
//! - `head_before_take`: the drainer advances the ring's head before it
//!   empties the slot; the next lap's producer stores over the frame, which
//!   is lost, and a later frame leaves in its place.
#![cfg(loom)]

use loom::thread;
use loom_tests::attach;
use realtime::{Client, Hub};

/// The frame's text.
fn text(frame: &realtime::Frame) -> String {
    String::from_utf8(frame.payload().to_vec()).unwrap()
}

/// What the drainer takes while the producers run: one pop (a frame or
/// nothing). One pop, not a polling loop, keeps the interleavings few; it
/// is all each mutant needs.
fn pop_once(client: &Client) -> Vec<String> {
    client.pop_frame().iter().map(text).collect()
}

/// The rest, once the producers are done; nothing leaves twice.
fn pop_rest(client: &Client, got: &mut Vec<String>) {
    while let Some(frame) = client.pop_frame() {
        got.push(text(&frame));
    }
}

/// The texts of `got` that start with `prefix`, in order.
fn of(got: &[String], prefix: &str) -> Vec<String> {
    got.iter()
        .filter(|t| t.starts_with(prefix))
        .cloned()
        .collect()
}

#[test]
fn frames_leave_in_order_across_the_ring_and_the_overflow() {
    loom_tests::model(|| {
        let hub = Hub::new();
        let (client, _probe) = attach(&hub);
        // Four frames through two slots: the third spills unless the drainer
        // has taken one, and the fourth may find a free slot (the drainer
        // took the first meanwhile) while the third waits in the overflow.
        let producer = {
            let client = client.clone();
            thread::spawn(move || {
                for p in ["a1", "a2", "a3", "a4"] {
                    client.send_text(p).unwrap();
                }
            })
        };
        let mut got = pop_once(&client);
        producer.join().unwrap();
        pop_rest(&client, &mut got);
        assert_eq!(got, ["a1", "a2", "a3", "a4"], "frames left out of order");
        assert_eq!(client.pending(), 0);
        assert_eq!(client.pending_bytes(), 0);
    });
}

#[test]
fn a_slot_being_written_is_waited_for_not_passed_over() {
    loom_tests::model(|| {
        let hub = Hub::new();
        let (client, _probe) = attach(&hub);
        // `x1` may claim the first slot and be preempted before writing it;
        // `y1` takes the second and `y2` then finds the ring full and spills.
        // `y2` must not leave before `y1`.
        let producers: Vec<_> = [&["x1"][..], &["y1", "y2"][..]]
            .into_iter()
            .map(|payloads| {
                let client = client.clone();
                thread::spawn(move || {
                    for p in payloads {
                        client.send_text(*p).unwrap();
                    }
                })
            })
            .collect();
        let mut got = pop_once(&client);
        for p in producers {
            p.join().unwrap();
        }
        pop_rest(&client, &mut got);
        assert_eq!(of(&got, "x"), ["x1"]);
        assert_eq!(of(&got, "y"), ["y1", "y2"], "frames left out of order");
        assert_eq!(client.pending(), 0);
    });
}
