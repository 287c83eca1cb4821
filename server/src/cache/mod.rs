//! Cache channels: the last event of each `cache-` channel, handed to every
//! new subscriber right after `pusher_internal:subscription_succeeded`.
//!
//! # What is cached
//!
//! A channel is a cache channel when its name starts with `cache-`,
//! `private-cache-`, `private-encrypted-cache-` or `presence-cache-`
//! ([`crate::channel::is_cache`]); otherwise it keeps its base kind
//! (`private-cache-x` needs a signature, `presence-cache-x` is a presence
//! channel, and so on). Every event published on one through the bus (HTTP
//! API events and client events; not presence frames) replaces the
//! channel's entry: the last one wins. The entry is the [`Frame`] the bus
//! delivery path fans out, the same shared bytes, encoded once by the
//! publisher.
//!
//! # Who touches what
//!
//! Each app has one [`ChannelCache`]: a map channel → entry and an index of
//! the entries by expiry, under one `Mutex` held for a few map operations.
//!
//! - **Writes** come from `App::deliver`, which every event of the app
//!   goes through on every node (the app's bus subscription thread, or the
//!   publishing thread with `LocalBus`): [`ChannelCache::store_at`] before
//!   the fan-out.
//! - **Reads** come from the subscribe path (an event-loop thread), after
//!   the Hub accepted the subscribe and queued `subscription_succeeded`:
//!   [`subscribed`] queues the cached frame, or
//!   `{"event":"pusher:cache_miss","channel":C,"data":"{}"}` and calls
//!   [`cache_missed`] (the `cache_miss` webhook's call site).
//! - **Expiry** is lazy (a read past an entry's expiry drops it) plus a
//!   sweep on the activity sweeper's tick ([`ChannelCache::sweep`]), so an
//!   entry nobody reads again does not stay.
//!
//! # Ordering against a concurrent publish
//!
//! A publish racing a subscribe on the same channel: the writer stores
//! under the lock, then fans out; the reader looks up *and enqueues* under
//! the lock (an enqueue is a push into the client's outbox). So either the
//! reader saw the old entry and enqueued it before the new event was
//! stored, hence before it was fanned out (the subscriber, already in the
//! channel, then gets the new event live after the old one), or it saw the
//! new one. The subscriber never gets the older event after the newer one;
//! it may get the newest one twice (cached, and live if the fan-out
//! reached it too). pusher-js applications treat a cache event as "the
//! current state", so a duplicate is harmless where a reordering would
//! not be.
//!
//! # Bounds
//!
//! Entries live `--cache-ttl` seconds (default 1800, as Pusher). At most
//! `--max-cache-channels` entries per app (default
//! [`crate::config::DEFAULT_MAX_CACHE_CHANNELS`]); a write for one more
//! channel first drops what has expired, then evicts the entry that
//! expires first (the oldest write, since every entry gets the same TTL),
//! counted in `realtime_cache_evictions_total{reason="limit"}` and logged.
//! Each entry is at most one event (`max_event_size` of data, escaped
//! into a frame), so an app's cache holds at most about
//! `max_cache_channels × (2 × max_event_size + 400)` bytes; only
//! authenticated publishers (the HTTP API, subscribers of private and
//! presence channels) write it.
//!
//! # Cluster
//!
//! With `--redis` the cache is shared through Redis (`remote.rs`): the
//! publishing node also writes each cache event under
//! `{namespace}:cache:{app}:{channel}` with the TTL, and a node loads
//! those keys when it starts and after its bus reconnects. Every node's
//! copy is kept current by the bus delivery path, which carries every
//! event to every node; so the subscribe path never waits on Redis.
//!
//! # Metrics
//!
//! `realtime_cache_hits_total`, `realtime_cache_misses_total`,
//! `realtime_cache_entries` (all apps), `realtime_cache_evictions_total`
//! by `reason` (`expired`, `limit`), `realtime_cache_redis_errors_total`
//! (cluster writes and loads that failed or found the queue full).

mod remote;

