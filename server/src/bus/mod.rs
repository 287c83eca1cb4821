//! The bus: where every published frame goes, and how it comes back to the
//! Hubs.
//!
//! Every event meant for a channel (HTTP API events, client events) is
//! encoded once into its Pusher frame by its publisher and handed to a
//! [`Bus`]:
//!
//! - [`LocalBus`] delivers to this node's Hub at once, on the caller's
//!   thread: the server binary without `--redis` (one node), embedders,
//!   socket-free tests. A publish from an event loop (an HTTP API request,
//!   a client event) fans out on that loop before it returns, so a
//!   recipient owned by the same loop is written in the same loop turn and
//!   the others cost one wake of their loop: no bus thread in between
//!   (issue 16 item 1: that hop was a futex wake-up per publish).
//! - [`BroadcastBus`] packs the frame and the socket id to exclude into an
//!   envelope (`envelope.rs`) and publishes it through a `broadcasting`
//!   driver as `{app_id}/{channel}`. Each app holds one prefix
//!   subscription (`{app_id}/`, see [`attach`]) whose handler calls
//!   [`deliver`]: the frame is wrapped in one shared [`realtime::Frame`]
//!   and fanned out by the app's Hub, skipping the excluded socket if it
//!   lives on this node. With the `Memory` driver that is one process; the
//!   Redis driver carries the same events across nodes with no change here
//!   (cluster mode, where cluster presence changes use the same driver
//!   under their own prefix, `envelope::PRESENCE_PREFIX`, handled in
//!   `cluster/`).
//!
//! A frame is encoded once by its publisher, on whatever node, and never
//! re-encoded.
//!
//! # Order
//!
//! Both buses keep **per-publisher FIFO**: the events of one publisher (one
//! HTTP request's batch, the requests of one keep-alive connection, the
//! client events of one WebSocket) reach every subscriber in publish order,
//! since one publisher's calls run one after the other on one thread (R17).
//! More precisely, with [`LocalBus`] a publish has reached every local
//! outbox when it returns, so two publishes that do not overlap in time
//! (one returned, e.g. its HTTP 200 was sent, before the other started)
//! arrive in that order, whoever made them. Two publishes to one channel
//! that do overlap (two connections served by two loops at once) may reach
//! different subscribers in different orders; with [`BroadcastBus`] they
//! cannot, because each app's subscription thread runs its fan-outs one at
//! a time, which is the single-node hop this ordering used to cost.

mod envelope;

pub use envelope::PRESENCE_PREFIX;
pub(crate) use envelope::{presence_channel, split_presence_channel, PresenceChange};

use std::sync::Arc;

use broadcasting::{Broadcaster, BroadcasterExt, Event, Subscription};
use realtime::Frame;

use crate::app::{App, Traffic};
pub use crate::error::BusError;
use crate::metrics::Metrics;

/// Queue capacity of each app's bus subscription, in events. The delivery
/// handler only enqueues into outboxes, so this absorbs publish bursts (an
/// HTTP batch of 10 events to 100 channels is 1,000 events); a full queue
/// drops (counted by the driver: `Broadcaster::dropped`).
pub const BUS_BUFFER: usize = 65_536;

/// Where published frames go.
pub trait Bus: Send + Sync + 'static {
    /// Publishes the encoded Pusher `frame` of event `name` on `channel` of
    /// `app`, to be delivered to every subscriber but the connection with
    /// socket id `except`.
    ///
    /// # Errors
    ///
    /// Why the bus refused it.
    fn publish(
        &self,
        app: &App,
        channel: &str,
        name: &str,
        frame: String,
        except: Option<&str>,
    ) -> Result<(), BusError>;
}

/// This node's Hubs, directly, on the publishing thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalBus;

impl Bus for LocalBus {
    fn publish(
        &self,
        app: &App,
        channel: &str,
        _name: &str,
        frame: String,
        except: Option<&str>,
    ) -> Result<(), BusError> {
        app.deliver(channel, Frame::from_string(frame), except);
        Ok(())
    }
}

/// A [`Bus`] over a `broadcasting` driver (Memory or Redis); see the
/// module docs for the addresses and the envelope.
#[derive(Clone)]
pub struct BroadcastBus {
    driver: Arc<dyn Broadcaster>,
}

