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
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use serde::Deserialize;

/// Development app id, used when no app is configured. Numeric, as Pusher
/// app ids are: the official Python server SDK refuses any other id before
/// it sends a request (issue #12).
pub const DEV_APP_ID: &str = "1";
/// Development app key.
pub const DEV_APP_KEY: &str = "app-key";
/// Development app secret.
pub const DEV_APP_SECRET: &str = "app-secret";
/// Default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:6001";
/// Default `activity_timeout` advertised to clients, in seconds.
pub const DEFAULT_ACTIVITY_TIMEOUT: u64 = 120;
/// Default maximum size of an event's `data`, in bytes (Pusher: 10 KB).
pub const DEFAULT_MAX_EVENT_SIZE: usize = 10 * 1024;
/// Default client events allowed per connection and second (Pusher: 10).
pub const DEFAULT_CLIENT_EVENT_RATE: u32 = 10;
/// Default prefix of the cluster's Redis channels and keys.
pub const DEFAULT_REDIS_NAMESPACE: &str = "realtime";
/// Default seconds after which a silent node's members are removed.
pub const DEFAULT_NODE_TTL: u64 = 15;
/// Default bound on one client's pending output, in bytes (1 MiB; the
/// reasons are on [`realtime::DEFAULT_CLIENT_BUFFER`]).
pub const DEFAULT_CLIENT_BUFFER: usize = realtime::DEFAULT_CLIENT_BUFFER;
/// Default most members of one presence channel (Pusher: 100).
pub const DEFAULT_MAX_PRESENCE_MEMBERS: usize = 100;
/// Default most channels one connection may subscribe to. 1,000: a
/// pusher-js app with 1,000 channels works at the defaults, and one
/// connection cannot make the server hold more than 1,000 subscriptions.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1_000;
/// Default request-body bytes buffered at once across all connections.
pub const DEFAULT_MAX_HTTP_BUFFER: usize = 32 * 1024 * 1024;
/// Default seconds a new socket may stay silent before it is dropped.
pub const DEFAULT_SILENT_TIMEOUT: u64 = 5;

/// Default most channels one app may hold at once. 100,000: far more than
/// the apps this gateway serves use, and a bound on what unauthenticated
/// clients can make it hold (about 80 MB at the measured cost of a
/// one-member channel, 776 B: BENCHMARKS.md).
pub const DEFAULT_MAX_CHANNELS: usize = 100_000;
/// Default longest presence `user_id` (and sign-in `id`), in characters:
/// 128, as Pusher documents.
pub const DEFAULT_MAX_USER_ID_LENGTH: usize = 128;
/// Default largest presence member data (`user_info` in `channel_data`, and
/// in sign-in `user_data`), in bytes of the JSON as sent: 2 KB, as Pusher
/// and Soketi (`maxMemberSizeInKb = 2`). With the default 100 members a
/// presence roster frame stays under about 220 KB.
pub const DEFAULT_MAX_MEMBER_SIZE: usize = 2 * 1024;

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
}

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
        }
    }

    /// The development app.
    pub fn dev() -> Self {
        Self::new(DEV_APP_ID, DEV_APP_KEY, DEV_APP_SECRET)
    }
}

