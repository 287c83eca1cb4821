//! The cluster's shared cache (`--redis`): one Redis key per cache channel,
//! written by the node an event is published on, loaded by the others
//! when they may have missed it.
//!
//! # Keys
//!
//! `{namespace}:cache:{app}:{channel}` → the encoded Pusher frame, set with
//! `SET … PX ttl` so Redis expires it with the local copies. App ids and
//! channel names contain no `:`, so the key splits back.
//!
//! # Why the subscribe path never reads Redis
//!
//! Every node's bus subscription delivers every event of the cluster
//! through `App::deliver`, which updates the node's local copy; so a node
//! that was listening when an event was published has it locally, and a
//! local miss is a real miss. A node lacks only what was published before
//! it listened or while its bus connection was down. It loads those from
//! Redis at start-up (before it accepts connections, in [`Remote::start`])
//! and again whenever its bus connection comes back, on this module's
//! thread, never on an event loop. A loaded entry never replaces a local
//! one (the local one came through the bus after the node listened, so it
//! is as new or newer) and never evicts (a load stops at the limit).
//!
//! Known gap: a subscriber that arrives between a bus reconnection and the
//! end of the reload that follows it can get `pusher:cache_miss` for an
//! event published while the bus was down.
//!
//! # Threads
//!
//! One thread owns the Redis connection: it performs the queued writes
//! (a bounded queue; the publisher never waits, a full queue drops the
//! write, counted) and checks the bus connection once a second. A write
//! that fails is counted and logged, and the connection is opened again on
//! the next job, with a capped backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use realtime::Frame;

use super::{CacheMetrics, Writer};
use crate::app::{App, Apps};
use crate::redis_conn;

/// Writes queued at most; past it the publisher drops the write.
const QUEUE: usize = 4096;
/// Keys read per `SCAN` step of a load.
const SCAN_COUNT: usize = 256;
/// Connect, read and write timeout of the cache's Redis connection.
const TIMEOUT: Duration = Duration::from_secs(1);

/// What the cache thread is asked to do.
pub(crate) enum Job {
    /// `SET key frame PX ttl_ms`.
    Set {
        key: String,
        frame: String,
        ttl_ms: u64,
    },
    /// Drain the queue and end.
    Stop,
}

/// The running shared cache of a node.
pub(crate) struct Remote {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cache::Remote")
    }
}

/// The key prefix of `app`'s cache entries.
pub(crate) fn key_prefix(ns: &str, app: &str) -> String {
    format!("{ns}:cache:{app}:")
}

struct Worker {
    apps: HashMap<String, Arc<App>>,
    client: redis::Client,
    bus: Arc<broadcasting::Redis>,
    ns: String,
    metrics: Arc<CacheMetrics>,
    conn: Option<redis::Connection>,
    next_connect: Instant,
    backoff: Duration,
    /// Whether the bus was connected at the last check.
    bus_connected: bool,
    /// Whether a load completed since the bus last (re)connected.
    loaded: bool,
}

