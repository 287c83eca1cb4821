//! The application's side of the transport: the [`Handler`] trait that
//! routes upgrades, receives messages and serves plain HTTP, and the
//! [`Upgrade`] decision it returns for each WebSocket upgrade.
//!
//! Every method runs on the event loop that owns the connection, so it must
//! not block: a slow handler stalls every connection of that loop. A handler
//! that panics does not take the loop down: the panic is caught, the
//! connection is closed with 1011 (or answered with HTTP 500), counted and
//! logged.

use bytes::Bytes;
use realtime::{Client, Hub, MessageType};

use crate::http::{HttpResponse, Request};

/// What to do with a WebSocket upgrade request.
#[derive(Debug)]
pub enum Upgrade {
    /// Complete the handshake and attach the connection to `hub`;
    /// `auth` is handed to the Hub's authorizer on private and presence
    /// joins ([`Hub::attach`]).
    Accept {
        /// The Hub that serves this connection (multi-app servers pick one
        /// per request).
        hub: Hub,
        /// Opaque credentials for the Hub's authorizer.
        auth: Bytes,
    },
    /// Complete the handshake, send `frames` as text frames, then close with
    /// `code` and `reason` (Pusher's 4001 "app does not exist"). No client
    /// is created and [`Handler::on_close`] is not called.
    Refuse {
        /// Text frames sent before the close frame.
        frames: Vec<String>,
        /// The close code.
        code: u16,
        /// The close reason (cut to 123 bytes).
        reason: String,
    },
    /// Answer the upgrade request with this HTTP response (401, 404, ...)
    /// and close the connection.
    Reject(HttpResponse),
}

/// The application: decides upgrades, receives messages, serves plain HTTP
/// on the same port. One handler serves every loop, so it is `Sync`.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use realtime::{Client, Hub, MessageType};
/// use realtime_mio::{Handler, Request, Upgrade};
///
/// struct Echo(Hub);
///
/// impl Handler for Echo {
///     fn on_upgrade(&self, _req: &Request) -> Upgrade {
///         Upgrade::Accept { hub: self.0.clone(), auth: Bytes::new() }
///     }
///     fn on_message(&self, client: &Client, kind: MessageType, data: Bytes) {
///         let _ = match kind {
///             MessageType::Text => client.send_text(data),
///             MessageType::Binary => client.send_binary(data),
///         };
///     }
/// }
/// # let _ = Echo(Hub::new());
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Decides what to do with a WebSocket upgrade request. Called after the
    /// request was validated as a WebSocket handshake and the connection
    /// limit was checked.
    fn on_upgrade(&self, req: &Request) -> Upgrade;

    /// A client was attached: called on its loop before the handshake
    /// response is written, so before any inbound message (and before the
    /// peer can observe the connection as open).
    fn on_open(&self, client: &Client) {
        let _ = client;
    }

    /// One complete inbound data message (text is valid UTF-8).
    fn on_message(&self, client: &Client, kind: MessageType, data: Bytes);

    /// An inbound frame that does not complete a message arrived: a ping, a
    /// pong, or a non-final fragment of a data message. Called once per
    /// such frame, on the loop thread, before the pong a ping earns is
    /// written. With [`Handler::on_message`] it tells the application of
    /// every inbound frame, so an application-level activity clock (Pusher's
    /// `activity_timeout`: any received frame counts) can be kept without
    /// exposing the control frames themselves. The transport's own idle
    /// timeout counts every inbound byte already. Default: nothing.
    fn on_activity(&self, client: &Client) {
        let _ = client;
    }

    /// The client was closed, for whatever reason: called exactly once per
    /// client that [`Handler::on_open`] saw, after the client was closed and
    /// removed from its channels (see the crate docs for the one exception).
    fn on_close(&self, client: &Client) {
        let _ = client;
    }

    /// A plain HTTP request's head, before its body is read: return a
    /// response to answer at once without reading the body (a bad
    /// signature, an unknown route), after which the connection closes;
    /// `None` (the default) reads the body and calls [`Handler::on_http`].
    /// An unauthenticated client then cannot make the server buffer bodies.
    fn on_http_head(&self, req: &Request) -> Option<HttpResponse> {
        let _ = req;
        None
    }

    /// A plain HTTP request (not an upgrade) with its complete body.
    /// Default: 404.
    fn on_http(&self, req: &Request, body: Bytes) -> HttpResponse {
        let _ = (req, body);
        HttpResponse::text(404, "not found\n")
    }
}

/// A `Handler` behind a pointer (`Arc`, `Box`) is a `Handler`: every
/// method forwards to the pointee.
macro_rules! forward_handler {
    ($($ptr:ident)::+) => {
        impl<H: Handler + ?Sized> Handler for $($ptr)::+<H> {
            fn on_upgrade(&self, req: &Request) -> Upgrade {
                (**self).on_upgrade(req)
            }
            fn on_open(&self, client: &Client) {
                (**self).on_open(client);
            }
            fn on_message(&self, client: &Client, kind: MessageType, data: Bytes) {
                (**self).on_message(client, kind, data);
            }
            fn on_activity(&self, client: &Client) {
                (**self).on_activity(client);
            }
            fn on_close(&self, client: &Client) {
                (**self).on_close(client);
            }
            fn on_http_head(&self, req: &Request) -> Option<HttpResponse> {
                (**self).on_http_head(req)
            }
            fn on_http(&self, req: &Request, body: Bytes) -> HttpResponse {
                (**self).on_http(req, body)
            }
        }
    };
}
forward_handler!(std::sync::Arc);
forward_handler!(Box);
