//! Webhooks: Pusher's `channel_occupied`, `channel_vacated`,
//! `member_added`, `member_removed`, `client_event` and `cache_miss`
//! events, POSTed in batches to each app's targets, signed, retried,
//! bounded.
//!
//! # The path of an event
//!
//! 1. **Hooks** ([`Webhooks::push`]). The Hub's `on_channel` hook (first
//!    member in, last member out) and `on_presence` hook (a user's first
//!    join, last leave: per user, as the presence frames) run under the
//!    channel's lock; the Gateway's client-event path and the cache
//!    channels' miss path (`Webhooks::cache_miss`) run on an event loop.
//!    None of them may block, so a push is one `try_send` on a bounded
//!    channel (`--webhook-queue` events, default 10,000). A full channel
//!    drops the event: counted (`realtime_webhooks_dropped_total
//!    {reason="queue_full"}`) and logged (at the 1st, 2nd, 4th, 8th…
//!    drop, so a flood does not become a flood of log lines). Because a
//!    channel's hooks run under that channel's lock, its events enter the
//!    queue in the order they happened: occupied before vacated, a member's
//!    added before its removed.
//! 2. **Batching** (one thread, `batcher`). Events are grouped per target
//!    (app, URL), each target getting the events its `event_types` and
//!    `filter` select. A group is closed when it holds [`MAX_BATCH_EVENTS`]
//!    events (100) or [`BATCH_WINDOW`] (50 ms) after its first event,
//!    then encoded once as `{"time_ms":…,"events":[…]}`.
//! 3. **Delivery queue** ([`queue`]). Single node: one bounded channel
//!    per worker thread (`--webhook-workers`, default 2); a target always
//!    maps to the same worker, so one target's batches are sent one at a
//!    time, in order. Cluster (`--redis`): a Redis list shared by every
//!    node, so that a batch queued by a node that dies is sent by another
//!    (see `queue.rs` for the at-least-once protocol).
//! 4. **Sending** ([`sender`]). A POST with `Content-Type:
//!    application/json`, `X-Pusher-Key`, `X-Pusher-Signature` (hex
//!    HMAC-SHA256 of the body under the app secret) and
//!    `X-Pusher-Webhook-Id` (hex SHA-256 of the body: the same id on every
//!    retry of a batch, so a receiver can drop the duplicates that
//!    at-least-once delivery allows). A 2xx answer acknowledges. Anything
//!    else, a connection error or a timeout (`--webhook-timeout-ms`,
//!    default 5 s) is retried after a capped exponential backoff with
//!    jitter (100 ms doubling to at most 10 s, each wait drawn in
//!    [half, whole]) for at most `--webhook-retry-ms` (default 60 s)
//!    after the first attempt; then the batch's events are dropped,
//!    counted (`reason="retry_budget"`) and logged.
//!
//! # Cluster
//!
//! With `--redis`, occupancy and membership are decided cluster-wide by
//! the `cluster` submodule (a Redis Lua script over per-channel and
//! per-member sets of node ids), so each event is queued by exactly one
//! node; a dead node's channels and members are released by the node that
//! prunes it.
//!
//! # Choices where Pusher is silent
//!
//! - `time_ms` is the time the batch was closed.
//! - The depth gauge counts this node's events from queueing until they
//!   are acknowledged or dropped (an event counts once per target).
//! - At shutdown, queued batches get one attempt each and no retries,
//!   within one request timeout in all; what is left is dropped
//!   (`reason="shutdown"`), or in cluster mode stays in Redis for the
//!   other nodes.
//! - Only `http://` targets: TLS is not built in (put a local proxy in
//!   front of an `https://` receiver).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::app::Apps;
use crate::config::{Settings, WebhookTarget};
use crate::dashboard::Feed;
use crate::metrics::{self, Metrics};

mod batch;
pub(crate) mod cluster;
mod event;
mod queue;
mod sender;

use batch::batcher;
pub(crate) use event::WebhookEvent;
use queue::Queue;

/// Most events in one webhook request.
pub const MAX_BATCH_EVENTS: usize = 100;
/// Longest an event waits for others to share its request.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);

/// An event on its way to the batcher.
struct Queued {
    app: Arc<str>,
    targets: Arc<[WebhookTarget]>,
    event: WebhookEvent,
}

enum Intake {
    Push(Queued),
    /// Close every group now and end.
    Stop,
}