impl Remote {
    /// Shares the caches of `apps` through Redis at `url` under namespace
    /// `ns`: loads what the cluster holds now (when Redis answers), then
    /// starts the thread that writes this node's publishes and reloads
    /// after a bus reconnection.
    ///
    /// # Errors
    ///
    /// A URL the `redis` crate refuses, or a thread that cannot start.
    pub(crate) fn start(
        apps: &Apps,
        bus: Arc<broadcasting::Redis>,
        url: &str,
        ns: &str,
    ) -> std::io::Result<Self> {
        let client = redis::Client::open(url).map_err(std::io::Error::other)?;
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let mut metrics = None;
        for app in apps.all() {
            app.cache().set_writer(Writer {
                jobs: tx.clone(),
                prefix: key_prefix(ns, app.id()),
            });
            metrics.get_or_insert_with(|| Arc::clone(&app.cache().metrics));
        }
        let mut worker = Worker {
            apps: apps
                .all()
                .iter()
                .map(|a| (a.id().to_owned(), Arc::clone(a)))
                .collect(),
            client,
            bus,
            ns: ns.to_owned(),
            metrics: metrics.unwrap_or_default(),
            conn: None,
            next_connect: Instant::now(),
            backoff: Duration::from_millis(50),
            bus_connected: false,
            loaded: false,
        };
        // Before the node accepts connections: a subscriber of a channel
        // published before this node started finds its event.
        worker.check_bus();
        let thread = std::thread::Builder::new()
            .name("cache-redis".into())
            .spawn(move || worker.run(&rx))?;
        Ok(Self {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Performs the queued writes, then stops the thread.
    pub(crate) fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(jobs) = self.jobs.take() {
            let _ = jobs.send(Job::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Worker {
    fn run(mut self, jobs: &Receiver<Job>) {
        let mut next_check = Instant::now() + Duration::from_secs(1);
        loop {
            let wait = next_check.saturating_duration_since(Instant::now());
            match jobs.recv_timeout(wait) {
                Ok(Job::Set { key, frame, ttl_ms }) => self.set(&key, &frame, ttl_ms),
                Ok(Job::Stop) => {
                    while let Ok(Job::Set { key, frame, ttl_ms }) = jobs.try_recv() {
                        self.set(&key, &frame, ttl_ms);
                    }
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.check_bus();
                    next_check = Instant::now() + Duration::from_secs(1);
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn connection(&mut self) -> Option<&mut redis::Connection> {
        if self.conn.is_none() {
            if Instant::now() < self.next_connect {
                return None;
            }
            let opened = redis_conn::open(&self.client, TIMEOUT);
            match opened {
                Ok(c) => {
                    self.backoff = Duration::from_millis(50);
                    self.conn = Some(c);
                }
                Err(e) => {
                    self.failed("connect", &e);
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    fn failed(&mut self, what: &str, e: &redis::RedisError) {
        self.metrics.redis_errors.inc();
        tracing::warn!(error = %e, what, "cluster cache: redis failed; retrying with backoff");
        self.conn = None;
        self.next_connect = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(1));
    }

    fn set(&mut self, key: &str, frame: &str, ttl_ms: u64) {
        let Some(conn) = self.connection() else {
            self.metrics.redis_errors.inc();
            return;
        };
        let done: redis::RedisResult<()> = redis::cmd("SET")
            .arg(key)
            .arg(frame)
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query(conn);
        if let Err(e) = done {
            self.failed("write", &e);
        }
    }

    /// Loads the cluster's entries when the bus (re)connected since the
    /// last load.
    fn check_bus(&mut self) {
        let connected = self.bus.is_connected();
        if connected && !self.bus_connected {
            self.loaded = false;
        }
        self.bus_connected = connected;
        if !self.loaded && connected {
            match self.load() {
                Ok(n) => {
                    self.loaded = true;
                    tracing::info!(loaded = n, "cluster cache: entries loaded from redis");
                }
                Err(e) => self.failed("load", &e),
            }
        }
    }

    /// Reads every entry of every app into the local copies.
    fn load(&mut self) -> redis::RedisResult<usize> {
        let apps: Vec<(String, Arc<App>)> = self
            .apps
            .iter()
            .map(|(id, a)| (key_prefix(&self.ns, id), Arc::clone(a)))
            .collect();
        let Some(conn) = self.connection() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "no connection",
            )));
        };
        let mut loaded = 0;
        for (prefix, app) in apps {
            let pattern = format!("{}*", redis_conn::glob_escape(&prefix));
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query(conn)?;
                if !keys.is_empty() {
                    let frames: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(conn)?;
                    let mut p = redis::pipe();
                    for k in &keys {
                        p.cmd("PTTL").arg(k);
                    }
                    let ttls: Vec<i64> = p.query(conn)?;
                    let now = Instant::now();
                    for ((key, frame), ttl) in keys.iter().zip(frames).zip(ttls) {
                        let (Some(channel), Some(frame), Ok(ms)) =
                            (key.strip_prefix(&prefix), frame, u64::try_from(ttl))
                        else {
                            continue; // expired meanwhile, or no TTL: not ours
                        };
                        let expires = now + Duration::from_millis(ms);
                        if app
                            .cache()
                            .fill(channel, Frame::from_string(frame), expires)
                        {
                            loaded += 1;
                        }
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_namespaced() {
        assert_eq!(key_prefix("rt", "1"), "rt:cache:1:");
    }
}
