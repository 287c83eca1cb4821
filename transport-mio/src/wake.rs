//! Cross-thread wake-ups of an event loop: the per-loop notification queue,
//! the "waker armed" flag and the [`realtime::Transport`] of a connection.
//!
//! # The protocol
//!
//! Two levels, each with at most one wake-up in flight:
//!
//! 1. **Per client** (core's `outbox.rs`): a producer that makes a client's
//!    outbox non-empty while it is not scheduled calls [`Transport::wake`]
//!    once; no further wake comes for that client until the loop calls
//!    `Client::finish_drain` after emptying the outbox.
//! 2. **Per loop** (here): `notify(token)` pushes the connection's token on
//!    the loop's queue (a `SegQueue`), then `armed.swap(true, AcqRel)`; only
//!    the thread that turned `armed` from false to true calls the
//!    `mio::Waker` (one eventfd write per batch, whatever the number of
//!    clients or frames in it).
//!
//! The loop, once per iteration after `poll` returns: `armed.swap(false,
//! AcqRel)`, then pops the queue until it is empty and serves each token.
//!
//! No lost wake-up: every write to `armed` is a read-modify-write, so they
//! form one modification order, and each RMW continues the release sequence
//! of the ones before it. Take a producer P whose push precedes its swap S_P.
//! If the loop's clearing swap C comes after S_P in that order, C reads a
//! value from S_P's release sequence and so synchronises with S_P: P's push
//! happens before C, hence before the pops that follow C, which see the
//! token. If C comes before S_P, S_P reads either C's `false` (then P wakes
//! the loop, whose next iteration clears and pops) or `true` from a later
//! producer Q's swap, which itself read `false` or a later value, and
//! so on: the first RMW after C read `false` and woke the loop, and the
//! clearing swap of that next iteration comes after S_P, which is the first
//! case. Spurious wake-ups (a wake whose token was already served) only cost
//! an empty pass.
//!
//! The queue holds at most two entries per connection at a time (one wake,
//! one close), so it is bounded by the connection count. Tokens carry a
//! generation, so a stale token of a closed connection is ignored.
//!
//! [`Transport::closed`] uses the same path: the loop sees the client closed
//! when it serves the token, and closes the socket. Neither method blocks or
//! calls back into the Hub, as the `Transport` contract requires.
//!
//! # Wake-ups from the loop's own thread
//!
//! Replies to a client's requests (subscription acknowledgements, rosters,
//! pongs, errors) are produced on the loop that owns the connection, while
//! it dispatches the request. Such a wake needs no eventfd write: the loop
//! is awake. [`ConnTransport`] recognises it (a thread-local names the
//! loop this thread runs), pushes the token on the loop's queue without
//! touching `armed` and sets a thread-local flag; the loop serves its
//! queue after the readiness events of the same iteration, and polls with
//! a zero timeout if the flag was set later in the iteration. So a reply is
//! written in the same loop turn that produced it, with no syscall and no
//! cross-thread hand-off.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_queue::SegQueue;
use mio::{net::TcpStream, Token, Waker};
use realtime::Transport;

use crate::stats::Counters;

thread_local! {
    /// The loop this thread runs, if it is an event-loop thread (compared,
    /// never dereferenced).
    static CURRENT_LOOP: Cell<*const LoopShared> = const { Cell::new(std::ptr::null()) };
    /// A token was queued from this thread since the loop last looked.
    static LOCAL_WAKE: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as the one running `shared`'s loop.
pub(crate) fn enter_loop(shared: &Arc<LoopShared>) {
    CURRENT_LOOP.with(|c| c.set(Arc::as_ptr(shared)));
}

/// Whether a token was queued from the loop's own thread since the last
/// call (the loop must not block in `poll` then).
pub(crate) fn take_local_wake() -> bool {
    LOCAL_WAKE.with(|w| w.replace(false))
}

/// What other threads share with one event loop.
pub(crate) struct LoopShared {
    /// Tokens of connections with work (outbox or close).
    queue: SegQueue<Token>,
    /// Sockets handed over by the acceptor loop (`AcceptMode::RoundRobin`).
    incoming: SegQueue<(TcpStream, std::net::SocketAddr)>,
    /// True while a wake-up of the loop is pending.
    armed: AtomicBool,
    waker: Waker,
    /// Set by `Server::shutdown`: the close code and reason to send.
    stop: std::sync::OnceLock<(u16, String)>,
    /// This loop's counters.
    pub(crate) counters: Counters,
}

impl LoopShared {
    pub(crate) fn new(waker: Waker) -> Self {
        Self {
            queue: SegQueue::new(),
            incoming: SegQueue::new(),
            armed: AtomicBool::new(false),
            waker,
            stop: std::sync::OnceLock::new(),
            counters: Counters::default(),
        }
    }

    /// Queues `token` and wakes the loop unless a wake-up is pending, or
    /// unless the caller is the loop's own thread (module docs).
    pub(crate) fn notify(&self, token: Token) {
        self.queue.push(token);
        if CURRENT_LOOP.with(|c| std::ptr::eq(c.get(), self)) {
            Counters::add(&self.counters.local_wakes, 1);
            LOCAL_WAKE.with(|w| w.set(true));
            return;
        }
        self.kick();
    }

    /// Hands an accepted socket to this loop.
    pub(crate) fn hand_over(&self, socket: TcpStream, peer: std::net::SocketAddr) {
        self.incoming.push((socket, peer));
        self.kick();
    }

    /// Asks the loop to shut down, closing clients with `code`.
    pub(crate) fn stop(&self, code: u16, reason: &str) {
        let _ = self.stop.set((code, reason.to_owned()));
        self.wake_now();
    }

    /// The shutdown request, if any.
    pub(crate) fn stop_requested(&self) -> Option<&(u16, String)> {
        self.stop.get()
    }

    fn kick(&self) {
        // AcqRel: publishes the push above to the loop's clearing swap
        // (release), and orders this RMW in `armed`'s modification order.
        if !self.armed.swap(true, Ordering::AcqRel) {
            self.wake_now();
        }
    }

    fn wake_now(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::error!(error = %e, "cannot wake event loop");
        }
    }

    /// Loop side: re-arms the waker; call before [`Self::pop`]-ing.
    pub(crate) fn disarm(&self) {
        // AcqRel: acquires every push made before a swap(true) that this
        // RMW follows in modification order (see the module docs).
        self.armed.swap(false, Ordering::AcqRel);
    }

    /// Loop side: the next queued token.
    pub(crate) fn pop(&self) -> Option<Token> {
        self.queue.pop()
    }

    /// Loop side: the next handed-over socket.
    pub(crate) fn pop_incoming(&self) -> Option<(TcpStream, std::net::SocketAddr)> {
        self.incoming.pop()
    }
}

/// The [`Transport`] of one connection: both calls queue its token on its
/// loop.
pub(crate) struct ConnTransport {
    pub(crate) token: Token,
    pub(crate) shared: Arc<LoopShared>,
}

impl Transport for ConnTransport {
    fn wake(&self) {
        self.shared.notify(self.token);
    }

    fn closed(&self) {
        self.shared.notify(self.token);
    }
}
