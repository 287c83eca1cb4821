//! An event loop: one thread, one `mio::Poll`, the connections it owns for
//! their whole life, and the order in which it serves them.
//!
//! # One iteration
//!
//! 1. Kick the other loops this one queued work for (`wake.rs`), then
//!    `poll` with a timeout: zero if work was deferred, else the time to
//!    the next timer tick (or the shutdown deadline).
//! 2. Socket events: the listener accepts until `WouldBlock`; a connection
//!    is written (if it had pending bytes) then read, until `WouldBlock`
//!    (mio is edge-triggered) or its turn ends (16 reads, 4 write batches),
//!    in which case it is put on the `again` list.
//! 3. Cross-thread work (`wake.rs`): disarm the waker flag, then pop every
//!    queued token and serve it (drain the client's outbox, or close it);
//!    adopt sockets handed over by the acceptor loop.
//! 4. The `again` list from the previous pass.
//! 5. Expired timer entries (`timer.rs`).
//! 6. Shutdown: on request, stop accepting, close every open session with
//!    the given code; the loop ends when its last connection is gone or the
//!    shutdown deadline passes.
//!
//! Only this thread touches the connections and the listener; other threads
//! reach the loop only through its `LoopShared` (tokens and sockets queues,
//! the waker, the stop request, the counters).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::config::AcceptMode;
use crate::connection::{Connection, LoopCtx, Outcome};
use crate::http::HttpResponse;
use crate::limits::SocketRefusal;
use crate::slots::Slots;
use crate::stats::Counters;
use crate::tls::{Socket, TlsStream};
use crate::wake::LoopShared;

/// The waker's token.
pub(crate) const WAKER: Token = Token(usize::MAX);
/// The listener's token.
pub(crate) const LISTENER: Token = Token(usize::MAX - 1);

/// How long accepting pauses after an error such as `EMFILE`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) struct EventLoop {
    pub(crate) index: usize,
    pub(crate) poll: Poll,
    pub(crate) listener: Option<TcpListener>,
    /// Every loop's shared part, for round-robin hand-over.
    pub(crate) peers: Arc<[Arc<LoopShared>]>,
    pub(crate) next_peer: usize,
    pub(crate) conns: Slots<Connection>,
    pub(crate) ctx: LoopCtx,
    pub(crate) stop_deadline: Option<Instant>,
    pub(crate) accept_retry: Option<Instant>,
}

