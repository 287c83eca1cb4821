//! The crate's one error type.
//!
//! Every fallible operation of every driver returns [`Error`]. Handler
//! failures are not errors of the publisher: they are contained, counted and
//! logged by the driver (see [`crate::HandlerError`]).

/// Shorthand for `Result<T, broadcasting::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when publishing, subscribing or building a driver.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broadcaster was closed: `publish` and `subscribe` are refused.
    #[error("broadcaster is closed")]
    Closed,

    /// The thread that drains a subscription's queue could not be started.
    #[error("could not start a subscription thread")]
    Spawn(#[source] std::io::Error),

    /// The remote backend (Redis) cannot be reached right now. The driver
    /// keeps reconnecting in the background; a later call may succeed. A
    /// publish that fails with this error may or may not have been
    /// delivered (the request can be lost after it was sent).
    #[error("remote backend unavailable: {0}")]
    Unavailable(String),

    /// A driver was configured with values it cannot work with.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Bytes received from the network are not a valid envelope.
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),

    /// A field is too long for the envelope's length prefix.
    #[error("event too large to encode: {0}")]
    TooLarge(&'static str),
}
