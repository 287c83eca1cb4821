//! The in-process driver (R22).

use std::sync::Arc;

use crate::broadcaster::{Broadcaster, Filter, Handler};
use crate::dispatch::{Dispatcher, Stats, Subscription, DEFAULT_BUFFER};
use crate::error::{Error, Result};
use crate::event::Event;

/// Options for [`Memory`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryBuilder {
    buffer: usize,
}

impl MemoryBuilder {
    /// Capacity of each subscription's queue, in events (default 256).
    ///
    /// # Panics
    ///
    /// If `events` is 0.
    pub fn buffer(mut self, events: usize) -> Self {
        assert!(events > 0, "subscription buffer must be at least 1");
        self.buffer = events;
        self
    }

    /// Builds the driver.
    pub fn build(self) -> Memory {
        Memory {
            dispatcher: Dispatcher::new(self.buffer, "memory"),
        }
    }
}

/// The in-process broadcaster: publish hands the event to each matching
/// subscription's bounded queue, drained by that subscription's thread.
///
/// # Examples
///
/// ```
/// use broadcasting::{Broadcaster, BroadcasterExt, Event, Memory};
///
/// let bus = Memory::builder().buffer(1024).build();
/// let (tx, rx) = std::sync::mpsc::sync_channel(1);
/// bus.subscribe_prefix("", move |e: &Event| Ok(tx.send(e.name.clone())?)).unwrap();
/// bus.publish(Event::new("any-channel", "Ping", "")).unwrap();
/// assert_eq!(rx.recv().unwrap(), "Ping");
/// assert_eq!(bus.dropped(), 0);
/// ```
pub struct Memory {
    dispatcher: Arc<Dispatcher>,
}

impl Memory {
    /// A driver with the default options.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for the options.
    pub fn builder() -> MemoryBuilder {
        MemoryBuilder {
            buffer: DEFAULT_BUFFER,
        }
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.dispatcher.stats()
    }
}

impl Default for Memory {
    fn default() -> Self {
        Self::new()
    }
}

impl Broadcaster for Memory {
    fn publish(&self, event: Event) -> Result<()> {
        if self.dispatcher.is_closed() {
            return Err(Error::Closed);
        }
        self.dispatcher.count_published();
        self.dispatcher.dispatch(&event);
        Ok(())
    }

    fn subscribe_filter(&self, filter: Filter, handler: Handler) -> Result<Subscription> {
        self.dispatcher.subscribe(filter, handler)
    }

    fn close(&self) {
        self.dispatcher.close();
    }

    fn dropped(&self) -> u64 {
        self.dispatcher.dropped()
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        self.dispatcher.close();
    }
}
