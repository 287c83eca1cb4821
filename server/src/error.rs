//! The crate's one error type: what can stop a node from being built or
//! started. Protocol-level refusals are not errors here: they are answers
//! to the client (`pusher:error`, close codes, HTTP statuses).

use std::path::PathBuf;

/// Why a configuration cannot be run or a node cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config file could not be read.
    #[error("cannot read {path}: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for this schema.
    #[error("invalid config file {path}: {source}")]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The bus refused a subscription (closed, or no thread).
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The Redis URL or client was refused.
    #[error("redis {url}: {reason}")]
    Redis {
        /// The URL, password redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// Binding a socket or spawning a thread failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<broadcasting::Error> for Error {
    fn from(e: broadcasting::Error) -> Self {
        Self::Bus(e.into())
    }
}

/// Why a bus refused an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The bus is closed (the node is shutting down).
    #[error("the bus is closed")]
    Closed,
    /// The remote engine cannot be reached; the event was delivered to this
    /// node's subscribers only.
    #[error("remote bus unavailable: {0}")]
    Unavailable(String),
}

impl From<broadcasting::Error> for BusError {
    fn from(e: broadcasting::Error) -> Self {
        match e {
            broadcasting::Error::Closed => Self::Closed,
            other => Self::Unavailable(other.to_string()),
        }
    }
}
