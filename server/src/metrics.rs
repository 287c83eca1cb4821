//! Process metrics, through the Prometheus project's own Rust client
//! (`prometheus-client`): one [`Registry`], rendered as OpenMetrics text on
//! `GET /metrics`.
//!
//! - **Counters** are bumped where things happen (an atomic add each).
//!   Labelled ones (disconnects by reason, HTTP requests by status, errors
//!   by code, limit refusals by limit) are `Family`s: a read-locked map,
//!   touched on rare paths, never per recipient of a broadcast.
//! - **Histograms** where a distribution matters: the time to serve an
//!   HTTP request, the number of local recipients of a fan-out, and the
//!   time a fan-out takes (bus event received → every recipient's outbox
//!   has the frame). One observation per request or per broadcast.
//! - **Sampled values** (connections and channels per app, frames dropped
//!   for live clients) are read from the Hubs at render time
//!   ([`Metrics::render`]); the transport's and the Redis driver's
//!   counters come through collectors registered by the server
//!   ([`Metrics::register_samples`]), read on each scrape; with the
//!   `jemalloc` feature (the binary's allocator), the allocator's bytes in
//!   use and resident ([`allocator_samples`]), so that RSS growth can be
//!   told apart from memory in use.
//!
//! Counter names are registered without `_total`: the encoder appends it,
//! so `realtime_messages_in` is exposed as `realtime_messages_in_total`.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// One label, e.g. `("reason", "pong_timeout")`.
pub(crate) type Label = [(&'static str, String); 1];

/// A counter family with one label.
pub(crate) type Labelled = Family<Label, Counter>;

/// Bumps `family` under `label = value`.
pub(crate) fn inc(family: &Labelled, label: &'static str, value: impl Into<String>) {
    family.get_or_create(&[(label, value.into())]).inc();
}

/// The count of `family` under `label = value`.
#[cfg(test)]
pub(crate) fn count(family: &Labelled, label: &'static str, value: &str) -> u64 {
    family.get_or_create(&[(label, value.to_owned())]).get()
}

/// Per-app values sampled at render time.
#[derive(Debug, Clone, Default)]
pub(crate) struct AppGauges {
    /// App id.
    pub(crate) app: String,
    /// Live connections.
    pub(crate) connections: usize,
    /// Occupied channels.
    pub(crate) channels: usize,
    /// Frames dropped for live clients.
    pub(crate) dropped_live: u64,
}

/// Whether a sampled value only goes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A counter (exposed with `_total`).
    Counter,
    /// A gauge.
    Gauge,
}

/// A value read on each scrape: `(name, help, kind, value)`.
pub(crate) type Sample = (&'static str, &'static str, Kind, u64);

/// A collector over a function returning samples.
struct Samples<F>(F);

impl<F> std::fmt::Debug for Samples<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Samples")
    }
}

impl<F: Fn() -> Vec<Sample> + Send + Sync + 'static> Collector for Samples<F> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, kind, v) in (self.0)() {
            match kind {
                Kind::Counter => {
                    let c = ConstCounter::new(v);
                    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
                }
                Kind::Gauge => {
                    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
                    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
                }
            }
        }
        Ok(())
    }
}

