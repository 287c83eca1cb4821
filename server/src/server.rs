//! Wiring for the binary and for socket-level tests: the gateway, the
//! transport, the activity sweeper, and an orderly shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use realtime_mio::{Config, Server};

use crate::activity::Sweeper;
use crate::config::Settings;
use crate::gateway::{Gateway, PONG_TIMEOUT};
use crate::handler::PusherHandler;
use crate::protocol::code;

/// Extra transport connection slots above `max_connections`, so that a
/// client over capacity still completes a handshake and hears Pusher's 4100
/// instead of an HTTP 503.
const REFUSAL_SLACK: usize = 64;

/// A running gateway.
pub struct Running {
    gateway: Arc<Gateway>,
    server: Arc<Mutex<Option<Server>>>,
    local_addr: std::net::SocketAddr,
    sweeper: Option<Sweeper>,
    bus: Option<crate::bus::Attached>,
    cluster: Option<crate::cluster::Cluster>,
    /// The `--metrics-bind` listener.
    metrics: Option<Server>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// The transport configuration for these settings.
pub fn transport_config(settings: &Settings) -> Config {
    let activity = Duration::from_secs(settings.activity_timeout);
    Config {
        bind: settings.bind,
        workers: settings.workers,
        max_connections: settings.max_connections.saturating_add(REFUSAL_SLACK),
        max_message_size: settings.max_message_size,
        max_http_buffer: settings.max_http_buffer,
        max_connections_per_ip: settings.max_connections_per_ip,
        silent_timeout: Duration::from_secs(settings.silent_timeout),
        // The Pusher-level timeout (ping, then 4201) must fire first.
        idle_timeout: activity + PONG_TIMEOUT + Duration::from_secs(30),
        ..Config::default()
    }
}

/// Starts the gateway on `settings.bind`.
///
/// # Errors
///
/// Binding the socket or spawning threads failed.
///
/// With `settings.redis` the node joins a cluster: the bus is the Redis
/// driver and presence is cluster-wide (`cluster.rs`). An unreachable
/// Redis does not stop the start: the node logs the error, serves its own
/// clients alone and keeps retrying in the background; the cluster heals
/// when Redis answers.
pub fn start(settings: &Settings) -> std::io::Result<Running> {
    let gateway = Arc::new(Gateway::new(settings));
    let mut cluster = None;
    let bus: Arc<dyn broadcasting::Broadcaster> = match &settings.redis {
        None => Arc::new(
            broadcasting::Memory::builder()
                .buffer(crate::bus::BUS_BUFFER)
                .build(),
        ),
        Some(url) => {
            let redis = Arc::new(
                broadcasting::Redis::builder(url.as_str())
                    .namespace(settings.redis_namespace.as_str())
                    .node_id(gateway.node_id())
                    .buffer(crate::bus::BUS_BUFFER)
                    .build()
                    .map_err(|e| std::io::Error::other(format!("--redis {}: {e}", redact(url))))?,
            );
            let deadline = std::time::Instant::now() + REDIS_START_WAIT;
            while !redis.is_connected() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if redis.is_connected() {
                tracing::info!(redis = %redact(url), node = %gateway.node_id(), "cluster mode: connected to redis");
            } else {
                tracing::error!(
                    redis = %redact(url),
                    "cluster mode: redis is unreachable; serving this node's clients alone and retrying in the background"
                );
            }
            let stats_of = Arc::downgrade(&redis);
            gateway.set_bus_stats(move || {
                let Some(r) = stats_of.upgrade() else {
                    return Vec::new();
                };
                let s = r.stats();
                vec![
                    (
                        "realtime_redis_connected",
                        "1 while the redis subscriber is connected.",
                        "gauge",
                        u64::from(r.is_connected()),
                    ),
                    (
                        "realtime_redis_published_total",
                        "Events published to redis.",
                        "counter",
                        s.published,
                    ),
                    (
                        "realtime_redis_received_total",
                        "Events received from other nodes.",
                        "counter",
                        s.received,
                    ),
                    (
                        "realtime_redis_publish_errors_total",
                        "Publishes that could not reach redis (delivered locally only).",
                        "counter",
                        s.publish_errors,
                    ),
                    (
                        "realtime_redis_reconnects_total",
                        "Redis subscriber reconnections.",
                        "counter",
                        s.reconnects,
                    ),
                    (
                        "realtime_redis_malformed_total",
                        "Redis messages that were not a valid envelope.",
                        "counter",
                        s.malformed,
                    ),
                ]
            });
            cluster = Some(crate::cluster::Cluster::start(
                &gateway,
                Arc::clone(&redis),
                url,
                &settings.redis_namespace,
                Duration::from_secs(settings.node_ttl),
            )?);
            redis
        }
    };
    let attached = crate::bus::attach(&gateway, bus).map_err(std::io::Error::other)?;
    let mut running = start_with(gateway, settings)?;
    running.bus = Some(attached);
    running.cluster = cluster;
    Ok(running)
}

/// How long `start` waits for a first Redis connection before it goes on
/// without one.
const REDIS_START_WAIT: Duration = Duration::from_secs(2);

/// A Redis URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Starts an already-built gateway (with its bus installed).
///
/// # Errors
///
/// Binding the socket or spawning threads failed.
pub fn start_with(gateway: Arc<Gateway>, settings: &Settings) -> std::io::Result<Running> {
    let server = Server::bind(
        transport_config(settings),
        PusherHandler::new(gateway.clone()),
    )?;
    let local_addr = server.local_addr();
    let server = Arc::new(Mutex::new(Some(server)));
    let stats_of = Arc::downgrade(&server);
    gateway.set_transport_stats(move || {
        let Some(server) = stats_of.upgrade() else {
            return Vec::new();
        };
        let guard = server.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = guard.as_ref().map(Server::stats) else {
            return Vec::new();
        };
        vec![
            (
                "realtime_transport_bytes_in_total",
                "Bytes read from sockets.",
                "counter",
                s.bytes_in,
            ),
            (
                "realtime_transport_bytes_out_total",
                "Bytes written to sockets.",
                "counter",
                s.bytes_out,
            ),
            (
                "realtime_transport_frames_in_total",
                "WebSocket data messages received.",
                "counter",
                s.frames_in,
            ),
            (
                "realtime_transport_frames_out_total",
                "WebSocket data frames written, one per recipient.",
                "counter",
                s.frames_out,
            ),
            (
                "realtime_transport_connections_accepted_total",
                "Sockets accepted.",
                "counter",
                s.accepted,
            ),
            (
                "realtime_transport_rejected_over_capacity_total",
                "Upgrades refused with 503: transport full.",
                "counter",
                s.rejected_over_capacity,
            ),
            (
                "realtime_transport_handshake_timeouts_total",
                "Sockets dropped because no complete HTTP request arrived in time (sockets that never speak).",
                "counter",
                s.handshake_timeouts,
            ),
            (
                "realtime_transport_handshake_failures_total",
                "Malformed HTTP requests and WebSocket handshakes answered with a 4xx by the transport.",
                "counter",
                s.handshake_failures,
            ),
            (
                "realtime_transport_idle_timeouts_total",
                "Connections closed for idleness.",
                "counter",
                s.idle_timeouts,
            ),
            (
                "realtime_transport_write_timeouts_total",
                "Connections dropped on write timeout.",
                "counter",
                s.write_timeouts,
            ),
            (
                "realtime_transport_protocol_violations_total",
                "Connections closed for WebSocket protocol violations.",
                "counter",
                s.closed_for_violation,
            ),
            (
                "realtime_transport_silent_sockets_total",
                "Sockets dropped for sending nothing within silent_timeout.",
                "counter",
                s.silent_timeouts,
            ),
            (
                "realtime_transport_rejected_per_ip_total",
                "Sockets refused with 429 over max_connections_per_ip.",
                "counter",
                s.rejected_per_ip,
            ),
            (
                "realtime_transport_body_budget_refusals_total",
                "Request bodies refused with 503: max_http_buffer in use.",
                "counter",
                s.body_budget_refusals,
            ),
            (
                "realtime_transport_http_body_bytes",
                "Request-body bytes held right now against max_http_buffer.",
                "gauge",
                s.http_body_bytes,
            ),
            (
                "realtime_transport_refused_before_body_total",
                "HTTP requests answered from their head (bad signature, unknown app) without reading the body.",
                "counter",
                s.refused_before_body,
            ),
            (
                "realtime_transport_local_wakes_total",
                "Replies written in the loop turn that produced them (no cross-thread wake-up).",
                "counter",
                s.local_wakes,
            ),
            (
                "realtime_transport_slow_consumer_disconnects_total",
                "Connections closed with 1008 (slow consumer).",
                "counter",
                s.closes_with(1008),
            ),
        ]
    });
    let sweeper = Sweeper::start(&gateway, Duration::from_secs(1))?;
    let metrics = match settings.metrics_bind {
        Some(bind) => Some(start_metrics(&gateway, bind)?),
        None => None,
    };
    Ok(Running {
        gateway,
        server,
        local_addr,
        sweeper: Some(sweeper),
        bus: None,
        cluster: None,
        metrics,
    })
}

impl Running {
    /// The address the server listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// The address of the `--metrics-bind` listener, if any.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(Server::local_addr)
    }

