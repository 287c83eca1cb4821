//! Webhooks in a cluster (issue 13): three `realtime-server` processes
//! sharing a real `redis-server` and one signature-checking receiver.
//! Synchronised on webhook requests and on Redis state; deadlines are only
//! failure guards. A machine without `redis-server` fails these tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../broadcasting/tests/redis_support/mod.rs"]
mod redis_support;
mod webhook_receiver;

use common::process::ServerProcess;
use common::{presence_auth, APP_ID, KEY, SECRET};
use redis_support::{wait_until, RedisServer, GUARD};
use serde_json::{json, Value};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};
use webhook_receiver::{Hit, Hooks};

type Ws = WebSocket<MaybeTlsStream<std::net::TcpStream>>;

const NS: &str = "wh";

/// One gateway process.
struct Node {
    server: ServerProcess,
}

impl Node {
    fn start(redis: &RedisServer, hooks: &Hooks) -> Self {
        let url = redis.url();
        Self {
            server: ServerProcess::spawn(&[
                "--workers",
                "1",
                "--redis",
                &url,
                "--redis-namespace",
                NS,
                "--node-ttl",
                "2",
                "--app-id",
                APP_ID,
                "--app-key",
                KEY,
                "--app-secret",
                SECRET,
                "--webhook-url",
                &hooks.url,
                "--webhook-retry-ms",
                "60000",
            ]),
        }
    }

    /// SIGKILL: no goodbye.
    fn kill(&mut self) {
        self.server.kill();
    }

    fn connect(&self) -> Client {
        let (mut ws, _) =
            tungstenite::connect(format!("ws://{}/app/{KEY}?protocol=7", self.server.addr))
                .unwrap();
        if let MaybeTlsStream::Plain(s) = ws.get_mut() {
            s.set_read_timeout(Some(GUARD)).unwrap();
        }
        let mut c = Client {
            ws,
            socket_id: String::new(),
        };
        let hello = c.next();
        let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
        c.socket_id = data["socket_id"].as_str().unwrap().to_owned();
        c
    }
}

struct Client {
    ws: Ws,
    socket_id: String,
}

impl Client {
    fn next(&mut self) -> Value {
        loop {
            match self.ws.read().unwrap() {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("got {other:?}"),
            }
        }
    }

    fn send(&mut self, v: &Value) {
        self.ws.send(Message::text(v.to_string())).unwrap();
    }

    fn until(&mut self, event: &str, channel: &str) {
        loop {
            let f = self.next();
            if f["event"] == event && f["channel"] == channel {
                return;
            }
        }
    }

    fn subscribe(&mut self, channel: &str) {
        self.send(&json!({"event":"pusher:subscribe","data":{"channel":channel}}));
        self.until("pusher_internal:subscription_succeeded", channel);
    }

