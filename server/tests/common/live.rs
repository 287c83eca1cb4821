//! A real gateway on a loopback socket, and the clients the socket-level
//! tests speak to it with: blocking tungstenite WebSockets, raw HTTP, and
//! publishes signed like the official SDKs sign them.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use realtime_server::{start, Running, Settings};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use super::{decode_data, now_unix, settings, signed_query, KEY, SECRET};

/// A WebSocket client on a plain blocking socket.
pub type Ws = WebSocket<TcpStream>;

/// Turns a hang into a failure: tests synchronise on frames and responses,
/// and a read that waits this long fails.
pub const GUARD: Duration = Duration::from_secs(30);

/// Starts the gateway of [`settings`] on `127.0.0.1:0` with two loops,
/// after `tweak` adjusted the settings.
pub fn run(tweak: impl FnOnce(&mut Settings)) -> Running {
    let mut s = settings();
    s.bind = "127.0.0.1:0".parse().unwrap();
    s.workers = 2;
    tweak(&mut s);
    start(&s).unwrap()
}

/// A connected client and its socket id. `rcvbuf` shrinks the socket's
/// receive buffer (set before connecting, so the window stays small);
/// `source` picks the loopback address it connects from.
pub fn ws_with(addr: SocketAddr, rcvbuf: Option<usize>, source: Option<Ipv4Addr>) -> (Ws, String) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n).unwrap();
    }
    if let Some(ip) = source {
        sock.bind(&SocketAddr::from((ip, 0)).into()).unwrap();
    }
    sock.connect(&addr.into()).unwrap();
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    let url = format!("ws://{addr}/app/{KEY}?protocol=7");
    let (mut ws, _) = tungstenite::client(url, stream).unwrap();
    let hello = next(&mut ws);
    assert_eq!(hello["event"], "pusher:connection_established");
    let socket_id = decode_data(&hello)["socket_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (ws, socket_id)
}

/// [`ws_with`] with the defaults.
pub fn ws(addr: SocketAddr) -> (Ws, String) {
    ws_with(addr, None, None)
}

/// The next text frame, parsed; a close or a binary frame fails the test
/// (with its code).
pub fn next(ws: &mut Ws) -> Value {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("a reading client got {other:?}"),
        }
    }
}

/// Queues a frame without flushing (back-to-back sends).
pub fn queue(ws: &mut Ws, v: Value) {
    ws.write(Message::text(v.to_string())).unwrap();
}

/// Sends a frame now.
pub fn send_now(ws: &mut Ws, v: &Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

/// A `pusher:subscribe` to a public channel.
pub fn subscribe_msg(channel: &str) -> Value {
    json!({"event":"pusher:subscribe","data":{"channel":channel}})
}

/// Subscribes to a public channel; the server's answer.
pub fn subscribe(ws: &mut Ws, channel: &str) -> Value {
    send_now(ws, &subscribe_msg(channel));
    next(ws)
}

/// A signed `POST /apps/1/events` request for keep-alive connections.
pub fn publish_request(channel: &str, name: &str, data: &str) -> Vec<u8> {
    let body = json!({"name": name, "channel": channel, "data": data}).to_string();
    let path = "/apps/1/events";
    let q = signed_query("POST", path, &[], &body, SECRET, now_unix());
    format!(
        "POST {path}?{q} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` on a fresh connection and reads until the server
/// closes it; the status (0 if none) and the whole response.
pub fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// Publishes one event through the signed API and checks the 200.
pub fn publish(addr: SocketAddr, channel: &str, name: &str, data: &str) {
    let mut req = publish_request(channel, name, data);
    // Close after the answer, so the read ends.
    let at = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    req.splice(at..at, b"\r\nConnection: close".iter().copied());
    let (status, text) = raw(addr, &req);
    assert_eq!(status, 200, "{text}");
}

/// A client subscribed to the public channel `control` before an attack.
pub struct Control(pub Ws);

impl Control {
    /// Connects and subscribes.
    pub fn new(addr: SocketAddr) -> Self {
        Self::from_ws(ws(addr).0)
    }

    /// Subscribes an open client.
    pub fn from_ws(mut ws: Ws) -> Self {
        assert_eq!(
            subscribe(&mut ws, "control")["event"],
            "pusher_internal:subscription_succeeded"
        );
        Self(ws)
    }

    /// After the attack: an event published through the API arrives.
    pub fn still_served(mut self, addr: SocketAddr) {
        publish(addr, "control", "still-here", "d");
        assert_eq!(next(&mut self.0)["event"], "still-here");
    }
}

/// The value of the `/metrics` sample whose line starts with `line_start`.
pub fn metric(server: &Running, line_start: &str) -> u64 {
    let text = server.node().render_metrics();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
}

/// Polls `done` (no sleeping: it yields between tries) until it is true;
/// fails the test with `what` after [`GUARD`]. For states the server
/// reaches on its own (a socket closed, a gauge updated) that no frame
/// announces.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + GUARD;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}
