//! Cache channels (issue 13): the last event of a `cache-` channel reaches
//! each new subscriber right after `subscription_succeeded`, or
//! `pusher:cache_miss`; socket-free, through a `Node` and pipes.
//! Synchronised on delivered frames: a watcher subscribed to the channel
//! receives an event after the node cached it (it is stored before the
//! fan-out). Expiry is tested with injected instants.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use realtime_server::{Node, Settings};
use serde_json::{json, Value};

fn node_with(tweak: impl FnOnce(&mut Settings)) -> Arc<Node> {
    let mut s = settings();
    tweak(&mut s);
    Arc::new(Node::new(&s).unwrap())
}

fn publish(g: &Node, channel: &str, name: &str, data: &str) {
    let body = json!({"name": name, "channel": channel, "data": data}).to_string();
    api_json(g, "POST", "/apps/1/events", &[], &body);
}

fn cache_miss(channel: &str) -> Value {
    json!({"event":"pusher:cache_miss","channel":channel,"data":"{}"})
}

/// A client subscribed to public `channel` (past its cache answer).
fn watcher(g: &Node, channel: &str) -> Peer {
    let w = connect(g);
    subscribe_public(g, &w, channel);
    w.recv();
    w
}

/// Nothing is queued for `p`: a ping is answered next.
fn nothing_queued(g: &Node, p: &Peer) {
    send(g, p, json!({"event":"pusher:ping","data":{}}));
    assert_eq!(p.recv()["event"], "pusher:pong");
}

