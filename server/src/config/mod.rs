//! Configuration: command-line flags (each with an environment variable),
//! an optional TOML file for several apps, and the embedded development
//! default.
//!
//! Precedence: a flag (or its variable) beats the file, the file beats the
//! built-in default. Apps come from the file's `[[apps]]` tables plus one
//! app from `--app-id/--app-key/--app-secret` (all three or none); with no
//! app at all the server runs one development app ([`DEV_APP_ID`],
//! [`DEV_APP_KEY`], [`DEV_APP_SECRET`]) and says so.

use std::net::SocketAddr;

use clap::ValueEnum;
use serde::Deserialize;

use crate::dashboard::DashboardToken;
use crate::error::Error;

/// What to do with a client whose outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowConsumer {
    /// Drop the frame for that client and count it.
    #[default]
    Drop,
    /// Disconnect the client.
    Disconnect,
}

/// Whether permessage-deflate (RFC 7692) is negotiated with clients that
/// offer it.
///
/// On by default: browsers and Node's `ws` offer it, Pusher events are JSON
/// that deflate shrinks several times, and the server compresses each
/// broadcast once for all its recipients with no per-connection send state,
/// so the bytes on the wire fall while the CPU cost does not grow with the
/// audience. Off saves that one compression per broadcast (and a client's
/// inflate context, if it compresses with context takeover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Never negotiate it.
    Off,
    /// Negotiate it when the client offers it.
    #[default]
    On,
}

mod cli;
mod defaults;
mod file;
mod validate;
mod webhooks;

pub use cli::Cli;
pub use defaults::*;
pub use file::{parse_file, read_file, FileConfig};
pub use webhooks::{
    WebhookFilter, WebhookTarget, DEFAULT_WEBHOOK_QUEUE, DEFAULT_WEBHOOK_RETRY_MS,
    DEFAULT_WEBHOOK_TIMEOUT_MS, DEFAULT_WEBHOOK_WORKERS,
};

/// One app as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The app id (HTTP API path `/apps/{id}`).
    pub id: String,
    /// The app key (WebSocket path `/app/{key}`, `auth_key`).
    pub key: String,
    /// The app secret.
    pub secret: String,
    /// Connection quota of this app (error 4004 past it); none by default.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Whether clients may send `client-*` events (default true).
    #[serde(default = "yes")]
    pub client_messages: bool,
    /// Largest event `data`, in bytes (default 10240): API → 413.
    #[serde(default = "default_max_event_size")]
    pub max_event_size: usize,
    /// Client events per connection and second (default 10) → 4301.
    #[serde(default = "default_client_event_rate")]
    pub client_event_rate: u32,
    /// This app's presence member limit (default: the server's
    /// `max_presence_members`).
    #[serde(default)]
    pub max_presence_members: Option<usize>,
    /// This app's per-connection subscription limit (default: the
    /// server's `max_subscriptions_per_connection`).
    #[serde(default)]
    pub max_subscriptions_per_connection: Option<usize>,
    /// This app's channel limit (default: the server's `max_channels`).
    #[serde(default)]
    pub max_channels: Option<usize>,
    /// This app's longest presence `user_id` / sign-in `id`, in characters
    /// (default: the server's `max_user_id_length`).
    #[serde(default)]
    pub max_user_id_length: Option<usize>,
    /// This app's largest presence member data (`user_info`), in bytes
    /// (default: the server's `max_member_size`).
    #[serde(default)]
    pub max_member_size: Option<usize>,
    /// Where this app's webhooks go (`[[apps.webhooks]]`); none by default.
    #[serde(default)]
    pub webhooks: Vec<WebhookTarget>,
}

fn yes() -> bool {
    true
}
fn default_max_event_size() -> usize {
    DEFAULT_MAX_EVENT_SIZE
}
fn default_client_event_rate() -> u32 {
    DEFAULT_CLIENT_EVENT_RATE
}

