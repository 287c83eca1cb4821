//! Shared helpers for the transport tests: a test application, a started
//! server, tungstenite clients and a raw WebSocket client for misbehaving
//! peers. Every blocking read has a 10 s timeout as a failure guard only.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::result_large_err
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use realtime::{Client, Hub, MessageType};
use realtime_mio::{Config, Handler, HttpResponse, Request, Server, Upgrade};
use tungstenite::{Message, WebSocket};

/// Failure guard for every blocking wait.
pub const GUARD: Duration = Duration::from_secs(10);

/// The test application: a tiny text protocol over a Hub.
///
/// - on open: subscribe to `all`;
/// - `sub CH` → subscribe, reply `sub CH true|false`;
/// - `pub CH DATA` → broadcast DATA on CH;
/// - `close CODE` → `close_with(CODE, "bye")`;
/// - `burst N` → send `0`..`N-1` to this client from the loop thread;
/// - `panic` → panic; anything else is echoed; binary is echoed.
///
/// It counts `on_activity` calls (pings, pongs, fragments).
pub struct App {
    pub hub: Hub,
    pub opened: AtomicUsize,
    pub activity: AtomicUsize,
    closed_tx: Mutex<Sender<String>>,
}

impl Handler for App {
    fn on_upgrade(&self, req: &Request) -> Upgrade {
        match req.path.as_str() {
            "/refuse" => Upgrade::Refuse {
                frames: vec![r#"{"event":"error","data":{"code":4001}}"#.into()],
                code: 4001,
                reason: "app does not exist".into(),
            },
            "/reject" => Upgrade::Reject(HttpResponse::text(401, "who are you?\n")),
            _ => Upgrade::Accept {
                hub: self.hub.clone(),
                auth: Bytes::from(req.query_param("user").unwrap_or_default()),
            },
        }
    }

    fn on_open(&self, client: &Client) {
        self.opened.fetch_add(1, Ordering::SeqCst);
        self.hub.subscribe(client, "all").unwrap();
    }

    fn on_message(&self, client: &Client, kind: MessageType, data: Bytes) {
        if kind == MessageType::Binary {
            let _ = client.send_binary(data);
            return;
        }
        let text = std::str::from_utf8(&data).unwrap();
        if let Some(ch) = text.strip_prefix("sub ") {
            let ok = self.hub.subscribe(client, ch).is_ok();
            let _ = client.send_text(format!("sub {ch} {ok}"));
        } else if let Some(rest) = text.strip_prefix("pub ") {
            let (ch, payload) = rest.split_once(' ').unwrap();
            self.hub.broadcast(ch, payload.to_owned()).unwrap();
        } else if let Some(code) = text.strip_prefix("close ") {
            client.close_with(code.parse().unwrap(), "bye");
        } else if let Some(n) = text.strip_prefix("burst ") {
            // Queued from the loop thread: all in the outbox before a drain.
            for i in 0..n.parse::<u32>().unwrap() {
                client.send_text(i.to_string()).unwrap();
            }
        } else if text == "panic" {
            panic!("test handler panics on request");
        } else {
            let _ = client.send_text(data);
        }
    }

    fn on_activity(&self, _client: &Client) {
        self.activity.fetch_add(1, Ordering::SeqCst);
    }

    fn on_close(&self, client: &Client) {
        let _ = self.closed_tx.lock().unwrap().send(client.id().to_owned());
    }

    fn on_http(&self, req: &Request, body: Bytes) -> HttpResponse {
        HttpResponse::text(
            200,
            format!(
                "{} {} {}",
                req.method,
                req.path,
                String::from_utf8_lossy(&body)
            ),
        )
    }
}

/// A running server and what the test watches.
pub struct Fixture {
    pub server: Server,
    pub app: Arc<App>,
    pub closed: Receiver<String>,
}

impl Fixture {
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn hub(&self) -> &Hub {
        &self.app.hub
    }

    /// Waits for the next `on_close`.
    pub fn next_close(&self) -> String {
        self.closed
            .recv_timeout(GUARD)
            .expect("on_close not called")
    }
}

/// A config on a free loopback port.
pub fn config() -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        ..Config::default()
    }
}

pub fn start(config: Config, hub: Hub) -> Fixture {
    let (tx, rx) = channel();
    let app = Arc::new(App {
        hub,
        opened: AtomicUsize::new(0),
        activity: AtomicUsize::new(0),
        closed_tx: Mutex::new(tx),
    });
    let server = Server::bind(config, Arc::clone(&app)).unwrap();
    Fixture {
        server,
        app,
        closed: rx,
    }
}

pub type Ws = WebSocket<TcpStream>;

/// A tungstenite client on `path`.
pub fn connect(addr: SocketAddr, path: &str) -> Ws {
    try_connect(addr, path).unwrap()
}

pub fn try_connect(
    addr: SocketAddr,
    path: &str,
) -> Result<Ws, tungstenite::HandshakeError<tungstenite::ClientHandshake<TcpStream>>> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    tungstenite::client(format!("ws://{addr}{path}"), stream).map(|(ws, _)| ws)
}

/// The next data message (pings are answered by tungstenite).
pub fn recv(ws: &mut Ws) -> Message {
    loop {
        match ws.read().expect("read failed") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

pub fn recv_text(ws: &mut Ws) -> String {
    match recv(ws) {
        Message::Text(t) => t.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads until the close frame; returns its code.
pub fn recv_close(ws: &mut Ws) -> u16 {
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame.map_or(1005, |f| f.code.into()),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

pub fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).unwrap();
}

// ----- a raw client for misbehaving peers ---------------------------------

/// Completes a WebSocket handshake by hand; returns the socket.
pub fn raw_upgrade(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Reads an HTTP response head byte by byte (so nothing after it is lost).
pub fn read_http_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read head");
        assert_eq!(
            n,
            1,
            "EOF in response head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Writes one client frame; `masked` false makes a protocol violation.
pub fn raw_frame(s: &mut TcpStream, first: u8, payload: &[u8], masked: bool) {
    s.write_all(&frame_bytes(first, payload, masked)).unwrap();
}

/// One client frame's bytes (`first`: FIN, RSV and opcode bits), to write
/// several frames with one `write` (they then arrive in one read).
pub fn frame_bytes(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    if payload.len() < 126 {
        out.push(mask_bit | payload.len() as u8);
    } else {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    let key = [9, 8, 7, 6];
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads one server frame: `(opcode, payload)`, or `None` at end of stream.
pub fn raw_read(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    match s.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(e) => panic!("raw read: {e}"),
    }
    assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    Some((h[0] & 0x0F, payload))
}

/// Reads frames until a close frame; returns its code.
pub fn raw_close_code(s: &mut TcpStream) -> u16 {
    loop {
        match raw_read(s) {
            Some((0x8, p)) => return u16::from_be_bytes([p[0], p[1]]),
            Some(_) => continue,
            None => panic!("end of stream before a close frame"),
        }
    }
}

/// Reads until end of stream (or reset).
pub fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read: {e}"),
        }
    }
}
