//! The crate's one error type.

/// Everything a Hub operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Hub (or, for client-scoped calls, the client) is closed.
    #[error("closed")]
    Closed,
    /// The authorizer denied a private or presence join, or there is no authorizer.
    #[error("unauthorized")]
    Unauthorized,
    /// `send_to` named a client id that is not connected to this Hub.
    #[error("client not found: {0}")]
    ClientNotFound(String),
    /// A text frame's payload is not valid UTF-8 (R1).
    #[error("text payload is not valid UTF-8")]
    InvalidUtf8,
    /// `Client::serve` was called on a client that has no blocking `Conn`
    /// (it was attached by a non-blocking transport).
    #[error("client has no blocking connection to serve")]
    NotServable,
    /// A subscribe past the Hub's per-client subscription limit (the
    /// limit is given).
    #[error("too many subscriptions: the limit is {0} channels per connection")]
    TooManySubscriptions(usize),
    /// A subscribe that would create a channel past the Hub's channel
    /// limit (the limit is given).
    #[error("too many channels: the limit is {0} channels")]
    TooManyChannels(usize),
    /// A presence join that would pass the channel's member limit (the
    /// limit is given).
    #[error("presence channel is full: the limit is {0} members")]
    PresenceFull(usize),
    /// The transport failed.
    #[error("transport: {0}")]
    Io(#[from] std::io::Error),
}

impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Closed, Self::Closed)
            | (Self::Unauthorized, Self::Unauthorized)
            | (Self::InvalidUtf8, Self::InvalidUtf8)
            | (Self::NotServable, Self::NotServable) => true,
            (Self::ClientNotFound(a), Self::ClientNotFound(b)) => a == b,
            (Self::TooManySubscriptions(a), Self::TooManySubscriptions(b))
            | (Self::TooManyChannels(a), Self::TooManyChannels(b))
            | (Self::PresenceFull(a), Self::PresenceFull(b)) => a == b,
            (Self::Io(a), Self::Io(b)) => a.kind() == b.kind(),
            _ => false,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
