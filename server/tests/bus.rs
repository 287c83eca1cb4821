//! Two gateway nodes joined by one bus: publishes and client events reach
//! every node, and socket-id exclusion works across nodes. The bus is one
//! real `broadcasting::Memory` driver shared by both nodes, each app of
//! each node subscribed to it as in production (the Redis driver carries
//! the same events between processes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use realtime_server::{deliver, Node};
use serde_json::json;

/// Two nodes over one bus.
fn cluster() -> (Arc<Node>, Arc<Node>) {
    let driver = Arc::new(broadcasting::Memory::new());
    let make = |id| Arc::new(Node::with_driver(&settings(), id, driver.clone()).unwrap());
    (make(101), make(202))
}

#[test]
fn api_events_reach_subscribers_on_every_node() {
    let (n1, n2) = cluster();
    let a = connect(&n1);
    let b = connect(&n2);
    subscribe_public(&n1, &a, "news");
    subscribe_public(&n2, &b, "news");
    let body = json!({"name":"e","channel":"news","data":"d"}).to_string();
    api_json(&n1, "POST", "/apps/1/events", &[], &body);
    assert_eq!(a.recv(), json!({"event":"e","channel":"news","data":"d"}));
    assert_eq!(b.recv(), json!({"event":"e","channel":"news","data":"d"}));
}

#[test]
fn socket_id_exclusion_works_across_nodes() {
    let (n1, n2) = cluster();
    let a = connect(&n1);
    let b = connect(&n2);
    subscribe_public(&n1, &a, "room");
    subscribe_public(&n2, &b, "room");
    // Published on node 1, excluding a socket that lives on node 2.
    let body = json!({"name":"e","channel":"room","data":"d","socket_id":b.socket_id}).to_string();
    api_json(&n1, "POST", "/apps/1/events", &[], &body);
    assert_eq!(a.recv()["event"], "e");
    marker(&n1, "room");
    assert_eq!(b.recv()["event"], "marker");
}

#[test]
fn client_events_cross_nodes_and_skip_the_sender() {
    let (n1, n2) = cluster();
    let a = connect(&n1);
    let b = connect(&n2);
    subscribe_private(&n1, &a, "private-c");
    subscribe_private(&n2, &b, "private-c");
    send(
        &n1,
        &a,
        json!({"event":"client-x","channel":"private-c","data":{"k":1}}),
    );
    assert_eq!(
        b.recv(),
        json!({"event":"client-x","channel":"private-c","data":{"k":1}})
    );
    marker(&n2, "private-c");
    assert_eq!(a.recv()["event"], "marker");
}

#[test]
fn malformed_bus_events_are_dropped() {
    let g = gateway();
    let app = g.apps().by_id("1").unwrap();
    assert!(!deliver(app, "no-prefix", "e", b"x"));
    assert!(!deliver(app, "2/c", "e", b"x"));
    assert!(!deliver(app, "1/c", "e", b"P1 broken"));
    // A foreign payload (no envelope) becomes the event's data.
    let p = connect(&g);
    subscribe_public(&g, &p, "c");
    assert!(deliver(app, "1/c", "e", br#"{"a":1}"#));
    assert_eq!(
        p.recv(),
        json!({"event":"e","channel":"c","data":"{\"a\":1}"})
    );
}
