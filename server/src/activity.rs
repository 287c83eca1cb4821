//! The activity timeout: ping clients that went quiet, close those that do
//! not answer.
//!
//! Pusher clients are told `activity_timeout` (seconds) in
//! `connection_established`. A client silent for that long gets a
//! `pusher:ping`; if nothing at all arrives within [`PONG_TIMEOUT`] after
//! it, the connection is closed with 4201. Any inbound frame counts as
//! activity (it clears the outstanding ping; see `Connection::touch`): a
//! message through `Gateway::handle_message`, a WebSocket ping or pong or
//! a fragment through `Gateway::activity` (the transport's
//! `Handler::on_activity`). Both stamp the node's `Clock`, which
//! [`Activity`] reads.
//!
//! The same sweep drops the cache channels' expired events (`cache/`).
//!
//! One sweeper thread scans every connection once per `interval` (a
//! second by default): O(connections) per sweep, no per-connection timer.
//! The scan takes a snapshot of each app's table, then acts outside any
//! table lock, since closing a client runs Hub clean-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::app::Apps;
use crate::connection::Clock;
use crate::gateway::PONG_TIMEOUT;
use crate::metrics::Metrics;
use crate::protocol::{self, code};

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Pings sent.
    pub pinged: usize,
    /// Connections closed with 4201.
    pub closed: usize,
    /// Cached events dropped past their TTL (cache channels).
    pub expired: usize,
}

/// The activity timeout of a node's connections.
#[derive(Debug)]
pub struct Activity {
    apps: Arc<Apps>,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// The advertised activity timeout, seconds.
    timeout: u64,
}

impl Activity {
    pub(crate) fn new(apps: Arc<Apps>, metrics: Arc<Metrics>, clock: Clock, timeout: u64) -> Self {
        Self {
            apps,
            metrics,
            clock,
            timeout,
        }
    }

    /// Pings quiet clients and closes unresponsive ones, as of `now`.
    pub fn sweep(&self, now: Instant) -> Swept {
        let now_ms = self.clock.ms(now);
        let timeout_ms = self.timeout.saturating_mul(1000);
        let pong_ms = PONG_TIMEOUT.as_millis() as u64;
        let mut swept = Swept::default();
        for app in self.apps.all() {
            swept.expired += app.cache().sweep(now);
            for conn in app.connections() {
                let ping = conn.ping_sent();
                if ping != 0 {
                    if now_ms.saturating_sub(ping) >= pong_ms {
                        tracing::debug!(socket_id = conn.socket_id(), "pong not received: closing");
                        conn.client()
                            .close_with(code::PONG_TIMEOUT, "Pong reply not received");
                        self.apps.forget(conn.client(), &self.metrics);
                        swept.closed += 1;
                    }
                } else if now_ms.saturating_sub(conn.last_seen()) >= timeout_ms {
                    conn.mark_ping(now_ms);
                    // Forced like a reply (R34): a dropped ping would
                    // close a live client with 4201 for not answering it.
                    let _ = conn
                        .client()
                        .send_reply(realtime::Frame::from_string(protocol::PING));
                    swept.pinged += 1;
                }
            }
        }
        swept
    }
}

/// The sweeper thread; stops when dropped or when the node is gone.
#[derive(Debug)]
pub struct Sweeper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    /// Starts sweeping with `activity` every `interval`.
    ///
    /// # Errors
    ///
    /// The thread could not be spawned.
    pub fn start(activity: &Arc<Activity>, interval: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak: Weak<Activity> = Arc::downgrade(activity);
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("activity-sweeper".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    std::thread::park_timeout(interval);
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Some(g) = weak.upgrade() else { break };
                    let s = g.sweep(Instant::now());
                    if s.closed > 0 || s.pinged > 0 {
                        tracing::trace!(pinged = s.pinged, closed = s.closed, "activity sweep");
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