/// The TOML file: the same settings as the flags, plus `[[apps]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// As `--bind`.
    pub bind: Option<SocketAddr>,
    /// As `--workers`.
    pub workers: Option<usize>,
    /// As `--max-connections`.
    pub max_connections: Option<usize>,
    /// As `--activity-timeout`.
    pub activity_timeout: Option<u64>,
    /// As `--max-message-size`.
    pub max_message_size: Option<usize>,
    /// As `--client-buffer`.
    pub client_buffer: Option<usize>,
    /// As `--outbox`.
    pub outbox: Option<usize>,
    /// As `--max-presence-members` (an app's own value wins).
    pub max_presence_members: Option<usize>,
    /// As `--max-subscriptions-per-connection` (an app's own value wins).
    pub max_subscriptions_per_connection: Option<usize>,
    /// As `--max-channels` (an app's own value wins).
    pub max_channels: Option<usize>,
    /// As `--max-http-buffer`.
    pub max_http_buffer: Option<usize>,
    /// As `--max-connections-per-ip`.
    pub max_connections_per_ip: Option<usize>,
    /// As `--silent-timeout`.
    pub silent_timeout: Option<u64>,
    /// As `--metrics-bind`.
    pub metrics_bind: Option<SocketAddr>,
    /// As `--max-user-id-length` (an app's own value wins).
    pub max_user_id_length: Option<usize>,
    /// As `--max-member-size` (an app's own value wins).
    pub max_member_size: Option<usize>,
    /// As `--slow-consumer`.
    pub slow_consumer: Option<SlowConsumer>,
    /// As `--log-level`.
    pub log_level: Option<String>,
    /// As `--redis`.
    pub redis: Option<String>,
    /// As `--redis-namespace`.
    pub redis_namespace: Option<String>,
    /// As `--node-ttl`.
    pub node_ttl: Option<u64>,
    /// The apps.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
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
    /// Longest presence `user_id` / sign-in `id` in characters, unless an
    /// app says otherwise.
    pub max_user_id_length: usize,
    /// Largest presence member data in bytes, unless an app says otherwise.
    pub max_member_size: usize,
    /// Slow-consumer policy.
    pub slow_consumer: SlowConsumer,
    /// Log filter.
    pub log_level: String,
    /// Cluster mode: the Redis URL; `None` runs a single node.
    pub redis: Option<String>,
    /// Prefix of the cluster's Redis channels and keys.
    pub redis_namespace: String,
    /// Seconds without a heartbeat after which a node counts as dead.
    pub node_ttl: u64,
    /// The apps (at least one).
    pub apps: Vec<AppConfig>,
    /// Whether `apps` is the built-in development app.
    pub dev_app: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 6001)),
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
            max_user_id_length: DEFAULT_MAX_USER_ID_LENGTH,
            max_member_size: DEFAULT_MAX_MEMBER_SIZE,
            slow_consumer: SlowConsumer::Drop,
            log_level: "info".to_owned(),
            redis: None,
            redis_namespace: DEFAULT_REDIS_NAMESPACE.to_owned(),
            node_ttl: DEFAULT_NODE_TTL,
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