impl std::fmt::Debug for BroadcastBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BroadcastBus")
    }
}

impl BroadcastBus {
    /// A bus publishing through `driver`.
    pub fn new(driver: Arc<dyn Broadcaster>) -> Self {
        Self { driver }
    }
}

impl Bus for BroadcastBus {
    fn publish(
        &self,
        app: &App,
        channel: &str,
        name: &str,
        frame: String,
        except: Option<&str>,
    ) -> Result<(), BusError> {
        self.driver.publish(Event {
            channel: envelope::bus_channel(app.id(), channel),
            name: name.to_owned(),
            payload: envelope::encode(&frame, except),
        })?;
        Ok(())
    }
}

/// A bus with the publish counters: what the protocol and the HTTP API
/// publish through.
#[derive(Clone)]
pub(crate) struct Publisher {
    bus: Arc<dyn Bus>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Publisher")
    }
}

impl Publisher {
    pub(crate) fn new(bus: Arc<dyn Bus>, metrics: Arc<Metrics>) -> Self {
        Self { bus, metrics }
    }

    /// Publishes an encoded frame of event `name` on `channel`, excluding
    /// socket id `except`; a refusal is counted and logged (the publisher
    /// has nobody to tell: an HTTP publish was already accepted).
    pub(crate) fn publish(
        &self,
        app: &App,
        channel: &str,
        name: &str,
        frame: String,
        except: Option<&str>,
    ) {
        self.metrics.events_published.inc();
        Traffic::add(&app.traffic().published, 1);
        // Cluster mode: a cache channel's event is also shared through
        // Redis (`cache/`); every node's local copy follows `deliver`.
        app.cache().published(channel, &frame);
        app.feed().published(channel, name, &frame, except);
        if let Err(e) = self.bus.publish(app, channel, name, frame, except) {
            self.metrics.bus_errors.inc();
            tracing::warn!(app = app.id(), channel, error = %e, "publish failed");
        }
    }
}

/// The apps' subscriptions to a driver; cancelled and the driver closed on
/// [`Attached::close`].
pub struct Attached {
    driver: Arc<dyn Broadcaster>,
    subscriptions: Vec<Subscription>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("subscriptions", &self.subscriptions.len())
            .finish()
    }
}

/// Subscribes every app to its prefix on `driver`, delivering what arrives
/// to the app's Hub.
///
/// # Errors
///
/// The driver refused a subscription (it is closed, or a thread could not
/// be started).
pub fn attach(apps: &[Arc<App>], driver: Arc<dyn Broadcaster>) -> Result<Attached, BusError> {
    let mut subscriptions = Vec::new();
    for app in apps {
        let app = Arc::clone(app);
        let prefix = envelope::bus_prefix(app.id());
        subscriptions.push(driver.subscribe_prefix(&prefix, move |e: &Event| {
            deliver(&app, &e.channel, &e.name, &e.payload);
            Ok(())
        })?);
    }
    Ok(Attached {
        driver,
        subscriptions,
    })
}

impl Attached {
    /// Cancels the subscriptions and closes the driver.
    pub fn close(self) {
        for s in self.subscriptions {
            s.cancel();
        }
        self.driver.close();
    }
}

/// Delivers one bus event to `app`'s local subscribers. Returns false (and
/// logs) for an event of another app or a broken envelope.
pub fn deliver(app: &App, bus_channel: &str, name: &str, payload: &[u8]) -> bool {
    let Some((app_id, channel)) = envelope::split_bus_channel(bus_channel) else {
        tracing::warn!(bus_channel, "bus event without an app prefix: dropped");
        return false;
    };
    if app_id != app.id() {
        tracing::warn!(
            bus_channel,
            app = app.id(),
            "bus event of another app: dropped"
        );
        return false;
    }
    let Some(decoded) = envelope::decode(channel, name, payload) else {
        tracing::warn!(bus_channel, name, "malformed bus envelope: dropped");
        return false;
    };
    app.deliver(
        channel,
        Frame::from_string(decoded.frame),
        decoded.except.as_deref(),
    );
    true
}
