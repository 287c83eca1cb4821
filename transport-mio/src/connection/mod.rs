//! One TCP connection, owned by one event loop for its whole life: its
//! socket, its pending writes and its protocol state, from the HTTP request
//! through the WebSocket session to the closing handshake.
//!
//! This file holds the [`Connection`] type, its phases and the dispatch of
//! the loop's events (readable, writable, notified, timer, shutdown) to the
//! phase the connection is in. Each phase's behaviour is in its own file:
//!
//! - **Http** (`http.rs`): requests read into a buffer that exists only in
//!   this phase, answered by [`Handler::on_http`], kept alive or closed;
//!   an upgrade request goes to `handshake.rs`, which validates it, checks
//!   `max_connections` (503) and asks [`Handler::on_upgrade`].
//! - **Open** (`websocket.rs`): a [`Client`] attached to a Hub, an
//!   incremental frame [`Decoder`] (no buffer while idle), the last-inbound
//!   and last-ping times.
//! - **Closing** (`closing.rs`): the client is gone; what is queued (ending
//!   with a close frame or an HTTP response) is flushed, the write side is
//!   shut down and inbound bytes are discarded until the peer's end of
//!   stream or the linger deadline.
//!
//! Writing, in every phase, goes through the [`Writer`] (`write.rs`), which
//! owns the socket; draining the client's outbox returns a [`Drained`]
//! outcome that [`Connection::drain`] acts on.
//!
//! The connection is generic over its [`Stream`] so that the phases can be
//! driven in tests by byte slices through an in-memory stream; the server
//! uses a [`Socket`]: mio's `TcpStream`, plain or wrapped in a TLS session
//! (`crate::tls`), which the phases cannot tell apart (one enum branch per
//! read or write, no dynamic dispatch).
//!
//! Invariant: a phase change happens only inside this module, always
//! Http → Open → Closing or Http → Closing; the timer entry of the
//! connection is the earliest of its phase's deadline and, while the socket
//! pushes back, the write-stall deadline.

mod closing;
mod fuzz;
mod handshake;
mod http;
mod memory;
#[cfg(test)]
mod testing;
mod websocket;
mod write;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mio::Token;
use realtime::Client;

use crate::codec::Decoder;
use crate::handler::Handler;
use crate::limits::{BodyBudget, Global};
use crate::stats::{Counters, Ending};
use crate::timer::Wheel;
use crate::wake::LoopShared;

pub use self::fuzz::fuzz_connection;
pub(crate) use self::write::Stream;
use self::write::{Drained, Writer};
use crate::tls::Socket;

/// Reads per readiness event before yielding to other connections.
const READS_PER_TURN: usize = 16;

/// What the loop does with a connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Outcome {
    Keep,
    Done,
}

/// Work a connection left for the loop's next iteration (fairness).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Again {
    Read,
    Drain,
}

/// Everything of the loop that a connection uses, apart from the table.
pub(crate) struct LoopCtx {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) global: Arc<Global>,
    pub(crate) shared: Arc<LoopShared>,
    pub(crate) wheel: Wheel,
    /// The loop's read buffer, shared by its connections.
    pub(crate) read_buf: Box<[u8]>,
    /// The loop's write batch, lent to a connection when its socket pushes
    /// back.
    pub(crate) batch: VecDeque<Bytes>,
    pub(crate) again: Vec<(Token, Again)>,
    /// The time of this loop iteration.
    pub(crate) now: Instant,
    /// Set during shutdown: no more requests are served.
    pub(crate) stopping: bool,
}

/// Bytes of a loop's one read buffer, shared by its connections.
pub(crate) const READ_BUF: usize = 8 * 1024;

impl LoopCtx {
    /// A loop's context at `now`: its handler, the server-wide limits, the
    /// loop's wake-up queue and counters, a timer wheel ticking every
    /// `tick`, and one read buffer.
    pub(crate) fn new(
        handler: Arc<dyn Handler>,
        global: Arc<Global>,
        shared: Arc<LoopShared>,
        tick: std::time::Duration,
        now: Instant,
    ) -> Self {
        Self {
            handler,
            global,
            shared,
            wheel: Wheel::new(tick, now),
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            batch: VecDeque::new(),
            again: Vec::new(),
            now,
            stopping: false,
        }
    }

    fn counters(&self) -> &Counters {
        &self.shared.counters
    }
}

/// Runs user code; a panic becomes `None` (and a log line). Wake-ups of
/// other loops that the call produced go out when it returns (`wake.rs`).
fn guarded<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    let outcome = catch_unwind(AssertUnwindSafe(f));
    crate::wake::flush_deferred();
    match outcome {
        Ok(r) => Some(r),
        Err(_) => {
            tracing::error!(handler = what, "handler panicked");
            None
        }
    }
}

