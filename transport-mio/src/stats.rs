//! Counters: what each loop counts, and the [`Stats`] snapshot that
//! [`crate::Server::stats`] sums over the loops.
//!
//! Each loop writes only its own [`Counters`] (on its own cache lines: they
//! sit in the loop's `LoopShared`); readers sum them with relaxed loads, so a
//! snapshot is not atomic across fields.

use std::sync::atomic::{AtomicU64, Ordering};

/// Close codes counted one by one; others are summed under `other`.
const CODES: [u16; 10] = [1000, 1001, 1002, 1006, 1007, 1008, 1009, 1011, 1013, 4000];

/// Why a connection's WebSocket life ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The peer sent a close frame.
    PeerClose,
    /// The application or the Hub closed the client (overflow included).
    AppClose,
    /// The peer broke the protocol (1002, 1007, 1009).
    Violation,
    /// No inbound traffic for `idle_timeout`.
    Idle,
    /// The socket took no bytes for `write_timeout`.
    WriteTimeout,
    /// The socket failed or reached end of stream without a close frame.
    Reset,
    /// Server shutdown.
    Shutdown,
    /// A handler panicked (1011).
    HandlerPanic,
}

/// Per-loop counters (monotonic).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected_over_capacity: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) handshake_timeouts: AtomicU64,
    pub(crate) http_requests: AtomicU64,
    pub(crate) upgrades: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) pings_sent: AtomicU64,
    pub(crate) local_wakes: AtomicU64,
    pub(crate) loop_wakeups: AtomicU64,
    pub(crate) silent_timeouts: AtomicU64,
    pub(crate) rejected_per_ip: AtomicU64,
    pub(crate) body_budget_refusals: AtomicU64,
    pub(crate) refused_before_body: AtomicU64,
    pub(crate) tls_handshake_failures: AtomicU64,
    pub(crate) endings: [AtomicU64; 8],
    pub(crate) codes: [AtomicU64; CODES.len() + 1],
    pub(crate) connections: AtomicU64,
}

impl Counters {
    /// Adds `n` to a counter.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Relaxed: a statistic, read on its own.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a WebSocket close, by reason and by the code sent or received.
    pub(crate) fn ended(&self, ending: Ending, code: u16) {
        Self::add(&self.endings[ending as usize], 1);
        let slot = CODES.iter().position(|&c| c == code).unwrap_or(CODES.len());
        Self::add(&self.codes[slot], 1);
    }
}

