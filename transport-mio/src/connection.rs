//! One TCP connection, owned by one event loop for its whole life: its
//! socket, its pending writes and its protocol state, from the HTTP request
//! through the WebSocket session to the closing handshake.
//!
//! # Phases
//!
//! - **Http**: the request head (≤ 8 KiB) and body are read into a buffer
//!   that exists only in this phase. A plain request goes to
//!   [`Handler::on_http`]; the response is queued and the connection either
//!   waits for the next request (keep-alive) or closes. An upgrade request is
//!   validated, checked against `max_connections` (503), then decided by
//!   [`Handler::on_upgrade`].
//! - **Open**: a [`Client`] attached to a Hub, an incremental frame
//!   [`Decoder`] (no buffer while idle), the last-inbound and last-ping
//!   times.
//! - **Closing**: the client is gone; what is queued (ending with a close
//!   frame or an HTTP response) is flushed, the write side is shut down and
//!   inbound bytes are discarded until the peer's end of stream or the linger
//!   deadline. Reading to the end avoids the RST that closing a socket with
//!   unread input causes, which could destroy the close frame in flight.
//!
//! # Writing
//!
//! `pending` holds encoded buffers not yet accepted by the socket: empty
//! (and unallocated) unless the socket pushed back. The outbox is drained in
//! batches of at most [`BATCH_FRAMES`] frames or [`BATCH_BYTES`] bytes: each
//! frame's encoded bytes come from [`Frame::encoded_with`] (encoded once for
//! all recipients), and the batch goes out with one vectored write. What the
//! socket does not take stays in `pending` (at most one batch plus a few
//! control frames), and no more frames are popped until it is flushed on
//! writable readiness: the rest waits in the client's outbox. The bytes held
//! in `pending` are reported to the client (`Client::set_unsent`) after
//! every write, so the Hub's byte bound (R34) counts what is queued plus
//! what the socket has not taken: the slow-consumer policy applies only
//! when the socket itself is behind, never because a burst is momentarily
//! queued. While `pending` is non-empty the client stays scheduled
//! (`finish_drain` is not called), so no wake-up is needed to resume. A
//! socket that takes no bytes for `write_timeout` is dropped.
//!
//! # Closing a WebSocket
//!
//! Every end of the Open phase goes through [`Connection::close_ws`]: count
//! the ending and its code, release the connection slot, move what the
//! client's outbox holds into `pending` and queue the close frame behind it
//! (so what was produced before a protocol error or the peer's close, such
//! as the echo of a message that came in the same read, goes out first),
//! close the client (which removes it from its channels), call
//! [`Handler::on_close`] once, then either linger (a close frame was
//! queued) or drop the socket (reset, write timeout, idle timeout after a
//! best-effort close frame). For a client the application or the Hub
//! closed, nothing is taken: `pop_frame` yields nothing once a client is
//! closed (core's rule: nothing is delivered after a close).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use mio::net::TcpStream;
use mio::Token;
use realtime::Client;

use crate::codec::{self, Decoder, Flow, Inbound, Violation};
use crate::handler::{Handler, Upgrade};
use crate::handshake;
use crate::http::{self, Head, HttpError, HttpResponse};
use crate::limits::{BodyBudget, Global};
use crate::stats::{Counters, Ending};
use crate::timer::Wheel;
use crate::wake::{ConnTransport, LoopShared};

/// Most frames popped from an outbox per write.
pub(crate) const BATCH_FRAMES: usize = 64;
/// Most bytes popped from an outbox per write (a batch may exceed it by one
/// frame).
pub(crate) const BATCH_BYTES: usize = 256 * 1024;
/// Batches written per wake-up before yielding to other connections.
const BATCHES_PER_TURN: usize = 4;
/// Reads per readiness event before yielding to other connections.
const READS_PER_TURN: usize = 16;
/// Buffers per vectored write.
const IOV: usize = 64;
/// Pongs are dropped when this many buffers already wait in `pending`.
const MAX_PENDING: usize = BATCH_FRAMES + 64;
/// Longest wait for the peer's end of stream after our close.
const LINGER: Duration = Duration::from_secs(2);

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

impl LoopCtx {
    fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    fn linger(&self) -> Duration {
        self.global.config.write_timeout.min(LINGER)
    }
}