/// The Http phase's state (see `http.rs`).
struct HttpPhase {
    peer: SocketAddr,
    buf: Vec<u8>,
    deadline: Instant,
    /// Requests answered on this connection.
    served: u32,
    /// Whether any byte arrived yet (a socket that never speaks is shed at
    /// `silent_timeout`).
    spoke: bool,
    /// The current request's head was shown to `Handler::on_http_head`.
    checked: bool,
    /// Decoding progress of the current request's chunked body.
    chunked: Option<crate::http::Chunked>,
    /// The current request's body bytes held against `max_http_buffer`;
    /// released when the request is served or the phase ends.
    budget: Option<BodyBudget>,
}

/// The Open phase's state (see `websocket.rs`).
struct OpenPhase {
    client: Client,
    decoder: Decoder,
    last_in: Instant,
    last_ping: Instant,
}

/// The Closing phase's state (see `closing.rs`).
struct ClosingPhase {
    deadline: Instant,
    /// The write side was shut down.
    shut: bool,
}

/// How a WebSocket session ends (see `closing.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseHow {
    /// Queue a close frame, flush, linger until the peer's end of stream.
    Linger,
    /// Queue a close frame, try one flush, drop the socket.
    BestEffort,
    /// Drop the socket: no close frame (the peer sees 1006).
    Drop,
}

enum Phase {
    Http(Box<HttpPhase>),
    Open(OpenPhase),
    Closing(ClosingPhase),
}

/// A connection served by one loop.
pub(crate) struct Connection<S = Socket> {
    token: Token,
    /// The socket and the bytes it has not taken yet.
    out: Writer<S>,
    /// The peer's address (the per-address socket count is keyed by it).
    pub(crate) peer: SocketAddr,
    /// The tick of this connection's live timer entry (0: none).
    timer: u64,
    phase: Phase,
}

impl<S: Stream> Connection<S> {
    /// A freshly accepted connection, waiting for its request.
    pub(crate) fn new(token: Token, sock: S, peer: SocketAddr, ctx: &LoopCtx) -> Self {
        let config = &ctx.global.config;
        Self {
            token,
            out: Writer::new(sock),
            peer,
            timer: 0,
            phase: Phase::Http(Box::new(HttpPhase {
                peer,
                buf: Vec::new(),
                deadline: ctx.now + config.silent_timeout.min(config.handshake_timeout),
                served: 0,
                spoke: false,
                checked: false,
                chunked: None,
                budget: None,
            })),
        }
    }

    /// The socket (to register it with the loop's `Poll`).
    pub(crate) fn socket_mut(&mut self) -> &mut S {
        &mut self.out.sock
    }

    /// Arms the first timer; call once registered.
    pub(crate) fn start(&mut self, ctx: &mut LoopCtx) {
        if let Phase::Http(h) = &self.phase {
            let at = h.deadline;
            self.arm(at, ctx);
        }
    }

    /// Whether the WebSocket session is open.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// The open session's client.
    fn client(&self) -> Option<&Client> {
        match &self.phase {
            Phase::Open(o) => Some(&o.client),
            _ => None,
        }
    }

    /// Schedules a timer check at `at` unless an earlier one is live.
    fn arm(&mut self, at: Instant, ctx: &mut LoopCtx) {
        let tick = ctx.wheel.tick_for(at);
        if self.timer == 0 || tick < self.timer {
            self.timer = ctx.wheel.schedule(self.token, at);
        }
    }

    /// After a write that left bytes waiting: makes sure the timer looks at
    /// the connection by the write-stall deadline.
    fn arm_write_timeout(&mut self, ctx: &mut LoopCtx) {
        if let Some(since) = self.out.stalled_since() {
            self.arm(since + ctx.global.config.write_timeout, ctx);
        }
    }

    // ----- events -------------------------------------------------------

    /// The socket became readable (or hung up).
    pub(crate) fn on_readable(&mut self, ctx: &mut LoopCtx) -> Outcome {
        match self.phase {
            Phase::Http(_) => self.drive_http(ctx),
            Phase::Open(_) => self.read_ws(ctx),
            Phase::Closing(_) => self.drive_closing(ctx),
        }
    }

    /// The socket became writable.
    pub(crate) fn on_writable(&mut self, ctx: &mut LoopCtx) -> Outcome {
        if self.out.is_empty() {
            return Outcome::Keep;
        }
        match self.phase {
            Phase::Http(_) => self.drive_http(ctx),
            Phase::Open(_) => self.drain(ctx),
            Phase::Closing(_) => self.drive_closing(ctx),
        }
    }

    /// Work queued for the next iteration.
    pub(crate) fn on_again(&mut self, again: Again, ctx: &mut LoopCtx) -> Outcome {
        match again {
            Again::Read => self.on_readable(ctx),
            Again::Drain if self.out.is_empty() && self.is_open() => self.drain(ctx),
            Again::Drain => Outcome::Keep,
        }
    }