    /// The gateway.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Closes every client with 4200 ("reconnect now": server restarting),
    /// stops the transport and the sweeper, closes the Hubs.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.sweeper.take();
        if let Some(metrics) = self.metrics.take() {
            metrics.shutdown();
        }
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(server) = server {
            server.shutdown_with(code::RESTARTING, "Server shutting down");
        }
        self.gateway.close_all();
        // After the Hubs (their leaves are queued), before the bus (the
        // leaves go out on it).
        if let Some(cluster) = self.cluster.take() {
            cluster.close();
        }
        if let Some(bus) = self.bus.take() {
            bus.close();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Health and metrics on a listener of their own (`--metrics-bind`): a
/// small transport (one loop, 64 sockets) whose caps the main port's
/// clients cannot fill, so `/up` and `/metrics` answer while the main port
/// is at its socket cap (R35). WebSocket upgrades are refused there.
fn start_metrics(gateway: &Arc<Gateway>, bind: std::net::SocketAddr) -> std::io::Result<Server> {
    struct Health(Arc<Gateway>);
    impl realtime_mio::Handler for Health {
        fn on_upgrade(&self, _req: &realtime_mio::Request) -> realtime_mio::Upgrade {
            realtime_mio::Upgrade::Reject(realtime_mio::HttpResponse::text(
                404,
                "only /up and /metrics are served here\n",
            ))
        }
        fn on_message(&self, _: &realtime::Client, _: realtime::MessageType, _: bytes::Bytes) {}
        fn on_http(
            &self,
            req: &realtime_mio::Request,
            _body: bytes::Bytes,
        ) -> realtime_mio::HttpResponse {
            if !matches!(req.path.as_str(), "/up" | "/up/" | "/metrics") {
                return realtime_mio::HttpResponse::text(
                    404,
                    "only /up and /metrics are served here\n",
                );
            }
            self.0.http(&req.into(), b"").into()
        }
    }
    let config = Config {
        bind,
        workers: 1,
        max_connections: 16,
        max_http_body: 0,
        ..Config::default()
    };
    let server = Server::bind(config, Health(Arc::clone(gateway)))?;
    tracing::info!(addr = %server.local_addr(), "health and metrics listener");
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1/"), "redis://h:1/");
    }
}
