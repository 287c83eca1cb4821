//! The command line: every setting as a flag, each also read from an
//! environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use super::{Compression, SlowConsumer};

/// The command line. Every flag also reads an environment variable.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "realtime-server",
    version,
    about = "Realtime WebSocket gateway speaking the Pusher Channels protocol v7"
)]
pub struct Cli {
    /// Address to listen on [default: 127.0.0.1:6001].
    #[arg(long, env = "REALTIME_BIND")]
    pub bind: Option<SocketAddr>,
    /// Id of a single app (with --app-key and --app-secret).
    #[arg(long, env = "REALTIME_APP_ID")]
    pub app_id: Option<String>,
    /// Key of that app (clients connect to /app/{key}).
    #[arg(long, env = "REALTIME_APP_KEY")]
    pub app_key: Option<String>,
    /// Secret of that app (signs subscriptions and API requests).
    #[arg(long, env = "REALTIME_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    /// TOML file with server settings and `[[apps]]`.
    #[arg(long, env = "REALTIME_CONFIG")]
    pub config: Option<PathBuf>,
    /// Event-loop threads [default: one per core].
    #[arg(long, env = "REALTIME_WORKERS")]
    pub workers: Option<usize>,
    /// Maximum concurrent WebSocket connections, all apps [default: 10000].
    #[arg(long, env = "REALTIME_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds of client silence before the server pings it [default: 120].
    #[arg(long, env = "REALTIME_ACTIVITY_TIMEOUT")]
    pub activity_timeout: Option<u64>,
    /// Largest WebSocket message accepted, in bytes [default: 65536].
    #[arg(long, env = "REALTIME_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<usize>,
    /// Bytes of pending output per client (queued plus not yet taken by
    /// its socket) past which the slow-consumer policy applies; replies and
    /// presence frames past it disconnect (1008) [default: 1048576].
    #[arg(long, env = "REALTIME_CLIENT_BUFFER")]
    pub client_buffer: Option<usize>,
    /// Optional cap in frames on a client's queue, on top of --client-buffer
    /// [default: none].
    #[arg(long, env = "REALTIME_OUTBOX")]
    pub outbox: Option<usize>,
    /// Most members of one presence channel; member N+1 gets a
    /// `pusher:subscription_error` [default: 100].
    #[arg(long, env = "REALTIME_MAX_PRESENCE_MEMBERS")]
    pub max_presence_members: Option<usize>,
    /// Most channels one connection may subscribe to; past it,
    /// `pusher:subscription_error` [default: 1000].
    #[arg(long, env = "REALTIME_MAX_SUBSCRIPTIONS_PER_CONNECTION")]
    pub max_subscriptions_per_connection: Option<usize>,
    /// Most channels one app may hold at once; a subscribe that would
    /// create one more gets `pusher:subscription_error` [default: 100000].
    #[arg(long, env = "REALTIME_MAX_CHANNELS")]
    pub max_channels: Option<usize>,
    /// Request-body bytes buffered at once across all connections; a body
    /// that would pass it gets HTTP 503 before it is read [default: 33554432].
    #[arg(long, env = "REALTIME_MAX_HTTP_BUFFER")]
    pub max_http_buffer: Option<usize>,
    /// Sockets one IP address may hold at once; past it HTTP 429 and the
    /// socket is closed. 0 is no limit [default: 0, since behind a load
    /// balancer every client has one address].
    #[arg(long, env = "REALTIME_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Seconds a new socket may send nothing before it is dropped [default: 5].
    #[arg(long, env = "REALTIME_SILENT_TIMEOUT")]
    pub silent_timeout: Option<u64>,
    /// Serve `/up` and `/metrics` on this address too, on a listener of
    /// its own that the main port's caps do not fill [default: none].
    #[arg(long, env = "REALTIME_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// Serve TLS (wss://, https://) on the port with this certificate
    /// chain (PEM, leaf first); needs --tls-key. Reloaded on SIGHUP
    /// [default: none, plain TCP].
    #[arg(long, env = "REALTIME_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "REALTIME_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Longest presence `user_id` and sign-in `id`, in characters; longer
    /// ones are refused (`pusher:subscription_error` `LimitReached`, or
    /// `pusher:error` for sign-in) [default: 128].
    #[arg(long, env = "REALTIME_MAX_USER_ID_LENGTH")]
    pub max_user_id_length: Option<usize>,
    /// Largest presence member data (`user_info`, in channel_data or
    /// sign-in user_data), in bytes of its JSON; larger is refused like
    /// --max-user-id-length [default: 2048].
    #[arg(long, env = "REALTIME_MAX_MEMBER_SIZE")]
    pub max_member_size: Option<usize>,
    /// Slow-consumer policy [default: drop].
    #[arg(long, env = "REALTIME_SLOW_CONSUMER", value_enum)]
    pub slow_consumer: Option<SlowConsumer>,
    /// permessage-deflate with clients that offer it (browsers, Node's
    /// `ws`): each broadcast compressed once for all its recipients
    /// [default: on].
    #[arg(long, env = "REALTIME_COMPRESSION", value_enum)]
    pub compression: Option<Compression>,
    /// Outbound messages shorter than this many bytes are sent
    /// uncompressed [default: 256].
    #[arg(long, env = "REALTIME_COMPRESSION_THRESHOLD")]
    pub compression_threshold: Option<usize>,
    /// Log filter (tracing-subscriber syntax, e.g. `info` or `realtime_server=debug`) [default: info].
    #[arg(long, env = "REALTIME_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Cluster mode: share this Redis (`redis://host:port/db`) with the other
    /// gateway nodes [default: none, single node].
    #[arg(long, env = "REALTIME_REDIS", hide_env_values = true)]
    pub redis: Option<String>,
    /// Prefix of every Redis channel and key of this cluster [default: realtime].
    #[arg(long, env = "REALTIME_REDIS_NAMESPACE")]
    pub redis_namespace: Option<String>,
    /// Cluster mode: seconds after which a silent node's presence members are
    /// removed everywhere [default: 15].
    #[arg(long, env = "REALTIME_NODE_TTL")]
    pub node_ttl: Option<u64>,
    /// Seconds a cache channel (`cache-`, `private-cache-`,
    /// `private-encrypted-cache-`, `presence-cache-`) keeps its last event
    /// for new subscribers [default: 1800].
    #[arg(long, env = "REALTIME_CACHE_TTL")]
    pub cache_ttl: Option<u64>,
    /// Most cache channels holding a last event, per app; past it the
    /// oldest entry is evicted (counted in
    /// `realtime_cache_evictions_total{reason="limit"}`) [default: 10000].
    #[arg(long, env = "REALTIME_MAX_CACHE_CHANNELS")]
    pub max_cache_channels: Option<usize>,
    /// POST every webhook event of the single app (the `--app-*` one, or
    /// the development app) to this `http://` URL [default: none].
    #[arg(long, env = "REALTIME_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Webhook events waiting to be batched, at most; past it new events
    /// are dropped, counted and logged [default: 10000].
    #[arg(long, env = "REALTIME_WEBHOOK_QUEUE")]
    pub webhook_queue: Option<usize>,
    /// Milliseconds a failed webhook request is retried (capped exponential
    /// backoff with jitter) before its events are dropped, counted and
    /// logged; 0 tries once [default: 60000].
    #[arg(long, env = "REALTIME_WEBHOOK_RETRY_MS")]
    pub webhook_retry_ms: Option<u64>,
    /// Milliseconds one webhook request may take before it counts as
    /// failed [default: 5000].
    #[arg(long, env = "REALTIME_WEBHOOK_TIMEOUT_MS")]
    pub webhook_timeout_ms: Option<u64>,
    /// Threads delivering webhooks [default: 2].
    #[arg(long, env = "REALTIME_WEBHOOK_WORKERS")]
    pub webhook_workers: Option<usize>,
    /// Serve the live dashboard and debug console on `/dashboard`, behind
    /// a login with this token (at least 8 characters) [default: none, no
    /// dashboard: `/dashboard` is 404].
    #[arg(long, env = "REALTIME_DASHBOARD_TOKEN", hide_env_values = true)]
    pub dashboard_token: Option<String>,
}