    /// The client's transport was called: frames to send, or a close.
    pub(crate) fn on_notified(&mut self, ctx: &mut LoopCtx) -> Outcome {
        let Some(client) = self.client() else {
            return Outcome::Keep;
        };
        if client.is_closed() {
            return self.close_app(ctx);
        }
        if !self.out.is_empty() {
            // Blocked: writable readiness resumes the drain.
            return Outcome::Keep;
        }
        self.drain(ctx)
    }

    /// A timer entry fired: acts on the deadlines that passed and arms the
    /// next one.
    pub(crate) fn on_timer(&mut self, tick: u64, ctx: &mut LoopCtx) -> Outcome {
        if tick != self.timer {
            return Outcome::Keep;
        }
        self.timer = 0;
        let write_timeout = ctx.global.config.write_timeout;
        let stall_at = self.out.stalled_since().map(|s| s + write_timeout);
        if stall_at.is_some_and(|at| ctx.now >= at) {
            tracing::debug!(token = self.token.0, "write timeout");
            return match self.phase {
                Phase::Open(_) => {
                    self.close_ws(1006, "", Ending::WriteTimeout, CloseHow::Drop, ctx)
                }
                _ => Outcome::Done,
            };
        }
        let next = match &self.phase {
            Phase::Http(_) => self.http_deadline(ctx),
            Phase::Open(_) => self.open_deadline(ctx),
            Phase::Closing(c) if ctx.now >= c.deadline => {
                let unsent = !self.out.is_empty();
                tracing::debug!(token = self.token.0, unsent, "closing: linger deadline");
                ControlFlow::Break(Outcome::Done)
            }
            Phase::Closing(c) => ControlFlow::Continue(c.deadline),
        };
        let next = match next {
            ControlFlow::Continue(at) => at,
            ControlFlow::Break(outcome) => return outcome,
        };
        let next = match self.out.stalled_since() {
            Some(s) => next.min(s + write_timeout),
            None => next,
        };
        self.arm(next, ctx);
        Outcome::Keep
    }

    /// Server shutdown: close an open session with `code`, drop the rest.
    pub(crate) fn on_shutdown(&mut self, code: u16, reason: &str, ctx: &mut LoopCtx) -> Outcome {
        match self.phase {
            Phase::Open(_) => self.close_ws(code, reason, Ending::Shutdown, CloseHow::Linger, ctx),
            Phase::Http(_) => Outcome::Done,
            Phase::Closing(_) => Outcome::Keep,
        }
    }

    /// The connection is being dropped: make sure an open client is closed
    /// and its handler told.
    pub(crate) fn on_drop(&mut self, ctx: &mut LoopCtx) {
        if self.is_open() {
            let _ = self.close_ws(1006, "", Ending::Reset, CloseHow::Drop, ctx);
        }
    }

    // ----- writing ------------------------------------------------------

    /// Writes what waits until it is all written or the socket pushes back.
    fn flush(&mut self, ctx: &mut LoopCtx) -> std::io::Result<()> {
        let client = match &self.phase {
            Phase::Open(o) => Some(&o.client),
            _ => None,
        };
        let result = self.out.flush(ctx.now, &ctx.shared.counters, client);
        self.arm_write_timeout(ctx);
        result
    }

    /// Drains the client's outbox onto the socket and acts on how it went
    /// (see `write.rs`).
    fn drain(&mut self, ctx: &mut LoopCtx) -> Outcome {
        let Phase::Open(o) = &self.phase else {
            return Outcome::Keep;
        };
        let drained = self
            .out
            .drain(&o.client, &mut ctx.batch, ctx.now, &ctx.shared.counters);
        self.arm_write_timeout(ctx);
        match drained {
            Drained::Idle | Drained::Blocked => Outcome::Keep,
            Drained::TurnOver => {
                // Still scheduled: continue next iteration, after other
                // connections.
                ctx.again.push((self.token, Again::Drain));
                Outcome::Keep
            }
            Drained::ClientClosed => self.close_app(ctx),
            Drained::Failed => self.close_ws(1006, "", Ending::Reset, CloseHow::Drop, ctx),
        }
    }
}

#[cfg(test)]
impl<S: Stream> Connection<S> {
    /// Whether the session's decoder holds an inflate context of its own.
    fn decoder_has_inflate_context(&self) -> bool {
        matches!(&self.phase, Phase::Open(o) if o.decoder.has_inflate_context())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_slot_stays_small() {
        // The per-connection state the loop keeps inline (buffers are
        // allocated only while needed): 256 bytes, plus 16 for
        // permessage-deflate (the inflate context's pointer in the decoder,
        // the outbound parameters in the writer).
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 272, "Connection is {size} bytes");
    }
}
