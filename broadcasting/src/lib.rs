//! `broadcasting`: the pub/sub layer that fans events out to gateway Hubs.
//!
//! An [`Event`] (channel, name, opaque payload) is published on a
//! [`Broadcaster`] and handed to every subscription whose filter matches:
//! one channel ([`BroadcasterExt::subscribe`]) or every channel under a
//! prefix ([`BroadcasterExt::subscribe_prefix`], the empty prefix being
//! every channel, so a gateway can bridge all traffic without knowing channel
//! names in advance).
//!
//! Publishing never blocks: each subscription has a bounded queue drained
//! by its own thread; a full queue drops the event for that subscriber and
//! counts it in [`Broadcaster::dropped`]. Handler errors and panics are
//! logged through `tracing`, never propagated to the publisher (R22).
//!
//! [`Memory`] is the in-process driver; `Redis` (feature `redis`) carries
//! events across processes on Redis pub/sub (R24). This crate never depends on the
//! Hub crate (`realtime`), nor it on this one (R23): bridging is a handler
//! that calls the Hub.
//!
//! # Examples
//!
//! Bridging to a Hub is one handler; here a closure stands in for
//! `hub.broadcast(&e.channel, e.payload.clone())`:
//!
//! ```
//! use std::sync::mpsc;
//! use broadcasting::{Broadcaster, BroadcasterExt, Event, Memory};
//!
//! let bus = Memory::new();
//! let (tx, rx) = mpsc::channel();
//! let tx = std::sync::Mutex::new(tx);
//! let sub = bus
//!     .subscribe("orders", move |e: &Event| {
//!         tx.lock().unwrap().send(e.payload.clone())?; // hub.broadcast(...)
//!         Ok(())
//!     })
//!     .unwrap();
//! bus.publish(Event::new("orders", "OrderCreated", r#"{"id":42}"#)).unwrap();
//! assert_eq!(&rx.recv().unwrap()[..], br#"{"id":42}"#);
//! sub.cancel();
//! bus.close();
//! assert!(bus.publish(Event::new("orders", "x", "")).is_err());
//! ```

mod broadcaster;
mod dispatch;
mod error;
mod event;
mod memory;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use self::redis::{Redis, RedisBuilder, RedisStats, DEFAULT_NAMESPACE, MIN_BACKOFF, POLL};
pub use broadcaster::{Broadcaster, BroadcasterExt, Filter, Handler, HandlerError};
pub use dispatch::{Stats, Subscription, DEFAULT_BUFFER};
pub use error::{Error, Result};
pub use event::Event;
pub use memory::{Memory, MemoryBuilder};
