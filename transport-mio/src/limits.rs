//! The server-wide limits every loop enforces, shared through one
//! [`Global`]: WebSocket sessions, sockets, sockets per peer address and
//! buffered request-body bytes.
//!
//! `Global` counts open WebSocket sessions (the `max_connections` limit,
//! checked when an upgrade request arrives: 503) and sockets of any kind
//! (capped at `max_connections` plus a quarter, at least 64, for requests in
//! flight: beyond it a socket is dropped right after accept), request-body
//! bytes buffered across all connections (`max_http_buffer`: 503 beyond
//! it, see [`BodyBudget`]) and, when `max_connections_per_ip` is set,
//! sockets per peer address (429 beyond it).
//!
//! Every count is an atomic read-modify-write (relaxed: each is a counter
//! read on its own, and the RMW keeps a bound exact: a reservation that
//! would pass it is undone), except the per-address table, a mutex taken
//! only when `max_connections_per_ip` is set. They are touched by every
//! loop thread and read by [`crate::Server`]'s statistics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Config;

/// State shared by every loop of a server.
pub(crate) struct Global {
    pub(crate) config: Config,
    open: AtomicUsize,
    sockets: AtomicUsize,
    max_sockets: usize,
    /// Request-body bytes reserved by connections.
    body_bytes: AtomicUsize,
    /// Sockets per peer address, when `max_connections_per_ip` is set.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why an accepted socket is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketRefusal {
    /// The server-wide socket cap.
    Capacity,
    /// `max_connections_per_ip`.
    PerIp,
}

/// Request-body bytes held against `max_http_buffer`; released on drop, so
/// every way a request or a connection ends gives them back.
pub(crate) struct BodyBudget {
    global: Arc<Global>,
    bytes: usize,
}

impl BodyBudget {
    /// Grows the reservation to `total` bytes; false (unchanged) if the
    /// server-wide budget would pass `max_http_buffer`.
    pub(crate) fn grow_to(&mut self, total: usize) -> bool {
        if total <= self.bytes {
            return true;
        }
        let more = total - self.bytes;
        // Relaxed: a counter; the RMW keeps the bound exact.
        let before = self.global.body_bytes.fetch_add(more, Ordering::Relaxed);
        if before.saturating_add(more) > self.global.config.max_http_buffer {
            self.global.body_bytes.fetch_sub(more, Ordering::Relaxed);
            return false;
        }
        self.bytes = total;
        true
    }
}

impl Drop for BodyBudget {
    fn drop(&mut self) {
        // Relaxed: as `grow_to`.
        self.global
            .body_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for BodyBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyBudget")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Global {
    pub(crate) fn new(config: Config) -> Self {
        let max_sockets = config.max_connections + (config.max_connections / 4).max(64);
        Self {
            config,
            open: AtomicUsize::new(0),
            sockets: AtomicUsize::new(0),
            max_sockets,
            body_bytes: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// An empty body reservation (see [`BodyBudget::grow_to`]).
    pub(crate) fn body_budget(self: &Arc<Self>) -> BodyBudget {
        BodyBudget {
            global: Arc::clone(self),
            bytes: 0,
        }
    }

    /// Reserves a WebSocket session slot; false when full.
    pub(crate) fn reserve(&self) -> bool {
        // Relaxed: a counter; the limit is approximate by one at worst
        // under races, never exceeded (the RMW is atomic).
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if before >= self.config.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Open WebSocket sessions (reserved slots).
    pub(crate) fn open_sessions(&self) -> usize {
        // Relaxed: a statistic.
        self.open.load(Ordering::Relaxed)
    }

    /// Request-body bytes reserved across every connection now.
    pub(crate) fn body_bytes(&self) -> usize {
        // Relaxed: a gauge.
        self.body_bytes.load(Ordering::Relaxed)
    }

    /// Releases a session slot.
    pub(crate) fn release(&self) {
        // Relaxed: as `reserve`.
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts an accepted socket from `peer`; refused (not counted) over
    /// the server's socket cap or the per-address limit.
    pub(crate) fn socket_opened(&self, peer: IpAddr) -> Result<(), SocketRefusal> {
        // Relaxed: a counter (as `reserve`).
        let before = self.sockets.fetch_add(1, Ordering::Relaxed);
        if before >= self.max_sockets {
            self.sockets.fetch_sub(1, Ordering::Relaxed);
            return Err(SocketRefusal::Capacity);
        }
        let limit = self.config.max_connections_per_ip;
        if limit > 0 {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = per_ip.entry(peer).or_insert(0);
            if *n >= limit {
                drop(per_ip);
                self.sockets.fetch_sub(1, Ordering::Relaxed);
                return Err(SocketRefusal::PerIp);
            }
            *n += 1;
        }
        Ok(())
    }

    /// Counts a closed socket from `peer`.
    pub(crate) fn socket_closed(&self, peer: IpAddr) {
        // Relaxed: a counter.
        self.sockets.fetch_sub(1, Ordering::Relaxed);
        if self.config.max_connections_per_ip > 0 {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = per_ip.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&peer);
                }
            }
        }
    }
}
