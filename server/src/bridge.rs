//! The bridge between the Gateway and a broadcasting bus.
//!
//! Outbound, [`BusPublisher`] is the Gateway's [`Bus`]: it packs each
//! encoded frame and its excluded socket id into an envelope (`envelope.rs`)
//! and hands `(bus channel, event name, payload)` to a publish function,
//! normally `Broadcaster::publish` of the `broadcasting` crate. Inbound,
//! each app subscribes once to its whole prefix (`{app_id}/`) and calls
//! [`deliver`] for every event: the frame is wrapped in one shared
//! [`realtime::Frame`] and fanned out by the app's Hub, skipping the
//! excluded socket if it lives on this node. A frame is thus encoded once
//! by its publisher, on whatever node, and never re-encoded.
//!
//! The bridge names no driver: any transport of `(channel, name, payload)`
//! that carries bytes exactly (the Memory driver, Redis) fits.

use std::sync::Arc;

use bytes::Bytes;
use realtime::Frame;

use crate::app::App;
use crate::envelope;
use crate::gateway::Bus;

/// A [`Bus`] over a publish function `(bus_channel, name, payload)`.
pub struct BusPublisher<F> {
    publish: F,
}

impl<F> BusPublisher<F>
where
    F: Fn(String, String, Bytes) -> Result<(), String> + Send + Sync + 'static,
{
    /// A bus that publishes with `publish`.
    pub fn new(publish: F) -> Self {
        Self { publish }
    }
}

impl<F> std::fmt::Debug for BusPublisher<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusPublisher")
    }
}

impl<F> Bus for BusPublisher<F>
where
    F: Fn(String, String, Bytes) -> Result<(), String> + Send + Sync + 'static,
{
    fn publish(
        &self,
        app: &Arc<App>,
        channel: &str,
        name: &str,
        frame: String,
        except: Option<&str>,
    ) -> Result<(), String> {
        (self.publish)(
            envelope::bus_channel(app.id(), channel),
            name.to_owned(),
            envelope::encode(&frame, except),
        )
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
