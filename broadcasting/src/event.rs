//! The unit of pub/sub (R20).

use bytes::Bytes;

/// An event on a channel: a name and an opaque payload (typically
/// pre-encoded JSON). Cloning is cheap: the payload is shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The channel it is published on.
    pub channel: String,
    /// The event's name (any string: drivers carry it exactly).
    pub name: String,
    /// Opaque bytes.
    pub payload: Bytes,
}

impl Event {
    /// An event from anything that converts into its parts.
    pub fn new(
        channel: impl Into<String>,
        name: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Self {
        Self {
            channel: channel.into(),
            name: name.into(),
            payload: payload.into(),
        }
    }
}
