//! The Memory driver: R20–R23. Synchronised on events (channels,
//! barriers), never on time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use broadcasting::{Broadcaster, BroadcasterExt, Error, Event, Filter, Memory};
use crossbeam_channel::{bounded, unbounded, Receiver};

const GUARD: std::time::Duration = std::time::Duration::from_secs(10);

fn recv<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(GUARD).expect("nothing within the guard")
}

fn collector(bus: &Memory, channel: &str) -> Receiver<Event> {
    let (tx, rx) = unbounded();
    bus.subscribe(channel, move |e: &Event| Ok(tx.send(e.clone())?))
        .unwrap();
    rx
}

#[test]
fn r20_event_carries_channel_name_and_opaque_payload_exactly() {
    let bus = Memory::new();
    let rx = collector(&bus, "orders");
    let payload: Vec<u8> = (0..=255).collect();
    bus.publish(Event::new("orders", "Odd\nname ✓", payload.clone()))
        .unwrap();
    let e = recv(&rx);
    assert_eq!(e, Event::new("orders", "Odd\nname ✓", payload));
}

#[test]
fn r21_publish_reaches_every_subscriber_of_the_channel_and_only_them() {
    let bus = Memory::new();
    let a = collector(&bus, "orders");
    let b = collector(&bus, "orders");
    let other = collector(&bus, "billing");
    bus.publish(Event::new("orders", "Created", "1")).unwrap();
    bus.publish(Event::new("billing", "Paid", "2")).unwrap();
    assert_eq!(recv(&a).name, "Created");
    assert_eq!(recv(&b).name, "Created");
    // The billing subscriber's first event is its own channel's.
    assert_eq!(recv(&other).name, "Paid");
}

#[test]
fn r21_prefix_subscription_sees_every_matching_channel() {
    let bus = Memory::new();
    let (tx, all) = unbounded();
    bus.subscribe_prefix("", move |e: &Event| Ok(tx.send(e.channel.clone())?))
        .unwrap();
    let (tx, apps) = unbounded();
    bus.subscribe_prefix("app1/", move |e: &Event| Ok(tx.send(e.channel.clone())?))
        .unwrap();
    for ch in ["app1/a", "app2/b", "app1/c"] {
        bus.publish(Event::new(ch, "e", "")).unwrap();
    }
    assert_eq!(
        (0..3).map(|_| recv(&all)).collect::<Vec<_>>(),
        ["app1/a", "app2/b", "app1/c"]
    );
    assert_eq!(
        (0..2).map(|_| recv(&apps)).collect::<Vec<_>>(),
        ["app1/a", "app1/c"]
    );
    assert!(Filter::Prefix("x".into()).matches("xy"));
    assert!(!Filter::Channel("x".into()).matches("xy"));
}

#[test]
fn r21_publish_to_a_channel_without_subscribers_is_ok() {
    let bus = Memory::new();
    assert!(bus.publish(Event::new("nobody", "e", "")).is_ok());
    assert_eq!(bus.stats().published, 1);
    assert_eq!(bus.stats().delivered, 0);
}

#[test]
fn r21_after_close_publish_and_subscribe_are_closed() {
    let bus = Memory::new();
    bus.close();
    bus.close(); // idempotent
    assert!(matches!(
        bus.publish(Event::new("c", "e", "")),
        Err(Error::Closed)
    ));
    assert!(matches!(
        bus.subscribe("c", |_: &Event| Ok(())),
        Err(Error::Closed)
    ));
}

#[test]
fn r22_per_subscription_order_is_publish_order() {
    let bus = Memory::builder().buffer(10_000).build();
    let rx = collector(&bus, "seq");
    for i in 0..5_000u32 {
        bus.publish(Event::new("seq", "n", i.to_string())).unwrap();
    }
    for i in 0..5_000u32 {
        assert_eq!(recv(&rx).payload, i.to_string());
    }
}

#[test]
fn r22_full_queue_drops_the_event_for_that_subscriber_and_counts_it() {
    let bus = Memory::builder().buffer(2).build();
    // The slow handler blocks on its first event until released.
    let (entered_tx, entered) = bounded(1);
    let (release, gate) = bounded::<()>(0);
    let (seen_tx, seen) = unbounded();
    bus.subscribe("t", move |e: &Event| {
        if e.payload == "0" {
            entered_tx.send(())?;
            let _ = gate.recv(); // released by dropping the sender
        }
        seen_tx.send(e.payload.clone())?;
        Ok(())
    })
    .unwrap();
    bus.publish(Event::new("t", "e", "0")).unwrap();
    recv(&entered); // the slow handler holds event 0; its queue is empty
    for i in 1..=5 {
        bus.publish(Event::new("t", "e", i.to_string())).unwrap();
    }
    // Slow queue holds 1 and 2; 3, 4, 5 were dropped for it.
    assert_eq!(bus.dropped(), 3);
    assert!(
        bus.publish(Event::new("t", "e", "6")).is_ok(),
        "publish never fails on a full queue"
    );
    assert_eq!(bus.dropped(), 4);
    drop(release);
    let got: Vec<_> = (0..3).map(|_| recv(&seen)).collect();
    assert_eq!(got, ["0", "1", "2"]);
}

