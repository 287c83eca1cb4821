//! `realtime-mio`: a thread-per-core WebSocket transport for the
//! [`realtime`] Hub.
//!
//! [`Server::bind`] starts N event loops (one per core by default), each a
//! `mio::Poll` that owns its connections for their whole life (R30). A
//! [`Handler`] routes each upgrade request to a Hub ([`Upgrade::Accept`]),
//! refuses it with close frames or rejects it with an HTTP response, gets
//! every inbound message on the loop thread, and serves plain HTTP requests
//! on the same port.
//!
//! Outbound, a connection is a [`realtime::Transport`]: the Hub's wake-up
//! puts the connection's token on its loop's queue and wakes the loop at
//! most once per batch (`wake.rs`); the loop drains the outbox, encoding each
//! frame once for all its recipients and writing several frames with one
//! write (R31): small frames copied into one buffer, larger ones vectored.
//! Keepalive pings, idle, handshake and write timeouts run on a per-loop
//! timing wheel; with [`Config::tls`] the port speaks TLS (rustls), the
//! session kept in the connection's own loop (`tls/`); oversized or
//! malformed input closes that connection with 1009, 1007 or 1002 (R32).
//!
//! # Close codes sent
//!
//! | when | code |
//! |---|---|
//! | `client.close()` by the application | 1000 |
//! | `client.close_with(code, reason)` | `code` |
//! | the Hub's slow-consumer policy disconnects the client | 1008 "slow consumer" |
//! | the peer sends a close frame | its code, echoed |
//! | protocol error / invalid UTF-8 / message too big | 1002 / 1007 / 1009 |
//! | a handler panicked | 1011 |
//! | idle timeout | 1001 "idle timeout", best effort, then the socket is dropped |
//! | write timeout, reset | none: the socket is dropped (the peer sees 1006) |
//! | [`Server::shutdown_with`] | the given code (1001 by default) |
//!
//! A slow-consumer disconnect is told apart from an application close by the
//! client's outbox being full when the close is seen (core gives no reason
//! on overflow); an application that closes a client with a full outbox
//! should use `close_with` to choose the code.
//!
//! # `on_close` ordering caveat
//!
//! [`Handler::on_close`] runs after `Client::close` returned on the loop
//! thread. When another thread closed the client, that thread may still be
//! removing it from its channels at that moment (core's clean-up releases
//! the client's subscription lock before leaving the channels).
//!
//! # Examples
//!
//! See [`Server`], `examples/chat.rs` for a runnable chat server and
//! `examples/echo.rs` for the echo server the Autobahn TestSuite cases run
//! against (`autobahn/run.sh`).

mod codec;
mod config;
mod connection;
mod deflate;
mod event_loop;
mod handler;
mod handshake;
mod http;
mod limits;
mod query;
mod server;
mod slots;
mod stats;
mod timer;
mod tls;
mod wake;

pub use codec::{encode_frame, fuzz_decode};
pub use config::{AcceptMode, Config};
pub use connection::fuzz_connection;
pub use deflate::encode_for_recipient;
pub use handler::{Handler, Upgrade};
pub use handshake::fuzz_parse_request;
pub use http::{HttpResponse, Request};
pub use query::{parse_query, percent_decode, QueryError};
pub use server::Server;
pub use stats::Stats;
pub use tls::{Tls, TlsError};
