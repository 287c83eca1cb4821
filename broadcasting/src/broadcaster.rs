//! The `Broadcaster` trait (R21) and its closure-friendly extension.

use std::sync::Arc;

use crate::dispatch::Subscription;
use crate::error::Result;
use crate::event::Event;

/// The error a handler may return; it is logged, never propagated.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A subscription's handler, called on the subscription's own thread, one
/// event at a time, in publish order.
pub type Handler = Arc<dyn Fn(&Event) -> std::result::Result<(), HandlerError> + Send + Sync>;

/// Which events a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// Exactly this channel.
    Channel(String),
    /// Every channel starting with this prefix (`""`: every channel).
    Prefix(String),
}

impl Filter {
    /// Whether an event on `channel` passes.
    pub fn matches(&self, channel: &str) -> bool {
        match self {
            Filter::Channel(c) => c == channel,
            Filter::Prefix(p) => channel.starts_with(p.as_str()),
        }
    }
}

/// A pub/sub driver. Object safe: `Arc<dyn Broadcaster>` works, and the
/// closure-taking helpers come from [`BroadcasterExt`].
pub trait Broadcaster: Send + Sync {
    /// Publishes an event; never blocks on a subscriber.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Closed`] after close; remote drivers may return
    /// [`crate::Error::Unavailable`] (local subscribers still got it).
    fn publish(&self, event: Event) -> Result<()>;

    /// Subscribes `handler` to the events `filter` lets through.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Closed`] after close.
    fn subscribe_filter(&self, filter: Filter, handler: Handler) -> Result<Subscription>;

    /// Cancels every subscription (joining their threads) and rejects later
    /// publishes and subscribes. Idempotent.
    fn close(&self);

    /// Events dropped because a subscriber's queue was full, in total.
    fn dropped(&self) -> u64;
}

/// Closure-friendly subscribe calls, for every [`Broadcaster`] (sized or
/// not).
pub trait BroadcasterExt: Broadcaster {
    /// Subscribes to one channel.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Closed`] after close.
    fn subscribe<F>(&self, channel: &str, handler: F) -> Result<Subscription>
    where
        F: Fn(&Event) -> std::result::Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.subscribe_filter(Filter::Channel(channel.to_owned()), Arc::new(handler))
    }

    /// Subscribes to every channel starting with `prefix`; `""` is every
    /// channel.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Closed`] after close.
    fn subscribe_prefix<F>(&self, prefix: &str, handler: F) -> Result<Subscription>
    where
        F: Fn(&Event) -> std::result::Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.subscribe_filter(Filter::Prefix(prefix.to_owned()), Arc::new(handler))
    }
}

impl<B: Broadcaster + ?Sized> BroadcasterExt for B {}
