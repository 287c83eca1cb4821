//! Puts a `broadcasting` driver between publishers and the Hubs.
//!
//! Every publish (HTTP API, client events) goes to the bus as
//! `{app_id}/{channel}` with the envelope of `envelope.rs`; each app holds
//! one prefix subscription (`{app_id}/`) whose handler delivers to the app's
//! Hub through [`crate::bridge::deliver`]. With the `Memory` driver that is
//! one process; a remote driver (Redis) carries the same events across
//! nodes without any change here.
//!
//! Each app's subscription has one thread, so an app's fan-outs run one at a
//! time on it, in publish order: per-channel order is kept across publishers
//! of one node, and the HTTP handler returns as soon as the bus has the
//! event.

use std::sync::Arc;

use broadcasting::{Broadcaster, BroadcasterExt, Event, Subscription};

use crate::bridge::{self, BusPublisher};
use crate::gateway::Gateway;

/// Queue capacity of each app's bus subscription, in events. The bridge
/// handler only enqueues into outboxes, so this absorbs publish bursts (an
/// HTTP batch of 10 events to 100 channels is 1,000 events); a full queue
/// drops (counted: `Attached::dropped`).
pub const BUS_BUFFER: usize = 65_536;

/// The bus of a running gateway: the driver and the apps' subscriptions.
pub struct Attached {
    bus: Arc<dyn Broadcaster>,
    subscriptions: Vec<Subscription>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("subscriptions", &self.subscriptions.len())
            .finish()
    }
}

/// Subscribes every app of `gateway` to `bus` and routes the gateway's
/// publishing through it.
///
/// # Errors
///
/// The bus refused a subscription (it is closed, or a thread could not be
/// started).
pub fn attach(gateway: &Arc<Gateway>, bus: Arc<dyn Broadcaster>) -> broadcasting::Result<Attached> {
    let mut subscriptions = Vec::new();
    for app in gateway.apps() {
        let app = Arc::clone(app);
        let prefix = format!("{}/", app.id());
        subscriptions.push(bus.subscribe_prefix(&prefix, move |e: &Event| {
            bridge::deliver(&app, &e.channel, &e.name, &e.payload);
            Ok(())
        })?);
    }
    let publisher = Arc::clone(&bus);
    gateway.set_bus(Arc::new(BusPublisher::new(
        move |channel, name, payload| {
            publisher
                .publish(Event {
                    channel,
                    name,
                    payload,
                })
                .map_err(|e| e.to_string())
        },
    )));
    Ok(Attached { bus, subscriptions })
}

impl Attached {
    /// Events the bus dropped on full subscriber queues.
    pub fn dropped(&self) -> u64 {
        self.bus.dropped()
    }

    /// Cancels the subscriptions and closes the bus.
    pub fn close(self) {
        for s in self.subscriptions {
            s.cancel();
        }
        self.bus.close();
    }
}
