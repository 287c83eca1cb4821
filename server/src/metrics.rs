//! Process counters and their Prometheus text rendering (`GET /metrics`).
//!
//! Counters are plain atomics bumped where things happen (`Relaxed`: each
//! is a statistic read on its own). Labelled counters (disconnects by
//! reason, HTTP requests by status, errors by code) sit in small mutexed
//! maps: they change on rare paths, never on a broadcast. Gauges
//! (connections, channels) are read from the Hubs at render time, and the
//! transport's byte and frame counters are pulled through a provider the
//! server installs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A labelled counter family.
#[derive(Debug, Default)]
pub struct Labelled(Mutex<BTreeMap<String, u64>>);

impl Labelled {
    /// Adds one to `label`.
    pub fn inc(&self, label: impl Into<String>) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(label.into()).or_insert(0) += 1;
    }

    /// The count of `label`.
    pub fn get(&self, label: &str) -> u64 {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(label).copied().unwrap_or(0)
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// The gateway's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// WebSocket connections opened.
    pub connections_opened: AtomicU64,
    /// WebSocket messages received from clients.
    pub messages_in: AtomicU64,
    /// Bytes of WebSocket messages received from clients.
    pub bytes_in: AtomicU64,
    /// Frames sent to single clients by the protocol layer (replies, errors).
    pub replies_out: AtomicU64,
    /// Events published (HTTP API and client events), per channel.
    pub events_published: AtomicU64,
    /// Client events accepted.
    pub client_events: AtomicU64,
    /// Subscriptions that succeeded.
    pub subscriptions: AtomicU64,
    /// Subscriptions refused.
    pub subscription_errors: AtomicU64,
    /// Frames dropped by the slow-consumer policy, for clients already gone.
    pub dropped_frames_closed: AtomicU64,
    /// Events the bus could not deliver.
    pub bus_errors: AtomicU64,
    /// Binary WebSocket messages refused (the protocol is JSON text).
    pub binary_messages: AtomicU64,
    /// Disconnects by reason.
    pub disconnects: Labelled,
    /// Refused upgrades by Pusher code.
    pub refused: Labelled,
    /// `pusher:error` frames sent, by code (`none` for codeless ones).
    pub errors: Labelled,
    /// HTTP requests by status.
    pub http: Labelled,
    /// Requests refused at a configured limit, by limit
    /// (`max_presence_members`, `max_subscriptions_per_connection`,
    /// `max_user_id_length`, `max_member_size`).
    pub limit_refusals: Labelled,
}

/// A counter helper.
pub fn inc(c: &AtomicU64) {
    // Relaxed: a statistic.
    c.fetch_add(1, Ordering::Relaxed);
}

/// A counter helper.
pub fn add(c: &AtomicU64, n: u64) {
    // Relaxed: a statistic.
    c.fetch_add(n, Ordering::Relaxed);
}

/// A counter helper.
pub fn get(c: &AtomicU64) -> u64 {
    // Relaxed: a statistic.
    c.load(Ordering::Relaxed)
}

/// Per-app gauges sampled at render time.
#[derive(Debug, Clone, Default)]
pub struct AppGauges {
    /// App id.
    pub app: String,
    /// Live connections.
    pub connections: usize,
    /// Occupied channels.
    pub channels: usize,
    /// Frames dropped for live clients.
    pub dropped_live: u64,
}

