//! Model 6: `Hub::close` racing `attach` and `subscribe` (R4, R16). Close
//! sets `closed` first and sweeps the client table until it is empty; an
//! attach inserts and then re-checks `closed`, removing itself if it lost
//! the race. So nothing stays registered after close returns, the racing
//! client (if attach succeeded) is closed exactly once, and every later
//! call gets `Closed`.
//!
//! Mutant `add_no_recheck` (hub.rs `register`): attach skips the re-check;
//! a client inserted after close's sweep stays registered forever.
#![cfg(loom)]

use loom::thread;
use loom_tests::{attach, Probe};
use realtime::{Error, Hub};

#[test]
fn hub_close_racing_attach_and_subscribe_leaves_nothing_registered() {
    loom_tests::model(|| {
        let hub = Hub::new();
        let (a, probe_a) = attach(&hub);
        let probe_c = Probe::new();

        let attacher = {
            let (hub, probe) = (hub.clone(), probe_c.clone());
            thread::spawn(move || hub.attach(probe, ()))
        };
        let subscriber = {
            let (hub, a) = (hub.clone(), a.clone());
            thread::spawn(move || hub.subscribe(&a, "ch"))
        };
        hub.close();
        let attached = attacher.join().unwrap();
        let subscribed = subscriber.join().unwrap();

        assert!(matches!(subscribed, Ok(()) | Err(Error::Closed)));
        match &attached {
            Ok(c) => {
                assert!(c.is_closed(), "client attached during close left open");
                assert_eq!(probe_c.closes(), 1);
            }
            Err(e) => {
                assert_eq!(*e, Error::Closed);
                assert!(probe_c.closes() <= 1);
            }
        }
        assert_eq!(hub.count(), 0, "client registered after close returned");
        assert!(hub.channels().is_empty());
        assert!(a.is_closed() && a.channels().is_empty());
        assert_eq!(probe_a.closes(), 1);

        // Every later call is refused.
        assert_eq!(hub.attach(Probe::new(), ()).err(), Some(Error::Closed));
        assert_eq!(hub.subscribe(&a, "ch"), Err(Error::Closed));
        assert_eq!(hub.broadcast("ch", "x"), Err(Error::Closed));
        assert_eq!(hub.count(), 0);
    });
}
