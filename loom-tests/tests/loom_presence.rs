//! Model 3: two presence joins and a leave on one channel (R9, R11). Joins
//! and leaves run their fan-out and hooks under the channel's `state` lock,
//! so the hook order is *the* order of the channel, and:
//!
//! - a newcomer's first frame of the channel is its roster, which holds
//!   exactly the members that joined (and did not leave) before it;
//! - after its roster, a member sees exactly the events from its own join
//!   on, in hook order; the leaver sees exactly the events before its leave;
//! - joins and leaves balance: the final roster is the hook log replayed.
//!
//! Mutant `presence_order` (hub.rs `join`): the `member_added` fan-out and
//! the hooks run after the channel lock is released, as in the reference;
//! members then see joins in different orders, or a roster that disagrees
//! with the order of the channel.
//!
//! A broadcast takes no channel lock, so the lock does not order it against
//! a join: the roster comes first only because the newcomer takes its slot
//! (becomes visible to broadcasts) after its roster is queued. The second
//! model races a join against a broadcast. Mutant `roster_late` (hub.rs
//! `join`): the slot is taken before the roster is queued, and the racing
//! broadcast can reach the newcomer first.
#![cfg(loom)]

use loom::thread;
use loom_tests::{apply, attach, drain, presence_log, read_log, PlainPresence};
use realtime::{AuthRequest, AuthResult, Hub};

const CH: &str = "presence-room";

#[test]
fn presence_joins_and_leave_reach_every_member_in_one_order() {
    loom_tests::model(|| {
        let hub = Hub::builder()
            .authorizer(|_: &AuthRequest| AuthResult::allow_anonymous())
            .presence_encoder(PlainPresence)
            .build();
        let (m, _pm) = attach(&hub);
        hub.subscribe(&m, CH).unwrap();
        assert_eq!(drain(&m), ["roster:", "added:client-1"]);
        let log = presence_log(&hub);
        let (a, _pa) = attach(&hub);
        let (b, _pb) = attach(&hub);

        let joiners: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|c| {
                let hub = hub.clone();
                thread::spawn(move || hub.subscribe(&c, CH).unwrap())
            })
            .collect();
        hub.unsubscribe(&m, CH).unwrap();
        for j in joiners {
            j.join().unwrap();
        }

        let log = read_log(&log);
        assert_eq!(log.len(), 3, "{log:?}");
        let initial = vec!["client-1".to_owned()];

        // The leaver saw every event before its own leave, and nothing after.
        let left_at = log.iter().position(|e| e == "removed:client-1").unwrap();
        assert_eq!(drain(&m), log[..left_at], "leaver's view, log {log:?}");

        // Each newcomer: the roster of everything before its join, then
        // every event from its join on, in the channel's order.
        for c in [&a, &b] {
            let joined_at = log
                .iter()
                .position(|e| *e == format!("added:{}", c.id()))
                .unwrap();
            let mut roster = initial.clone();
            apply(&mut roster, &log[..joined_at]);
            let mut want = vec![format!("roster:{}", roster.join(","))];
            want.extend(log[joined_at..].iter().cloned());
            assert_eq!(drain(c), want, "{}'s view, log {log:?}", c.id());
        }

        // Joins and leaves balance: the roster is the log replayed.
        let mut roster = initial;
        apply(&mut roster, &log);
        let now: Vec<String> = hub.presence(CH).into_iter().map(|m| m.id).collect();
        assert_eq!(now, roster);
        assert_eq!(hub.channel_count(CH), 2);
    });
}

#[test]
fn newcomer_gets_its_roster_before_a_racing_broadcast() {
    loom_tests::model(|| {
        let hub = Hub::builder()
            .authorizer(|_: &AuthRequest| AuthResult::allow_anonymous())
            .presence_encoder(PlainPresence)
            .build();
        let (m, _pm) = attach(&hub);
        hub.subscribe(&m, CH).unwrap();
        assert_eq!(drain(&m), ["roster:", "added:client-1"]);
        let (a, _pa) = attach(&hub);

        let joiner = {
            let (hub, a) = (hub.clone(), a.clone());
            thread::spawn(move || hub.subscribe(&a, CH).unwrap())
        };
        hub.broadcast(CH, "x").unwrap();
        joiner.join().unwrap();

        // The member saw the broadcast and the join, in either order.
        let mut seen = drain(&m);
        seen.sort();
        assert_eq!(seen, ["added:client-2", "x"]);
        // The newcomer: its roster first, then its own join; the broadcast,
        // if it reached it at all, after the roster.
        let got = drain(&a);
        assert_eq!(
            got.first().map(String::as_str),
            Some("roster:client-1"),
            "newcomer's first frame is not its roster: {got:?}"
        );
        let rest: Vec<&str> = got[1..].iter().map(String::as_str).collect();
        assert!(
            rest == ["added:client-2"]
                || rest == ["added:client-2", "x"]
                || rest == ["x", "added:client-2"],
            "newcomer's frames: {got:?}"
        );
    });
}
