//! Test support: the phases driven by byte slices, without sockets. A
//! [`MemStream`] (`memory.rs`) stands for the socket and a [`Rig`] holds
//! one connection with the loop context it needs, serving a small echo
//! application.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use mio::{Poll, Token, Waker};
use realtime::{Client, Hub, MessageType, Transport};

pub(super) use super::memory::MemStream;
use super::{Connection, LoopCtx, Outcome};
use crate::config::Config;
use crate::handler::{Handler, Upgrade};
use crate::http::{HttpResponse, Request};
use crate::limits::Global;
use crate::wake::LoopShared;

/// A transport that ignores wake-ups (the test drives the drain itself).
pub(super) struct NoWake;

impl Transport for NoWake {
    fn wake(&self) {}
    fn closed(&self) {}
}

/// A client of `hub` that no loop serves.
pub(super) fn detached_client(hub: &Hub) -> Client {
    hub.attach(Arc::new(NoWake), Bytes::new()).unwrap()
}

/// The application of the rig: echoes messages, answers plain requests
/// with `200 up`, records the clients it opened and closed.
struct EchoApp {
    hub: Hub,
    opened: Mutex<Vec<Client>>,
    closed: Mutex<usize>,
}

impl Handler for EchoApp {
    fn on_upgrade(&self, _: &Request) -> Upgrade {
        Upgrade::Accept {
            hub: self.hub.clone(),
            auth: Bytes::new(),
        }
    }

    fn on_open(&self, client: &Client) {
        self.opened.lock().unwrap().push(client.clone());
    }

    fn on_message(&self, client: &Client, kind: MessageType, data: Bytes) {
        let _ = match kind {
            MessageType::Text => client.send_text(data),
            MessageType::Binary => client.send_binary(data),
        };
    }

    fn on_close(&self, _: &Client) {
        *self.closed.lock().unwrap() += 1;
    }

    fn on_http(&self, _: &Request, _: Bytes) -> HttpResponse {
        HttpResponse::text(200, "up\n")
    }
}

/// A WebSocket upgrade request (the RFC's sample key).
pub(super) const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// One connection on an in-memory stream, with its loop context.
pub(super) struct Rig {
    pub(super) conn: Connection<MemStream>,
    pub(super) ctx: LoopCtx,
    app: Arc<EchoApp>,
    /// Keeps the waker's registry alive.
    _poll: Poll,
}

impl Rig {
    pub(super) fn new(config: Config) -> Self {
        let poll = Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), Token(usize::MAX)).unwrap();
        let now = Instant::now();
        let app = Arc::new(EchoApp {
            hub: Hub::new(),
            opened: Mutex::new(Vec::new()),
            closed: Mutex::new(0),
        });
        let mut ctx = LoopCtx::new(
            Arc::clone(&app) as Arc<dyn Handler>,
            Arc::new(Global::new(config.clone())),
            Arc::new(LoopShared::new(waker)),
            config.tick(),
            now,
        );
        let peer = "127.0.0.1:4000".parse().unwrap();
        let mut conn = Connection::new(Token(0), MemStream::with_room(usize::MAX), peer, &ctx);
        conn.start(&mut ctx);
        Self {
            conn,
            ctx,
            app,
            _poll: poll,
        }
    }

    /// The peer sends `bytes`; the connection reads them.
    pub(super) fn send(&mut self, bytes: &[u8]) -> Outcome {
        self.sock().input.extend(bytes);
        self.conn.on_readable(&mut self.ctx)
    }

    /// The socket takes `room` more bytes; the connection writes.
    pub(super) fn writable(&mut self, room: usize) -> Outcome {
        self.sock().room = room;
        self.conn.on_writable(&mut self.ctx)
    }

    pub(super) fn sock(&mut self) -> &mut MemStream {
        self.conn.socket_mut()
    }

    /// What was written since the last call.
    pub(super) fn written(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.sock().written)
    }

    /// Upgrades the connection; returns its client.
    pub(super) fn open(&mut self) -> Client {
        self.open_with(UPGRADE).0
    }

    /// Upgrades the connection with `request`; returns its client and the
    /// `101` response.
    pub(super) fn open_with(&mut self, request: &[u8]) -> (Client, String) {
        assert_eq!(self.send(request), Outcome::Keep);
        let written = self.written();
        assert!(written.starts_with(b"HTTP/1.1 101 "), "{written:?}");
        assert!(self.conn.is_open());
        let client = self.app.opened.lock().unwrap().last().unwrap().clone();
        (client, String::from_utf8_lossy(&written).into_owned())
    }

    /// How many times `on_close` ran.
    pub(super) fn closed(&self) -> usize {
        *self.app.closed.lock().unwrap()
    }
}

/// A masked client frame.
pub(super) fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Splits server frames (unmasked, at most 64 KiB) into (opcode, payload).
pub(super) fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let opcode = bytes[0] & 0x0f;
        let (len, at) = match bytes[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            n => (usize::from(n), 2),
        };
        out.push((opcode, bytes[at..at + len].to_vec()));
        bytes = &bytes[at + len..];
    }
    out
}

/// The close code of a close frame's payload.
pub(super) fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}
