//! The Redis driver (R24): fan-out across processes on Redis pub/sub.
//!
//! # Design
//!
//! - **Local first.** `publish` hands the event to this process's
//!   subscribers at once, through the same [`Dispatcher`] as `Memory`
//!   (bounded queues, one thread per subscription, drops counted), and then
//!   `PUBLISH`es it to Redis. Local delivery therefore never waits for, nor
//!   depends on, Redis.
//! - **No double delivery.** Every envelope carries the publishing driver's
//!   node id ([`RedisBuilder::node_id`], random by default). The subscriber
//!   connection skips envelopes of its own node: they were delivered
//!   locally already.
//! - **One multiplexed subscriber connection** with one pattern
//!   subscription, `PSUBSCRIBE {namespace}:*`, made by a dedicated thread.
//!   Events are published on `{namespace}:{channel}`. Chosen over
//!   `SUBSCRIBE`/`UNSUBSCRIBE` per occupied channel because the gateway
//!   subscribes with prefix filters (one per app, `{app_id}/`): every node
//!   wants every event of its apps, so per-channel subscriptions would buy
//!   nothing but a subscription round-trip per channel join and a race
//!   window at each one. The cost is that a node also receives events for
//!   channels nobody on it listens to; they are filtered locally (one
//!   filter match per subscription) and dropped. Not benchmarked: the
//!   choice rests on that argument, not on a measurement.
//! - **Publishing on a separate connection**, behind a mutex (Redis pub/sub
//!   connections cannot run other commands). A publish is one round-trip.
//!   A broken connection is reopened once on the spot (so the first publish
//!   after Redis returns goes through), but a publish that timed out is not
//!   sent again (Redis may have run it: a second send could deliver it
//!   twice on the other nodes); when Redis is down, attempts are
//!   spaced by a capped backoff and publishes in between fail at once with
//!   [`Error::Unavailable`], counted in [`RedisStats::publish_errors`] and
//!   logged: the event reached local subscribers only. Delivery across
//!   nodes is at most once: what is published while Redis is away is lost
//!   for other nodes.
//! - **Reconnect and resubscribe.** The subscriber thread reconnects with
//!   exponential backoff (50 ms doubling to [`RedisBuilder::max_backoff`],
//!   1 s by default) and subscribes again; each re-established subscription
//!   counts in [`RedisStats::reconnects`]. Reads use a short timeout
//!   ([`POLL`]) so that `close` is noticed within it; the backoff wait is
//!   interruptible, so `close` never hangs on a dead Redis.
//! - **Close and drops** are the Dispatcher's, exactly as for `Memory`:
//!   `close` cancels every subscription (joining their threads), then stops
//!   the subscriber thread; later publishes and subscribes fail with
//!   [`Error::Closed`]; a full subscriber queue drops the event for that
//!   subscriber and counts it in [`Broadcaster::dropped`].
//!
//! The envelope is described in `redis/envelope.rs`: magic, version, and
//! length-prefixed origin, channel and name, then the payload verbatim.
//!
//! # Who touches what
//!
//! Publishers (any thread): the Dispatcher's read lock, then the publisher
//! mutex (the connection and its backoff state). The subscriber thread:
//! its own connection, the Dispatcher's read lock, the counters. `close`:
//! the Dispatcher, the stop channel, the thread handle.

mod builder;
mod envelope;

pub use builder::RedisBuilder;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::broadcaster::{Broadcaster, Filter, Handler};
use crate::dispatch::{Dispatcher, Stats, Subscription};
use crate::error::{Error, Result};
use crate::event::Event;

/// How long the subscriber thread blocks on one read before it checks for
/// `close`.
pub const POLL: Duration = Duration::from_millis(100);
/// The first reconnect delay; it doubles up to the configured maximum.
pub const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The default namespace: the Redis channel prefix.
pub const DEFAULT_NAMESPACE: &str = "realtime";

/// The Redis driver's counters, totals since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Local dispatch: publishes accepted, queue hand-offs, drops, handler
    /// errors (as for `Memory`).
    pub local: Stats,
    /// Events `PUBLISH`ed to Redis.
    pub published: u64,
    /// Events received from Redis from other nodes (and dispatched).
    pub received: u64,
    /// Events of this node echoed back by Redis (skipped).
    pub own_skipped: u64,
    /// Publishes that could not reach Redis (local delivery happened).
    pub publish_errors: u64,
    /// Received messages that were not a valid envelope.
    pub malformed: u64,
    /// Subscriber connections re-established after a loss.
    pub reconnects: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    own_skipped: AtomicU64,
    publish_errors: AtomicU64,
    malformed: AtomicU64,
    reconnects: AtomicU64,
}

