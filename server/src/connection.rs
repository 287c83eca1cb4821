//! Per-connection protocol state: socket id, signed-in user, client-event
//! rate limiter, activity clock. Subscriptions are not here: the Hub
//! client's own table answers (`Client::subscription`).
//!
//! A [`Connection`] is created by `Gateway::open` and dropped by
//! `Gateway::close`. Its reader thread (the transport loop that owns the
//! socket) is the only one that changes `user` and `limiter`,
//! so those mutexes are uncontended; the activity sweeper and the HTTP API
//! only read them. The activity clock is two atomics in milliseconds since
//! the gateway's epoch: `last_seen` (any inbound message) and `ping_sent`
//! (0 = no ping outstanding).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use realtime::Client;

use crate::rate_limit::TokenBucket;

/// The activity clock of a node: milliseconds since its start, plus one
/// (0 means "never"), shared by the protocol (which stamps inbound
/// activity) and the sweeper (which compares).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    /// A clock starting now.
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// `now` on this clock.
    pub(crate) fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these plain maps half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One WebSocket connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    client: Client,
    socket_id: String,
    user: Mutex<Option<String>>,
    limiter: Mutex<TokenBucket>,
    last_seen: AtomicU64,
    ping_sent: AtomicU64,
}

impl Connection {
    /// New state for `client`.
    pub fn new(client: Client, socket_id: String, rate: u32, now: Instant, now_ms: u64) -> Self {
        Self {
            client,
            socket_id,
            user: Mutex::new(None),
            limiter: Mutex::new(TokenBucket::new(rate, now)),
            last_seen: AtomicU64::new(now_ms),
            ping_sent: AtomicU64::new(0),
        }
    }

    /// The Hub client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The Pusher socket id.
    pub fn socket_id(&self) -> &str {
        &self.socket_id
    }

    /// The signed-in user id.
    pub fn user(&self) -> Option<String> {
        lock(&self.user).clone()
    }

    /// Records the signed-in user; returns the previous one.
    pub fn set_user(&self, user: String) -> Option<String> {
        lock(&self.user).replace(user)
    }

    /// `None` if not subscribed to `channel`; `Some(user_id)` if subscribed
    /// (`user_id` set on presence channels). Read from the Hub client's own
    /// subscription table: the server keeps no copy of it.
    pub fn subscription(&self, channel: &str) -> Option<Option<String>> {
        self.client.subscription(channel)
    }

    /// Takes one client-event token.
    pub fn allow_client_event(&self, now: Instant) -> bool {
        lock(&self.limiter).try_take(now)
    }

    /// Records inbound activity (clears an outstanding ping).
    pub fn touch(&self, now_ms: u64) {
        // Relaxed: a timestamp read by the sweeper; a stale read only
        // delays a ping by one sweep.
        self.last_seen.store(now_ms, Ordering::Relaxed);
        self.ping_sent.store(0, Ordering::Relaxed);
    }

    /// Milliseconds (gateway clock) of the last inbound frame.
    pub fn last_seen(&self) -> u64 {
        // Relaxed: see `touch`.
        self.last_seen.load(Ordering::Relaxed)
    }

    /// When our outstanding ping was sent (0: none).
    pub fn ping_sent(&self) -> u64 {
        // Relaxed: see `touch`.
        self.ping_sent.load(Ordering::Relaxed)
    }

    /// Records that we sent a ping at `now_ms`.
    pub fn mark_ping(&self, now_ms: u64) {
        // Relaxed: see `touch`.
        self.ping_sent.store(now_ms, Ordering::Relaxed);
    }
}
