//! Wiring for the binary and for socket-level tests: the gateway, the
//! transport, the activity sweeper, and an orderly shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use realtime_mio::{Config, Server};

use crate::activity::Sweeper;
use crate::bus::{LocalBus, BUS_BUFFER};
use crate::cache;
use crate::cluster::Cluster;
use crate::config::{Compression, Settings};
use crate::error::Error;
use crate::gateway::{random_node_id, PONG_TIMEOUT};
use crate::handler::PusherHandler;
use crate::http_api::HttpApi;
use crate::node::Node;
use crate::protocol::code;
use crate::samples;

/// Extra transport connection slots above `max_connections`, so that a
/// client over capacity still completes a handshake and hears Pusher's 4100
/// instead of an HTTP 503.
const REFUSAL_SLACK: usize = 64;

/// A running gateway.
pub struct Running {
    node: Arc<Node>,
    server: Arc<Mutex<Option<Server>>>,
    local_addr: std::net::SocketAddr,
    sweeper: Option<Sweeper>,
    cluster: Option<Cluster>,
    /// Cluster mode: the cache channels' entries shared through Redis.
    cache: Option<cache::Remote>,
    /// The `--metrics-bind` listener.
    metrics: Option<Server>,
    /// The port's TLS certificate (`--tls-cert`), reloaded on SIGHUP.
    tls: Option<realtime_mio::Tls>,
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
        compression: settings.compression == Compression::On,
        compression_threshold: settings.compression_threshold,
        ..Config::default()
    }
}

/// Starts the gateway on `settings.bind`.
///
/// # Errors
///
/// Binding the socket or spawning threads failed; a Redis URL the client
/// refuses.
///
/// With `settings.redis` the node joins a cluster: the bus is the Redis
/// driver and presence is cluster-wide (`cluster/`). An unreachable
/// Redis does not stop the start: the node logs the error, serves its own
/// clients alone and keeps retrying in the background; the cluster heals
/// when Redis answers.
pub fn start(settings: &Settings) -> Result<Running, Error> {
    let id = random_node_id();
    let Some(url) = &settings.redis else {
        // One node: publishes fan out on the publishing thread (the event
        // loop that read the request), with no hop through a bus thread
        // (issue 16 item 1; the order this keeps is in `bus/`).
        let node = Node::with_bus(settings, id, Arc::new(LocalBus));
        return start_node(node, settings, None, None);
    };
    let refused = |e: &dyn std::fmt::Display| Error::Redis {
        url: redact(url),
        reason: e.to_string(),
    };
    let redis = Arc::new(
        broadcasting::Redis::builder(url.as_str())
            .namespace(settings.redis_namespace.as_str())
            .node_id(id.to_string())
            .buffer(BUS_BUFFER)
            .build()
            .map_err(|e| refused(&e))?,
    );
    wait_for(&redis, url);
    let node = Node::with_driver(
        settings,
        id,
        Arc::clone(&redis) as Arc<dyn broadcasting::Broadcaster>,
    )?;
    let stats_of = Arc::downgrade(&redis);
    node.register_samples(move || {
        stats_of
            .upgrade()
            .map(|r| samples::redis(&r))
            .unwrap_or_default()
    });
    // Loads the cluster's cached events before the listener opens.
    let cache = cache::Remote::start(
        node.apps(),
        Arc::clone(&redis),
        url,
        &settings.redis_namespace,
    )
    .map_err(|e| refused(&e))?;
    let cluster = Cluster::start(
        node.apps(),
        &node.id(),
        redis,
        url,
        &settings.redis_namespace,
        Duration::from_secs(settings.node_ttl),
    )
    .map_err(|e| refused(&e))?;
    start_node(node, settings, Some(cluster), Some(cache))
}

/// Waits up to [`REDIS_START_WAIT`] for a first Redis connection, and says
/// how it went.
fn wait_for(redis: &broadcasting::Redis, url: &str) {
    let deadline = std::time::Instant::now() + REDIS_START_WAIT;
    while !redis.is_connected() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if redis.is_connected() {
        tracing::info!(redis = %redact(url), "cluster mode: connected to redis");
    } else {
        tracing::error!(
            redis = %redact(url),
            "cluster mode: redis is unreachable; serving this node's clients alone and retrying in the background"
        );
    }
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

/// Puts a built node on the transport, with its sweeper and metrics
/// listener.
fn start_node(
    node: Node,
    settings: &Settings,
    cluster: Option<Cluster>,
    cache: Option<cache::Remote>,
) -> Result<Running, Error> {
    let node = Arc::new(node);
    let tls = match &settings.tls {
        Some((cert, key)) => Some(
            realtime_mio::Tls::from_pem_files(cert, key)
                .map_err(|e| Error::Invalid(format!("TLS: {e}")))?,
        ),
        None => None,
    };
    let config = realtime_mio::Config {
        tls: tls.clone(),
        ..transport_config(settings)
    };
    let server = Server::bind(config, PusherHandler::new(&node))?;
    let local_addr = server.local_addr();
    let server = Arc::new(Mutex::new(Some(server)));
    let stats_of = Arc::downgrade(&server);
    node.register_samples(move || {
        let Some(server) = stats_of.upgrade() else {
            return Vec::new();
        };
        let guard = server.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .map(|s| samples::transport(&s.stats()))
            .unwrap_or_default()
    });
    let sweeper = Sweeper::start(node.activity(), Duration::from_secs(1))?;
    let metrics = match settings.metrics_bind {
        Some(bind) => Some(start_metrics(&node, bind)?),
        None => None,
    };
    Ok(Running {
        node,
        server,
        local_addr,
        sweeper: Some(sweeper),
        cluster,
        cache,
        metrics,
        tls,
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

    /// Whether the port speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Reads the TLS certificate and key files again (SIGHUP): handshakes
    /// from now on use the new certificate, open connections stay. Without
    /// TLS it does nothing.
    ///
    /// # Errors
    ///
    /// The files could not be read or do not match; the current
    /// certificate stays in use.
    pub fn reload_tls(&self) -> Result<(), realtime_mio::TlsError> {
        match &self.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// The node.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
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
        self.node.close();
        // After the Hubs (their leaves are queued), before the bus (the
        // leaves go out on it).
        if let Some(cluster) = self.cluster.take() {
            cluster.close();
        }
        // The cache thread performs the writes still queued, then ends.
        if let Some(cache) = self.cache.take() {
            cache.close();
        }
        self.node.close_bus();
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
fn start_metrics(node: &Node, bind: std::net::SocketAddr) -> std::io::Result<Server> {
    struct Health(Arc<HttpApi>);
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
            self.0.http(req, b"")
        }
    }
    let config = Config {
        bind,
        workers: 1,
        max_connections: 16,
        max_http_body: 0,
        ..Config::default()
    };
    let server = Server::bind(config, Health(Arc::clone(node.api())))?;
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