struct Publisher {
    conn: Option<::redis::Connection>,
    /// No connect attempt before this instant (backoff while Redis is down).
    next_attempt: Instant,
    backoff: Duration,
    /// Whether the last attempt failed (log the first failure loudly).
    failing: bool,
}

struct Inner {
    dispatcher: Arc<Dispatcher>,
    client: ::redis::Client,
    namespace: String,
    pattern: String,
    node_id: String,
    publisher: Mutex<Publisher>,
    connected: AtomicBool,
    counters: Counters,
    max_backoff: Duration,
    io_timeout: Duration,
}

/// The Redis broadcaster: local subscribers get each publish at once, other
/// nodes through Redis pub/sub. See the module docs for the design.
///
/// # Examples
///
/// ```no_run
/// use broadcasting::{Broadcaster, BroadcasterExt, Event, Redis};
///
/// let bus = Redis::builder("redis://127.0.0.1:6379/")
///     .namespace("myapp")
///     .build()?;
/// bus.subscribe_prefix("", |e: &Event| {
///     println!("{} {}", e.channel, e.name);
///     Ok(())
/// })?;
/// bus.publish(Event::new("orders", "Created", vec![0u8, 1, 2]))?;
/// println!("{:?}", bus.stats());
/// bus.close();
/// # Ok::<(), broadcasting::Error>(())
/// ```
pub struct Redis {
    inner: Arc<Inner>,
    stop: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("namespace", &self.inner.namespace)
            .field("node_id", &self.inner.node_id)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Redis {
    /// A builder for a driver on `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisBuilder {
        RedisBuilder::new(url.into())
    }

    /// A driver with the default options.
    ///
    /// # Errors
    ///
    /// As [`RedisBuilder::build`].
    pub fn new(url: impl Into<String>) -> Result<Self> {
        Self::builder(url).build()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Whether the subscriber connection is up and subscribed.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::SeqCst)
    }

    /// The counters.
    pub fn stats(&self) -> RedisStats {
        let c = &self.inner.counters;
        // Relaxed: statistics.
        RedisStats {
            local: self.inner.dispatcher.stats(),
            published: c.published.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            own_skipped: c.own_skipped.load(Ordering::Relaxed),
            publish_errors: c.publish_errors.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
        }
    }

    fn shut(&self) {
        self.inner.dispatcher.close();
        self.stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("redis subscriber thread panicked");
            }
        }
        self.inner
            .publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .conn = None;
    }
}

impl Broadcaster for Redis {
    fn publish(&self, event: Event) -> Result<()> {
        let inner = &self.inner;
        if inner.dispatcher.is_closed() {
            return Err(Error::Closed);
        }
        inner.dispatcher.count_published();
        inner.dispatcher.dispatch(&event);
        let Some(bytes) =
            envelope::encode(&inner.node_id, &event.channel, &event.name, &event.payload)
        else {
            inner
                .counters
                .publish_errors
                .fetch_add(1, Ordering::Relaxed);
            return Err(Error::Unavailable(
                "event fields too long for the envelope".into(),
            ));
        };
        let key = format!("{}:{}", inner.namespace, event.channel);
        inner.publish_remote(&key, &bytes)
    }

    fn subscribe_filter(&self, filter: Filter, handler: Handler) -> Result<Subscription> {
        self.inner.dispatcher.subscribe(filter, handler)
    }

    fn close(&self) {
        self.shut();
    }

    fn dropped(&self) -> u64 {
        self.inner.dispatcher.dropped()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.shut();
    }
}