impl AppConfig {
    /// An app with the default limits.
    pub fn new(id: impl Into<String>, key: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            max_connections: None,
            client_messages: true,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
            client_event_rate: DEFAULT_CLIENT_EVENT_RATE,
            max_presence_members: None,
            max_subscriptions_per_connection: None,
            max_channels: None,
            max_user_id_length: None,
            max_member_size: None,
            webhooks: Vec::new(),
        }
    }

    /// The development app.
    pub fn dev() -> Self {
        Self::new(DEV_APP_ID, DEV_APP_KEY, DEV_APP_SECRET)
    }
}

/// The resolved settings the server runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Listen address.
    pub bind: SocketAddr,
    /// Event-loop threads.
    pub workers: usize,
    /// Maximum concurrent connections, all apps together.
    pub max_connections: usize,
    /// Advertised activity timeout, seconds.
    pub activity_timeout: u64,
    /// Largest WebSocket message, bytes.
    pub max_message_size: usize,
    /// Bound on each client's pending output, bytes (R34).
    pub client_buffer: usize,
    /// Optional cap on each client's queue, frames.
    pub outbox: Option<usize>,
    /// Most members per presence channel, unless an app says otherwise.
    pub max_presence_members: usize,
    /// Most subscriptions per connection, unless an app says otherwise.
    pub max_subscriptions_per_connection: usize,
    /// Most channels per app, unless an app says otherwise.
    pub max_channels: usize,
    /// Request-body bytes buffered at once, all connections.
    pub max_http_buffer: usize,
    /// Sockets per IP address (0: no limit).
    pub max_connections_per_ip: usize,
    /// Seconds a new socket may stay silent.
    pub silent_timeout: u64,
    /// A second listener for `/up` and `/metrics`.
    pub metrics_bind: Option<SocketAddr>,
    /// TLS on the port: the certificate chain and key PEM files (both or
    /// neither).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Longest presence `user_id` / sign-in `id` in characters, unless an
    /// app says otherwise.
    pub max_user_id_length: usize,
    /// Largest presence member data in bytes, unless an app says otherwise.
    pub max_member_size: usize,
    /// Slow-consumer policy.
    pub slow_consumer: SlowConsumer,
    /// permessage-deflate with clients that offer it.
    pub compression: Compression,
    /// Outbound messages shorter than this many bytes go uncompressed.
    pub compression_threshold: usize,
    /// Log filter.
    pub log_level: String,
    /// Cluster mode: the Redis URL; `None` runs a single node.
    pub redis: Option<String>,
    /// Prefix of the cluster's Redis channels and keys.
    pub redis_namespace: String,
    /// Seconds without a heartbeat after which a node counts as dead.
    pub node_ttl: u64,
    /// Seconds a cache channel keeps its last event.
    pub cache_ttl: u64,
    /// Most cache channels with a last event, per app.
    pub max_cache_channels: usize,
    /// Webhook events waiting to be batched, at most.
    pub webhook_queue: usize,
    /// Milliseconds a webhook batch is retried after its first attempt.
    pub webhook_retry_ms: u64,
    /// Milliseconds one webhook request may take.
    pub webhook_timeout_ms: u64,
    /// Threads delivering webhooks.
    pub webhook_workers: usize,
    /// The dashboard's login token; `None`: no dashboard (`dashboard/`).
    pub dashboard_token: Option<DashboardToken>,
    /// The apps (at least one).
    pub apps: Vec<AppConfig>,
    /// Whether `apps` is the built-in development app.
    pub dev_app: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: DEFAULT_BIND,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: 10_000,
            activity_timeout: DEFAULT_ACTIVITY_TIMEOUT,
            max_message_size: 64 * 1024,
            client_buffer: DEFAULT_CLIENT_BUFFER,
            outbox: None,
            max_presence_members: DEFAULT_MAX_PRESENCE_MEMBERS,
            max_subscriptions_per_connection: DEFAULT_MAX_SUBSCRIPTIONS,
            max_channels: DEFAULT_MAX_CHANNELS,
            max_http_buffer: DEFAULT_MAX_HTTP_BUFFER,
            max_connections_per_ip: 0,
            silent_timeout: DEFAULT_SILENT_TIMEOUT,
            metrics_bind: None,
            tls: None,
            max_user_id_length: DEFAULT_MAX_USER_ID_LENGTH,
            max_member_size: DEFAULT_MAX_MEMBER_SIZE,
            slow_consumer: SlowConsumer::Drop,
            compression: Compression::On,
            compression_threshold: DEFAULT_COMPRESSION_THRESHOLD,
            log_level: "info".to_owned(),
            redis: None,
            redis_namespace: DEFAULT_REDIS_NAMESPACE.to_owned(),
            node_ttl: DEFAULT_NODE_TTL,
            cache_ttl: DEFAULT_CACHE_TTL,
            max_cache_channels: DEFAULT_MAX_CACHE_CHANNELS,
            webhook_queue: DEFAULT_WEBHOOK_QUEUE,
            webhook_retry_ms: DEFAULT_WEBHOOK_RETRY_MS,
            webhook_timeout_ms: DEFAULT_WEBHOOK_TIMEOUT_MS,
            webhook_workers: DEFAULT_WEBHOOK_WORKERS,
            dashboard_token: None,
            apps: vec![AppConfig::dev()],
            dev_app: true,
        }
    }
}

