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

//! # Wake-ups from another loop's thread: one kick per handler call
//!
//! A publish handled on loop A fans out on A's thread (the server's single
//! node delivers on the publishing thread), waking clients of loop B one
//! by one. Kicking B at the first of them can wake it in the middle of the
//! fan-out: B clears `armed`, serves the first tokens, and the next token
//! kicks it again (an eventfd write and a wake-up per early-served
//! client). So on a loop thread a wake for another loop pushes the token
//! at once but only records that loop (the thread-local `DEFERRED`); the
//! kicks go out, one per loop, when the handler call that produced them
//! returns (`connection::guarded`, before the transport's own syscalls
//! such as the HTTP response), and in any case before this loop next
//! blocks in `poll` ([`flush_deferred`] in the event loop), so no kick is
//! ever held across a wait; a large fan-out kicks every
//! [`DEFER_AT_MOST`] tokens, so the other loop starts writing while this
//! one goes on. A wake from a thread that runs no loop (a
//! cluster's bus thread, the activity sweeper) kicks at once, as before.

use std::cell::{Cell, RefCell};
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
    /// Other loops this loop thread queued tokens for and has not kicked
    /// yet (module docs); at most one entry per loop.
    static DEFERRED: RefCell<Vec<(Arc<LoopShared>, u32)>> = const { RefCell::new(Vec::new()) };
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

/// Tokens a loop thread queues for another loop before it kicks it anyway:
/// a large fan-out lets the other loop start writing while this one goes
/// on (one eventfd write per this many clients at most), a small one
/// costs one kick.
const DEFER_AT_MOST: u32 = 64;

/// Kicks every loop this thread deferred a wake-up for (module docs).
/// Cheap when there is none: one thread-local borrow.
pub(crate) fn flush_deferred() {
    let pending = DEFERRED.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut *d))
        }
    });
    for (shared, _) in pending.into_iter().flatten() {
        shared.kick();
    }
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

    /// Queues `token` and wakes the loop unless a wake-up is pending;
    /// from the loop's own thread nothing more, from another loop's thread
    /// the wake-up is deferred to the end of the handler call (module
    /// docs).
    pub(crate) fn notify(self: &Arc<Self>, token: Token) {
        self.queue.push(token);
        let current = CURRENT_LOOP.with(Cell::get);
        if std::ptr::eq(current, Arc::as_ptr(self)) {
            Counters::add(&self.counters.local_wakes, 1);
            LOCAL_WAKE.with(|w| w.set(true));
            return;
        }
        if !current.is_null() {
            let held = DEFERRED.with(|d| {
                let mut d = d.borrow_mut();
                match d.iter().position(|(s, _)| Arc::ptr_eq(s, self)) {
                    None => {
                        d.push((Arc::clone(self), 1));
                        true
                    }
                    Some(i) if d[i].1 + 1 < DEFER_AT_MOST => {
                        d[i].1 += 1;
                        true
                    }
                    Some(i) => {
                        d.swap_remove(i);
                        false
                    }
                }
            });
            if held {
                return;
            }
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
            Counters::add(&self.counters.loop_wakeups, 1);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use mio::{Events, Poll};
    use std::time::Duration;

    const WAKER: Token = Token(usize::MAX);

    /// A loop's shared part with its own `Poll`, to see its eventfd.
    fn a_loop() -> (Poll, Arc<LoopShared>) {
        let poll = Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), WAKER).unwrap();
        (poll, Arc::new(LoopShared::new(waker)))
    }

    /// Whether the loop's eventfd was written (a zero-timeout poll).
    fn woken(poll: &mut Poll) -> bool {
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        events.iter().any(|e| e.token() == WAKER)
    }

    fn wakeups(shared: &LoopShared) -> u64 {
        shared.counters.loop_wakeups.load(Ordering::Relaxed)
    }

    /// Runs `f` on a fresh thread that acts as `shared`'s loop, so the
    /// thread-locals of the test thread stay clean.
    fn as_loop(shared: &Arc<LoopShared>, f: impl FnOnce() + Send) {
        std::thread::scope(|s| {
            s.spawn(|| {
                enter_loop(shared);
                f();
            });
        });
    }

    #[test]
    fn a_wake_from_a_thread_without_a_loop_kicks_at_once() {
        let (mut poll, b) = a_loop();
        b.notify(Token(1));
        b.notify(Token(2));
        assert_eq!(wakeups(&b), 1, "one eventfd write while armed");
        assert!(woken(&mut poll));
        b.disarm();
        assert_eq!(
            (b.pop(), b.pop(), b.pop()),
            (Some(Token(1)), Some(Token(2)), None)
        );
    }

    #[test]
    fn wakes_for_another_loop_are_one_kick_when_the_handler_returns() {
        let (_poll_a, a) = a_loop();
        let (mut poll_b, b) = a_loop();
        as_loop(&a, || {
            for t in 0..10 {
                b.notify(Token(t));
            }
            assert_eq!(wakeups(&b), 0, "no kick in the middle of a fan-out");
            assert!(!woken(&mut poll_b));
            flush_deferred();
            assert_eq!(wakeups(&b), 1);
            flush_deferred();
            assert_eq!(wakeups(&b), 1, "a flush with nothing deferred kicks nobody");
        });
        assert!(woken(&mut poll_b));
        b.disarm();
        let mut served = 0;
        while b.pop().is_some() {
            served += 1;
        }
        assert_eq!(served, 10);
    }

    #[test]
    fn a_large_fan_out_kicks_the_other_loop_before_it_ends() {
        let (_poll_a, a) = a_loop();
        let (mut poll_b, b) = a_loop();
        as_loop(&a, || {
            for t in 0..DEFER_AT_MOST - 1 {
                b.notify(Token(t as usize));
            }
            assert_eq!(wakeups(&b), 0);
            b.notify(Token(1000));
            assert_eq!(wakeups(&b), 1, "kicked at DEFER_AT_MOST tokens");
            assert!(woken(&mut poll_b));
            b.disarm();
            b.notify(Token(1001));
            assert_eq!(wakeups(&b), 1, "the next token is deferred again");
            flush_deferred();
            assert_eq!(wakeups(&b), 2);
        });
    }

    #[test]
    fn wakes_for_the_loop_itself_never_kick() {
        let (mut poll_a, a) = a_loop();
        as_loop(&a, || {
            a.notify(Token(7));
            assert!(take_local_wake());
            flush_deferred();
        });
        assert_eq!(wakeups(&a), 0);
        assert_eq!(a.counters.local_wakes.load(Ordering::Relaxed), 1);
        assert!(!woken(&mut poll_a));
        assert_eq!(a.pop(), Some(Token(7)));
    }
}