/// A configuration that cannot be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Resolves the command line (and the file it names).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an unreadable file or invalid values.
    pub fn from_cli(cli: &Cli) -> Result<Self, ConfigError> {
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
    /// [`ConfigError::Invalid`] for inconsistent values.
    pub fn resolve(cli: &Cli, file: FileConfig) -> Result<Self, ConfigError> {
        let d = Self::default();
        let mut apps = file.apps;
        match (&cli.app_id, &cli.app_key, &cli.app_secret) {
            (Some(id), Some(key), Some(secret)) => apps.push(AppConfig::new(id, key, secret)),
            (None, None, None) => {}
            _ => {
                return Err(ConfigError::Invalid(
                    "--app-id, --app-key and --app-secret go together".into(),
                ))
            }
        }
        let dev_app = apps.is_empty();
        if dev_app {
            apps.push(AppConfig::dev());
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
            max_user_id_length: pick(
                cli.max_user_id_length,
                file.max_user_id_length,
                d.max_user_id_length,
            ),
            max_member_size: pick(cli.max_member_size, file.max_member_size, d.max_member_size),
            slow_consumer: pick(cli.slow_consumer, file.slow_consumer, d.slow_consumer),
            log_level: pick(cli.log_level.clone(), file.log_level, d.log_level),
            redis: cli.redis.clone().or(file.redis),
            redis_namespace: pick(
                cli.redis_namespace.clone(),
                file.redis_namespace,
                d.redis_namespace,
            ),
            node_ttl: pick(cli.node_ttl, file.node_ttl, d.node_ttl),
            apps,
            dev_app,
        };
        s.validate()?;
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

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.workers == 0 {
            return bad("workers must be at least 1".into());
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1".into());
        }
        if self.activity_timeout == 0 {
            return bad("activity_timeout must be at least 1 second".into());
        }
        if self.outbox == Some(0) {
            return bad("outbox must be at least 1 frame".into());
        }
        if self.silent_timeout == 0 {
            return bad("silent_timeout must be at least 1 second".into());
        }
        if self.max_http_buffer == 0 {
            return bad("max_http_buffer must be at least 1 byte".into());
        }
        if self.client_buffer == 0 {
            return bad("client_buffer must be at least 1 byte".into());
        }
        for app in &self.apps {
            let limits = self.client_limits(app);
            if limits.max_presence_members == 0
                || limits.max_subscriptions == 0
                || limits.max_channels == 0
            {
                return bad(format!(
                    "app {}: max_presence_members, max_subscriptions_per_connection and max_channels must be at least 1",
                    app.id
                ));
            }
            if limits.max_user_id_length == 0 || limits.max_member_size == 0 {
                return bad(format!(
                    "app {}: max_user_id_length and max_member_size must be at least 1",
                    app.id
                ));
            }
        }
        if self.node_ttl < 2 {
            return bad("node_ttl must be at least 2 seconds".into());
        }
        if self.redis_namespace.is_empty() || self.redis_namespace.contains(char::is_whitespace) {
            return bad("redis_namespace must be non-empty, without spaces".into());
        }
        if let Some(url) = &self.redis {
            if !(url.starts_with("redis://") || url.starts_with("unix://")) {
                return bad("redis must be a redis:// (or unix://) URL".into());
            }
        }
        if self.max_message_size < 1024 {
            return bad("max_message_size must be at least 1024 bytes".into());
        }
        let path_safe = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        };
        for (i, app) in self.apps.iter().enumerate() {
            if !path_safe(&app.id) {
                return bad(format!(
                    "app id {:?} must be non-empty [A-Za-z0-9._~-]",
                    app.id
                ));
            }
            if !path_safe(&app.key) {
                return bad(format!(
                    "app key {:?} must be non-empty [A-Za-z0-9._~-]",
                    app.key
                ));
            }
            if app.secret.is_empty() {
                return bad(format!("app {} has an empty secret", app.id));
            }
            if app.max_event_size == 0 || app.client_event_rate == 0 {
                return bad(format!("app {}: limits must be at least 1", app.id));
            }
            for other in &self.apps[..i] {
                if other.id == app.id {
                    return bad(format!("duplicate app id {}", app.id));
                }
                if other.key == app.key {
                    return bad(format!("duplicate app key {}", app.key));
                }
            }
        }
        Ok(())
    }
}

