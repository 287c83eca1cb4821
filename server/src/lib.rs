//! `realtime-server`: a realtime WebSocket gateway speaking the Pusher
//! Channels protocol v7, so that `pusher-js`, Laravel Echo and the official
//! Pusher server SDKs work against it unchanged.
//!
//! The protocol layer ([`Gateway`]) holds every app's [`realtime::Hub`] and
//! every connection's Pusher state, and needs no socket: tests drive it with
//! `realtime::pipe()` connections. The transport adapter (`handler`) puts
//! it on `realtime-mio`; the broadcasting bridge (`bridge`) publishes
//! through a `broadcasting` driver; `run` wires it all for the binary.
//!
//! # Examples
//!
//! ```
//! use realtime_server::{config::Settings, Gateway, UpgradeDecision};
//!
//! let gateway = Gateway::new(&Settings::default());
//! let UpgradeDecision::Accept(app) = gateway.upgrade("/app/app-key", Some("7")) else { panic!() };
//! let (conn, peer) = realtime::pipe();
//! let client = app.hub().add(conn, UpgradeDecision::auth(&app)).unwrap();
//! let hello = gateway.open(&client).unwrap();
//! assert!(hello.contains("pusher:connection_established"));
//!
//! gateway.handle_message(&client, br#"{"event":"pusher:ping","data":{}}"#);
//! assert_eq!(peer.recv_text().unwrap(), r#"{"event":"pusher:pong","data":{}}"#);
//! ```

pub mod activity;
pub mod app;
pub mod auth;
pub mod bridge;
pub mod bus;
pub mod channel;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod envelope;
pub mod gateway;
pub mod handler;
pub mod http_api;
pub mod json;
pub mod metrics;
pub mod presence_encoder;
pub mod protocol;
pub mod rate_limit;
pub mod server;

#[doc(hidden)]
pub mod fuzz;

pub use app::App;
pub use config::{Cli, Settings};
pub use gateway::{Bus, Gateway, LocalBus, UpgradeDecision};
pub use http_api::{HttpReply, HttpRequest};
pub use presence_encoder::PusherPresenceEncoder;

#[doc(hidden)]
pub use fuzz::{fuzz_http_api, fuzz_pusher_message};