/// The gateway's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    pub(crate) connections_opened: Counter,
    pub(crate) messages_in: Counter,
    pub(crate) bytes_in: Counter,
    pub(crate) replies_out: Counter,
    pub(crate) events_published: Counter,
    pub(crate) client_events: Counter,
    pub(crate) subscriptions: Counter,
    pub(crate) subscription_errors: Counter,
    /// Frames dropped by the slow-consumer policy, for clients already gone
    /// (live clients' drops are sampled at render time).
    pub(crate) dropped_frames_closed: Counter,
    pub(crate) bus_errors: Counter,
    pub(crate) binary_messages: Counter,
    pub(crate) disconnects: Labelled,
    pub(crate) refused: Labelled,
    pub(crate) errors: Labelled,
    pub(crate) http: Labelled,
    pub(crate) limit_refusals: Labelled,
    pub(crate) http_seconds: Histogram,
    pub(crate) fanout_recipients: Histogram,
    pub(crate) fanout_seconds: Histogram,
    /// Webhook requests a receiver acknowledged (2xx).
    pub(crate) webhooks_sent: Counter,
    /// Webhook attempts that failed (non-2xx, timeout, connection error).
    pub(crate) webhooks_failed: Counter,
    /// Webhook attempts that were retries.
    pub(crate) webhooks_retried: Counter,
    /// Webhook events given up, by reason (`queue_full`, `retry_budget`,
    /// `shutdown`, `unknown_app`).
    pub(crate) webhooks_dropped: Labelled,
    /// Webhook events of this node not yet acknowledged or dropped.
    pub(crate) webhook_queue_depth: Gauge,
    /// From a batch's first event to its acknowledgement, seconds.
    pub(crate) webhook_seconds: Histogram,
    dropped_frames: Counter<u64, AtomicU64>,
    connections: Family<Label, Gauge>,
    channels: Family<Label, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered.
    pub(crate) fn new() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::default()),
            connections_opened: Counter::default(),
            messages_in: Counter::default(),
            bytes_in: Counter::default(),
            replies_out: Counter::default(),
            events_published: Counter::default(),
            client_events: Counter::default(),
            subscriptions: Counter::default(),
            subscription_errors: Counter::default(),
            dropped_frames_closed: Counter::default(),
            bus_errors: Counter::default(),
            binary_messages: Counter::default(),
            disconnects: Labelled::default(),
            refused: Labelled::default(),
            errors: Labelled::default(),
            http: Labelled::default(),
            limit_refusals: Labelled::default(),
            // 50 µs .. ~26 s.
            http_seconds: Histogram::new(exponential_buckets(50e-6, 2.0, 20)),
            // 1 .. 131,072 recipients.
            fanout_recipients: Histogram::new(exponential_buckets(1.0, 2.0, 18)),
            // 1 µs .. ~0.5 s.
            fanout_seconds: Histogram::new(exponential_buckets(1e-6, 2.0, 20)),
            webhooks_sent: Counter::default(),
            webhooks_failed: Counter::default(),
            webhooks_retried: Counter::default(),
            webhooks_dropped: Labelled::default(),
            webhook_queue_depth: Gauge::default(),
            // 1 ms .. ~524 s.
            webhook_seconds: Histogram::new(exponential_buckets(1e-3, 2.0, 20)),
            dropped_frames: Counter::default(),
            connections: Family::default(),
            channels: Family::default(),
        };
        {
            let mut r = m.registry();
            r.register(
                "realtime_connections",
                "Live WebSocket connections.",
                m.connections.clone(),
            );
            r.register(
                "realtime_channels",
                "Occupied channels.",
                m.channels.clone(),
            );
            let counters: [(&str, &str, &Counter); 15] = [
                ("realtime_webhooks_sent", "Webhook requests acknowledged by their receiver (2xx).", &m.webhooks_sent),
                ("realtime_webhooks_failed", "Webhook attempts that failed (non-2xx answer, timeout, connection error).", &m.webhooks_failed),
                ("realtime_webhooks_retried", "Webhook attempts that were retries of a failed one.", &m.webhooks_retried),
                ("realtime_connections_opened", "WebSocket connections opened.", &m.connections_opened),
                ("realtime_messages_in", "WebSocket messages received from clients.", &m.messages_in),
                ("realtime_bytes_in", "Bytes of WebSocket messages received from clients.", &m.bytes_in),
                ("realtime_replies_out", "Frames sent to one client by the protocol (replies and errors).", &m.replies_out),
                ("realtime_events_published", "Events published to a channel (HTTP API and client events).", &m.events_published),
                ("realtime_client_events", "Client events accepted.", &m.client_events),
                ("realtime_subscriptions", "Successful subscriptions.", &m.subscriptions),
                ("realtime_subscription_errors", "Refused subscriptions.", &m.subscription_errors),
                ("realtime_dropped_frames", "Frames dropped by the slow-consumer policy.", &m.dropped_frames),
                ("realtime_bus_errors", "Events the broadcasting bus refused.", &m.bus_errors),
                ("realtime_binary_messages_refused", "Binary WebSocket messages answered with pusher:error (the protocol is JSON text).", &m.binary_messages),
                ("realtime_dropped_frames_closed", "Frames dropped by the slow-consumer policy for clients now gone.", &m.dropped_frames_closed),
            ];
            for (name, help, c) in counters {
                r.register(name, help, c.clone());
            }
            let families: [(&str, &str, &Labelled); 6] = [
                (
                    "realtime_webhooks_dropped",
                    "Webhook events given up, by reason.",
                    &m.webhooks_dropped,
                ),
                (
                    "realtime_disconnects",
                    "Disconnects by reason.",
                    &m.disconnects,
                ),
                (
                    "realtime_refused_connections",
                    "Refused WebSocket upgrades by Pusher code.",
                    &m.refused,
                ),
                (
                    "realtime_errors_sent",
                    "pusher:error frames sent, by code.",
                    &m.errors,
                ),
                (
                    "realtime_limit_refusals",
                    "Requests refused at a configured limit, by limit.",
                    &m.limit_refusals,
                ),
                (
                    "realtime_http_requests",
                    "HTTP requests by status.",
                    &m.http,
                ),
            ];
            for (name, help, f) in families {
                r.register(name, help, f.clone());
            }
            r.register(
                "realtime_http_request_seconds",
                "Time to serve an HTTP request (API, health, metrics), seconds.",
                m.http_seconds.clone(),
            );
            r.register(
                "realtime_webhook_queue_depth",
                "Webhook events of this node waiting to be batched, sent or retried.",
                m.webhook_queue_depth.clone(),
            );
            r.register(
                "realtime_webhook_delivery_seconds",
                "Time from a webhook batch's first event to its acknowledgement, seconds.",
                m.webhook_seconds.clone(),
            );
            r.register(
                "realtime_fanout_recipients",
                "Local subscribers of the channel at each delivered broadcast.",
                m.fanout_recipients.clone(),
            );
            r.register(
                "realtime_fanout_seconds",
                "Time to hand one broadcast to every local recipient's outbox, seconds.",
                m.fanout_seconds.clone(),
            );
        }
        m
    }

    /// The gateway's metrics, with the allocator's figures when the
    /// binary's allocator is jemalloc (feature `jemalloc`).
    pub(crate) fn with_allocator() -> Self {
        let m = Self::new();
        #[cfg(feature = "jemalloc")]
        m.register_samples(allocator_samples);
        m
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds values read on every scrape (the transport's, the bus
    /// driver's).
    pub(crate) fn register_samples(
        &self,
        samples: impl Fn() -> Vec<Sample> + Send + Sync + 'static,
    ) {
        self.registry()
            .register_collector(Box::new(Samples(samples)));
    }

    /// Registers a metric of another module (the cache's, `cache/`).
    pub(crate) fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry().register(name, help, metric);
    }

    /// Records one fan-out of `recipients` that took `took`.
    pub(crate) fn fanout(&self, recipients: usize, took: Duration) {
        self.fanout_recipients.observe(recipients as f64);
        self.fanout_seconds.observe(took.as_secs_f64());
    }

    /// Renders everything in the OpenMetrics text format, with the per-app
    /// values sampled now.
    pub(crate) fn render(&self, apps: &[AppGauges]) -> String {
        let gauge = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        for a in apps {
            let label = [("app", a.app.clone())];
            self.connections
                .get_or_create(&label)
                .set(gauge(a.connections));
            self.channels.get_or_create(&label).set(gauge(a.channels));
        }
        // The exposed total is the closed clients' drops plus the live
        // ones'; a counter only goes up, so add what it lacks.
        let live: u64 = apps.iter().map(|a| a.dropped_live).sum();
        let total = self.dropped_frames_closed.get() + live;
        let shown = self.dropped_frames.get();
        if total > shown {
            self.dropped_frames.inc_by(total - shown);
        }
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry());
        out
    }
}

