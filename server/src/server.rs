//! Wiring for the binary and for socket-level tests: the gateway, the
//! transport, the activity sweeper, and an orderly shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use realtime_mio::{Config, Server};

use crate::activity::Sweeper;
use crate::config::Settings;
use crate::gateway::{Gateway, PONG_TIMEOUT};
use crate::handler::PusherHandler;
use crate::protocol::code;

/// Extra transport connection slots above `max_connections`, so that a
/// client over capacity still completes a handshake and hears Pusher's 4100
/// instead of an HTTP 503.
const REFUSAL_SLACK: usize = 64;

/// A running gateway.
pub struct Running {
    gateway: Arc<Gateway>,
    server: Arc<Mutex<Option<Server>>>,
    local_addr: std::net::SocketAddr,
    sweeper: Option<Sweeper>,
    bus: Option<crate::bus::Attached>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// The transport configuration for these settings.
pub fn transport_config(settings: &Settings) -> Config {
    let activity = Duration::from_secs(settings.activity_timeout);
    Config {
        bind: settings.bind,
        workers: settings.workers,
        max_connections: settings.max_connections.saturating_add(REFUSAL_SLACK),
        max_message_size: settings.max_message_size,
        // The Pusher-level timeout (ping, then 4201) must fire first.
        idle_timeout: activity + PONG_TIMEOUT + Duration::from_secs(30),
        ..Config::default()
    }
}

/// Starts the gateway on `settings.bind`.
///
/// # Errors
///
/// Binding the socket or spawning threads failed.
pub fn start(settings: &Settings) -> std::io::Result<Running> {
    let gateway = Arc::new(Gateway::new(settings));
    let bus: Arc<dyn broadcasting::Broadcaster> = Arc::new(
        broadcasting::Memory::builder()
            .buffer(crate::bus::BUS_BUFFER)
            .build(),
    );
    let attached = crate::bus::attach(&gateway, bus).map_err(std::io::Error::other)?;
    let mut running = start_with(gateway, settings)?;
    running.bus = Some(attached);
    Ok(running)
}

/// Starts an already-built gateway (with its bus installed).
///
/// # Errors
///
/// Binding the socket or spawning threads failed.
pub fn start_with(gateway: Arc<Gateway>, settings: &Settings) -> std::io::Result<Running> {
    let server = Server::bind(
        transport_config(settings),
        PusherHandler::new(gateway.clone()),
    )?;
    let local_addr = server.local_addr();
    let server = Arc::new(Mutex::new(Some(server)));
    let stats_of = Arc::downgrade(&server);
    gateway.set_transport_stats(move || {
        let Some(server) = stats_of.upgrade() else {
            return Vec::new();
        };
        let guard = server.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = guard.as_ref().map(Server::stats) else {
            return Vec::new();
        };
        vec![
            (
                "realtime_transport_bytes_in_total",
                "Bytes read from sockets.",
                "counter",
                s.bytes_in,
            ),
            (
                "realtime_transport_bytes_out_total",
                "Bytes written to sockets.",
                "counter",
                s.bytes_out,
            ),
            (
                "realtime_transport_frames_in_total",
                "WebSocket data messages received.",
                "counter",
                s.frames_in,
            ),
            (
                "realtime_transport_frames_out_total",
                "WebSocket data frames written, one per recipient.",
                "counter",
                s.frames_out,
            ),
            (
                "realtime_transport_connections_accepted_total",
                "Sockets accepted.",
                "counter",
                s.accepted,
            ),
            (
                "realtime_transport_rejected_over_capacity_total",
                "Upgrades refused with 503: transport full.",
                "counter",
                s.rejected_over_capacity,
            ),
            (
                "realtime_transport_idle_timeouts_total",
                "Connections closed for idleness.",
                "counter",
                s.idle_timeouts,
            ),
            (
                "realtime_transport_write_timeouts_total",
                "Connections dropped on write timeout.",
                "counter",
                s.write_timeouts,
            ),
            (
                "realtime_transport_protocol_violations_total",
                "Connections closed for WebSocket protocol violations.",
                "counter",
                s.closed_for_violation,
            ),
            (
                "realtime_transport_slow_consumer_disconnects_total",
                "Connections closed with 1008 (slow consumer).",
                "counter",
                s.closes_with(1008),
            ),
        ]
    });
    let sweeper = Sweeper::start(&gateway, Duration::from_secs(1))?;
    Ok(Running {
        gateway,
        server,
        local_addr,
        sweeper: Some(sweeper),
        bus: None,
    })
}

impl Running {
    /// The address the server listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// The gateway.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Closes every client with 4200 ("reconnect now": server restarting),
    /// stops the transport and the sweeper, closes the Hubs.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.sweeper.take();
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(server) = server {
            server.shutdown_with(code::RESTARTING, "Server shutting down");
        }
        self.gateway.close_all();
        if let Some(bus) = self.bus.take() {
            bus.close();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}
