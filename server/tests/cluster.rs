//! Cluster mode (R25): real `realtime-server` processes sharing a real
//! `redis-server`, spoken to over WebSocket and the HTTP API. Synchronised
//! on received frames and on polled endpoint answers; deadlines are only
//! failure guards. A machine without `redis-server` fails these tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../broadcasting/tests/redis_support/mod.rs"]
mod redis_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::process::ServerProcess;
use common::{now_unix, presence_auth, private_auth, signed_query, APP_ID, KEY, SECRET};
use redis_support::{wait_until, RedisServer, GUARD};
use serde_json::{json, Value};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// One gateway process.
struct Node {
    server: ServerProcess,
}

impl Node {
    fn start(redis: &RedisServer, ttl: u64) -> Self {
        Self::start_url(&redis.url(), ttl)
    }

    fn start_url(url: &str, ttl: u64) -> Self {
        let ttl = ttl.to_string();
        Self {
            server: ServerProcess::spawn(&[
                "--workers",
                "1",
                "--redis",
                url,
                "--node-ttl",
                &ttl,
                "--redis-namespace",
                "test",
                "--app-id",
                APP_ID,
                "--app-key",
                KEY,
                "--app-secret",
                SECRET,
            ]),
        }
    }

    /// SIGKILL: no goodbye.
    fn kill(&mut self) {
        self.server.kill();
    }

