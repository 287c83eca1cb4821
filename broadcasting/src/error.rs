//! The crate's one error type.

/// What a broadcaster operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broadcaster is closed.
    #[error("broadcaster closed")]
    Closed,
    /// The remote engine cannot be reached; the event was delivered to local
    /// subscribers only.
    #[error("remote engine unavailable: {0}")]
    Unavailable(String),
    /// A subscription's thread could not be started.
    #[error("cannot start subscription: {0}")]
    Spawn(#[from] std::io::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
