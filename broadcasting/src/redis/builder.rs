//! [`RedisBuilder`]: the options of a [`Redis`] broadcaster.

use crate::dispatch::{Dispatcher, DEFAULT_BUFFER};
use crate::error::{Error, Result};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    glob_escape, random_node_id, subscriber, Counters, Inner, Publisher, Redis, DEFAULT_NAMESPACE,
    MIN_BACKOFF,
};

/// Options for [`Redis`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisBuilder {
    url: String,
    namespace: String,
    node_id: Option<String>,
    buffer: usize,
    max_backoff: Duration,
    io_timeout: Duration,
}

impl RedisBuilder {
    /// The defaults for `url`.
    pub(super) fn new(url: String) -> Self {
        Self {
            url,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            node_id: None,
            buffer: DEFAULT_BUFFER,
            max_backoff: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
        }
    }

    /// The Redis channel prefix (default `realtime`): events go out on
    /// `{namespace}:{channel}`. Drivers with different namespaces on one
    /// Redis do not see each other.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// This node's id, written into every envelope (default: random).
    /// Events carrying it are not delivered twice; every node must have its
    /// own.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// Capacity of each subscription's queue, in events (default 256).
    ///
    /// # Panics
    ///
    /// If `events` is 0.
    pub fn buffer(mut self, events: usize) -> Self {
        assert!(events > 0, "subscription buffer must be at least 1");
        self.buffer = events;
        self
    }

    /// The longest wait between two reconnect attempts (default 1 s).
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max.max(MIN_BACKOFF);
        self
    }

    /// Connect, read and write timeout of the publishing connection
    /// (default 1 s): the longest a publish can block on a hung Redis.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Builds the driver and starts its subscriber thread. Redis need not
    /// be reachable: the thread keeps trying (see [`Redis::is_connected`]).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] for a URL the `redis` crate does not accept;
    /// [`Error::Spawn`] if the thread cannot start.
    pub fn build(self) -> Result<Redis> {
        let client = ::redis::Client::open(self.url.as_str())
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let node_id = self.node_id.unwrap_or_else(random_node_id);
        let inner = Arc::new(Inner {
            dispatcher: Dispatcher::new(self.buffer, "redis"),
            client,
            pattern: format!("{}:*", glob_escape(&self.namespace)),
            namespace: self.namespace,
            node_id,
            publisher: Mutex::new(Publisher {
                conn: None,
                next_attempt: Instant::now(),
                backoff: MIN_BACKOFF,
                failing: false,
            }),
            connected: AtomicBool::new(false),
            counters: Counters::default(),
            max_backoff: self.max_backoff,
            io_timeout: self.io_timeout,
        });
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let thread_inner = Arc::clone(&inner);
        let thread = std::thread::Builder::new()
            .name("bcast-redis-sub".into())
            .spawn(move || subscriber(&thread_inner, &stop_rx))?;
        Ok(Redis {
            inner,
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
        })
    }
}