    fn join(&mut self, channel: &str, user: &str) {
        let data = json!({"user_id": user, "user_info": {}}).to_string();
        let auth = presence_auth(&self.socket_id, channel, &data);
        self.send(&json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":data}}));
        self.until("pusher_internal:subscription_succeeded", channel);
    }

    /// The node id: the first part of the socket id.
    fn node(&self) -> String {
        self.socket_id.split('.').next().unwrap().to_owned()
    }
}

fn redis_conn(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Every acknowledged event so far, and until `want` is among them.
fn events_until(hooks: &Hooks, seen: &mut Vec<Value>, want: &Value) {
    while !seen.contains(want) {
        let hit: Hit = hooks
            .hits
            .recv_timeout(GUARD)
            .unwrap_or_else(|_| panic!("no {want} in {seen:?}"));
        if hit.status == 200 {
            seen.extend(hit.body["events"].as_array().unwrap().iter().cloned());
        }
    }
}

/// Waits until nothing is queued or in flight in Redis: every batch pushed
/// so far was answered.
fn drained(redis: &mut redis::Connection) {
    wait_until("the webhook queue drained", || {
        let queued: i64 = redis::cmd("LLEN")
            .arg(format!("{NS}:webhooks:queue"))
            .query(redis)
            .unwrap();
        let processing: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{NS}:webhooks:processing:*"))
            .query(redis)
            .unwrap();
        let busy: i64 = processing
            .iter()
            .map(|k| redis::cmd("LLEN").arg(k).query::<i64>(redis).unwrap())
            .sum();
        queued == 0 && busy == 0
    });
}

/// Every acknowledged event still waiting on the channel.
fn rest(hooks: &Hooks, seen: &mut Vec<Value>) {
    while let Ok(hit) = hooks.hits.try_recv() {
        if hit.status == 200 {
            seen.extend(hit.body["events"].as_array().unwrap().iter().cloned());
        }
    }
}

fn count(seen: &[Value], want: &Value) -> usize {
    seen.iter().filter(|e| *e == want).count()
}

#[test]
fn a_channel_on_two_nodes_is_occupied_once_and_vacated_once() {
    let redis = RedisServer::start();
    let hooks = webhook_receiver::start(&[]);
    let nodes: Vec<Node> = (0..3).map(|_| Node::start(&redis, &hooks)).collect();
    let mut a = nodes[0].connect();
    let mut b = nodes[1].connect();
    a.subscribe("shared");
    b.subscribe("shared");
    // Markers after the subscribes: each node decides in order, so once a
    // node's marker is delivered and Redis is drained, whatever it decided
    // for "shared" was delivered too.
    a.subscribe("marker-a");
    b.subscribe("marker-b");
    let mut seen = Vec::new();
    let occupied = json!({"name":"channel_occupied","channel":"shared"});
    for m in ["marker-a", "marker-b"] {
        events_until(
            &hooks,
            &mut seen,
            &json!({"name":"channel_occupied","channel":m}),
        );
    }
    let mut r = redis_conn(&redis);
    drained(&mut r);
    rest(&hooks, &mut seen);
    assert_eq!(count(&seen, &occupied), 1, "{seen:?}");

    let vacated = json!({"name":"channel_vacated","channel":"shared"});
    drop(a);
    b.send(&json!({"event":"pusher:unsubscribe","data":{"channel":"shared"}}));
    events_until(&hooks, &mut seen, &vacated);
    b.send(&json!({"event":"pusher:unsubscribe","data":{"channel":"marker-b"}}));
    events_until(
        &hooks,
        &mut seen,
        &json!({"name":"channel_vacated","channel":"marker-b"}),
    );
    drained(&mut r);
    rest(&hooks, &mut seen);
    assert_eq!(count(&seen, &vacated), 1, "{seen:?}");
}

#[test]
fn a_killed_node_releases_its_members_and_channels_once() {
    let redis = RedisServer::start();
    let hooks = webhook_receiver::start(&[]);
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::start(&redis, &hooks)).collect();
    let mut stays = nodes[0].connect();
    let mut doomed = nodes[1].connect();
    stays.join("presence-room", "ann");
    doomed.join("presence-room", "bob");
    doomed.subscribe("only-on-1");
    let mut seen = Vec::new();
    let bob_added = json!({"name":"member_added","channel":"presence-room","user_id":"bob"});
    events_until(&hooks, &mut seen, &bob_added);
    events_until(
        &hooks,
        &mut seen,
        &json!({"name":"channel_occupied","channel":"only-on-1"}),
    );

    nodes[1].kill();
    let removed = json!({"name":"member_removed","channel":"presence-room","user_id":"bob"});
    let vacated = json!({"name":"channel_vacated","channel":"only-on-1"});
    events_until(&hooks, &mut seen, &removed);
    events_until(&hooks, &mut seen, &vacated);
    // Every survivor has had time to look: its marker comes after its next
    // checks, and Redis is drained.
    let mut r = redis_conn(&redis);
    wait_until("the dead node delisted", || {
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(format!("{NS}:webhooks:nodes"))
            .query(&mut r)
            .unwrap();
        !nodes.contains(&doomed.node())
    });
    let mut late = nodes[2].connect();
    late.subscribe("marker");
    events_until(
        &hooks,
        &mut seen,
        &json!({"name":"channel_occupied","channel":"marker"}),
    );
    drained(&mut r);
    rest(&hooks, &mut seen);
    assert_eq!(count(&seen, &removed), 1, "{seen:?}");
    assert_eq!(count(&seen, &vacated), 1, "{seen:?}");
    // Ann's presence and the room itself are untouched.
    let room_vacated = json!({"name":"channel_vacated","channel":"presence-room"});
    assert_eq!(count(&seen, &room_vacated), 0, "{seen:?}");
    drop(stays);
}

#[test]
fn a_batch_held_by_a_killed_node_is_delivered_by_another() {
    let redis = RedisServer::start();
    // The receiver fails until told otherwise, so batches stay in flight.
    let hooks = webhook_receiver::start(&[500; 10_000]);
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::start(&redis, &hooks)).collect();
    let clients: Vec<Client> = nodes.iter().map(Node::connect).collect();
    let ids: Vec<String> = clients.iter().map(Client::node).collect();
    let mut c = nodes[2].connect();
    c.subscribe("held");
    // Which node's sender holds the batch (it keeps retrying it)?
    let mut r = redis_conn(&redis);
    let mut holder = None;
    wait_until("a node holding the batch", || {
        for (i, id) in ids.iter().enumerate() {
            let n: i64 = redis::cmd("LLEN")
                .arg(format!("{NS}:webhooks:processing:{id}"))
                .query(&mut r)
                .unwrap();
            if n > 0 {
                holder = Some(i);
                return true;
            }
        }
        false
    });
    let holder = holder.unwrap();
    nodes[holder].kill();
    // From now on the receiver accepts.
    hooks.script.lock().unwrap().clear();
    let mut seen = Vec::new();
    events_until(
        &hooks,
        &mut seen,
        &json!({"name":"channel_occupied","channel":"held"}),
    );
    drop(clients);
}