pub(crate) use remote::Remote;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use realtime::{Client, Frame};

use crate::app::App;
use crate::channel;
use crate::config::{DEFAULT_CACHE_TTL, DEFAULT_MAX_CACHE_CHANNELS};
use crate::metrics::{self, Labelled, Metrics};
use crate::protocol;

/// The cache counters, shared by every app of a node.
#[derive(Debug, Default)]
pub(crate) struct CacheMetrics {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) entries: Gauge,
    pub(crate) evictions: Labelled,
    pub(crate) redis_errors: Counter,
}

impl CacheMetrics {
    /// The counters, registered in `metrics`.
    pub(crate) fn register(metrics: &Metrics) -> Arc<Self> {
        let m = Arc::new(Self::default());
        metrics.register(
            "realtime_cache_hits",
            "Subscribers of a cache channel that got its last event.",
            m.hits.clone(),
        );
        metrics.register(
            "realtime_cache_misses",
            "Subscribers of a cache channel that got pusher:cache_miss.",
            m.misses.clone(),
        );
        metrics.register(
            "realtime_cache_entries",
            "Cache channels holding a last event, all apps.",
            m.entries.clone(),
        );
        metrics.register(
            "realtime_cache_evictions",
            "Cached events dropped before a newer one replaced them, by reason (expired, limit).",
            m.evictions.clone(),
        );
        metrics.register(
            "realtime_cache_redis_errors",
            "Cluster cache writes or loads that failed or were dropped at a full queue.",
            m.redis_errors.clone(),
        );
        m
    }
}

/// How long entries live and how many an app keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheLimits {
    /// Time to live of an entry.
    pub(crate) ttl: Duration,
    /// Most entries of one app.
    pub(crate) max_channels: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(DEFAULT_CACHE_TTL),
            max_channels: DEFAULT_MAX_CACHE_CHANNELS,
        }
    }
}

/// One cached event.
struct Entry {
    frame: Frame,
    /// The key of this entry in `Inner::by_expiry`.
    expires: (Instant, u64),
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Channel by (expiry, write sequence): the first key expires first.
    by_expiry: BTreeMap<(Instant, u64), String>,
    seq: u64,
}

impl Inner {
    fn remove(&mut self, channel: &str) -> Option<Entry> {
        let e = self.entries.remove(channel)?;
        self.by_expiry.remove(&e.expires);
        Some(e)
    }

    /// Drops the entries expired at `now`; how many.
    fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let channel = entry.remove();
            self.entries.remove(&channel);
            n += 1;
        }
        n
    }

    fn insert(&mut self, channel: &str, frame: Frame, expires: Instant) {
        self.seq += 1;
        let key = (expires, self.seq);
        self.by_expiry.insert(key, channel.to_owned());
        self.entries.insert(
            channel.to_owned(),
            Entry {
                frame,
                expires: key,
            },
        );
    }
}

/// The Redis side of an app's cache (cluster mode), set once by
/// [`Remote::start`].
pub(crate) struct Writer {
    jobs: crossbeam_channel::Sender<remote::Job>,
    /// `{namespace}:cache:{app}:`.
    prefix: String,
}

/// The last event of each cache channel of one app; see the module docs.
pub(crate) struct ChannelCache {
    app: String,
    limits: CacheLimits,
    metrics: Arc<CacheMetrics>,
    inner: Mutex<Inner>,
    writer: OnceLock<Writer>,
    /// Whether the limit was logged at warn level already.
    warned: AtomicBool,
}

impl std::fmt::Debug for ChannelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelCache")
            .field("app", &self.app)
            .field("entries", &self.len())
            .finish()
    }
}