impl EventLoop {
    /// Runs until shutdown.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut due = Vec::new();
        crate::wake::enter_loop(&self.ctx.shared);
        loop {
            // Never block with another loop's kick held back (`wake.rs`).
            crate::wake::flush_deferred();
            let now = Instant::now();
            let mut timeout = self.ctx.wheel.timeout(now);
            if !self.ctx.again.is_empty() || crate::wake::take_local_wake() {
                timeout = Some(Duration::ZERO);
            }
            for at in [self.stop_deadline, self.accept_retry]
                .into_iter()
                .flatten()
            {
                let t = at.saturating_duration_since(now);
                timeout = Some(timeout.map_or(t, |d| d.min(t)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, loop_index = self.index, "poll failed: loop stops");
                break;
            }
            self.ctx.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    LISTENER => self.accept(),
                    token => {
                        let readable =
                            event.is_readable() || event.is_read_closed() || event.is_error();
                        self.conn_event(token, readable, event.is_writable());
                    }
                }
            }
            self.ctx.shared.disarm();
            // Wakes queued from this thread before this point are served
            // now; the flag only matters for ones queued after it.
            let _ = crate::wake::take_local_wake();
            while let Some(token) = self.ctx.shared.pop() {
                self.with_conn(token, |c, ctx| c.on_notified(ctx));
            }
            while let Some((socket, peer)) = self.ctx.shared.pop_incoming() {
                self.adopt(socket, peer);
            }
            for (token, again) in std::mem::take(&mut self.ctx.again) {
                self.with_conn(token, |c, ctx| c.on_again(again, ctx));
            }
            if self.accept_retry.is_some_and(|at| self.ctx.now >= at) {
                self.accept_retry = None;
                self.accept();
            }
            self.ctx.wheel.expire(self.ctx.now, &mut due);
            for (token, tick) in due.drain(..) {
                self.with_conn(token, |c, ctx| c.on_timer(tick, ctx));
            }
            if self.stop_deadline.is_none() {
                if let Some((code, reason)) = self.ctx.shared.stop_requested().cloned() {
                    self.begin_stop(code, &reason);
                }
            }
            if let Some(deadline) = self.stop_deadline {
                if self.conns.is_empty() || self.ctx.now >= deadline {
                    break;
                }
            }
        }
        for token in self.conns.tokens() {
            self.remove(token);
        }
        crate::wake::flush_deferred();
        tracing::debug!(loop_index = self.index, "event loop stopped");
    }

    /// Runs `f` on a live connection and removes it if it is done.
    fn with_conn(
        &mut self,
        token: Token,
        f: impl FnOnce(&mut Connection, &mut LoopCtx) -> Outcome,
    ) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if f(conn, &mut self.ctx) == Outcome::Done {
            self.remove(token);
        }
    }

    fn conn_event(&mut self, token: Token, readable: bool, writable: bool) {
        self.with_conn(token, |c, ctx| {
            let mut out = Outcome::Keep;
            if writable {
                out = c.on_writable(ctx);
            }
            if out == Outcome::Keep && readable {
                out = c.on_readable(ctx);
            }
            out
        });
    }

    fn remove(&mut self, token: Token) {
        let Some(mut conn) = self.conns.remove(token) else {
            return;
        };
        conn.on_drop(&mut self.ctx);
        let _ = self.poll.registry().deregister(conn.socket_mut());
        self.ctx.global.socket_closed(conn.peer.ip());
    }

    /// Accepts until `WouldBlock`.
    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((socket, peer)) => {
                    Counters::add(&self.ctx.shared.counters.accepted, 1);
                    if self.ctx.global.config.accept == AcceptMode::RoundRobin
                        && self.peers.len() > 1
                    {
                        let target = self.next_peer % self.peers.len();
                        self.next_peer = self.next_peer.wrapping_add(1);
                        if target != self.index {
                            self.peers[target].hand_over(socket, peer);
                            continue;
                        }
                    }
                    self.adopt(socket, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: the backlog keeps the socket; retry
                    // soon, since no new readiness edge may come.
                    tracing::warn!(error = %e, "accept failed: backing off");
                    self.accept_retry = Some(self.ctx.now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// Takes ownership of an accepted socket.
    fn adopt(&mut self, socket: TcpStream, peer: SocketAddr) {
        if self.stop_deadline.is_some() {
            return;
        }
        match self.ctx.global.socket_opened(peer.ip()) {
            Ok(()) => {}
            Err(SocketRefusal::Capacity) => {
                Counters::add(&self.ctx.shared.counters.rejected_over_capacity, 1);
                tracing::debug!(%peer, "too many sockets: dropped at accept");
                return;
            }
            Err(SocketRefusal::PerIp) => {
                Counters::add(&self.ctx.shared.counters.rejected_per_ip, 1);
                tracing::debug!(%peer, "max_connections_per_ip reached: 429");
                // Best effort on a fresh socket: its send buffer is empty,
                // so the short answer fits; then the socket is dropped.
                let response =
                    HttpResponse::text(429, "too many connections from your address (limit)\n");
                if self.ctx.global.config.tls.is_some() {
                    // The peer expects a TLS handshake, not an answer.
                    return;
                }
                let mut answer = response.encode_head(false).to_vec();
                answer.extend_from_slice(&response.body);
                let mut socket = socket;
                let _ = io::Write::write(&mut socket, &answer);
                return;
            }
        }
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let socket = match &self.ctx.global.config.tls {
            None => Socket::Plain(socket),
            Some(tls) => match tls.accept() {
                Ok(session) => Socket::Tls(Box::new(TlsStream::new(socket, session))),
                Err(e) => {
                    tracing::warn!(error = %e, "TLS session not created: socket dropped");
                    self.ctx.global.socket_closed(peer.ip());
                    return;
                }
            },
        };
        let ctx = &self.ctx;
        let token = self
            .conns
            .insert_with(|token| Connection::new(token, socket, peer, ctx));
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let registered = self.poll.registry().register(
            conn.socket_mut(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        );
        match registered {
            Ok(()) => conn.start(&mut self.ctx),
            Err(e) => {
                tracing::warn!(error = %e, "register failed");
                self.remove(token);
            }
        }
    }

    /// Stops accepting and starts closing every connection.
    fn begin_stop(&mut self, code: u16, reason: &str) {
        self.stop_deadline = Some(self.ctx.now + self.ctx.global.config.shutdown_timeout);
        self.ctx.stopping = true;
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        while let Some((socket, _)) = self.ctx.shared.pop_incoming() {
            drop(socket);
        }
        for token in self.conns.tokens() {
            self.with_conn(token, |c, ctx| c.on_shutdown(code, reason, ctx));
        }
    }
}