impl Inner {
    /// `PUBLISH`es on the publishing connection, reopening it once if it
    /// broke; while Redis is down, attempts are spaced by the backoff.
    fn publish_remote(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let mut p = self
            .publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut last_error = String::from("not connected (waiting for the next attempt)");
        for _ in 0..2 {
            if p.conn.is_none() {
                if Instant::now() < p.next_attempt {
                    break;
                }
                match self.open_publisher() {
                    Ok(conn) => {
                        if p.failing {
                            tracing::info!(namespace = %self.namespace, "redis publisher connection restored");
                        }
                        p.conn = Some(conn);
                        p.failing = false;
                        p.backoff = MIN_BACKOFF;
                    }
                    Err(e) => {
                        last_error = e.to_string();
                        p.next_attempt = Instant::now() + p.backoff;
                        p.backoff = (p.backoff * 2).min(self.max_backoff);
                        break;
                    }
                }
            }
            let Some(conn) = p.conn.as_mut() else { break };
            match ::redis::cmd("PUBLISH")
                .arg(key)
                .arg(bytes)
                .query::<i64>(conn)
            {
                Ok(_) => {
                    // Relaxed: statistics.
                    self.counters.published.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => {
                    last_error = e.to_string();
                    // Reopen (once now, then with backoff).
                    p.conn = None;
                    if e.is_timeout() {
                        // The command went out and no answer came: Redis
                        // may have run it. Publishing it again could
                        // deliver it twice on the other nodes; delivery
                        // across nodes is at most once (module docs).
                        break;
                    }
                }
            }
        }
        // Relaxed: statistics.
        self.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
        if p.failing {
            tracing::debug!(key, error = %last_error, "redis publish failed: delivered locally only");
        } else {
            tracing::warn!(key, error = %last_error, "redis publish failed: delivered locally only");
        }
        p.failing = true;
        Err(Error::Unavailable(last_error))
    }

    fn open_publisher(&self) -> ::redis::RedisResult<::redis::Connection> {
        let conn = self.client.get_connection_with_timeout(self.io_timeout)?;
        conn.set_read_timeout(Some(self.io_timeout))?;
        conn.set_write_timeout(Some(self.io_timeout))?;
        Ok(conn)
    }

    fn handle(&self, bytes: &[u8]) {
        let Some(env) = envelope::decode(bytes) else {
            // Relaxed: statistics.
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                len = bytes.len(),
                "redis message is not a valid envelope: dropped"
            );
            return;
        };
        if env.origin == self.node_id {
            self.counters.own_skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        self.dispatcher.dispatch(&Event {
            channel: env.channel,
            name: env.name,
            payload: env.payload,
        });
    }

    /// One subscriber session: connect, subscribe, pump messages until the
    /// connection breaks (`Err`) or the driver closes (`Ok`).
    fn session(&self, stop: &Receiver<()>, established: &mut bool) -> ::redis::RedisResult<()> {
        let mut conn = self.client.get_connection_with_timeout(self.io_timeout)?;
        conn.set_write_timeout(Some(self.io_timeout))?;
        conn.set_read_timeout(Some(self.io_timeout))?;
        let mut pubsub = conn.as_pubsub();
        pubsub.psubscribe(&self.pattern)?;
        pubsub.set_read_timeout(Some(POLL))?;
        if *established {
            // Relaxed: statistics.
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        *established = true;
        self.connected.store(true, Ordering::SeqCst);
        tracing::info!(pattern = %self.pattern, node = %self.node_id, "redis subscriber connected");
        loop {
            if stopped(stop) {
                return Ok(());
            }
            match pubsub.get_message() {
                Ok(msg) => self.handle(msg.get_payload_bytes()),
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether `close` has dropped the stop sender.
fn stopped(stop: &Receiver<()>) -> bool {
    matches!(
        stop.try_recv(),
        Err(crossbeam_channel::TryRecvError::Disconnected)
    )
}

/// The subscriber thread: sessions separated by a capped, interruptible
/// backoff, until `close`.
fn subscriber(inner: &Inner, stop: &Receiver<()>) {
    let mut backoff = MIN_BACKOFF;
    let mut established = false;
    let mut failures = 0u64;
    loop {
        if stopped(stop) {
            return;
        }
        let was = established;
        let outcome = inner.session(stop, &mut established);
        let had_session = inner.connected.swap(false, Ordering::SeqCst);
        match outcome {
            Ok(()) => return,
            Err(e) => {
                if had_session {
                    backoff = MIN_BACKOFF;
                    failures = 0;
                    tracing::warn!(error = %e, "redis subscriber connection lost: reconnecting");
                } else if failures == 0 {
                    tracing::error!(
                        error = %e,
                        first = !was,
                        "cannot reach redis: retrying with backoff (local delivery continues)"
                    );
                } else {
                    tracing::debug!(error = %e, failures, "redis still unreachable");
                }
                failures += 1;
            }
        }
        match stop.recv_timeout(backoff) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        backoff = (backoff * 2).min(inner.max_backoff);
    }
}

/// Escapes Redis glob metacharacters.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded per process from the OS; the counter separates
    // drivers of one process. Uniqueness is all that matters.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    // Relaxed: only uniqueness matters.
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escape("realtime"), "realtime");
    }

    #[test]
    fn node_ids_differ() {
        assert_ne!(random_node_id(), random_node_id());
    }
}
