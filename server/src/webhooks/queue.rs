//! The delivery queue: closed batches between the batcher (one producer)
//! and the sender threads.
//!
//! # Single node: bounded channels, one per sender
//!
//! A batch goes to the sender `hash(app, url) % workers`, so one target's
//! batches are sent by one thread, one at a time, in the order they were
//! closed: a channel's `channel_occupied` never reaches its receiver after
//! the `channel_vacated` that followed it. Each channel holds at most
//! `max(4, --webhook-queue / 100 / workers)` batches; a batch that finds
//! its channel full is dropped, counted (`reason="queue_full"`) and
//! logged, so a receiver that is down costs a bounded amount of memory and
//! never stalls the other targets' batching. The price of the order: a
//! target being retried delays the other targets that hash to the same
//! sender (at most `--webhook-retry-ms`); more `--webhook-workers` spread
//! them.
//!
//! # Cluster: a Redis list, at least once
//!
//! - The batcher `RPUSH`es each batch (JSON: app id, URL, body, event
//!   count, first event time; never the secret, which each sender looks up
//!   by app id) on `{ns}:webhooks:queue`.
//! - A sender `BLMOVE`s the head to its node's processing list
//!   `{ns}:webhooks:processing:{node}`, sends it, and on an answer
//!   (acknowledged, or given up after the retry budget) removes it from
//!   there (`LREM`).
//! - A node shutting down moves its processing list back to the head of
//!   the queue; a node that died is pruned by another (`cluster.rs`), which
//!   moves the dead node's processing list back the same way. So a batch
//!   is lost only with Redis itself, and may be sent twice (a node that
//!   died after the POST and before the `LREM`): receivers recognise the
//!   repeat by its `X-Pusher-Webhook-Id`.
//! - Any node's sender takes any batch, so the per-target order of the
//!   single-node queue holds here only while no batch is retried.
//! - Redis unreachable: the batch is dropped, counted
//!   (`reason="redis_unavailable"`) and logged.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::redis_conn;

/// One closed batch: one request to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Batch {
    /// The app id (the sender looks its key and secret up).
    pub(crate) app: String,
    /// The target.
    pub(crate) url: String,
    /// The exact body to send and sign.
    pub(crate) body: String,
    /// Events in it.
    pub(crate) events: usize,
    /// When its first event was queued, ms since the Unix epoch.
    pub(crate) first_ms: u64,
}

/// The Redis side of the queue: where and as whom.
#[derive(Debug, Clone)]
pub(crate) struct RedisQueue {
    pub(crate) client: redis::Client,
    pub(crate) ns: String,
    pub(crate) node: String,
}

impl RedisQueue {
    pub(crate) fn queue_key(&self) -> String {
        queue_key(&self.ns)
    }

    pub(crate) fn processing_key(&self) -> String {
        processing_key(&self.ns, &self.node)
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let timeout = Duration::from_secs(2);
        // Longer than the BLMOVE wait.
        redis_conn::open(&self.client, timeout)
    }

    /// Moves this node's processing list back to the head of the queue.
    pub(crate) fn requeue_own(&self) {
        let r = self.connect().and_then(|mut c| {
            let mut n = 0usize;
            loop {
                let moved: Option<String> = redis::cmd("LMOVE")
                    .arg(self.processing_key())
                    .arg(self.queue_key())
                    .arg("RIGHT")
                    .arg("LEFT")
                    .query(&mut c)?;
                if moved.is_none() {
                    return Ok(n);
                }
                n += 1;
            }
        });
        match r {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                batches = n,
                "webhooks: unsent batches left in redis for the other nodes"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: could not requeue this node's batches; they stay in its processing list")
            }
        }
    }
}

/// The shared queue list.
pub(crate) fn queue_key(ns: &str) -> String {
    format!("{ns}:webhooks:queue")
}

/// A node's processing list.
pub(crate) fn processing_key(ns: &str, node: &str) -> String {
    format!("{ns}:webhooks:processing:{node}")
}

/// The producer side, owned by the batcher.
pub(crate) enum Queue {
    Memory(Vec<Sender<Batch>>),
    Redis(Box<Remote>),
}

/// A Redis queue and this thread's connection to it.
pub(crate) struct Remote {
    redis: RedisQueue,
    conn: Option<redis::Connection>,
}

/// The consumer side of one sender thread.
pub(crate) enum Source {
    Memory(Receiver<Batch>),
    Redis(Box<Remote>),
}

/// A batch taken from a [`Source`], to acknowledge when done.
pub(crate) struct Taken {
    pub(crate) batch: Batch,
    /// The Redis list entry, as stored (for `LREM`).
    raw: Option<String>,
}

