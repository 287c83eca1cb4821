//! The Redis driver (R24) against a real `redis-server` started here.
//! Synchronised on delivered events and on the driver's observable state
//! (connected, counters), polled with a deadline as the failure guard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod redis_support;

use std::time::Duration;

use broadcasting::{Broadcaster, BroadcasterExt, Error, Event, Redis};
use crossbeam_channel::{unbounded, Receiver};
use redis_support::{wait_until, RedisServer, GUARD};

fn recv<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(GUARD).expect("nothing within the guard")
}

fn node(server: &RedisServer, id: &str) -> Redis {
    Redis::builder(server.url())
        .namespace("t")
        .node_id(id)
        .max_backoff(Duration::from_millis(200))
        .build()
        .unwrap()
}

fn connected(nodes: &[&Redis]) {
    wait_until("every driver is subscribed", || {
        nodes.iter().all(|n| n.is_connected())
    });
}

fn collector(bus: &Redis, prefix: &str) -> Receiver<Event> {
    let (tx, rx) = unbounded();
    bus.subscribe_prefix(prefix, move |e: &Event| Ok(tx.send(e.clone())?))
        .unwrap();
    rx
}

#[test]
fn binary_payloads_and_odd_event_names_round_trip_exactly_across_nodes() {
    let server = RedisServer::start();
    let (a, b) = (node(&server, "a"), node(&server, "b"));
    connected(&[&a, &b]);
    let at_b = collector(&b, "");
    let payloads: Vec<Vec<u8>> = vec![
        (0..=255).collect(),
        Vec::new(),
        b"P1 \n{\"json\":true}\r\n\0".to_vec(),
        vec![0xff; 100_000],
    ];
    let names = [
        "Odd\nname ✓",
        "",
        "with\0nul",
        "pusher_internal:member_added",
    ];
    for (payload, name) in payloads.iter().zip(names) {
        let channel = format!("app/presence-{name}\n");
        a.publish(Event::new(channel.clone(), name, payload.clone()))
            .unwrap();
        let e = recv(&at_b);
        assert_eq!(e, Event::new(channel, name, payload.clone()));
    }
    assert_eq!(b.stats().received, 4);
    assert_eq!(a.stats().published, 4);
}

#[test]
fn a_publishing_node_delivers_its_own_event_once_and_without_redis_round_trip() {
    let server = RedisServer::start();
    let a = node(&server, "a");
    connected(&[&a]);
    let local = collector(&a, "orders");
    a.publish(Event::new("orders", "Created", "1")).unwrap();
    assert_eq!(recv(&local).payload, "1");
    // Redis echoes it back to the publishing node, which skips it.
    wait_until("the echo is skipped", || a.stats().own_skipped == 1);
    assert_eq!(a.stats().received, 0);
    assert!(local.try_recv().is_err(), "delivered twice");
}

#[test]
fn filters_apply_to_remote_events_and_cancel_stops_delivery() {
    let server = RedisServer::start();
    let (a, b) = (node(&server, "a"), node(&server, "b"));
    connected(&[&a, &b]);
    let (tx, orders) = unbounded();
    let sub = b
        .subscribe("orders", move |e: &Event| Ok(tx.send(e.clone())?))
        .unwrap();
    let all = collector(&b, "");
    a.publish(Event::new("billing", "x", "1")).unwrap();
    a.publish(Event::new("orders", "y", "2")).unwrap();
    assert_eq!(recv(&all).channel, "billing");
    assert_eq!(recv(&all).channel, "orders");
    assert_eq!(recv(&orders).name, "y");
    sub.cancel();
    a.publish(Event::new("orders", "z", "3")).unwrap();
    assert_eq!(recv(&all).name, "z");
    assert!(
        orders.try_recv().is_err(),
        "a cancelled subscription got an event"
    );
}

