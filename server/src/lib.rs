//! `realtime-server`: a realtime WebSocket gateway speaking the Pusher
//! Channels protocol v7, so that `pusher-js`, Laravel Echo and the official
//! Pusher server SDKs work against it unchanged.
//!
//! The public face:
//!
//! - [`start`] puts a node on a socket as the binary does and returns the
//!   [`Running`] server; [`Settings`] (from a [`Cli`], a file or by hand)
//!   says how; [`Error`] is what can stop it.
//! - [`Node`] is one gateway node without sockets: its [`Apps`], the
//!   Pusher protocol ([`Gateway`]), the HTTP API ([`HttpApi`]) and the
//!   activity timeout ([`Activity`]) over one [`Bus`]. Tests and embedders
//!   drive it with `realtime::pipe()` connections.
//! - [`auth`] signs what Pusher clients and servers sign; [`code`] holds
//!   Pusher's close and error codes.
//!
//! Everything else is private; ARCHITECTURE.md at the project root maps
//! the modules.
//!
//! # Examples
//!
//! ```
//! use realtime_server::{Node, Settings, UpgradeDecision};
//!
//! let node = Node::new(&Settings::default()).unwrap();
//! let gateway = node.gateway();
//! let UpgradeDecision::Accept(app) = gateway.upgrade("/app/app-key", Some("7")) else { panic!() };
//! let (conn, peer) = realtime::pipe();
//! let client = app.hub().add(conn, UpgradeDecision::auth(&app)).unwrap();
//! let hello = gateway.open(&client).unwrap();
//! assert!(hello.contains("pusher:connection_established"));
//!
//! gateway.handle_message(&client, br#"{"event":"pusher:ping","data":{}}"#);
//! assert_eq!(peer.recv_text().unwrap(), r#"{"event":"pusher:pong","data":{}}"#);
//! ```

mod activity;
mod app;
pub mod auth;
mod bus;
mod cache;
mod channel;
mod cluster;
mod config;
mod connection;
mod dashboard;
mod error;
mod fuzz;
mod gateway;
mod handler;
mod http_api;
mod json;
mod member;
mod metrics;
mod node;
mod presence;
mod protocol;
mod rate_limit;
mod redis_conn;
mod reply;
mod samples;
mod server;
mod subscribe;
mod webhooks;

pub use activity::{Activity, Swept};
pub use app::{App, Apps};
pub use bus::{deliver, BroadcastBus, Bus, BusError, LocalBus};
pub use config::{
    parse_file, read_file, AppConfig, Cli, ClientLimits, Compression, FileConfig, Settings,
    SlowConsumer, WebhookFilter, WebhookTarget,
};
pub use connection::Connection;
pub use dashboard::DashboardToken;
pub use error::Error;
pub use gateway::{Gateway, UpgradeDecision, PONG_TIMEOUT};
pub use http_api::{HttpApi, MAX_BATCH, MAX_CHANNELS_PER_EVENT, MAX_CLOCK_SKEW, MAX_EVENT_NAME};
pub use node::Node;
pub use presence::PusherPresenceEncoder;
pub use protocol::code;
pub use server::{start, transport_config, Running};
pub use webhooks::{Webhooks, BATCH_WINDOW, MAX_BATCH_EVENTS};

#[doc(hidden)]
pub use fuzz::{fuzz_http_api, fuzz_pusher_message};