impl Queue {
    /// Bounded in-process channels for `workers` senders.
    pub(crate) fn memory(workers: usize, events: usize) -> (Self, Vec<Source>) {
        let per = (events / super::MAX_BATCH_EVENTS / workers.max(1)).max(4);
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers.max(1))
            .map(|_| crossbeam_channel::bounded(per))
            .unzip();
        (
            Self::Memory(txs),
            rxs.into_iter().map(Source::Memory).collect(),
        )
    }

    /// The Redis list, for `workers` senders.
    pub(crate) fn redis(redis: &RedisQueue, workers: usize) -> (Self, Vec<Source>) {
        let sources = (0..workers.max(1))
            .map(|_| {
                Source::Redis(Box::new(Remote {
                    redis: redis.clone(),
                    conn: None,
                }))
            })
            .collect();
        (
            Self::Redis(Box::new(Remote {
                redis: redis.clone(),
                conn: None,
            })),
            sources,
        )
    }

    /// Queues a closed batch; on failure its events are dropped, counted
    /// and logged.
    pub(crate) fn push(&mut self, batch: Batch, metrics: &Metrics) {
        let failed = match self {
            Self::Memory(txs) => {
                let mut h = std::hash::BuildHasherDefault::<
                    std::collections::hash_map::DefaultHasher,
                >::default()
                .build_hasher();
                h.write(batch.app.as_bytes());
                h.write(batch.url.as_bytes());
                let i = (h.finish() % txs.len() as u64) as usize;
                match txs[i].try_send(batch) {
                    Ok(()) => None,
                    Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => {
                        Some((b, "queue_full"))
                    }
                }
            }
            Self::Redis(remote) => {
                let Remote { redis, conn } = &mut **remote;
                let json = serde_json::to_string(&batch).unwrap_or_default();
                if conn.is_none() {
                    *conn = redis.connect().ok();
                }
                let pushed = conn.as_mut().map(|c| {
                    redis::cmd("RPUSH")
                        .arg(redis.queue_key())
                        .arg(&json)
                        .query::<i64>(c)
                });
                match pushed {
                    Some(Ok(_)) => {
                        // In Redis now: any node may send it.
                        metrics.webhook_queue_depth.dec_by(batch.events as i64);
                        None
                    }
                    Some(Err(_)) | None => {
                        *conn = None;
                        Some((batch, "redis_unavailable"))
                    }
                }
            }
        };
        if let Some((b, reason)) = failed {
            metrics.webhook_queue_depth.dec_by(b.events as i64);
            metrics
                .webhooks_dropped
                .get_or_create(&[("reason", reason.to_owned())])
                .inc_by(b.events as u64);
            tracing::warn!(
                app = %b.app,
                url = %b.url,
                events = b.events,
                reason,
                "webhook batch dropped before sending"
            );
        }
    }
}

impl Source {
    /// The next batch; `None` once the queue is closed (single node) or
    /// `stop` says so (cluster: checked every second).
    pub(crate) fn take(&mut self, stop: &dyn Fn() -> bool) -> Option<Taken> {
        match self {
            Self::Memory(rx) => rx.recv().ok().map(|batch| Taken { batch, raw: None }),
            Self::Redis(remote) => loop {
                let Remote { redis, conn } = &mut **remote;
                if stop() {
                    return None;
                }
                if conn.is_none() {
                    match redis.connect() {
                        Ok(c) => *conn = Some(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "webhooks: cannot reach redis; retrying");
                            std::thread::sleep(Duration::from_secs(1));
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let got: redis::RedisResult<Option<String>> = redis::cmd("BLMOVE")
                    .arg(redis.queue_key())
                    .arg(redis.processing_key())
                    .arg("LEFT")
                    .arg("RIGHT")
                    .arg(1)
                    .query(c);
                match got {
                    Ok(None) => {}
                    Ok(Some(raw)) => match serde_json::from_str::<Batch>(&raw) {
                        Ok(batch) => {
                            return Some(Taken {
                                batch,
                                raw: Some(raw),
                            })
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "webhooks: malformed batch in redis: removed");
                            let _ = redis::cmd("LREM")
                                .arg(redis.processing_key())
                                .arg(1)
                                .arg(&raw)
                                .query::<i64>(c);
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "webhooks: redis queue read failed");
                        *conn = None;
                    }
                }
            },
        }
    }

    /// Whether an unacknowledged batch stays queued (cluster) rather than
    /// being lost (single node) when its sender stops.
    pub(crate) fn durable(&self) -> bool {
        matches!(self, Self::Redis(_))
    }

    /// Done with `taken` (sent, or given up).
    pub(crate) fn ack(&mut self, taken: &Taken) {
        let (Self::Redis(remote), Some(raw)) = (self, &taken.raw) else {
            return;
        };
        let Remote { redis, conn } = &mut **remote;
        let Some(c) = conn.as_mut() else { return };
        if let Err(e) = redis::cmd("LREM")
            .arg(redis.processing_key())
            .arg(1)
            .arg(raw)
            .query::<i64>(c)
        {
            tracing::warn!(error = %e, "webhooks: ack failed; the batch may be sent again");
            *conn = None;
        }
    }
}

/// A wait that a closed `stop` channel cuts short; true if it was.
pub(crate) fn wait(stop: &Receiver<()>, d: Duration) -> bool {
    matches!(
        stop.recv_timeout(d),
        Err(RecvTimeoutError::Disconnected) | Ok(())
    )
}