/// A snapshot of the server's counters, summed over every loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Open WebSocket connections.
    pub connections: u64,
    /// Sockets accepted.
    pub accepted: u64,
    /// Upgrades answered with 503 (and sockets dropped at accept) because
    /// the server was full.
    pub rejected_over_capacity: u64,
    /// Malformed requests and handshakes (HTTP 4xx sent by the transport).
    pub handshake_failures: u64,
    /// Connections dropped because the request did not arrive in time.
    pub handshake_timeouts: u64,
    /// Plain HTTP requests served by the handler.
    pub http_requests: u64,
    /// WebSocket connections opened.
    pub upgrades: u64,
    /// Upgrades the handler refused ([`crate::Upgrade::Refuse`]).
    pub refused: u64,
    /// Data messages received.
    pub frames_in: u64,
    /// Data frames written (one per recipient).
    pub frames_out: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Write system calls that wrote something (a write carries several
    /// frames: compare with `frames_out`).
    pub writes: u64,
    /// Keepalive pings sent.
    pub pings_sent: u64,
    /// Wake-ups of a loop by its own thread (replies written in the turn
    /// that produced them, with no eventfd write).
    pub local_wakes: u64,
    /// Wake-ups of a loop by another thread (eventfd writes: at most one
    /// per batch of work handed to a loop).
    pub loop_wakeups: u64,
    /// Sockets dropped because they sent nothing within `silent_timeout`.
    pub silent_timeouts: u64,
    /// Sockets refused (429) over `max_connections_per_ip`.
    pub rejected_per_ip: u64,
    /// Request bodies refused (503) because `max_http_buffer` was in use.
    pub body_budget_refusals: u64,
    /// Requests answered from their head by [`crate::Handler::on_http_head`]
    /// without reading the body.
    pub refused_before_body: u64,
    /// TLS handshakes refused (a plaintext client on a TLS port, a garbage
    /// or unsupported ClientHello, a bad record during the handshake).
    pub tls_handshake_failures: u64,
    /// Request-body bytes reserved right now against `max_http_buffer`
    /// (a gauge).
    pub http_body_bytes: u64,
    /// Closes started by a peer's close frame.
    pub closed_by_peer: u64,
    /// Closes by the application or the Hub (overflow included).
    pub closed_by_app: u64,
    /// Closes for protocol violations (1002, 1007, 1009).
    pub closed_for_violation: u64,
    /// Closes for `idle_timeout`.
    pub idle_timeouts: u64,
    /// Closes for `write_timeout`.
    pub write_timeouts: u64,
    /// Connections that ended without a close frame (reset, EOF, I/O error).
    pub resets: u64,
    /// Closes by server shutdown.
    pub closed_by_shutdown: u64,
    /// Closes after a handler panic.
    pub handler_panics: u64,
    /// Closes by code (sent by us, or received for peer closes; 1006 for
    /// resets), as `(code, count)`; code 0 sums codes not listed.
    pub closes_by_code: Vec<(u16, u64)>,
}

impl Stats {
    /// Closes counted under `code`.
    pub fn closes_with(&self, code: u16) -> u64 {
        self.closes_by_code
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(0, |(_, n)| *n)
    }

    /// Adds one loop's counters.
    pub(crate) fn add(&mut self, c: &Counters) {
        // Relaxed: statistics.
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.connections += get(&c.connections);
        self.accepted += get(&c.accepted);
        self.rejected_over_capacity += get(&c.rejected_over_capacity);
        self.handshake_failures += get(&c.handshake_failures);
        self.handshake_timeouts += get(&c.handshake_timeouts);
        self.http_requests += get(&c.http_requests);
        self.upgrades += get(&c.upgrades);
        self.refused += get(&c.refused);
        self.frames_in += get(&c.frames_in);
        self.frames_out += get(&c.frames_out);
        self.bytes_in += get(&c.bytes_in);
        self.bytes_out += get(&c.bytes_out);
        self.writes += get(&c.writes);
        self.pings_sent += get(&c.pings_sent);
        self.local_wakes += get(&c.local_wakes);
        self.loop_wakeups += get(&c.loop_wakeups);
        self.silent_timeouts += get(&c.silent_timeouts);
        self.rejected_per_ip += get(&c.rejected_per_ip);
        self.body_budget_refusals += get(&c.body_budget_refusals);
        self.refused_before_body += get(&c.refused_before_body);
        self.tls_handshake_failures += get(&c.tls_handshake_failures);
        let e = |ending: Ending| get(&c.endings[ending as usize]);
        self.closed_by_peer += e(Ending::PeerClose);
        self.closed_by_app += e(Ending::AppClose);
        self.closed_for_violation += e(Ending::Violation);
        self.idle_timeouts += e(Ending::Idle);
        self.write_timeouts += e(Ending::WriteTimeout);
        self.resets += e(Ending::Reset);
        self.closed_by_shutdown += e(Ending::Shutdown);
        self.handler_panics += e(Ending::HandlerPanic);
        let codes = CODES.iter().copied().chain([0]);
        for (code, counter) in codes.zip(&c.codes) {
            let n = get(counter);
            match self.closes_by_code.iter_mut().find(|(k, _)| *k == code) {
                Some((_, total)) => *total += n,
                None => self.closes_by_code.push((code, n)),
            }
        }
    }
}