impl ChannelCache {
    /// An empty cache of app `app`.
    pub(crate) fn new(app: &str, limits: CacheLimits, metrics: Arc<CacheMetrics>) -> Self {
        Self {
            app: app.to_owned(),
            limits,
            metrics,
            inner: Mutex::default(),
            writer: OnceLock::new(),
            warned: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries held (expired ones not swept yet included).
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    fn expired(&self, n: usize) {
        if n > 0 {
            self.metrics
                .evictions
                .get_or_create(&[("reason", "expired".to_owned())])
                .inc_by(n as u64);
            self.metrics.entries.dec_by(n as i64);
        }
    }

    /// Makes `frame` the last event of `channel` as of `now`, if it is a
    /// cache channel. At the limit, expired entries go first, then the
    /// one that expires first.
    pub(crate) fn store_at(&self, channel: &str, frame: &Frame, now: Instant) {
        if !channel::is_cache(channel) {
            return;
        }
        let (expired, evicted) = {
            let mut inner = self.lock();
            let mut expired = 0;
            let mut evicted = None;
            if inner.remove(channel).is_none() {
                self.metrics.entries.inc();
                if inner.entries.len() >= self.limits.max_channels {
                    expired = inner.expire(now);
                }
                if inner.entries.len() >= self.limits.max_channels {
                    if let Some((_, oldest)) = inner.by_expiry.pop_first() {
                        inner.entries.remove(&oldest);
                        evicted = Some(oldest);
                    }
                }
            }
            inner.insert(channel, frame.clone(), now + self.limits.ttl);
            (expired, evicted)
        };
        self.expired(expired);
        if let Some(oldest) = evicted {
            self.metrics.entries.dec();
            metrics::inc(&self.metrics.evictions, "reason", "limit");
            if self.warned.swap(true, Ordering::Relaxed) {
                // Relaxed: only whether to log at warn once.
                tracing::debug!(app = %self.app, evicted = oldest, channel, "cache limit: oldest entry evicted");
            } else {
                tracing::warn!(
                    app = %self.app,
                    evicted = oldest,
                    channel,
                    limit = self.limits.max_channels,
                    "cache limit reached (--max-cache-channels): the oldest entries are evicted; counted in realtime_cache_evictions_total{{reason=\"limit\"}}"
                );
            }
        }
    }

    /// Adds an entry loaded from Redis that expires at `expires`, unless
    /// the channel has one already (it came through the bus: newer) or
    /// the cache is full (loading never evicts). Whether it was added.
    pub(crate) fn fill(&self, channel: &str, frame: Frame, expires: Instant) -> bool {
        if !channel::is_cache(channel) {
            return false;
        }
        let mut inner = self.lock();
        if inner.entries.contains_key(channel) || inner.entries.len() >= self.limits.max_channels {
            return false;
        }
        inner.insert(channel, frame, expires);
        self.metrics.entries.inc();
        true
    }

    /// Sends `client` the last event of `channel` as of `now`, or
    /// `pusher:cache_miss`; true on a hit. Looked up and enqueued under
    /// the lock (module docs, "Ordering").
    fn send_last_at(&self, client: &Client, channel: &str, now: Instant) -> bool {
        let mut expired = 0;
        let hit = {
            let mut inner = self.lock();
            let live = match inner.entries.get(channel) {
                Some(e) if e.expires.0 > now => Some(e.frame.clone()),
                Some(_) => {
                    inner.remove(channel);
                    expired = 1;
                    None
                }
                None => None,
            };
            // A closed client has nobody to tell.
            match live {
                Some(frame) => {
                    let _ = client.send_reply(frame);
                    true
                }
                None => {
                    let miss = protocol::event_frame("pusher:cache_miss", Some(channel), "{}");
                    let _ = client.send_reply(Frame::from_string(miss));
                    false
                }
            }
        };
        self.expired(expired);
        hit
    }

    /// Drops every entry expired at `now`; how many.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let n = self.lock().expire(now);
        self.expired(n);
        n
    }

    /// Called by the publisher of an event (once, on the node where it is
    /// published): in cluster mode a cache channel's frame is queued for
    /// Redis. Never blocks: a full queue drops the write (counted).
    pub(crate) fn published(&self, channel: &str, frame: &str) {
        let Some(w) = self.writer.get() else {
            return;
        };
        if !channel::is_cache(channel) {
            return;
        }
        let job = remote::Job::Set {
            key: format!("{}{channel}", w.prefix),
            frame: frame.to_owned(),
            ttl_ms: self.limits.ttl.as_millis() as u64,
        };
        if w.jobs.try_send(job).is_err() {
            self.metrics.redis_errors.inc();
            tracing::debug!(app = %self.app, channel, "cache write queue full: not shared with the cluster");
        }
    }

    fn set_writer(&self, writer: Writer) {
        let _ = self.writer.set(writer);
    }
}

/// After a successful subscribe: sends the subscriber of a cache channel
/// its last event or `pusher:cache_miss` (then [`cache_missed`]). Other
/// channels: nothing.
pub(crate) fn subscribed(app: &App, client: &Client, channel: &str, now: Instant) {
    if !channel::is_cache(channel) {
        return;
    }
    let cache = app.cache();
    if cache.send_last_at(client, channel, now) {
        cache.metrics.hits.inc();
    } else {
        cache_missed(app, channel);
    }
}

/// A subscriber of `channel` found nothing cached: counted, logged, and
/// the `cache_miss` webhook (`{"name":"cache_miss","channel":C}`,
/// PUSHER.md) queued for the app's targets that want it.
pub(crate) fn cache_missed(app: &App, channel: &str) {
    app.cache().metrics.misses.inc();
    tracing::debug!(app = app.id(), channel, "cache miss");
    app.webhooks().cache_miss(channel);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max: usize) -> ChannelCache {
        let limits = CacheLimits {
            ttl: Duration::from_secs(10),
            max_channels: max,
        };
        ChannelCache::new("1", limits, Arc::default())
    }