/// What bounds each client of one app's Hub (R34, R35): the server-wide
/// settings with the app's own values applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Bytes of pending output per client.
    pub client_buffer: usize,
    /// Optional frame cap per client.
    pub outbox: Option<usize>,
    /// The slow-consumer policy.
    pub slow_consumer: SlowConsumer,
    /// Most members per presence channel.
    pub max_presence_members: usize,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// Most channels of the app.
    pub max_channels: usize,
    /// Longest presence `user_id` / sign-in `id`, characters.
    pub max_user_id_length: usize,
    /// Largest presence member data (`user_info`), bytes.
    pub max_member_size: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Settings::default().client_limits(&AppConfig::dev())
    }
}

/// A setting's value: the flag (or its variable), else the file's, else
/// the default.
fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

impl Settings {
    /// Resolves the command line (and the file it names).
    ///
    /// # Errors
    ///
    /// [`Error`] for an unreadable file or invalid values.
    pub fn from_cli(cli: &Cli) -> Result<Self, Error> {
        let file = match &cli.config {
            Some(path) => Some(read_file(path)?),
            None => None,
        };
        Self::resolve(cli, file.unwrap_or_default())
    }

    /// Merges flags over a parsed file over the defaults, then validates.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for inconsistent values.
    pub fn resolve(cli: &Cli, file: FileConfig) -> Result<Self, Error> {
        let d = Self::default();
        let mut apps = file.apps;
        match (&cli.app_id, &cli.app_key, &cli.app_secret) {
            (Some(id), Some(key), Some(secret)) => apps.push(AppConfig::new(id, key, secret)),
            (None, None, None) => {}
            _ => {
                return Err(Error::Invalid(
                    "--app-id, --app-key and --app-secret go together".into(),
                ))
            }
        }
        let dev_app = apps.is_empty();
        if dev_app {
            apps.push(AppConfig::dev());
        }
        if let Some(url) = &cli.webhook_url {
            // The single app of the command line: the `--app-*` one (pushed
            // last), else the only app.
            let single = cli.app_id.is_some() || apps.len() == 1;
            match apps.last_mut() {
                Some(app) if single => app.webhooks.push(WebhookTarget::new(url)),
                _ => {
                    return Err(Error::Invalid(
                        "--webhook-url is for a single app: give --app-id/--app-key/--app-secret, or use [[apps.webhooks]]".into(),
                    ))
                }
            }
        }
        let s = Self {
            bind: pick(cli.bind, file.bind, d.bind),
            workers: pick(cli.workers, file.workers, d.workers),
            max_connections: pick(cli.max_connections, file.max_connections, d.max_connections),
            activity_timeout: pick(
                cli.activity_timeout,
                file.activity_timeout,
                d.activity_timeout,
            ),
            max_message_size: pick(
                cli.max_message_size,
                file.max_message_size,
                d.max_message_size,
            ),
            client_buffer: pick(cli.client_buffer, file.client_buffer, d.client_buffer),
            outbox: cli.outbox.or(file.outbox),
            max_presence_members: pick(
                cli.max_presence_members,
                file.max_presence_members,
                d.max_presence_members,
            ),
            max_subscriptions_per_connection: pick(
                cli.max_subscriptions_per_connection,
                file.max_subscriptions_per_connection,
                d.max_subscriptions_per_connection,
            ),
            max_channels: pick(cli.max_channels, file.max_channels, d.max_channels),
            max_http_buffer: pick(cli.max_http_buffer, file.max_http_buffer, d.max_http_buffer),
            max_connections_per_ip: pick(
                cli.max_connections_per_ip,
                file.max_connections_per_ip,
                d.max_connections_per_ip,
            ),
            silent_timeout: pick(cli.silent_timeout, file.silent_timeout, d.silent_timeout),
            metrics_bind: cli.metrics_bind.or(file.metrics_bind),
            tls: match (
                cli.tls_cert.clone().or(file.tls_cert),
                cli.tls_key.clone().or(file.tls_key),
            ) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => {
                    return Err(Error::Invalid(
                        "--tls-cert and --tls-key go together".into(),
                    ))
                }
            },
            max_user_id_length: pick(
                cli.max_user_id_length,
                file.max_user_id_length,
                d.max_user_id_length,
            ),
            max_member_size: pick(cli.max_member_size, file.max_member_size, d.max_member_size),
            slow_consumer: pick(cli.slow_consumer, file.slow_consumer, d.slow_consumer),
            compression: pick(cli.compression, file.compression, d.compression),
            compression_threshold: pick(
                cli.compression_threshold,
                file.compression_threshold,
                d.compression_threshold,
            ),
            log_level: pick(cli.log_level.clone(), file.log_level, d.log_level),
            redis: cli.redis.clone().or(file.redis),
            redis_namespace: pick(
                cli.redis_namespace.clone(),
                file.redis_namespace,
                d.redis_namespace,
            ),
            node_ttl: pick(cli.node_ttl, file.node_ttl, d.node_ttl),
            cache_ttl: pick(cli.cache_ttl, file.cache_ttl, d.cache_ttl),
            max_cache_channels: pick(
                cli.max_cache_channels,
                file.max_cache_channels,
                d.max_cache_channels,
            ),
            webhook_queue: pick(cli.webhook_queue, file.webhook_queue, d.webhook_queue),
            webhook_retry_ms: pick(
                cli.webhook_retry_ms,
                file.webhook_retry_ms,
                d.webhook_retry_ms,
            ),
            webhook_timeout_ms: pick(
                cli.webhook_timeout_ms,
                file.webhook_timeout_ms,
                d.webhook_timeout_ms,
            ),
            webhook_workers: pick(cli.webhook_workers, file.webhook_workers, d.webhook_workers),
            dashboard_token: cli
                .dashboard_token
                .clone()
                .or(file.dashboard_token)
                .map(DashboardToken::new),
            apps,
            dev_app,
        };
        validate::validate(&s)?;
        Ok(s)
    }

    /// The limits `app`'s clients run with.
    pub fn client_limits(&self, app: &AppConfig) -> ClientLimits {
        ClientLimits {
            client_buffer: self.client_buffer,
            outbox: self.outbox,
            slow_consumer: self.slow_consumer,
            max_presence_members: app
                .max_presence_members
                .unwrap_or(self.max_presence_members),
            max_subscriptions: app
                .max_subscriptions_per_connection
                .unwrap_or(self.max_subscriptions_per_connection),
            max_channels: app.max_channels.unwrap_or(self.max_channels),
            max_user_id_length: app.max_user_id_length.unwrap_or(self.max_user_id_length),
            max_member_size: app.max_member_size.unwrap_or(self.max_member_size),
        }
    }

    /// The cache channels' TTL and bound (`cache/`).
    pub(crate) fn cache_limits(&self) -> crate::cache::CacheLimits {
        crate::cache::CacheLimits {
            ttl: std::time::Duration::from_secs(self.cache_ttl),
            max_channels: self.max_cache_channels,
        }
    }
}

#[cfg(test)]
mod tests;
