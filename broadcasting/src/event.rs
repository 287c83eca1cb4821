//! [`Event`]: the unit every driver publishes and delivers (R20).

use bytes::Bytes;

/// One event on one channel.
///
/// The payload is opaque bytes (typically pre-encoded JSON, but anything
/// goes); no driver looks inside it. Cloning an `Event` copies the two
/// strings and bumps the payload's reference count. Drivers share one
/// allocation of a published event among all local subscribers.
///
/// # Examples
///
/// ```
/// use broadcasting::Event;
///
/// let e = Event::new("orders", "OrderCreated", &b"{\"id\":42}"[..]);
/// assert_eq!(e.channel, "orders");
/// assert_eq!(e.name, "OrderCreated");
/// assert_eq!(&e.payload[..], b"{\"id\":42}");
/// assert_eq!(e.origin, None);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    /// The channel the event is published on, e.g. `orders`.
    pub channel: String,
    /// The event's name, e.g. `OrderCreated`. Any string, including the
    /// empty one and ones containing newlines.
    pub name: String,
    /// Opaque payload bytes, delivered exactly as published.
    pub payload: Bytes,
    /// The node that published the event, when a remote driver delivered it
    /// (`RedisBroadcaster::node_id` of the publisher). `None` for events
    /// published in-process. A remote driver overwrites it on publish.
    pub origin: Option<String>,
}

impl Event {
    /// Builds an event with no origin.
    pub fn new(
        channel: impl Into<String>,
        name: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Self {
        Self {
            channel: channel.into(),
            name: name.into(),
            payload: payload.into(),
            origin: None,
        }
    }
}
