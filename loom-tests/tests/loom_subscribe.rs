//! Model 1: subscribes racing the unsubscribe of a channel's last member
//! (R6). The last leaver marks the channel `dead` under its `state` lock and
//! removes it from the table; a subscriber that locks a dead channel retries
//! with a fresh one from the table. So the channel is never destroyed while
//! it has a member, no subscription is lost, and two racing subscribers end
//! up in the same channel.
//!
//! Mutant `dead_channel` (hub.rs `leave`): the leaver drops the lock and
//! removes the channel without marking it dead; a subscriber joins a
//! channel that is no longer in the table, and broadcasts never reach it.
//!
//! Model 1b: a subscriber creating a channel (`HubInner::create`, which
//! builds the channel with its member inside, then puts it in the table)
//! races another client's subscribe and unsubscribe of the same name. The
//! loser of the race to create joins the winner's channel, unless that one
//! died meanwhile: then it creates again. The channel ends in the table
//! with the one member, broadcasts reach it, and the `on_channel` hook
//! reports occupied and vacated alternately, starting with occupied and
//! ending with it. Mutant `create_joins_dead` (`create`): the loser joins
//! the winner's channel without checking `dead`, and lands in a channel
//! that is out of the table.
#![cfg(loom)]

use std::sync::{Arc, Mutex, PoisonError};

use loom::thread;
use loom_tests::{attach, drain};
use realtime::Hub;

#[test]
fn subscribes_racing_last_unsubscribe_keep_the_channel() {
    loom_tests::model(|| {
        let hub = Hub::new();
        let (a, _pa) = attach(&hub);
        let (b, _pb) = attach(&hub);
        let (c, _pc) = attach(&hub);
        hub.subscribe(&a, "ch").unwrap();

        let leaver = {
            let (hub, a) = (hub.clone(), a.clone());
            thread::spawn(move || hub.unsubscribe(&a, "ch").unwrap())
        };
        let other = {
            let (hub, c) = (hub.clone(), c.clone());
            thread::spawn(move || hub.subscribe(&c, "ch").unwrap())
        };
        hub.subscribe(&b, "ch").unwrap();
        leaver.join().unwrap();
        other.join().unwrap();

        // Both subscriptions are live: in the table, counted, reachable.
        assert_eq!(hub.channels(), vec![("ch".to_owned(), 2)]);
        assert_eq!(hub.channel_count("ch"), 2);
        assert_eq!(b.channels(), vec!["ch".to_owned()]);
        assert_eq!(c.channels(), vec!["ch".to_owned()]);
        assert!(a.channels().is_empty());
        hub.broadcast("ch", "after").unwrap();
        assert_eq!(drain(&b), ["after"]);
        assert_eq!(drain(&c), ["after"]);
        assert!(drain(&a).is_empty());
    });
}

#[test]
fn a_subscriber_losing_the_race_to_create_never_joins_a_dead_channel() {
    loom_tests::model(|| {
        let hub = Hub::new();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        hub.on_channel(move |e| {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(e.occupied);
        });
        let (a, _pa) = attach(&hub);
        let (c, _pc) = attach(&hub);

        let churn = {
            let (hub, a) = (hub.clone(), a.clone());
            thread::spawn(move || {
                hub.subscribe(&a, "ch").unwrap();
                hub.unsubscribe(&a, "ch").unwrap();
            })
        };
        hub.subscribe(&c, "ch").unwrap();
        churn.join().unwrap();

        assert_eq!(hub.channels(), vec![("ch".to_owned(), 1)]);
        assert_eq!(hub.channel_table_len(), 1);
        assert_eq!(c.channels(), vec!["ch".to_owned()]);
        assert!(a.channels().is_empty());
        hub.broadcast("ch", "after").unwrap();
        assert_eq!(drain(&c), ["after"]);
        assert!(drain(&a).is_empty());
        let events = events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let alternating = events
            .iter()
            .enumerate()
            .all(|(i, &occupied)| occupied == (i % 2 == 0));
        assert!(
            alternating && events.last() == Some(&true),
            "occupancy events out of order: {events:?}"
        );
    });
}