/// The node-wide entry of the batcher, handed to every app's [`Webhooks`].
struct Entry {
    tx: Sender<Intake>,
    metrics: Arc<Metrics>,
    full: AtomicU64,
}

/// The webhooks of one app: which targets it has, and the door into this
/// node's delivery. Reached with [`crate::App::webhooks`].
pub struct Webhooks {
    app: Arc<str>,
    targets: Arc<[WebhookTarget]>,
    entry: OnceLock<Arc<Entry>>,
    /// The app's dashboard feed: each queued event is shown there.
    feed: Arc<Feed>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("app", &self.app)
            .field("targets", &self.targets.len())
            .field("running", &self.entry.get().is_some())
            .finish()
    }
}

impl Webhooks {
    /// The webhooks of app `app` with these targets; nothing is sent until
    /// the node starts its delivery.
    pub(crate) fn new(app: &str, targets: &[WebhookTarget], feed: Arc<Feed>) -> Self {
        Self {
            app: Arc::from(app),
            targets: Arc::from(targets),
            entry: OnceLock::new(),
            feed,
        }
    }

    /// Whether some target may want an event `name` on `channel`.
    pub fn wants(&self, name: &str, channel: &str) -> bool {
        self.entry.get().is_some() && self.targets.iter().any(|t| t.wants(name, channel))
    }

    /// Queues a `cache_miss` event: a subscriber of the cache channel
    /// `channel` found nothing cached. Never blocks (see the module docs).
    pub fn cache_miss(&self, channel: &str) {
        self.push(WebhookEvent::CacheMiss {
            channel: channel.to_owned(),
        });
    }

    /// Queues a `client_event` event. Never blocks.
    pub fn client_event(
        &self,
        channel: &str,
        event: &str,
        data: &str,
        socket_id: &str,
        user_id: Option<&str>,
    ) {
        if !self.wants("client_event", channel) {
            return;
        }
        self.push(WebhookEvent::ClientEvent {
            channel: channel.to_owned(),
            event: event.to_owned(),
            data: data.to_owned(),
            socket_id: socket_id.to_owned(),
            user_id: user_id.map(str::to_owned),
        });
    }

    /// Queues `event` for the targets that want it; never blocks: when the
    /// queue is full the event is dropped, counted and logged.
    pub(crate) fn push(&self, event: WebhookEvent) {
        let Some(entry) = self.entry.get() else {
            return;
        };
        if !self
            .targets
            .iter()
            .any(|t| t.wants(event.name(), event.channel()))
        {
            return;
        }
        let queued = Queued {
            app: Arc::clone(&self.app),
            targets: Arc::clone(&self.targets),
            event,
        };
        entry.metrics.webhook_queue_depth.inc();
        let (name, channel) = (queued.event.name(), queued.event.channel().to_owned());
        match entry.tx.try_send(Intake::Push(queued)) {
            Ok(()) => self.feed.webhook(name, Some(&channel), "queued"),
            Err(
                TrySendError::Full(Intake::Push(q)) | TrySendError::Disconnected(Intake::Push(q)),
            ) => {
                entry.metrics.webhook_queue_depth.dec();
                metrics::inc(&entry.metrics.webhooks_dropped, "reason", "queue_full");
                // Relaxed: a counter deciding when to log.
                let n = entry.full.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        app = %q.app,
                        event = q.event.name(),
                        dropped = n,
                        "webhook queue full (--webhook-queue): event dropped"
                    );
                }
            }
            Err(_) => {
                entry.metrics.webhook_queue_depth.dec();
            }
        }
    }

    /// Whether this app has any target.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the delivery threads share.
pub(crate) struct Shared {
    pub(crate) apps: HashMap<String, (String, String)>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) agent: ureq::Agent,
    pub(crate) retry: Duration,
    /// Set at shutdown: no more retries.
    pub(crate) stopping: AtomicBool,
    /// Set at shutdown: after it, queued batches get no attempt at all, so
    /// a receiver that hangs delays a shutdown by one request timeout.
    pub(crate) give_up_at: OnceLock<Instant>,
    /// One request's time limit.
    pub(crate) timeout: Duration,
    /// Woken at shutdown, to cut a backoff short.
    pub(crate) stop_rx: Receiver<()>,
}