/// Reads and parses a TOML config file.
///
/// # Errors
///
/// [`ConfigError::Read`] or [`ConfigError::Parse`].
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_file(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Parses TOML config text.
///
/// # Errors
///
/// The TOML error.
pub fn parse_file(text: &str) -> Result<FileConfig, toml::de::Error> {
    toml::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_configuration_runs_the_dev_app_on_loopback() {
        let s = Settings::resolve(&Cli::default(), FileConfig::default()).unwrap();
        assert!(s.dev_app);
        assert_eq!(s.bind.to_string(), DEFAULT_BIND);
        assert_eq!(s.apps, vec![AppConfig::dev()]);
        assert_eq!(s.activity_timeout, 120);
        assert_eq!(s.redis, None);
        assert_eq!(s.node_ttl, DEFAULT_NODE_TTL);
    }

    #[test]
    fn redis_comes_from_the_flag_or_the_file() {
        let file = parse_file("redis = \"redis://file:6379/\"\nnode_ttl = 5\n").unwrap();
        let s = Settings::resolve(&Cli::default(), file.clone()).unwrap();
        assert_eq!(s.redis.as_deref(), Some("redis://file:6379/"));
        assert_eq!(s.node_ttl, 5);
        let cli = Cli::try_parse_from(["x", "--redis", "redis://flag:1/"]).unwrap();
        let s = Settings::resolve(&cli, file).unwrap();
        assert_eq!(s.redis.as_deref(), Some("redis://flag:1/"));
        let cli = Cli::try_parse_from(["x", "--redis", "localhost:6379"]).unwrap();
        assert!(Settings::resolve(&cli, FileConfig::default()).is_err());
    }

    #[test]
    fn flags_beat_the_file_and_apps_add_up() {
        let file = parse_file(
            r#"
            bind = "0.0.0.0:7000"
            activity_timeout = 30
            slow_consumer = "disconnect"
            [[apps]]
            id = "1"
            key = "k1"
            secret = "s1"
            max_connections = 5
            client_messages = false
            "#,
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "x",
            "--bind",
            "127.0.0.1:1",
            "--app-id",
            "2",
            "--app-key",
            "k2",
            "--app-secret",
            "s2",
        ])
        .unwrap();
        let s = Settings::resolve(&cli, file).unwrap();
        assert_eq!(s.bind.port(), 1);
        assert_eq!(s.activity_timeout, 30);
        assert_eq!(s.slow_consumer, SlowConsumer::Disconnect);
        assert_eq!(s.apps.len(), 2);
        assert_eq!(s.apps[0].max_connections, Some(5));
        assert!(!s.apps[0].client_messages);
        assert_eq!(s.apps[1].max_event_size, DEFAULT_MAX_EVENT_SIZE);
        assert!(!s.dev_app);
    }

    #[test]
    fn member_limits_default_to_pusher_and_apps_override_the_flags() {
        let s = Settings::resolve(&Cli::default(), FileConfig::default()).unwrap();
        let l = s.client_limits(&s.apps[0]);
        assert_eq!((l.max_user_id_length, l.max_member_size), (128, 2048));
        let file = parse_file(
            "max_member_size = 4096\n[[apps]]\nid='1'\nkey='k'\nsecret='s'\nmax_user_id_length = 16\n\
             [[apps]]\nid='2'\nkey='k2'\nsecret='s'\nmax_member_size = 100\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from(["x", "--max-user-id-length", "64"]).unwrap();
        let s = Settings::resolve(&cli, file).unwrap();
        let (a, b) = (s.client_limits(&s.apps[0]), s.client_limits(&s.apps[1]));
        assert_eq!((a.max_user_id_length, a.max_member_size), (16, 4096));
        assert_eq!((b.max_user_id_length, b.max_member_size), (64, 100));
        let cli = Cli::try_parse_from(["x", "--max-member-size", "0"]).unwrap();
        assert!(Settings::resolve(&cli, FileConfig::default()).is_err());
    }

    #[test]
    fn the_development_app_id_is_numeric_as_pusher_sdks_require() {
        assert!(DEV_APP_ID.bytes().all(|b| b.is_ascii_digit()));
        assert!(!DEV_APP_ID.is_empty());
    }

    #[test]
    fn inconsistent_configurations_are_refused() {
        let cli = Cli::try_parse_from(["x", "--app-key", "k"]).unwrap();
        assert!(Settings::resolve(&cli, FileConfig::default()).is_err());
        let file = parse_file(
            "[[apps]]\nid='1'\nkey='k'\nsecret='s'\n[[apps]]\nid='2'\nkey='k'\nsecret='t'\n",
        )
        .unwrap();
        assert!(Settings::resolve(&Cli::default(), file).is_err());
        let file = parse_file("[[apps]]\nid='a/b'\nkey='k'\nsecret='s'\n").unwrap();
        assert!(Settings::resolve(&Cli::default(), file).is_err());
        assert!(parse_file("nonsense = 1").is_err());
        let cli =
            Cli::try_parse_from(["x", "--slow-consumer", "disconnect", "--workers", "0"]).unwrap();
        assert!(Settings::resolve(&cli, FileConfig::default()).is_err());
    }
}
