//! Cache channels across a cluster (issue 13): gateway nodes on loopback
//! sockets sharing a real `redis-server`. An event published through node
//! A reaches a new subscriber on node B, whether B was running (its copy
//! follows the bus) or started after the publish (it loads Redis before it
//! listens). Synchronised on frames and on the Redis key; a machine
//! without `redis-server` fails these tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../broadcasting/tests/redis_support/mod.rs"]
mod redis_support;

use common::live::{next, publish, run, send_now, subscribe, ws, Ws};
use realtime_server::Running;
use redis_support::{wait_until, RedisServer};
use serde_json::{json, Value};

const NS: &str = "cachetest";

fn node(redis: &RedisServer) -> Running {
    run(|s| {
        s.redis = Some(redis.url());
        s.redis_namespace = NS.into();
        s.workers = 1;
    })
}

fn cache_miss(channel: &str) -> Value {
    json!({"event":"pusher:cache_miss","channel":channel,"data":"{}"})
}

/// Subscribes to a public cache channel; the frame after
/// subscription_succeeded.
fn subscribe_cached(ws: &mut Ws, channel: &str) -> Value {
    assert_eq!(
        subscribe(ws, channel)["event"],
        "pusher_internal:subscription_succeeded"
    );
    next(ws)
}

/// The frame Redis holds for `channel` of app 1, if any.
fn redis_frame(redis: &RedisServer, channel: &str) -> Option<String> {
    let mut c = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("GET")
        .arg(format!("{NS}:cache:1:{channel}"))
        .query(&mut c)
        .unwrap()
}

#[test]
fn an_event_published_through_node_a_reaches_a_new_subscriber_on_node_b() {
    let redis = RedisServer::start();
    let a = node(&redis);
    let b = node(&redis);
    // B watches the channel: once the watcher has the event, B cached it.
    let (mut watcher, _) = ws(b.local_addr());
    assert_eq!(
        subscribe_cached(&mut watcher, "cache-x"),
        cache_miss("cache-x")
    );
    publish(a.local_addr(), "cache-x", "price", "42");
    let live = next(&mut watcher);
    assert_eq!(live["event"], "price");
    let (mut late, _) = ws(b.local_addr());
    assert_eq!(subscribe_cached(&mut late, "cache-x"), live);
    // Nothing else is queued for it.
    send_now(&mut late, &json!({"event":"pusher:ping","data":{}}));
    assert_eq!(next(&mut late)["event"], "pusher:pong");
}

#[test]
fn a_node_started_after_the_publish_loads_the_event_from_redis() {
    let redis = RedisServer::start();
    let a = node(&redis);
    let (mut watcher, _) = ws(a.local_addr());
    subscribe_cached(&mut watcher, "cache-y");
    publish(a.local_addr(), "cache-y", "state", "s1");
    publish(a.local_addr(), "cache-y", "state", "s2");
    let live = next(&mut watcher);
    assert_eq!(live["data"], "s1");
    let live = next(&mut watcher);
    assert_eq!(live["data"], "s2");
    // A's cache thread wrote it: the key holds the frame A delivered,
    // with a TTL.
    wait_until("the cache key in redis", || {
        redis_frame(&redis, "cache-y").is_some_and(|f| f.contains("s2"))
    });
    let frame: Value = serde_json::from_str(&redis_frame(&redis, "cache-y").unwrap()).unwrap();
    assert_eq!(frame, live);
    let mut c = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{NS}:cache:1:cache-y"))
        .query(&mut c)
        .unwrap();
    assert!(ttl > 0 && ttl <= 1_800_000, "{ttl}");
    // B starts now, after the publish: its subscriber gets the event.
    let b = node(&redis);
    let (mut late, _) = ws(b.local_addr());
    assert_eq!(subscribe_cached(&mut late, "cache-y"), live);
    // And an empty channel is still a miss there.
    assert_eq!(
        subscribe_cached(&mut late, "cache-none"),
        cache_miss("cache-none")
    );
}