#[test]
fn r22_handler_errors_and_panics_are_contained_and_the_subscription_keeps_running() {
    let bus = Memory::new();
    let (tx, rx) = unbounded();
    bus.subscribe("t", move |e: &Event| {
        match &e.payload[..] {
            b"panic" => panic!("handler panic (expected by the test)"),
            b"error" => return Err("handler error".into()),
            _ => {}
        }
        tx.send(e.payload.clone())?;
        Ok(())
    })
    .unwrap();
    for p in ["panic", "error", "after"] {
        assert!(bus.publish(Event::new("t", "e", p)).is_ok());
    }
    assert_eq!(recv(&rx), "after");
    assert_eq!(bus.stats().handler_errors, 2);
}

#[test]
fn r22_cancel_returns_after_the_handler_has_stopped() {
    let bus = Memory::new();
    let (entered_tx, entered) = bounded(1);
    let (release, gate) = bounded::<()>(0);
    let done = Arc::new(Mutex::new(false));
    let d = done.clone();
    let sub = bus
        .subscribe("t", move |_: &Event| {
            entered_tx.send(())?;
            let _ = gate.recv();
            *d.lock().unwrap() = true;
            Ok(())
        })
        .unwrap();
    bus.publish(Event::new("t", "e", "")).unwrap();
    recv(&entered);
    let canceller = std::thread::spawn(move || sub.cancel());
    drop(release); // let the handler finish; cancel must wait for it
    canceller.join().unwrap();
    assert!(*done.lock().unwrap());
    // After cancel nothing is handed to it.
    bus.publish(Event::new("t", "e", "")).unwrap();
    assert_eq!(bus.stats().delivered, 1);
}

#[test]
fn r22_cancel_from_inside_its_own_handler_does_not_deadlock() {
    let bus = Arc::new(Memory::new());
    let slot = Arc::new(Mutex::new(None));
    let s2 = slot.clone();
    let (tx, rx) = bounded(1);
    let sub = bus
        .subscribe("t", move |_: &Event| {
            if let Some(sub) = s2.lock().unwrap().take() {
                broadcasting::Subscription::cancel(sub);
            }
            tx.send(())?;
            Ok(())
        })
        .unwrap();
    *slot.lock().unwrap() = Some(sub);
    bus.publish(Event::new("t", "e", "")).unwrap();
    recv(&rx);
    bus.publish(Event::new("t", "e", "")).unwrap();
    assert_eq!(
        bus.stats().delivered,
        1,
        "cancelled subscription got a second event"
    );
}

#[test]
fn r22_close_joins_subscription_threads() {
    fn threads() -> usize {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
    // Other tests run in parallel threads: compare this bus's own effect by
    // holding its subscriptions' threads alive across the measurement.
    let bus = Memory::new();
    let (ready_tx, ready) = bounded(16);
    for i in 0..16 {
        let tx = ready_tx.clone();
        bus.subscribe(&format!("c{i}"), move |_: &Event| Ok(tx.send(())?))
            .unwrap();
        bus.publish(Event::new(format!("c{i}"), "e", "")).unwrap();
    }
    for _ in 0..16 {
        recv(&ready);
    }
    assert!(threads() >= 16);
    bus.close();
    assert!(matches!(
        bus.publish(Event::new("c0", "e", "")),
        Err(Error::Closed)
    ));
}

#[test]
fn r23_a_dyn_broadcaster_bridges_to_any_sink() {
    // The bridge to a Hub is a handler; here the "hub" is a Vec.
    let bus: Arc<dyn Broadcaster> = Arc::new(Memory::new());
    let hub = Arc::new(Mutex::new(Vec::<(String, Vec<u8>)>::new()));
    let (tx, rx) = bounded(1);
    let h = hub.clone();
    bus.subscribe_prefix("", move |e: &Event| {
        h.lock()
            .unwrap()
            .push((e.channel.clone(), e.payload.to_vec()));
        tx.send(())?;
        Ok(())
    })
    .unwrap();
    bus.publish(Event::new("orders", "OrderCreated", r#"{"id":42}"#))
        .unwrap();
    recv(&rx);
    assert_eq!(
        *hub.lock().unwrap(),
        [("orders".to_owned(), br#"{"id":42}"#.to_vec())]
    );
}

#[test]
#[should_panic(expected = "buffer must be at least 1")]
fn zero_buffer_panics() {
    let _ = Memory::builder().buffer(0);
}