/// jemalloc's heap figures, read on each scrape (the statistics are
/// refreshed first: `epoch`): `allocated`, the bytes the application holds;
/// `resident`, the bytes of the pages the allocator keeps in memory (RSS
/// apart from code and stacks). Meaningful when jemalloc is the global
/// allocator, as in the `realtime-server` binary; a failed read yields
/// nothing.
#[cfg(feature = "jemalloc")]
pub(crate) fn allocator_samples() -> Vec<Sample> {
    use tikv_jemalloc_ctl::{epoch, stats};
    if epoch::advance().is_err() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(2);
    if let Ok(v) = stats::allocated::read() {
        out.push((
            "realtime_allocator_allocated_bytes",
            "Bytes allocated by the application and not freed (jemalloc stats.allocated).",
            Kind::Gauge,
            v as u64,
        ));
    }
    if let Ok(v) = stats::resident::read() {
        out.push((
            "realtime_allocator_resident_bytes",
            "Bytes in pages the allocator keeps resident (jemalloc stats.resident).",
            Kind::Gauge,
            v as u64,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "jemalloc")]
    #[test]
    fn the_allocator_figures_are_exposed() {
        let m = Metrics::with_allocator();
        let text = m.render(&[]);
        for name in [
            "realtime_allocator_allocated_bytes ",
            "realtime_allocator_resident_bytes ",
        ] {
            assert!(text.contains(name), "{name} missing: {text}");
        }
    }

    #[test]
    fn renders_openmetrics_text() {
        let m = Metrics::new();
        m.messages_in.inc();
        inc(&m.http, "status", "200");
        inc(&m.http, "status", "200");
        inc(&m.disconnects, "reason", "pong \"timeout\"");
        m.fanout(1000, Duration::from_micros(30));
        m.register_samples(|| {
            vec![(
                "realtime_transport_bytes_out",
                "Bytes written.",
                Kind::Counter,
                9,
            )]
        });
        let text = m.render(&[AppGauges {
            app: "1".into(),
            connections: 3,
            channels: 2,
            dropped_live: 4,
        }]);
        assert!(
            text.contains("realtime_connections{app=\"1\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("realtime_messages_in_total 1\n"), "{text}");
        assert!(text.contains("realtime_http_requests_total{status=\"200\"} 2\n"));
        assert!(text.contains("realtime_dropped_frames_total 4\n"));
        assert!(text.contains("reason=\"pong \\\"timeout\\\"\""), "{text}");
        assert!(
            text.contains("realtime_transport_bytes_out_total 9\n"),
            "{text}"
        );
        assert!(
            text.contains("realtime_fanout_recipients_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("realtime_fanout_recipients_bucket{le=\"1024.0\"} 1\n"),
            "{text}"
        );
        assert_eq!(count(&m.http, "status", "200"), 2);
    }
}
