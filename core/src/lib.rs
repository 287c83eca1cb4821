//! `realtime`: the Hub of a realtime WebSocket gateway.
//!
//! A [`Hub`] holds [`Client`]s (connections with bounded outboxes), named
//! channels (public, `private-`, `presence-`), presence rosters and
//! per-channel authorization, and delivers frames by broadcast, broadcast
//! to all but one, or to one client. The broadcast path takes no lock that a
//! subscribe can hold and never blocks on a slow client: full outboxes drop
//! the frame or disconnect the client ([`SlowConsumerPolicy`]).
//!
//! The Hub does no I/O of its own. A blocking [`Conn`] gets a writer thread
//! per client ([`Hub::add`]); a non-blocking transport drains outboxes itself
//! ([`Hub::attach`], [`Transport`]). [`pipe`] makes an in-memory `Conn` pair.
//!
//! # Examples
//!
//! ```
//! use realtime::{pipe, AuthResult, Hub, Member};
//!
//! let hub = Hub::builder()
//!     .authorizer(|_: &realtime::AuthRequest| AuthResult::allow(Member::new("u1", r#"{"name":"Ada"}"#)))
//!     .build();
//! let (conn, peer) = pipe();
//! let client = hub.add(conn, b"token").unwrap();
//!
//! hub.subscribe(&client, "presence-room.7").unwrap();
//! // The roster (empty: nobody was there), then our own join.
//! assert!(peer.recv_text().unwrap().contains(r#""members":[]"#));
//! assert!(peer.recv_text().unwrap().contains("presence:member_added"));
//! assert_eq!(hub.presence("presence-room.7")[0].id, "u1");
//! ```

mod auth;
mod channel;
mod client;
mod conn;
mod error;
mod hasher;
mod hub;
mod message;
mod mutants;
mod outbox;
mod presence;
mod subs;
mod sync;
mod table;

pub use auth::{AuthRequest, AuthResult, Authorizer};
pub use channel::{classify_channel, ChannelType};
pub use client::{Client, SlowConsumerPolicy, Transport};
pub use conn::{pipe, Conn, MemoryConn};
pub use error::{Error, Result};
pub use hub::{
    ChannelEvent, Hub, HubBuilder, CLOSE_GOING_AWAY, CLOSE_SLOW_CONSUMER, DEFAULT_CLIENT_BUFFER,
};
pub use message::{Frame, IntoPayload, MessageKind, MessageType};
pub use presence::{
    is_json, push_info, push_json_str, JsonPresenceEncoder, Member, PresenceEncoder, PresenceEvent,
    PresenceMode, RosterView,
};

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
