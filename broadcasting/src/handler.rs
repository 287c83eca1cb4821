//! The handler type that subscriptions run.
//!
//! A handler is user code. Drivers run it on the subscription's own thread,
//! one event at a time, and contain whatever it does wrong: an `Err` or a
//! panic is logged through `tracing` and counted, never returned to the
//! publisher, and the subscription keeps running (R22).

use std::sync::Arc;

use crate::Event;

/// The error a handler may return. Anything that implements
/// [`std::error::Error`] converts into it with `?`.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a handler returns.
pub type HandlerResult = Result<(), HandlerError>;

/// A type-erased handler, as the object-safe [`crate::Broadcaster`] trait
/// takes it.
///
/// A closure becomes one with `Arc::new`; the closure's signature is
/// inferred from this type:
///
/// ```
/// use std::sync::Arc;
/// use broadcasting::{Broadcaster, Event, Handler, Memory};
///
/// let bus: Box<dyn Broadcaster> = Box::new(Memory::new());
/// let handler: Handler = Arc::new(|e: &Event| {
///     assert_eq!(e.channel, "orders");
///     Ok(())
/// });
/// let sub = bus.subscribe("orders", handler).unwrap();
/// sub.cancel();
/// ```
///
/// The concrete drivers also have inherent `subscribe` methods that take a
/// closure directly.
pub type Handler = Arc<dyn Fn(&Event) -> HandlerResult + Send + Sync + 'static>;
