//! The values other crates count, exposed on `/metrics`: the transport's
//! socket counters and the Redis driver's, read on each scrape. One table
//! each: name (without `_total`: the encoder adds it to counters), help,
//! kind, value.

use realtime_mio::Stats;

use crate::metrics::{Kind, Sample};

/// The transport's counters.
pub(crate) fn transport(s: &Stats) -> Vec<Sample> {
    vec![
        ("realtime_transport_bytes_in", "Bytes read from sockets.", Kind::Counter, s.bytes_in),
        ("realtime_transport_bytes_out", "Bytes written to sockets.", Kind::Counter, s.bytes_out),
        ("realtime_transport_frames_in", "WebSocket data messages received.", Kind::Counter, s.frames_in),
        ("realtime_transport_frames_out", "WebSocket data frames written, one per recipient.", Kind::Counter, s.frames_out),
        ("realtime_transport_connections_accepted", "Sockets accepted.", Kind::Counter, s.accepted),
        ("realtime_transport_rejected_over_capacity", "Upgrades refused with 503: transport full.", Kind::Counter, s.rejected_over_capacity),
        ("realtime_transport_handshake_timeouts", "Sockets dropped because no complete HTTP request arrived in time (sockets that never speak).", Kind::Counter, s.handshake_timeouts),
        ("realtime_transport_handshake_failures", "Malformed HTTP requests and WebSocket handshakes answered with a 4xx by the transport.", Kind::Counter, s.handshake_failures),
        ("realtime_transport_tls_handshake_failures", "TLS handshakes refused (plaintext clients on the TLS port, garbage or unsupported ClientHellos).", Kind::Counter, s.tls_handshake_failures),
        ("realtime_transport_idle_timeouts", "Connections closed for idleness.", Kind::Counter, s.idle_timeouts),
        ("realtime_transport_write_timeouts", "Connections dropped on write timeout.", Kind::Counter, s.write_timeouts),
        ("realtime_transport_protocol_violations", "Connections closed for WebSocket protocol violations.", Kind::Counter, s.closed_for_violation),
        ("realtime_transport_silent_sockets", "Sockets dropped for sending nothing within silent_timeout.", Kind::Counter, s.silent_timeouts),
        ("realtime_transport_rejected_per_ip", "Sockets refused with 429 over max_connections_per_ip.", Kind::Counter, s.rejected_per_ip),
        ("realtime_transport_body_budget_refusals", "Request bodies refused with 503: max_http_buffer in use.", Kind::Counter, s.body_budget_refusals),
        ("realtime_transport_http_body_bytes", "Request-body bytes held right now against max_http_buffer.", Kind::Gauge, s.http_body_bytes),
        ("realtime_transport_refused_before_body", "HTTP requests answered from their head (bad signature, unknown app) without reading the body.", Kind::Counter, s.refused_before_body),
        ("realtime_transport_local_wakes", "Replies written in the loop turn that produced them (no cross-thread wake-up).", Kind::Counter, s.local_wakes),
        ("realtime_transport_loop_wakeups", "Event-loop wake-ups from another thread (eventfd writes).", Kind::Counter, s.loop_wakeups),
        ("realtime_transport_slow_consumer_disconnects", "Connections closed with 1008 (slow consumer).", Kind::Counter, s.closes_with(1008)),
    ]
}

/// The Redis driver's counters (cluster mode).
pub(crate) fn redis(r: &broadcasting::Redis) -> Vec<Sample> {
    let s = r.stats();
    vec![
        (
            "realtime_redis_connected",
            "1 while the redis subscriber is connected.",
            Kind::Gauge,
            u64::from(r.is_connected()),
        ),
        (
            "realtime_redis_published",
            "Events published to redis.",
            Kind::Counter,
            s.published,
        ),
        (
            "realtime_redis_received",
            "Events received from other nodes.",
            Kind::Counter,
            s.received,
        ),
        (
            "realtime_redis_publish_errors",
            "Publishes that could not reach redis (delivered locally only).",
            Kind::Counter,
            s.publish_errors,
        ),
        (
            "realtime_redis_reconnects",
            "Redis subscriber reconnections.",
            Kind::Counter,
            s.reconnects,
        ),
        (
            "realtime_redis_malformed",
            "Redis messages that were not a valid envelope.",
            Kind::Counter,
            s.malformed,
        ),
    ]
}