    fn http(&self, method: &str, path: &str, extra: &[(&str, &str)], body: &str) -> (u16, String) {
        let q = signed_query(method, path, extra, body, SECRET, now_unix());
        let mut s = TcpStream::connect(self.server.addr).unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        write!(
            s,
            "{method} {path}?{q} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    fn get(&self, path: &str, extra: &[(&str, &str)]) -> Value {
        let (status, body) = self.http("GET", path, extra, "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn publish(&self, channel: &str, name: &str, data: &str) {
        let body = json!({"name": name, "channel": channel, "data": data}).to_string();
        let (status, reply) = self.http("POST", &format!("/apps/{APP_ID}/events"), &[], &body);
        assert_eq!(status, 200, "{reply}");
    }

    /// The user ids of a presence channel, sorted.
    fn users(&self, channel: &str) -> Vec<String> {
        let v = self.get(&format!("/apps/{APP_ID}/channels/{channel}/users"), &[]);
        let mut ids: Vec<String> = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
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
        assert_eq!(hello["event"], "pusher:connection_established");
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
    /// The next frame, skipping pings and the cluster's no-op frames.
    fn next(&mut self) -> Value {
        loop {
            match self.ws.read().expect("no frame within the guard") {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["event"] != "pusher_internal:presence_noop" {
                        return v;
                    }
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).unwrap();
    }

    fn subscribe(&mut self, channel: &str) {
        self.send(json!({"event":"pusher:subscribe","data":{"channel":channel}}));
        assert_eq!(
            self.next()["event"],
            "pusher_internal:subscription_succeeded"
        );
    }

    fn subscribe_private(&mut self, channel: &str) {
        let auth = private_auth(&self.socket_id, channel);
        self.send(json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}}));
        assert_eq!(
            self.next()["event"],
            "pusher_internal:subscription_succeeded"
        );
    }

    /// Joins as `user`; returns the roster's sorted ids.
    fn join(&mut self, channel: &str, user: &str) -> Vec<String> {
        let data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
        let auth = presence_auth(&self.socket_id, channel, &data);
        self.send(json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":data}}));
        let f = self.next();
        assert_eq!(f["event"], "pusher_internal:subscription_succeeded", "{f}");
        let d: Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
        let mut ids: Vec<String> = d["presence"]["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        assert_eq!(d["presence"]["count"], ids.len());
        ids
    }

    /// Asserts the next frame is the event `name` (with `data`).
    fn expect(&mut self, name: &str, data: Option<&str>) -> Value {
        let f = self.next();
        assert_eq!(f["event"], name, "{f}");
        if let Some(d) = data {
            assert_eq!(f["data"], d, "{f}");
        }
        f
    }

    /// Nothing else arrived before a marker published now through `via`.
    fn nothing_before_marker(&mut self, via: &Node, channel: &str) {
        via.publish(channel, "marker", "m");
        self.expect("marker", Some("m"));
    }
}

fn users(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn member_event(f: &Value) -> (String, String) {
    let d: Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
    (
        f["event"].as_str().unwrap().to_owned(),
        d["user_id"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_publish_through_any_node_reaches_every_node_once() {
    let redis = RedisServer::start();
    let nodes: Vec<Node> = (0..3).map(|_| Node::start(&redis, 15)).collect();
    let mut clients: Vec<Client> = nodes.iter().map(Node::connect).collect();
    for c in &mut clients {
        c.subscribe("news");
    }
    // Node C's HTTP API; every client, on every node, gets it.
    nodes[2].publish("news", "e1", "d1");
    for c in &mut clients {
        c.expect("e1", Some("d1"));
    }
    // Exactly once: the next frame everywhere is the next event.
    nodes[0].publish("news", "e2", "d2");
    for c in &mut clients {
        c.expect("e2", Some("d2"));
    }
    // A client event on A reaches B and C, not its sender.
    for c in &mut clients {
        c.subscribe_private("private-chat");
    }
    clients[0].send(json!({"event":"client-typing","channel":"private-chat","data":"{}"}));
    for c in &mut clients[1..] {
        c.expect("client-typing", None);
    }
    clients[0].nothing_before_marker(&nodes[1], "private-chat");
    for c in &mut clients[1..] {
        c.expect("marker", Some("m"));
    }
}

#[test]
fn presence_is_one_roster_across_nodes() {
    let redis = RedisServer::start();
    let nodes: Vec<Node> = (0..3).map(|_| Node::start(&redis, 15)).collect();
    let ch = "presence-room";
    let mut a1 = nodes[0].connect();
    assert_eq!(a1.join(ch, "u1"), users(&["u1"]));
    for n in &nodes {
        wait_until("every node lists u1", || n.users(ch) == users(&["u1"]));
    }
    // u2 on B sees u1 (on A) in its roster; A hears of u2 once.
    let mut b2 = nodes[1].connect();
    assert_eq!(b2.join(ch, "u2"), users(&["u1", "u2"]));
    let f = a1.next();
    assert_eq!(
        member_event(&f),
        ("pusher_internal:member_added".into(), "u2".into())
    );
    // u1 again, on B: one member, no member_added anywhere.
    let mut b1 = nodes[1].connect();
    assert_eq!(b1.join(ch, "u1"), users(&["u1", "u2"]));
    for n in &nodes {
        wait_until("every node lists u1 and u2", || {
            n.users(ch) == users(&["u1", "u2"])
        });
    }
    a1.nothing_before_marker(&nodes[2], ch);
    b2.expect("marker", Some("m"));
    b1.expect("marker", Some("m"));
    // Channel info agrees on every node, C included (no local member).
    for n in &nodes {
        let info = n.get(
            &format!("/apps/{APP_ID}/channels/{ch}"),
            &[("info", "user_count")],
        );
        assert_eq!(info["occupied"], true);
        assert_eq!(info["user_count"], 2);
        let list = n.get(
            &format!("/apps/{APP_ID}/channels"),
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        );
        assert_eq!(list["channels"][ch]["user_count"], 2, "{list}");
    }
    // u1 leaves A but stays on B: still a member, no member_removed.
    drop(a1);
    let mut c3 = nodes[2].connect();
    assert_eq!(
        c3.join(ch, "u3"),
        users(&["u1", "u2"])
            .into_iter()
            .chain(["u3".into()])
            .collect::<Vec<_>>()
    );
    // u1's last connection (on B) leaves: member_removed on C, once.
    drop(b1);
    let mut seen = Vec::new();
    loop {
        let f = c3.next();
        seen.push(member_event(&f));
        if f["event"] == "pusher_internal:member_removed" {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![("pusher_internal:member_removed".into(), "u1".into())]
    );
    c3.nothing_before_marker(&nodes[0], ch);
    for n in &nodes {
        wait_until("every node lists u2 and u3", || {
            n.users(ch) == users(&["u2", "u3"])
        });
    }
}

#[test]
fn a_killed_node_members_leave_every_roster_within_the_ttl() {
    const TTL: u64 = 3;
    let redis = RedisServer::start();
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::start(&redis, TTL)).collect();
    let ch = "presence-room";
    let everywhere = |nodes: &[Node], ids: &[&str]| {
        for n in nodes {
            wait_until("every node lists the members", || n.users(ch) == users(ids));
        }
    };
    let mut a = nodes[0].connect();
    a.join(ch, "ua");
    everywhere(&nodes, &["ua"]);
    let mut c = nodes[2].connect();
    c.join(ch, "uc");
    assert_eq!(member_event(&a.next()).1, "uc");
    everywhere(&nodes, &["ua", "uc"]);
    let mut b = nodes[1].connect();
    assert_eq!(b.join(ch, "ub"), users(&["ua", "ub", "uc"]));
    assert_eq!(member_event(&a.next()).1, "ub");
    assert_eq!(member_event(&c.next()).1, "ub");

    nodes[1].kill();
    drop(b);
    let killed = Instant::now();
    for client in [&mut a, &mut c] {
        let f = client.next();
        assert_eq!(
            member_event(&f),
            ("pusher_internal:member_removed".into(), "ub".into())
        );
    }
    let took = killed.elapsed();
    // The bound of the feature (TTL), with scheduling slack.
    assert!(
        took <= Duration::from_secs(TTL + 1),
        "removed after {took:?}"
    );
    // Once: the next frame is a marker.
    a.nothing_before_marker(&nodes[2], ch);
    c.expect("marker", Some("m"));
    for n in [&nodes[0], &nodes[2]] {
        assert_eq!(n.users(ch), users(&["ua", "uc"]));
    }
}

#[test]
fn publishes_resume_within_two_seconds_of_redis_returning() {
    let mut redis = RedisServer::start();
    let nodes: Vec<Node> = (0..2).map(|_| Node::start(&redis, 15)).collect();
    let mut b = nodes[1].connect();
    b.subscribe("news");
    let mut a = nodes[0].connect();
    a.subscribe("news");
    nodes[0].publish("news", "before", "x");
    b.expect("before", None);
    a.expect("before", None);

    redis.kill();
    // Redis is away: the API still answers, local delivery goes on.
    nodes[0].publish("news", "during", "x");
    a.expect("during", None);

    redis.restart();
    let back = Instant::now();
    let mut n = 0;
    let resumed = loop {
        n += 1;
        nodes[0].publish("news", "probe", &n.to_string());
        assert_eq!(a.expect("probe", None)["data"], n.to_string());
        // Did b get anything? Probe with a short read timeout.
        if let MaybeTlsStream::Plain(s) = b.ws.get_mut() {
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
        }
        match b.ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(v["event"], "probe", "{v}");
                break back.elapsed();
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(back.elapsed() < GUARD, "publishes never resumed");
    };
    assert!(
        resumed <= Duration::from_secs(2),
        "resumed after {resumed:?}"
    );
}

#[test]
fn a_node_started_before_redis_serves_alone_then_joins_the_cluster() {
    let port = redis_support::free_port();
    let a = Node::start_url(&format!("redis://127.0.0.1:{port}/"), 15);
    // No Redis: the node still serves its own clients.
    let ch = "presence-room";
    let mut a0 = a.connect();
    assert_eq!(a0.join(ch, "u0"), users(&["u0"]));
    a.publish(ch, "local", "x");
    a0.expect("local", Some("x"));

    let redis = RedisServer::start_on(port);
    let b = Node::start(&redis, 15);
    // B learns of A's member once A reaches Redis, and A of B's.
    wait_until("B lists u0", || b.users(ch) == users(&["u0"]));
    let mut b1 = b.connect();
    assert_eq!(b1.join(ch, "u1"), users(&["u0", "u1"]));
    assert_eq!(
        member_event(&a0.next()),
        ("pusher_internal:member_added".into(), "u1".into())
    );
    wait_until("A lists u0 and u1", || a.users(ch) == users(&["u0", "u1"]));
    b.publish(ch, "across", "y");
    a0.expect("across", Some("y"));
    b1.expect("across", Some("y"));
}