#[test]
fn a_new_subscriber_gets_the_last_event_right_after_subscription_succeeded() {
    let g = gateway();
    let w = watcher(&g, "cache-prices");
    publish(&g, "cache-prices", "price", r#"{"eur":1}"#);
    let live = w.recv();
    let p = connect(&g);
    subscribe_public(&g, &p, "cache-prices");
    assert_eq!(p.recv(), live);
    assert_eq!(live["event"], "price");
    assert_eq!(live["data"], r#"{"eur":1}"#);
    nothing_queued(&g, &p);
    assert_eq!(metric_of(&g, "realtime_cache_hits_total "), 1);
    assert_eq!(metric_of(&g, "realtime_cache_entries "), 1);
}

#[test]
fn an_empty_cache_answers_pusher_cache_miss() {
    let g = gateway();
    let p = connect(&g);
    subscribe_public(&g, &p, "cache-empty");
    assert_eq!(p.recv(), cache_miss("cache-empty"));
    nothing_queued(&g, &p);
    assert_eq!(metric_of(&g, "realtime_cache_misses_total "), 1);
    assert_eq!(metric_of(&g, "realtime_cache_hits_total "), 0);
}

#[test]
fn the_last_event_wins() {
    let g = gateway();
    let w = watcher(&g, "cache-x");
    for (name, data) in [("e1", "one"), ("e2", "two"), ("e3", "three")] {
        publish(&g, "cache-x", name, data);
        assert_eq!(w.recv()["event"], name);
    }
    let p = connect(&g);
    subscribe_public(&g, &p, "cache-x");
    let f = p.recv();
    assert_eq!(
        (f["event"].as_str(), f["data"].as_str()),
        (Some("e3"), Some("three"))
    );
    nothing_queued(&g, &p);
}

#[test]
fn a_client_event_is_cached_and_private_cache_channels_need_a_signature() {
    let g = gateway();
    let a = connect(&g);
    let b = connect(&g);
    for p in [&a, &b] {
        subscribe_private(&g, p, "private-cache-chat");
        assert_eq!(p.recv(), cache_miss("private-cache-chat"));
    }
    send(
        &g,
        &a,
        json!({"event":"client-typing","channel":"private-cache-chat","data":{"who":"a"}}),
    );
    let live = b.recv();
    assert_eq!(live["event"], "client-typing");
    // Without a signature: refused, and no cached event follows.
    let c = connect(&g);
    send(
        &g,
        &c,
        json!({"event":"pusher:subscribe","data":{"channel":"private-cache-chat"}}),
    );
    let f = c.recv();
    assert_eq!(f["event"], "pusher:subscription_error", "{f}");
    assert_eq!(decode_data(&f)["status"], 401);
    nothing_queued(&g, &c);
    // Signed: the client event follows subscription_succeeded.
    subscribe_private(&g, &c, "private-cache-chat");
    assert_eq!(c.recv(), live);
}

#[test]
fn presence_cache_channels_are_presence_channels_with_a_cache() {
    let g = gateway();
    let p = connect(&g);
    let roster = join_presence(&g, &p, "presence-cache-room", "u1");
    assert_eq!(roster["presence"]["count"], 1);
    assert_eq!(p.recv(), cache_miss("presence-cache-room"));
    publish(&g, "presence-cache-room", "state", "s1");
    assert_eq!(p.recv()["event"], "state");
    let q = connect(&g);
    let roster = join_presence(&g, &q, "presence-cache-room", "u2");
    assert_eq!(roster["presence"]["count"], 2);
    assert_eq!(q.recv()["data"], "s1");
    // The member_added frame p got is not cached: only published events.
    assert_eq!(p.recv()["event"], "pusher_internal:member_added");
}

#[test]
fn a_channel_without_the_cache_prefix_caches_nothing() {
    let g = gateway();
    let w = connect(&g);
    subscribe_public(&g, &w, "news");
    nothing_queued(&g, &w);
    publish(&g, "news", "e", "d");
    assert_eq!(w.recv()["event"], "e");
    let p = connect(&g);
    subscribe_public(&g, &p, "news");
    nothing_queued(&g, &p);
    assert_eq!(metric_of(&g, "realtime_cache_entries "), 0);
    assert_eq!(metric_of(&g, "realtime_cache_misses_total "), 0);
}

#[test]
fn past_max_cache_channels_the_oldest_entry_is_evicted_and_counted() {
    let g = node_with(|s| s.max_cache_channels = 2);
    let w = connect(&g);
    for c in ["cache-a", "cache-b", "cache-c"] {
        subscribe_public(&g, &w, c);
        assert_eq!(w.recv(), cache_miss(c));
    }
    for c in ["cache-a", "cache-b", "cache-c"] {
        publish(&g, c, "e", c);
        assert_eq!(w.recv()["channel"], c);
    }
    assert_eq!(metric_of(&g, "realtime_cache_entries "), 2);
    assert_eq!(
        metric_of(&g, "realtime_cache_evictions_total{reason=\"limit\"} "),
        1
    );
    let p = connect(&g);
    subscribe_public(&g, &p, "cache-a");
    assert_eq!(p.recv(), cache_miss("cache-a"));
    for c in ["cache-b", "cache-c"] {
        subscribe_public(&g, &p, c);
        assert_eq!(p.recv()["data"], c);
    }
}

#[test]
fn an_entry_expires_after_the_ttl_on_read_and_by_the_sweep() {
    let g = node_with(|s| s.cache_ttl = 60);
    let w = watcher(&g, "cache-a");
    subscribe_public(&g, &w, "cache-b");
    w.recv();
    let before = Instant::now();
    publish(&g, "cache-a", "e", "a");
    publish(&g, "cache-b", "e", "b");
    w.recv();
    w.recv();
    let after = Instant::now();
    let subscribe_at = |p: &Peer, channel: &str, at: Instant| {
        let msg = json!({"event":"pusher:subscribe","data":{"channel":channel}}).to_string();
        g.gateway().handle_message_at(&p.client, msg.as_bytes(), at);
        assert_eq!(p.recv()["event"], "pusher_internal:subscription_succeeded");
    };
    // Within the TTL of the latest possible store: a hit.
    let p = connect(&g);
    subscribe_at(&p, "cache-a", before + Duration::from_secs(59));
    assert_eq!(p.recv()["data"], "a");
    // Past the TTL of the latest possible store: expired on read.
    let q = connect(&g);
    subscribe_at(&q, "cache-a", after + Duration::from_secs(60));
    assert_eq!(q.recv(), cache_miss("cache-a"));
    assert_eq!(metric_of(&g, "realtime_cache_entries "), 1);
    // The sweep drops the other one, which nobody read.
    assert_eq!(g.activity().sweep(after).expired, 0);
    assert_eq!(
        g.activity().sweep(after + Duration::from_secs(60)).expired,
        1
    );
    assert_eq!(metric_of(&g, "realtime_cache_entries "), 0);
    assert_eq!(
        metric_of(&g, "realtime_cache_evictions_total{reason=\"expired\"} "),
        2
    );
}
