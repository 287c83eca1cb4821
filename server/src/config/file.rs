//! The TOML config file: the same settings as the flags, plus `[[apps]]`
//! with per-app limits.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use super::{AppConfig, Compression, SlowConsumer};
use crate::error::Error;

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
    /// As `--tls-cert`.
    pub tls_cert: Option<std::path::PathBuf>,
    /// As `--tls-key`.
    pub tls_key: Option<std::path::PathBuf>,
    /// As `--max-user-id-length` (an app's own value wins).
    pub max_user_id_length: Option<usize>,
    /// As `--max-member-size` (an app's own value wins).
    pub max_member_size: Option<usize>,
    /// As `--slow-consumer`.
    pub slow_consumer: Option<SlowConsumer>,
    /// As `--compression` (`"on"` or `"off"`).
    pub compression: Option<Compression>,
    /// As `--compression-threshold`.
    pub compression_threshold: Option<usize>,
    /// As `--log-level`.
    pub log_level: Option<String>,
    /// As `--redis`.
    pub redis: Option<String>,
    /// As `--redis-namespace`.
    pub redis_namespace: Option<String>,
    /// As `--node-ttl`.
    pub node_ttl: Option<u64>,
    /// As `--cache-ttl`.
    pub cache_ttl: Option<u64>,
    /// As `--max-cache-channels`.
    pub max_cache_channels: Option<usize>,
    /// As `--webhook-queue`.
    pub webhook_queue: Option<usize>,
    /// As `--webhook-retry-ms`.
    pub webhook_retry_ms: Option<u64>,
    /// As `--webhook-timeout-ms`.
    pub webhook_timeout_ms: Option<u64>,
    /// As `--webhook-workers`.
    pub webhook_workers: Option<usize>,
    /// As `--dashboard-token`.
    pub dashboard_token: Option<String>,
    /// The apps.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

/// Reads and parses a TOML config file.
///
/// # Errors
///
/// [`Error::ConfigRead`] or [`Error::ConfigParse`].
pub fn read_file(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
        path: path.to_owned(),
        source,
    })?;
    parse_file(&text).map_err(|source| Error::ConfigParse {
        path: path.to_owned(),
        source: Box::new(source),
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
