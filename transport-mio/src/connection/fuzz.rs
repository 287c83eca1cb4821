//! The fuzz hook of the whole connection state machine: one [`Connection`]
//! over an in-memory socket ([`MemStream`]), driven the way an event loop
//! drives it (readable, notified, writable, the work left for the next
//! iteration, shutdown, drop), serving an echo application on a Hub of its
//! own. Nothing outlives a call but the immutable default configuration.
//! Hidden from the docs; not an API.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use mio::{Poll, Token, Waker};
use realtime::{Client, Hub, MessageType};

use super::memory::MemStream;
use super::{Again, Connection, LoopCtx, Outcome};
use crate::config::Config;
use crate::handler::{Handler, Upgrade};
use crate::http::{HttpResponse, Request};
use crate::limits::Global;
use crate::wake::LoopShared;

/// Steps (reads and the work after them) of one input at most.
const MAX_STEPS: usize = 4096;

/// The default configuration, built once (immutable): `Config::default`
/// asks the OS for the CPU count (cgroup files read on every call), which
/// cost more than half of an input's time (issue 18).
fn default_config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(Config::default)
}

/// Echoes messages, answers plain requests `200`, counts opens and closes.
#[derive(Default)]
struct Echo {
    hub: Hub,
    opened: AtomicUsize,
    closed: AtomicUsize,
}

impl Handler for Echo {
    fn on_upgrade(&self, _: &Request) -> Upgrade {
        Upgrade::Accept {
            hub: self.hub.clone(),
            auth: Bytes::new(),
        }
    }

    fn on_open(&self, _: &Client) {
        self.opened.fetch_add(1, Ordering::SeqCst);
    }

    fn on_message(&self, client: &Client, kind: MessageType, data: Bytes) {
        let _ = match kind {
            MessageType::Text => client.send_text(data),
            MessageType::Binary => client.send_binary(data),
        };
    }

    fn on_close(&self, _: &Client) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }

    fn on_http(&self, _: &Request, body: Bytes) -> HttpResponse {
        HttpResponse::text(200, format!("{} bytes\n", body.len()))
    }
}

/// Drives one connection with a client byte stream and returns
/// `(opened, closed)`: how many WebSocket sessions the application saw
/// opened and closed. Never panics.
///
/// Byte 0: bits 0–4 the read chunk size − 1 (the peer's bytes arrive that
/// many at a time, each chunk followed by a readable event); bits 5–7 the
/// maximum message size class (`16 << 3k` bytes, at most 16 MiB). An odd
/// chunk size also limits the socket to 256 bytes of writes per step, so
/// the writer meets `WouldBlock`. The rest is what the peer sends: an HTTP
/// request head (an upgrade, or plain requests), then WebSocket frames.
/// After the input the peer closes its write side, the server shuts down
/// (close 1001) and the connection is dropped.
#[doc(hidden)]
pub fn fuzz_connection(data: &[u8]) -> (usize, usize) {
    let Some((&byte0, stream)) = data.split_first() else {
        return (0, 0);
    };
    let chunk = 1 + usize::from(byte0 & 0x1f);
    let room = if chunk % 2 == 1 { 256 } else { usize::MAX };
    let config = Config {
        max_message_size: 16usize << (3 * usize::from(byte0 >> 5)).min(20),
        ..default_config().clone()
    };
    let Ok(poll) = Poll::new() else {
        return (0, 0);
    };
    let Ok(waker) = Waker::new(poll.registry(), Token(usize::MAX)) else {
        return (0, 0);
    };
    let now = Instant::now();
    let app = Arc::new(Echo::default());
    let mut ctx = LoopCtx::new(
        Arc::clone(&app) as Arc<dyn Handler>,
        Arc::new(Global::new(config.clone())),
        Arc::new(LoopShared::new(waker)),
        config.tick(),
        now,
    );
    let peer = ([127, 0, 0, 1], 4000).into();
    let mut conn = Connection::new(Token(0), MemStream::with_room(room), peer, &ctx);
    conn.start(&mut ctx);
    let mut live = true;
    let mut pieces = stream.chunks(chunk);
    for _ in 0..MAX_STEPS {
        let Some(piece) = pieces.next() else {
            conn.socket_mut().eof = true;
            live = step(&mut conn, &mut ctx, room) == Outcome::Keep;
            break;
        };
        conn.socket_mut().input.extend(piece);
        if step(&mut conn, &mut ctx, room) == Outcome::Done {
            live = false;
            break;
        }
    }
    if live && conn.on_shutdown(1001, "going away", &mut ctx) == Outcome::Keep {
        let _ = step(&mut conn, &mut ctx, room);
    }
    conn.on_drop(&mut ctx);
    app.hub.close();
    (
        app.opened.load(Ordering::SeqCst),
        app.closed.load(Ordering::SeqCst),
    )
}

/// One loop iteration for the connection: readable, then notified (the
/// echo's frames), then writable with `room` more bytes, then the work it
/// left for the next iteration.
fn step(conn: &mut Connection<MemStream>, ctx: &mut LoopCtx, room: usize) -> Outcome {
    ctx.now = Instant::now();
    if conn.on_readable(ctx) == Outcome::Done || conn.on_notified(ctx) == Outcome::Done {
        return Outcome::Done;
    }
    conn.socket_mut().room = room;
    if conn.on_writable(ctx) == Outcome::Done {
        return Outcome::Done;
    }
    // The written bytes are not kept: only the socket's room matters.
    conn.socket_mut().written.clear();
    for (_, again) in std::mem::take(&mut ctx.again) {
        let again: Again = again;
        if conn.on_again(again, ctx) == Outcome::Done {
            return Outcome::Done;
        }
    }
    Outcome::Keep
}

#[cfg(test)]
mod tests {
    use super::fuzz_connection;
    use crate::connection::testing::{client_frame, UPGRADE};

    fn input(byte0: u8, parts: &[&[u8]]) -> Vec<u8> {
        let mut data = vec![byte0];
        for p in parts {
            data.extend_from_slice(p);
        }
        data
    }

    #[test]
    fn an_upgrade_opens_one_session_and_closes_it_once() {
        let echo = client_frame(true, 1, b"hello");
        // Chunks of 32 bytes and of 1 byte (with a 256-byte write room).
        for byte0 in [0x1f, 0x00] {
            assert_eq!(fuzz_connection(&input(byte0, &[UPGRADE, &echo])), (1, 1));
        }
    }

    #[test]
    fn a_peer_close_frame_ends_the_session_once() {
        let close = client_frame(true, 8, &1000u16.to_be_bytes());
        let after = client_frame(true, 1, b"late");
        assert_eq!(
            fuzz_connection(&input(0x1f, &[UPGRADE, &close, &after])),
            (1, 1)
        );
    }

    #[test]
    fn plain_requests_and_garbage_open_no_session() {
        let get = b"GET /up HTTP/1.1\r\nHost: x\r\n\r\nGET /up HTTP/1.1\r\n\r\n";
        assert_eq!(fuzz_connection(&input(0x03, &[get])), (0, 0));
        assert_eq!(
            fuzz_connection(&input(0x00, &[b"\xff\xfe\r\n\r\n"])),
            (0, 0)
        );
        assert_eq!(fuzz_connection(&[]), (0, 0));
    }
}