/// This node's webhook delivery: the batcher and the sender threads.
pub(crate) struct Delivery {
    tx: Sender<Intake>,
    shared: Arc<Shared>,
    stop_tx: Option<Sender<()>>,
    batcher: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    /// Cluster mode: the Redis queue, where unsent batches go back at stop.
    durable: Option<queue::RedisQueue>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Delivery {
    /// Starts delivery for the apps that have targets and connects their
    /// Hubs' hooks; `None` when no app has a target. In cluster mode
    /// (`cluster` given) the occupancy and membership hooks go through the
    /// cluster's decision instead (`cluster.rs`), and the delivery queue is
    /// the Redis list.
    ///
    /// # Errors
    ///
    /// A thread could not be started.
    pub(crate) fn start(
        settings: &Settings,
        apps: &Apps,
        metrics: &Arc<Metrics>,
        cluster: Option<&cluster::Decider>,
    ) -> std::io::Result<Option<Self>> {
        if apps.all().iter().all(|a| a.webhooks().is_empty()) {
            return Ok(None);
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(settings.webhook_timeout_ms)))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let shared = Arc::new(Shared {
            apps: apps
                .all()
                .iter()
                .map(|a| {
                    let c = a.config();
                    (c.id.clone(), (c.key.clone(), c.secret.clone()))
                })
                .collect(),
            metrics: Arc::clone(metrics),
            agent,
            retry: Duration::from_millis(settings.webhook_retry_ms),
            stopping: AtomicBool::new(false),
            give_up_at: OnceLock::new(),
            timeout: Duration::from_millis(settings.webhook_timeout_ms),
            stop_rx,
        });
        let (queue, sources) = match cluster {
            Some(c) => Queue::redis(c.redis(), settings.webhook_workers),
            None => Queue::memory(settings.webhook_workers, settings.webhook_queue),
        };
        let mut workers = Vec::new();
        for (i, source) in sources.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            workers.push(
                std::thread::Builder::new()
                    .name(format!("webhooks-{i}"))
                    .spawn(move || sender::run(&shared, source))?,
            );
        }
        let (tx, rx) = crossbeam_channel::bounded(settings.webhook_queue);
        let batch_metrics = Arc::clone(metrics);
        let batcher = std::thread::Builder::new()
            .name("webhooks-batch".into())
            .spawn(move || batcher(&rx, queue, &batch_metrics))?;
        let entry = Arc::new(Entry {
            tx: tx.clone(),
            metrics: Arc::clone(metrics),
            full: AtomicU64::new(0),
        });
        for app in apps.all() {
            if app.webhooks().is_empty() {
                continue;
            }
            let _ = app.webhooks().entry.set(Arc::clone(&entry));
            match cluster {
                Some(c) => c.install(app),
                None => {
                    // Weak: the Hub (in the App) owns its hooks.
                    let hooks = Arc::downgrade(app);
                    app.hub().on_channel(move |e| {
                        if let Some(app) = hooks.upgrade() {
                            app.webhooks()
                                .push(WebhookEvent::occupancy(e.channel, e.occupied));
                        }
                    });
                    let hooks = Arc::downgrade(app);
                    app.hub().on_presence(move |e| {
                        if let Some(app) = hooks.upgrade() {
                            app.webhooks().push(WebhookEvent::membership(
                                &e.channel,
                                &e.member.id,
                                e.joined,
                            ));
                        }
                    });
                }
            }
        }
        tracing::info!(
            workers = settings.webhook_workers,
            queue = settings.webhook_queue,
            retry_ms = settings.webhook_retry_ms,
            timeout_ms = settings.webhook_timeout_ms,
            "webhooks on"
        );
        Ok(Some(Self {
            tx,
            shared,
            stop_tx: Some(stop_tx),
            batcher: Some(batcher),
            workers,
            durable: cluster.map(|c| c.redis().clone()),
        }))
    }

    /// Sends what is queued (one attempt each, no more retries), then
    /// stops the threads. Close the Hubs first, so that their last
    /// `channel_vacated`/`member_removed` events are in the queue.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(stop_tx) = self.stop_tx.take() else {
            return;
        };
        // A blocking send: the batcher must see it, even behind a full queue.
        let _ = self.tx.send(Intake::Stop);
        if let Some(b) = self.batcher.take() {
            let _ = b.join();
        }
        let _ = self
            .shared
            .give_up_at
            .set(Instant::now() + self.shared.timeout);
        self.shared.stopping.store(true, Ordering::SeqCst);
        drop(stop_tx); // wakes every backoff wait
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(redis) = &self.durable {
            redis.requeue_own();
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.stop();
    }
}