/// Runs user code; a panic becomes `None` (and a log line).
fn guarded<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(_) => {
            tracing::error!(handler = what, "handler panicked");
            None
        }
    }
}

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
    chunked: Option<http::Chunked>,
    /// The current request's body bytes held against `max_http_buffer`;
    /// released when the request is served or the phase ends.
    budget: Option<BodyBudget>,
}

struct OpenPhase {
    client: Client,
    decoder: Decoder,
    last_in: Instant,
    last_ping: Instant,
}

struct ClosingPhase {
    deadline: Instant,
    /// The write side was shut down.
    shut: bool,
}

enum Phase {
    Http(Box<HttpPhase>),
    Open(OpenPhase),
    Closing(ClosingPhase),
}

/// A connection served by one loop.
pub(crate) struct Connection {
    token: Token,
    pub(crate) sock: TcpStream,
    /// The peer's address (the per-address socket count is keyed by it).
    pub(crate) peer: SocketAddr,
    pending: VecDeque<Bytes>,
    /// Since when the socket has taken no bytes while `pending` waits.
    stalled_since: Option<Instant>,
    /// The tick of this connection's live timer entry (0: none).
    timer: u64,
    phase: Phase,
}

impl Connection {
    /// A freshly accepted connection, waiting for its request.
    pub(crate) fn new(token: Token, sock: TcpStream, peer: SocketAddr, ctx: &LoopCtx) -> Self {
        let config = &ctx.global.config;
        Self {
            token,
            sock,
            peer,
            pending: VecDeque::new(),
            stalled_since: None,
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

    /// Schedules a timer check at `at` unless an earlier one is live.
    fn arm(&mut self, at: Instant, ctx: &mut LoopCtx) {
        let tick = ctx.wheel.tick_for(at);
        if self.timer == 0 || tick < self.timer {
            self.timer = ctx.wheel.schedule(self.token, at);
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
        if self.pending.is_empty() {
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
            Again::Drain if self.pending.is_empty() && self.is_open() => self.drain(ctx),
            Again::Drain => Outcome::Keep,
        }
    }

    /// The client's transport was called: frames to send, or a close.
    pub(crate) fn on_notified(&mut self, ctx: &mut LoopCtx) -> Outcome {
        let Phase::Open(o) = &self.phase else {
            return Outcome::Keep;
        };
        if o.client.is_closed() {
            let client = o.client.clone();
            // The Hub records its reasons before it shuts a client (1008
            // "slow consumer" on overflow, 1001 on Hub close); an
            // application's plain `close()` has none: a normal closure.
            let (code, reason) = match client.close_reason() {
                Some((code, reason)) => (code, reason.to_owned()),
                None => (1000, String::new()),
            };
            return self.close_ws(code, &reason, Ending::AppClose, CloseHow::Linger, ctx);
        }
        if !self.pending.is_empty() {
            // Blocked: writable readiness resumes the drain.
            return Outcome::Keep;
        }
        self.drain(ctx)
    }

    /// A timer entry fired.
    pub(crate) fn on_timer(&mut self, tick: u64, ctx: &mut LoopCtx) -> Outcome {
        if tick != self.timer {
            return Outcome::Keep;
        }
        self.timer = 0;
        let now = ctx.now;
        let global = Arc::clone(&ctx.global);
        let config = &global.config;
        let stall_at = self.stalled_since.map(|s| s + config.write_timeout);
        if stall_at.is_some_and(|at| now >= at) {
            tracing::debug!(token = self.token.0, "write timeout");
            return match self.phase {
                Phase::Open(_) => {
                    self.close_ws(1006, "", Ending::WriteTimeout, CloseHow::Drop, ctx)
                }
                _ => Outcome::Done,
            };
        }
        let next = match &mut self.phase {
            Phase::Http(h) => {
                if now >= h.deadline {
                    if !h.spoke {
                        Counters::add(&ctx.shared.counters.silent_timeouts, 1);
                        tracing::debug!(peer = %h.peer, "silent socket: dropped");
                    } else if !h.buf.is_empty() || h.served == 0 {
                        Counters::add(&ctx.shared.counters.handshake_timeouts, 1);
                        tracing::debug!(peer = %h.peer, "handshake timeout");
                    }
                    return Outcome::Done;
                }
                h.deadline
            }
            Phase::Closing(c) => {
                if now >= c.deadline {
                    return Outcome::Done;
                }
                c.deadline
            }
            Phase::Open(o) => {
                let idle_at = o.last_in + config.idle_timeout;
                if now >= idle_at {
                    tracing::debug!(client = o.client.id(), "idle timeout");
                    return self.close_ws(
                        1001,
                        "idle timeout",
                        Ending::Idle,
                        CloseHow::BestEffort,
                        ctx,
                    );
                }
                let quiet_since = o.last_in.max(o.last_ping);
                let mut ping_at = quiet_since + config.ping_interval;
                if now >= ping_at {
                    o.last_ping = now;
                    ping_at = now + config.ping_interval;
                    Counters::add(&ctx.shared.counters.pings_sent, 1);
                    self.pending.push_back(codec::encode_ping(b""));
                    if self.flush(ctx).is_err() {
                        return self.close_ws(1006, "", Ending::Reset, CloseHow::Drop, ctx);
                    }
                    if self.pending.is_empty() {
                        // As in `after_ws`: a drain that waited for the
                        // socket resumes (a no-op when none waited).
                        ctx.again.push((self.token, Again::Drain));
                    }
                }
                idle_at.min(ping_at)
            }
        };
        let next = match self.stalled_since {
            Some(s) => next.min(s + config.write_timeout),
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

    /// Writes `pending` until it is empty or the socket pushes back.
    fn flush(&mut self, ctx: &mut LoopCtx) -> io::Result<()> {
        let mut queue = std::mem::take(&mut self.pending);
        let result = self.write_queue(&mut queue, ctx);
        self.pending = queue;
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            // Free the write buffer while there is nothing to write.
            self.pending = VecDeque::new();
        }
        self.report_unsent();
        result
    }

    /// Tells the client's outbox how many bytes wait here for the socket:
    /// they count toward its byte bound with what is queued (R34).
    fn report_unsent(&self) {
        if let Phase::Open(o) = &self.phase {
            o.client
                .set_unsent(self.pending.iter().map(Bytes::len).sum());
        }
    }

    /// Writes `queue` with vectored writes; tracks stalls and counts bytes.
    fn write_queue(&mut self, queue: &mut VecDeque<Bytes>, ctx: &mut LoopCtx) -> io::Result<()> {
        let mut progress = false;
        let result = loop {
            if queue.is_empty() {
                break Ok(());
            }
            let mut iov = [IoSlice::new(&[]); IOV];
            let mut n = 0;
            for (slot, buf) in iov.iter_mut().zip(queue.iter()) {
                *slot = IoSlice::new(buf);
                n += 1;
            }
            match self.sock.write_vectored(&iov[..n]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(mut written) => {
                    progress = true;
                    Counters::add(&ctx.counters().writes, 1);
                    Counters::add(&ctx.counters().bytes_out, written as u64);
                    while written > 0 {
                        let Some(front) = queue.front_mut() else {
                            break;
                        };
                        if front.len() <= written {
                            written -= front.len();
                            queue.pop_front();
                        } else {
                            front.advance(written);
                            written = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if queue.is_empty() {
            self.stalled_since = None;
        } else if progress || self.stalled_since.is_none() {
            self.stalled_since = Some(ctx.now);
            let at = ctx.now + ctx.global.config.write_timeout;
            self.arm(at, ctx);
        }
        result
    }

    /// Drains the client's outbox onto the socket (see the module docs).
    fn drain(&mut self, ctx: &mut LoopCtx) -> Outcome {
        let Phase::Open(o) = &self.phase else {
            return Outcome::Keep;
        };
        let client = o.client.clone();
        for _ in 0..BATCHES_PER_TURN {
            if !self.pending.is_empty() {
                if self.flush(ctx).is_err() {
                    return self.close_ws(1006, "", Ending::Reset, CloseHow::Drop, ctx);
                }
                if !self.pending.is_empty() {
                    return Outcome::Keep;
                }
            }
            let mut batch = std::mem::take(&mut ctx.batch);
            let mut bytes = 0;
            while batch.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
                let Some(frame) = client.pop_frame() else {
                    break;
                };
                let wire = frame.encoded_with(codec::encode_frame).clone();
                bytes += wire.len();
                batch.push_back(wire);
            }
            if batch.is_empty() {
                ctx.batch = batch;
                if client.is_closed() {
                    return self.on_notified(ctx);
                }
                if client.finish_drain() {
                    continue;
                }
                return Outcome::Keep;
            }
            Counters::add(&ctx.counters().frames_out, batch.len() as u64);
            let result = self.write_queue(&mut batch, ctx);
            if batch.is_empty() {
                ctx.batch = batch;
            } else {
                // The socket pushed back: the connection keeps the rest (and
                // the batch's allocation); the loop gets a fresh batch.
                self.pending = batch;
                self.report_unsent();
            }
            if result.is_err() {
                return self.close_ws(1006, "", Ending::Reset, CloseHow::Drop, ctx);
            }
            if !self.pending.is_empty() {
                return Outcome::Keep;
            }
        }
        // Still scheduled: continue next iteration, after other connections.
        ctx.again.push((self.token, Again::Drain));
        Outcome::Keep
    }

    // ----- HTTP ---------------------------------------------------------

    /// Reads and serves requests until the socket has nothing more, a
    /// response waits for the socket, or the phase changes.
    fn drive_http(&mut self, ctx: &mut LoopCtx) -> Outcome {
        let mut reads = 0;
        loop {
            if !matches!(self.phase, Phase::Http(_)) {
                return self.after_http(ctx);
            }
            if !self.pending.is_empty() {
                if self.flush(ctx).is_err() {
                    return Outcome::Done;
                }
                if !self.pending.is_empty() {
                    // One response at a time: resume on writable readiness.
                    return Outcome::Keep;
                }
            }
            let Phase::Http(h) = &mut self.phase else {
                return self.after_http(ctx);
            };
            if !h.buf.is_empty() {
                match http::parse_head(&h.buf, h.peer, ctx.global.config.max_http_body) {
                    Err(e) => {
                        self.fail(e, ctx);
                        continue;
                    }
                    Ok(Some(head)) => {
                        let total = head.len + head.body_len;
                        if head.upgrade {
                            self.upgrade(head, ctx);
                            continue;
                        }
                        if !h.checked {
                            // Before any body byte is buffered on purpose.
                            h.checked = true;
                            let handler = &ctx.handler;
                            let early =
                                guarded("on_http_head", || handler.on_http_head(&head.request));
                            if let Some(response) = early.flatten() {
                                Counters::add(&ctx.shared.counters.refused_before_body, 1);
                                Counters::add(&ctx.shared.counters.http_requests, 1);
                                h.buf = Vec::new();
                                self.respond(&response, false, head.request.method == "HEAD", ctx);
                                continue;
                            }
                        }
                        let held = if head.chunked {
                            h.buf.len() - head.len
                        } else {
                            head.body_len
                        };
                        let budget = h.budget.get_or_insert_with(|| ctx.global.body_budget());
                        if !budget.grow_to(held) {
                            Counters::add(&ctx.shared.counters.body_budget_refusals, 1);
                            tracing::debug!(peer = %h.peer, held, "max_http_buffer in use: 503");
                            h.buf = Vec::new();
                            let response = HttpResponse::text(503, "server busy: request bodies in flight exceed max_http_buffer; retry\n")
                                .header("Retry-After", "1");
                            self.respond(&response, false, head.request.method == "HEAD", ctx);
                            continue;
                        }
                        if head.chunked {
                            let max = ctx.global.config.max_http_body;
                            let chunked = h.chunked.get_or_insert_with(Default::default);
                            match chunked.advance(&h.buf[head.len..], max) {
                                Err(e) => {
                                    self.fail(e, ctx);
                                    continue;
                                }
                                Ok(Some(used)) => {
                                    let body = std::mem::take(&mut chunked.body);
                                    let used = head.len + used;
                                    self.serve(head, Bytes::from(body), used, ctx);
                                    continue;
                                }
                                Ok(None) => {}
                            }
                        } else if h.buf.len() >= total {
                            let body = Bytes::copy_from_slice(&h.buf[head.len..total]);
                            self.serve(head, body, total, ctx);
                            continue;
                        }
                    }
                    Ok(None) => {}
                }
            }
            if reads == READS_PER_TURN {
                ctx.again.push((self.token, Again::Read));
                return Outcome::Keep;
            }
            reads += 1;
            let Phase::Http(h) = &mut self.phase else {
                continue;
            };
            match self.sock.read(&mut ctx.read_buf) {
                Ok(0) => return Outcome::Done,
                Ok(n) => {
                    Counters::add(&ctx.shared.counters.bytes_in, n as u64);
                    h.buf.extend_from_slice(&ctx.read_buf[..n]);
                    if !h.spoke {
                        // The silent-socket deadline gives way to the
                        // handshake timeout once the peer speaks.
                        h.spoke = true;
                        h.deadline = ctx.now + ctx.global.config.handshake_timeout;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Outcome::Done,
            }
        }
    }

    /// Continues in the phase an HTTP request led to.
    fn after_http(&mut self, ctx: &mut LoopCtx) -> Outcome {
        match self.phase {
            Phase::Http(_) => Outcome::Keep,
            Phase::Open(_) => {
                // Bytes may have arrived behind the upgrade request; edge
                // triggering will not tell again.
                if self.flush(ctx).is_err() {
                    return self.close_ws(1006, "", Ending::Reset, CloseHow::Drop, ctx);
                }
                self.read_ws(ctx)
            }
            Phase::Closing(_) => self.drive_closing(ctx),
        }
    }

    /// Answers a request that cannot be served, and closes.
    fn fail(&mut self, e: HttpError, ctx: &mut LoopCtx) {
        Counters::add(&ctx.shared.counters.handshake_failures, 1);
        let mut head_only = false;
        if let Phase::Http(h) = &self.phase {
            tracing::debug!(peer = %h.peer, status = e.status, what = e.what, "bad request");
            // The request may not have parsed; its method is its first token.
            head_only = http::is_head_request(&h.buf);
        }
        self.respond(&e.response(), false, head_only, ctx);
    }

    /// Queues a response; without keep-alive the connection starts closing.
    /// The answer to a `HEAD` request (`head_only`) is the head alone: its
    /// `Content-Length` is that of the body it would carry, and no body
    /// byte is written, so a keep-alive peer reads the next response where
    /// it expects it.
    fn respond(
        &mut self,
        response: &HttpResponse,
        keep_alive: bool,
        head_only: bool,
        ctx: &mut LoopCtx,
    ) {
        let keep_alive = keep_alive && !ctx.stopping;
        self.pending.push_back(response.encode_head(keep_alive));
        if !response.body.is_empty() && !head_only {
            self.pending.push_back(response.body.clone());
        }
        match &mut self.phase {
            Phase::Http(h) if keep_alive => {
                h.served += 1;
                h.deadline = ctx.now + ctx.global.config.handshake_timeout;
            }
            _ => self.start_closing(ctx),
        }
    }

    /// Enters the Closing phase (the queued bytes go out first).
    fn start_closing(&mut self, ctx: &mut LoopCtx) {
        let deadline = ctx.now + ctx.linger();
        self.phase = Phase::Closing(ClosingPhase {
            deadline,
            shut: false,
        });
        self.arm(deadline, ctx);
    }

    /// Serves a plain request whose body is complete; the request took
    /// `used` bytes of the buffer.
    fn serve(&mut self, head: Head, body: Bytes, used: usize, ctx: &mut LoopCtx) {
        let Phase::Http(h) = &mut self.phase else {
            return;
        };
        h.buf.drain(..used);
        if h.buf.is_empty() {
            h.buf = Vec::new();
        }
        // The next request on this connection starts afresh.
        h.checked = false;
        h.chunked = None;
        h.budget = None;
        Counters::add(&ctx.shared.counters.http_requests, 1);
        let handler = &ctx.handler;
        let response = guarded("on_http", || handler.on_http(&head.request, body))
            .unwrap_or_else(|| HttpResponse::text(500, "internal error\n"));
        let head_only = head.request.method == "HEAD";
        self.respond(&response, head.keep_alive, head_only, ctx);
    }

    /// Handles a WebSocket upgrade request.
    fn upgrade(&mut self, head: Head, ctx: &mut LoopCtx) {
        let accept = match handshake::validate(&head.request) {
            Ok(accept) => accept,
            Err(e) => return self.fail(e, ctx),
        };
        if ctx.stopping {
            return self.respond(
                &HttpResponse::text(503, "shutting down\n"),
                false,
                false,
                ctx,
            );
        }
        if !ctx.global.reserve() {
            Counters::add(&ctx.shared.counters.rejected_over_capacity, 1);
            tracing::debug!(peer = %head.request.peer, "over capacity: 503");
            let response =
                HttpResponse::text(503, "server at capacity\n").header("Retry-After", "5");
            return self.respond(&response, false, false, ctx);
        }
        let handler = &ctx.handler;
        let decision = guarded("on_upgrade", || handler.on_upgrade(&head.request));
        let (hub, auth) = match decision {
            Some(Upgrade::Accept { hub, auth }) => (hub, auth),
            Some(Upgrade::Reject(response)) => {
                ctx.global.release();
                Counters::add(&ctx.shared.counters.refused, 1);
                return self.respond(&response, false, false, ctx);
            }
            Some(Upgrade::Refuse {
                frames,
                code,
                reason,
            }) => {
                ctx.global.release();
                Counters::add(&ctx.shared.counters.refused, 1);
                self.pending
                    .push_back(handshake::switching_protocols(&accept));
                for frame in &frames {
                    self.pending.push_back(codec::encode_text(frame));
                }
                self.pending.push_back(codec::encode_close(code, &reason));
                return self.start_closing(ctx);
            }
            None => {
                ctx.global.release();
                return self.respond(
                    &HttpResponse::text(500, "internal error\n"),
                    false,
                    false,
                    ctx,
                );
            }
        };
        let transport = Arc::new(ConnTransport {
            token: self.token,
            shared: Arc::clone(&ctx.shared),
        });
        let client = match hub.attach(transport, auth) {
            Ok(client) => client,
            Err(e) => {
                ctx.global.release();
                tracing::debug!(error = %e, "attach failed: 503");
                return self.respond(&HttpResponse::text(503, "unavailable\n"), false, false, ctx);
            }
        };
        let Phase::Http(h) = &mut self.phase else {
            return;
        };
        let leftover = h.buf.split_off(head.len.min(h.buf.len()));
        Counters::add(&ctx.shared.counters.upgrades, 1);
        Counters::add(&ctx.shared.counters.connections, 1);
        self.phase = Phase::Open(OpenPhase {
            client: client.clone(),
            decoder: Decoder::default(),
            last_in: ctx.now,
            last_ping: ctx.now,
        });
        // on_open runs before the 101 is written: once the peer sees the
        // handshake complete, whatever on_open did (subscriptions) is done.
        let handler = &ctx.handler;
        let opened = guarded("on_open", || handler.on_open(&client));
        self.pending
            .push_back(handshake::switching_protocols(&accept));
        if opened.is_none() {
            let _ = self.close_ws(
                1011,
                "internal error",
                Ending::HandlerPanic,
                CloseHow::Linger,
                ctx,
            );
            return;
        }
        let config = &ctx.global.config;
        let at = ctx.now + config.ping_interval.min(config.idle_timeout);
        self.arm(at, ctx);
        if !leftover.is_empty() {
            let _ = self.ws_bytes(&leftover, ctx);
        }
    }

    // ----- WebSocket ----------------------------------------------------

    /// Reads frames until the socket has nothing more (or the turn ends).
    fn read_ws(&mut self, ctx: &mut LoopCtx) -> Outcome {
        for _ in 0..READS_PER_TURN {
            if !self.is_open() {
                return self.after_ws(ctx);
            }
            let mut buf = std::mem::take(&mut ctx.read_buf);
            let read = self.sock.read(&mut buf);
            let outcome = match read {
                Ok(0) => self.close_ws(1006, "", Ending::Reset, CloseHow::Drop, ctx),
                Ok(n) => {
                    Counters::add(&ctx.counters().bytes_in, n as u64);
                    self.ws_bytes(&buf[..n], ctx)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ctx.read_buf = buf;
                    return self.after_ws(ctx);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Outcome::Keep,
                Err(_) => self.close_ws(1006, "", Ending::Reset, CloseHow::Drop, ctx),
            };
            ctx.read_buf = buf;
            if outcome == Outcome::Done {
                return Outcome::Done;
            }
        }
        ctx.again.push((self.token, Again::Read));
        self.after_ws(ctx)
    }

    /// After reading: flush pongs, or go on closing.
    fn after_ws(&mut self, ctx: &mut LoopCtx) -> Outcome {
        match self.phase {
            Phase::Open(_) => {
                if self.pending.is_empty() {
                    return Outcome::Keep;
                }
                // Not a bare flush: if the outbox drain was waiting for the
                // socket (`pending` held the rest of a batch), emptying
                // `pending` here consumes the writable readiness it waited
                // for, and no wake comes for a scheduled client: the drain
                // must go on now, or the connection stalls for good.
                self.drain(ctx)
            }
            Phase::Closing(_) => self.drive_closing(ctx),
            Phase::Http(_) => Outcome::Keep,
        }
    }

    /// Feeds inbound bytes to the decoder and acts on what it yields.
    fn ws_bytes(&mut self, data: &[u8], ctx: &mut LoopCtx) -> Outcome {
        let Phase::Open(o) = &mut self.phase else {
            return Outcome::Keep;
        };
        o.last_in = ctx.now;
        let mut decoder = std::mem::take(&mut o.decoder);
        let max = ctx.global.config.max_message_size;
        let mut outcome = Outcome::Keep;
        let result = decoder.feed(data, max, &mut |unit| {
            let (flow, out) = self.on_unit(unit, ctx);
            outcome = out;
            flow
        });
        if let Phase::Open(o) = &mut self.phase {
            o.decoder = decoder;
        }
        match result {
            Ok(()) => outcome,
            Err(v) => self.violation(v, ctx),
        }
    }

    fn violation(&mut self, v: Violation, ctx: &mut LoopCtx) -> Outcome {
        if let Phase::Open(o) = &self.phase {
            tracing::debug!(client = o.client.id(), violation = %v, "closing on bad input");
        }
        self.close_ws(
            v.close_code(),
            v.reason(),
            Ending::Violation,
            CloseHow::Linger,
            ctx,
        )
    }

    /// Acts on one inbound unit.
    fn on_unit(&mut self, unit: Inbound, ctx: &mut LoopCtx) -> (Flow, Outcome) {
        let Phase::Open(o) = &self.phase else {
            return (Flow::Stop, Outcome::Keep);
        };
        match unit {
            Inbound::Message(kind, data) => {
                Counters::add(&ctx.counters().frames_in, 1);
                let client = o.client.clone();
                let handler = &ctx.handler;
                if guarded("on_message", || handler.on_message(&client, kind, data)).is_none() {
                    let out = self.close_ws(
                        1011,
                        "internal error",
                        Ending::HandlerPanic,
                        CloseHow::Linger,
                        ctx,
                    );
                    return (Flow::Stop, out);
                }
                if client.is_closed() {
                    // Closed by the handler: stop dispatching; the queued
                    // notification (or this call) finishes the close.
                    return (Flow::Stop, self.on_notified(ctx));
                }
                (Flow::Continue, Outcome::Keep)
            }
            Inbound::Ping(payload) => {
                if let Some(out) = self.activity(ctx) {
                    return (Flow::Stop, out);
                }
                if self.pending.len() < MAX_PENDING {
                    self.pending.push_back(codec::encode_pong(&payload));
                }
                (Flow::Continue, Outcome::Keep)
            }
            Inbound::Pong | Inbound::Fragment => match self.activity(ctx) {
                Some(out) => (Flow::Stop, out),
                None => (Flow::Continue, Outcome::Keep),
            },
            Inbound::Close(close) => {
                let code = close.as_ref().map_or(1000, |(code, _)| *code);
                let out = self.close_ws(code, "", Ending::PeerClose, CloseHow::Linger, ctx);
                (Flow::Stop, out)
            }
        }
    }

    /// A frame that does not complete a message arrived: tells the handler
    /// ([`Handler::on_activity`]). Returns the outcome if the connection
    /// ended (the handler panicked).
    fn activity(&mut self, ctx: &mut LoopCtx) -> Option<Outcome> {
        let Phase::Open(o) = &self.phase else {
            return None;
        };
        let handler = &ctx.handler;
        let client = &o.client;
        if guarded("on_activity", || handler.on_activity(client)).is_some() {
            return None;
        }
        Some(self.close_ws(
            1011,
            "internal error",
            Ending::HandlerPanic,
            CloseHow::Linger,
            ctx,
        ))
    }

    /// Moves what the client's outbox holds now into `pending`, in order,
    /// before a close frame is queued: replies produced before a protocol
    /// error or a close (echoes, acknowledgements) are written before our
    /// close frame (Autobahn 3.*, 4.*, 5.15, 7.1.6). Must run before the
    /// client is closed: `pop_frame` returns nothing after that. Bounded by
    /// the frames queued when it starts (what a concurrent broadcaster adds
    /// meanwhile stays behind), so by the client's byte bound.
    fn take_queued(&mut self, client: &Client, ctx: &LoopCtx) {
        let queued = client.pending();
        let mut taken = 0u64;
        for _ in 0..queued {
            let Some(frame) = client.pop_frame() else {
                break;
            };
            self.pending
                .push_back(frame.encoded_with(codec::encode_frame).clone());
            taken += 1;
        }
        Counters::add(&ctx.counters().frames_out, taken);
    }

    /// Ends the WebSocket session (see the module docs).
    fn close_ws(
        &mut self,
        code: u16,
        reason: &str,
        ending: Ending,
        how: CloseHow,
        ctx: &mut LoopCtx,
    ) -> Outcome {
        let Phase::Open(_) = self.phase else {
            return Outcome::Keep;
        };
        let deadline = ctx.now + ctx.linger();
        let Phase::Open(open) = std::mem::replace(
            &mut self.phase,
            Phase::Closing(ClosingPhase {
                deadline,
                shut: false,
            }),
        ) else {
            return Outcome::Keep;
        };
        let client = open.client;
        let counters = ctx.counters();
        counters.ended(ending, code);
        counters
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        ctx.global.release();
        tracing::debug!(client = client.id(), code, ?ending, "websocket closed");
        if how != CloseHow::Drop {
            // After what is already encoded (at most one batch, pongs) and
            // what the outbox held.
            self.take_queued(&client, ctx);
            self.pending.push_back(codec::encode_close(code, reason));
        }
        client.close();
        let handler = &ctx.handler;
        let _ = guarded("on_close", || handler.on_close(&client));
        drop(client);
        match how {
            CloseHow::Drop => Outcome::Done,
            CloseHow::BestEffort => {
                let _ = self.flush(ctx);
                Outcome::Done
            }
            CloseHow::Linger => {
                self.arm(deadline, ctx);
                self.drive_closing(ctx)
            }
        }
    }

    /// Flushes, shuts the write side, discards input until end of stream.
    fn drive_closing(&mut self, ctx: &mut LoopCtx) -> Outcome {
        if self.flush(ctx).is_err() {
            return Outcome::Done;
        }
        let Phase::Closing(c) = &mut self.phase else {
            return Outcome::Keep;
        };
        if self.pending.is_empty() && !c.shut {
            c.shut = true;
            let _ = self.sock.shutdown(Shutdown::Write);
        }
        let shut = c.shut;
        for _ in 0..READS_PER_TURN {
            match self.sock.read(&mut ctx.read_buf) {
                Ok(0) if shut => return Outcome::Done,
                // The peer is done sending; we still have bytes to send.
                Ok(0) => return Outcome::Keep,
                Ok(n) => Counters::add(&ctx.counters().bytes_in, n as u64),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Outcome::Done,
            }
        }
        ctx.again.push((self.token, Again::Read));
        Outcome::Keep
    }
}

/// How a WebSocket session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseHow {
    /// Queue a close frame, flush, linger until the peer's end of stream.
    Linger,
    /// Queue a close frame, try one flush, drop the socket.
    BestEffort,
    /// Drop the socket: no close frame (the peer sees 1006).
    Drop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_slot_stays_small() {
        // The per-connection state the loop keeps inline (buffers are
        // allocated only while needed).
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 256, "Connection is {size} bytes");
    }
}