#[test]
fn close_rejects_later_work_and_stops_subscriptions() {
    let server = RedisServer::start();
    let a = node(&server, "a");
    connected(&[&a]);
    let rx = collector(&a, "");
    a.close();
    assert!(matches!(
        a.publish(Event::new("c", "e", "")),
        Err(Error::Closed)
    ));
    assert!(matches!(
        a.subscribe("c", |_: &Event| Ok(())),
        Err(Error::Closed)
    ));
    assert!(!a.is_connected());
    // The subscription's thread has ended: its sender is gone.
    assert!(matches!(
        rx.recv_timeout(GUARD),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    ));
    a.close(); // idempotent
}

#[test]
fn a_full_queue_drops_and_counts_as_memory_does() {
    let server = RedisServer::start();
    let a = Redis::builder(server.url())
        .namespace("t")
        .node_id("a")
        .buffer(1)
        .build()
        .unwrap();
    let b = node(&server, "b");
    connected(&[&a, &b]);
    let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
    let (seen_tx, seen) = unbounded();
    a.subscribe("slow", move |e: &Event| {
        seen_tx.send(e.name.clone())?;
        gate_rx.recv()?;
        Ok(())
    })
    .unwrap();
    b.publish(Event::new("slow", "1", "")).unwrap();
    assert_eq!(recv(&seen), "1"); // the handler holds event 1
    b.publish(Event::new("slow", "2", "")).unwrap(); // queued
    b.publish(Event::new("slow", "3", "")).unwrap(); // dropped
    wait_until("the third event is dropped", || a.dropped() == 1);
    gate_tx.send(()).unwrap();
    assert_eq!(recv(&seen), "2");
    gate_tx.send(()).unwrap();
    assert_eq!(a.stats().local.dropped, 1);
}

#[test]
fn delivery_resumes_after_redis_is_killed_and_restarted() {
    let mut server = RedisServer::start();
    let (a, b) = (node(&server, "a"), node(&server, "b"));
    connected(&[&a, &b]);
    let at_b = collector(&b, "");
    let at_a = collector(&a, "");
    a.publish(Event::new("c", "before", "")).unwrap();
    assert_eq!(recv(&at_b).name, "before");
    assert_eq!(recv(&at_a).name, "before");

    server.kill();
    wait_until("both subscribers notice", || {
        !a.is_connected() && !b.is_connected()
    });
    // Redis is gone: the publish fails (counted), local delivery goes on.
    let err = a.publish(Event::new("c", "during", "")).unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert_eq!(recv(&at_a).name, "during");
    assert!(a.stats().publish_errors >= 1);

    server.restart();
    connected(&[&a, &b]);
    assert!(a.stats().reconnects >= 1 && b.stats().reconnects >= 1);
    // The publisher's connection comes back on its own backoff: publish
    // until one goes through, then it must reach the other node.
    wait_until("a publish reaches redis again", || {
        a.publish(Event::new("c", "after", "")).is_ok()
    });
    loop {
        let e = recv(&at_b);
        if e.name == "after" {
            break;
        }
        assert_ne!(e.name, "during", "an event published while redis was down");
    }
}

#[test]
fn a_driver_started_before_redis_connects_when_it_appears() {
    let port = redis_support::free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let a = Redis::builder(url.as_str())
        .namespace("t")
        .node_id("a")
        .max_backoff(Duration::from_millis(200))
        .build()
        .unwrap();
    let local = collector(&a, "");
    assert!(!a.is_connected());
    assert!(matches!(
        a.publish(Event::new("c", "early", "")),
        Err(Error::Unavailable(_))
    ));
    assert_eq!(recv(&local).name, "early");
    let server = RedisServer::start_on(port);
    let b = node(&server, "b");
    connected(&[&a, &b]);
    let at_b = collector(&b, "");
    wait_until("a publish reaches redis", || {
        a.publish(Event::new("c", "late", "")).is_ok()
    });
    assert_eq!(recv(&at_b).name, "late");
    // Close is prompt even while the driver would be backing off.
    drop(server);
    a.close();
    b.close();
}