    fn frame(s: &str) -> Frame {
        Frame::from_string(s.to_owned())
    }

    fn last(c: &ChannelCache, channel: &str, now: Instant) -> Option<String> {
        let (conn, peer) = realtime::pipe();
        let hub = realtime::Hub::builder().build();
        let client = hub.add(conn, bytes::Bytes::new()).unwrap();
        let hit = c.send_last_at(&client, channel, now);
        let (_, bytes) = peer.read_timeout(Duration::from_secs(5)).unwrap().unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        hit.then_some(text)
    }

    #[test]
    fn the_last_write_wins_and_expires_after_the_ttl() {
        let c = cache(10);
        let t0 = Instant::now();
        c.store_at("cache-a", &frame("1"), t0);
        c.store_at("cache-a", &frame("2"), t0 + Duration::from_secs(5));
        c.store_at("news", &frame("x"), t0);
        assert_eq!(c.len(), 1);
        assert_eq!(
            last(&c, "cache-a", t0 + Duration::from_secs(14)),
            Some("2".into())
        );
        assert_eq!(last(&c, "cache-a", t0 + Duration::from_secs(15)), None);
        assert_eq!(c.len(), 0);
        assert_eq!(c.metrics.entries.get(), 0);
    }

    #[test]
    fn the_limit_evicts_the_oldest_and_loading_never_evicts() {
        let c = cache(2);
        let t0 = Instant::now();
        c.store_at("cache-a", &frame("a"), t0);
        c.store_at("cache-b", &frame("b"), t0 + Duration::from_secs(1));
        c.store_at("cache-a", &frame("a2"), t0 + Duration::from_secs(2));
        c.store_at("cache-c", &frame("c"), t0 + Duration::from_secs(3));
        assert_eq!(last(&c, "cache-b", t0), None);
        assert_eq!(last(&c, "cache-a", t0), Some("a2".into()));
        assert_eq!(metrics::count(&c.metrics.evictions, "reason", "limit"), 1);
        assert!(!c.fill("cache-d", frame("d"), t0 + Duration::from_secs(9)));
        assert!(!c.fill("cache-a", frame("old"), t0 + Duration::from_secs(9)));
        assert_eq!(c.sweep(t0 + Duration::from_secs(13)), 2);
        assert!(c.fill("cache-d", frame("d"), t0 + Duration::from_secs(20)));
        assert_eq!(c.metrics.entries.get(), 1);
    }
}