/// A Prometheus text writer.
struct Out(String);

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.head(name, kind, help);
        let _ = writeln!(self.0, "{name} {v}");
    }

    fn labelled(&mut self, name: &str, kind: &str, help: &str, label: &str, vs: &[(String, u64)]) {
        self.head(name, kind, help);
        for (l, v) in vs {
            let _ = writeln!(self.0, "{name}{{{label}=\"{}\"}} {v}", escape(l));
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Renders everything in the Prometheus text exposition format.
    /// `transport` are extra `(name, help, kind, value)` samples from the
    /// transport (bytes and frames in and out).
    pub fn render(&self, apps: &[AppGauges], transport: &[(&str, &str, &str, u64)]) -> String {
        let mut o = Out(String::with_capacity(4096));
        let per_app = |f: &dyn Fn(&AppGauges) -> u64| -> Vec<(String, u64)> {
            apps.iter().map(|a| (a.app.clone(), f(a))).collect()
        };
        o.labelled(
            "realtime_connections",
            "gauge",
            "Live WebSocket connections.",
            "app",
            &per_app(&|a| a.connections as u64),
        );
        o.labelled(
            "realtime_channels",
            "gauge",
            "Occupied channels.",
            "app",
            &per_app(&|a| a.channels as u64),
        );
        o.one(
            "realtime_connections_opened_total",
            "counter",
            "WebSocket connections opened.",
            get(&self.connections_opened),
        );
        o.one(
            "realtime_messages_in_total",
            "counter",
            "WebSocket messages received from clients.",
            get(&self.messages_in),
        );
        o.one(
            "realtime_bytes_in_total",
            "counter",
            "Bytes of WebSocket messages received from clients.",
            get(&self.bytes_in),
        );
        o.one(
            "realtime_replies_out_total",
            "counter",
            "Frames sent to one client by the protocol (replies and errors).",
            get(&self.replies_out),
        );
        o.one(
            "realtime_events_published_total",
            "counter",
            "Events published to a channel (HTTP API and client events).",
            get(&self.events_published),
        );
        o.one(
            "realtime_client_events_total",
            "counter",
            "Client events accepted.",
            get(&self.client_events),
        );
        o.one(
            "realtime_subscriptions_total",
            "counter",
            "Successful subscriptions.",
            get(&self.subscriptions),
        );
        o.one(
            "realtime_subscription_errors_total",
            "counter",
            "Refused subscriptions.",
            get(&self.subscription_errors),
        );
        let live: u64 = apps.iter().map(|a| a.dropped_live).sum();
        o.one(
            "realtime_dropped_frames_total",
            "counter",
            "Frames dropped by the slow-consumer policy.",
            get(&self.dropped_frames_closed) + live,
        );
        o.one(
            "realtime_bus_errors_total",
            "counter",
            "Events the broadcasting bus refused.",
            get(&self.bus_errors),
        );
        o.one(
            "realtime_binary_messages_refused_total",
            "counter",
            "Binary WebSocket messages answered with pusher:error (the protocol is JSON text).",
            get(&self.binary_messages),
        );
        o.labelled(
            "realtime_disconnects_total",
            "counter",
            "Disconnects by reason.",
            "reason",
            &self.disconnects.snapshot(),
        );
        o.labelled(
            "realtime_refused_connections_total",
            "counter",
            "Refused WebSocket upgrades by Pusher code.",
            "code",
            &self.refused.snapshot(),
        );
        o.labelled(
            "realtime_errors_sent_total",
            "counter",
            "pusher:error frames sent, by code.",
            "code",
            &self.errors.snapshot(),
        );
        o.labelled(
            "realtime_limit_refusals_total",
            "counter",
            "Requests refused at a configured limit, by limit.",
            "limit",
            &self.limit_refusals.snapshot(),
        );
        o.labelled(
            "realtime_http_requests_total",
            "counter",
            "HTTP requests by status.",
            "status",
            &self.http.snapshot(),
        );
        for (name, help, kind, v) in transport {
            o.one(name, kind, help, *v);
        }
        o.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        inc(&m.messages_in);
        m.http.inc("200");
        m.http.inc("200");
        m.disconnects.inc("pong \"timeout\"");
        let text = m.render(
            &[AppGauges {
                app: "1".into(),
                connections: 3,
                channels: 2,
                dropped_live: 4,
            }],
            &[("realtime_bytes_out_total", "Bytes written.", "counter", 9)],
        );
        assert!(
            text.contains("realtime_connections{app=\"1\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("realtime_messages_in_total 1\n"));
        assert!(text.contains("realtime_http_requests_total{status=\"200\"} 2\n"));
        assert!(text.contains("realtime_dropped_frames_total 4\n"));
        assert!(text.contains("reason=\"pong \\\"timeout\\\"\""));
        assert!(
            text.contains("# TYPE realtime_bytes_out_total counter\nrealtime_bytes_out_total 9\n")
        );
    }
}
