//! Helpers shared by the gateway tests: a gateway with known apps, clients
//! on in-memory pipes, signing like the official SDKs do.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use realtime::{Client, MemoryConn};
use realtime_mio::{HttpResponse, Request};
use realtime_server::auth;
use realtime_server::{AppConfig, Node, Settings, UpgradeDecision};
use serde_json::Value;

pub mod live;
pub mod process;

pub const KEY: &str = "key-1";
pub const SECRET: &str = "secret-1";
pub const APP_ID: &str = "1";

pub fn settings() -> Settings {
    let mut other = AppConfig::new("2", "key-2", "secret-2");
    other.max_connections = Some(1);
    Settings {
        apps: vec![AppConfig::new(APP_ID, KEY, SECRET), other],
        dev_app: false,
        ..Settings::default()
    }
}

/// A node as the server runs one: its apps deliver through an in-process
/// Memory bus and their subscription threads.
pub fn gateway() -> Arc<Node> {
    Arc::new(Node::new(&settings()).unwrap())
}

/// An HTTP answer, its body as text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl From<HttpResponse> for Reply {
    fn from(r: HttpResponse) -> Self {
        let content_type = r
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        Self {
            status: r.status,
            content_type,
            body: String::from_utf8_lossy(&r.body).into_owned(),
        }
    }
}

/// A plain HTTP request as the transport hands it over.
pub fn request(method: &str, path: &str, query: &str) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: Vec::new(),
        peer: "127.0.0.1:1".parse().unwrap(),
    }
}

/// The value of the `/metrics` line starting with `line_start`, 0 if none.
pub fn metric_of(n: &Node, line_start: &str) -> u64 {
    n.render_metrics()
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A connected client: the Hub client, the peer end of its pipe, its socket id.
pub struct Peer {
    pub client: Client,
    pub conn: MemoryConn,
    pub socket_id: String,
}

impl Peer {
    /// The next frame, parsed; fails the test after 10 s without one.
    pub fn recv(&self) -> Value {
        match self.conn.read_timeout(Duration::from_secs(10)) {
            Ok(Some((_, bytes))) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame's `data`, decoded from its JSON string.
    pub fn recv_event(&self, event: &str) -> Value {
        let f = self.recv();
        assert_eq!(f["event"], event, "{f}");
        decode_data(&f)
    }

    /// Skips frames until one with this event name (bounded).
    pub fn until(&self, event: &str) -> Value {
        for _ in 0..50 {
            let f = self.recv();
            if f["event"] == event {
                return f;
            }
        }
        panic!("no {event}");
    }
}

/// `data` of a frame: decoded if it is a JSON string, as is otherwise.
pub fn decode_data(f: &Value) -> Value {
    match &f["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        other => other.clone(),
    }
}

pub fn connect_to(g: &Node, key: &str) -> Peer {
    let UpgradeDecision::Accept(app) = g.gateway().upgrade(&format!("/app/{key}"), Some("7"))
    else {
        panic!("upgrade refused");
    };
    let (conn, peer) = realtime::pipe();
    let client = app.hub().add(conn, UpgradeDecision::auth(&app)).unwrap();
    let hello = g.gateway().open(&client).unwrap();
    client.send_text(hello).unwrap();
    let mut p = Peer {
        client,
        conn: peer,
        socket_id: String::new(),
    };
    let data = p.recv_event("pusher:connection_established");
    p.socket_id = data["socket_id"].as_str().unwrap().to_owned();
    assert_eq!(data["activity_timeout"], 120);
    p
}

pub fn connect(g: &Node) -> Peer {
    connect_to(g, KEY)
}

pub fn send(g: &Node, p: &Peer, msg: Value) {
    g.gateway()
        .handle_message(&p.client, msg.to_string().as_bytes());
}

pub fn private_auth(socket_id: &str, channel: &str) -> String {
    format!(
        "{KEY}:{}",
        auth::sign(SECRET, &auth::channel_string(socket_id, channel, None))
    )
}

pub fn presence_auth(socket_id: &str, channel: &str, data: &str) -> String {
    format!(
        "{KEY}:{}",
        auth::sign(
            SECRET,
            &auth::channel_string(socket_id, channel, Some(data))
        )
    )
}

pub fn subscribe_public(g: &Node, p: &Peer, channel: &str) {
    send(
        g,
        p,
        serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel}}),
    );
    let f = p.recv();
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded", "{f}");
    assert_eq!(f["channel"], channel);
}

pub fn subscribe_private(g: &Node, p: &Peer, channel: &str) {
    let auth = private_auth(&p.socket_id, channel);
    send(
        g,
        p,
        serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}}),
    );
    let f = p.recv();
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded", "{f}");
    assert_eq!(f["data"], "{}");
}

/// Joins a presence channel as `user`; returns the roster data.
pub fn join_presence(g: &Node, p: &Peer, channel: &str, user: &str) -> Value {
    let data =
        serde_json::json!({"user_id": user, "user_info": {"name": format!("n{user}")}}).to_string();
    let auth = presence_auth(&p.socket_id, channel, &data);
    send(
        g,
        p,
        serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":data}}),
    );
    p.recv_event("pusher_internal:subscription_succeeded")
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Signs a request the way pusher-http-node does: parameters sorted by
/// key, joined unescaped, signed, `auth_signature` appended.
pub fn signed_query(
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
    secret: &str,
    ts: u64,
) -> String {
    signed_query_as(KEY, method, path, extra, body, secret, ts)
}

/// [`signed_query`] with another app key.
pub fn signed_query_as(
    key: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
    secret: &str,
    ts: u64,
) -> String {
    let mut params: Vec<(String, String)> = vec![
        ("auth_key".into(), key.into()),
        ("auth_timestamp".into(), ts.to_string()),
        ("auth_version".into(), "1.0".into()),
    ];
    if !body.is_empty() {
        params.push(("body_md5".into(), auth::body_md5(body.as_bytes())));
    }
    for (k, v) in extra {
        params.push(((*k).into(), (*v).into()));
    }
    params.sort();
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let query = query.join("&");
    let sig = auth::sign(secret, &format!("{method}\n{path}\n{query}"));
    format!("{query}&auth_signature={sig}")
}

pub fn api(g: &Node, method: &str, path: &str, extra: &[(&str, &str)], body: &str) -> Reply {
    let q = signed_query(method, path, extra, body, SECRET, now_unix());
    g.api()
        .http(&request(method, path, &q), body.as_bytes())
        .into()
}

pub fn api_json(g: &Node, method: &str, path: &str, extra: &[(&str, &str)], body: &str) -> Value {
    let r = api(g, method, path, extra, body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type, "application/json");
    serde_json::from_str(&r.body).unwrap()
}

/// Publishes `marker` on `channel` through the API: frames a peer
/// receives before it were enqueued before it.
pub fn marker(g: &Node, channel: &str) {
    let body = serde_json::json!({"name":"marker","channel":channel,"data":"m"}).to_string();
    api_json(g, "POST", "/apps/1/events", &[], &body);
}
