//! The protocol layer: every app, every connection's Pusher state, and the
//! dispatch of client messages, with no socket in sight.
//!
//! A transport adapter (`handler.rs`) calls [`Gateway::upgrade`] for each
//! WebSocket upgrade, [`Gateway::open`] once the client is attached (and
//! sends the `pusher:connection_established` frame it returns),
//! [`Gateway::handle_message`] for each inbound message and
//! [`Gateway::close`] when the connection ends. Tests do the same with
//! `realtime::pipe()` connections added to an app's Hub. Subscribing and
//! signing in are in `subscribe.rs`, replies in `reply.rs`; the HTTP API
//! (`http_api/`) and the activity sweep (`activity.rs`) are types of their
//! own over the same [`Apps`].
//!
//! # Publishing
//!
//! A client event is encoded once into its Pusher frame and handed to the
//! bus (`bus/`), with the sender's socket id to exclude.
//!
//! # Socket ids
//!
//! `"{node}.{seq}"`: `node` is a random number drawn at start-up (so two
//! nodes behind one bus do not hand out the same ids), `seq` counts
//! connections from 1. Both are decimal, as Pusher requires.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use realtime::Client;

use crate::app::{App, Apps, Traffic};
use crate::bus::Publisher;
use crate::channel::{self, ChannelKind};
use crate::config::Settings;
use crate::connection::{Clock, Connection};
use crate::metrics::{self, Metrics};
use crate::protocol::{self, code, ClientMessage};
use crate::reply::Replies;
use crate::subscribe;

/// How long a client may take to answer our `pusher:ping` (PUSHER.md).
pub const PONG_TIMEOUT: Duration = Duration::from_secs(30);

/// The decision on a WebSocket upgrade.
#[derive(Debug)]
pub enum UpgradeDecision {
    /// Accept and attach to this app's Hub; the client's `auth` bytes must
    /// be [`UpgradeDecision::auth`] (the app key), which is how the Gateway
    /// finds the app of a client later.
    Accept(Arc<App>),
    /// Complete the handshake, send `frame`, close with `code`.
    Refuse {
        /// A `pusher:error` frame.
        frame: String,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}

impl UpgradeDecision {
    /// The `auth` bytes an accepted client is attached with.
    pub fn auth(app: &App) -> bytes::Bytes {
        bytes::Bytes::copy_from_slice(app.config().key.as_bytes())
    }
}

/// A random node id: the first part of this node's socket ids.
pub(crate) fn random_node_id() -> u32 {
    // std's RandomState is seeded from the OS per process: enough to keep
    // the socket ids of two nodes apart; not a secret.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    (h.finish() % 1_000_000_000) as u32
}

/// The Pusher protocol state machine of a node's WebSocket connections.
#[derive(Debug)]
pub struct Gateway {
    apps: Arc<Apps>,
    publisher: Publisher,
    replies: Replies,
    metrics: Arc<Metrics>,
    clock: Clock,
    activity_timeout: u64,
    max_connections: usize,
    node: u32,
    seq: AtomicU64,
}

impl Gateway {
    pub(crate) fn new(
        settings: &Settings,
        apps: Arc<Apps>,
        publisher: Publisher,
        metrics: Arc<Metrics>,
        clock: Clock,
        node: u32,
    ) -> Self {
        Self {
            apps,
            publisher,
            replies: Replies::new(Arc::clone(&metrics)),
            metrics,
            clock,
            activity_timeout: settings.activity_timeout,
            max_connections: settings.max_connections,
            node,
            seq: AtomicU64::new(1),
        }
    }

    /// Every app.
    pub fn apps(&self) -> &Apps {
        &self.apps
    }

    /// The advertised activity timeout, seconds.
    pub fn activity_timeout(&self) -> u64 {
        self.activity_timeout
    }

    /// The protocol state of `client`.
    pub fn connection(&self, client: &Client) -> Option<Arc<Connection>> {
        self.apps.connection(client)
    }

    /// The socket id of `client`.
    pub fn socket_id(&self, client: &Client) -> Option<String> {
        self.connection(client).map(|c| c.socket_id().to_owned())
    }

    fn refuse(&self, message: &str, code: u16) -> UpgradeDecision {
        metrics::inc(&self.metrics.refused, "code", code.to_string());
        tracing::debug!(code, message, "upgrade refused");
        UpgradeDecision::Refuse {
            frame: protocol::error_frame(message, Some(code)),
            code,
            reason: message.to_owned(),
        }
    }

    /// Decides a WebSocket upgrade of `path` (not decoded) with the
    /// `protocol` query parameter.
    pub fn upgrade(&self, path: &str, protocol_param: Option<&str>) -> UpgradeDecision {
        let Some(key) = path.strip_prefix("/app/") else {
            return self.refuse("Path not found", code::PATH_NOT_FOUND);
        };
        let key = key.trim_end_matches('/');
        let Some(app) = self.apps.by_key(key) else {
            return self.refuse(
                &format!("App key {key} does not exist"),
                code::APP_NOT_FOUND,
            );
        };
        match protocol_param {
            None | Some("") => {
                return self.refuse("No protocol version supplied", code::NO_PROTOCOL)
            }
            Some(p) if p.trim().parse::<u32>().ok() != Some(protocol::PROTOCOL_VERSION) => {
                return self.refuse(
                    &format!("Unsupported protocol version {p}; this server speaks 7"),
                    code::UNSUPPORTED_PROTOCOL,
                )
            }
            Some(_) => {}
        }
        if self.apps.connection_count() >= self.max_connections {
            return self.refuse("Over capacity", code::OVER_CAPACITY);
        }
        if let Some(quota) = app.config().max_connections {
            if app.connection_count() >= quota {
                return self.refuse("Over connection quota", code::OVER_QUOTA);
            }
        }
        UpgradeDecision::Accept(Arc::clone(app))
    }

    /// Registers an attached client and returns its
    /// `pusher:connection_established` frame, which the caller sends first.
    /// `None` (and the client is closed) if the client belongs to no app.
    pub fn open(&self, client: &Client) -> Option<String> {
        self.open_at(client, Instant::now())
    }

    /// [`Gateway::open`] at a given time.
    pub fn open_at(&self, client: &Client, now: Instant) -> Option<String> {
        let Some(app) = self.apps.of(client) else {
            tracing::warn!(client = client.id(), "client of no known app: closing");
            client.close_with(code::APP_NOT_FOUND, "App does not exist");
            return None;
        };
        // Relaxed: only uniqueness matters.
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let socket_id = format!("{}.{}", self.node, seq);
        let conn = Connection::new(
            client.clone(),
            socket_id.clone(),
            app.config().client_event_rate,
            now,
            self.clock.ms(now),
        );
        app.insert(Arc::new(conn));
        app.feed().connection_opened(&socket_id);
        self.metrics.connections_opened.inc();
        tracing::debug!(app = app.id(), socket_id, "connection established");
        Some(protocol::connection_established(
            &socket_id,
            self.activity_timeout,
        ))
    }

    /// Forgets a closed client.
    pub fn close(&self, client: &Client) {
        self.apps.forget(client, &self.metrics);
    }

    /// Records inbound activity of `client` that is not a message: a
    /// WebSocket ping or pong, a fragment of a message still arriving.
    /// PUSHER.md: any received frame counts as activity; it resets the
    /// activity clock (and clears an outstanding `pusher:ping`) as a
    /// message does.
    pub fn activity(&self, client: &Client) {
        self.activity_at(client, Instant::now());
    }

    /// [`Gateway::activity`] at a given time.
    pub fn activity_at(&self, client: &Client, now: Instant) {
        if let Some(conn) = self.connection(client) {
            conn.touch(self.clock.ms(now));
        }
    }

    /// Counts an inbound message of `len` bytes and resets the activity
    /// clock of its connection; the app and the connection, unless the
    /// client belongs to none (closed meanwhile).
    fn received(
        &self,
        client: &Client,
        len: usize,
        now: Instant,
    ) -> Option<(&Arc<App>, Arc<Connection>)> {
        self.metrics.messages_in.inc();
        self.metrics.bytes_in.inc_by(len as u64);
        let app = self.apps.of(client)?;
        let conn = app.connection(client)?;
        conn.touch(self.clock.ms(now));
        Traffic::add(&app.traffic().messages_in, 1);
        Some((app, conn))
    }

    /// Handles one inbound message of `client`.
    pub fn handle_message(&self, client: &Client, data: &[u8]) {
        self.handle_message_at(client, data, Instant::now());
    }

    /// Handles one inbound binary message of `client`: the Pusher protocol
    /// is JSON text, so it is answered with a `pusher:error` (code `null`),
    /// counted and logged; the connection stays open, and the message
    /// counts as activity like any other.
    pub fn handle_binary(&self, client: &Client, len: usize) {
        let Some((_, conn)) = self.received(client, len, Instant::now()) else {
            return;
        };
        self.metrics.binary_messages.inc();
        tracing::debug!(socket_id = conn.socket_id(), len, "binary message refused");
        self.replies.error(
            client,
            "Binary messages are not supported: the Pusher protocol is JSON text frames",
            None,
        );
    }

    /// [`Gateway::handle_message`] at a given time.
    pub fn handle_message_at(&self, client: &Client, data: &[u8], now: Instant) {
        let Some((app, conn)) = self.received(client, data.len(), now) else {
            return;
        };
        let Ok(text) = std::str::from_utf8(data) else {
            self.replies
                .error(client, "Messages must be UTF-8 JSON text", None);
            return;
        };
        let msg = match protocol::parse_client_message(text) {
            Ok(m) => m,
            Err(e) => {
                self.replies.error(client, &e.to_string(), None);
                return;
            }
        };
        match msg {
            ClientMessage::Ping => self.replies.reply(client, protocol::PONG.to_owned()),
            ClientMessage::Pong => {}
            ClientMessage::Subscribe {
                channel,
                auth,
                channel_data,
            } => subscribe::subscribe(
                &self.replies,
                app,
                &conn,
                subscribe::Request {
                    channel: &channel,
                    auth,
                    channel_data,
                    now,
                },
            ),
            ClientMessage::Unsubscribe { channel } => {
                match app.hub().unsubscribe(client, &channel) {
                    Ok(()) => app
                        .feed()
                        .subscription("unsubscribed", conn.socket_id(), &channel),
                    Err(e) => tracing::debug!(error = %e, "unsubscribe refused"),
                }
            }
            ClientMessage::Signin { auth, user_data } => {
                subscribe::signin(&self.replies, app, &conn, &auth, &user_data)
            }
            ClientMessage::ClientEvent {
                event,
                channel,
                data,
            } => self.client_event(app, &conn, &event, &channel, &data, now),
            ClientMessage::OtherPusher(event) => {
                tracing::debug!(client = client.id(), event, "ignored pusher event");
            }
        }
    }

    fn client_event(
        &self,
        app: &App,
        conn: &Connection,
        event: &str,
        channel: &str,
        data: &str,
        now: Instant,
    ) {
        let client = conn.client();
        if !app.config().client_messages {
            return self
                .replies
                .error(client, "Client events are disabled for this app", None);
        }
        let kind = channel::classify(channel).ok();
        if !kind.is_some_and(ChannelKind::allows_client_events) {
            return self.replies.error(
                client,
                "Client events are only allowed on private and presence channels (not private-encrypted)",
                None,
            );
        }
        let Some(user_id) = conn.subscription(channel) else {
            return self
                .replies
                .error(client, &format!("Not subscribed to {channel}"), None);
        };
        if event.len() > 200 {
            return self
                .replies
                .error(client, "Event name is longer than 200 characters", None);
        }
        if data.len() > app.config().max_event_size {
            return self.replies.error(client, "Event data is too large", None);
        }
        if !conn.allow_client_event(now) {
            return self.replies.error(
                client,
                "Client event rejected: rate limit exceeded",
                Some(code::CLIENT_EVENT_RATE_LIMIT),
            );
        }
        self.metrics.client_events.inc();
        let frame = protocol::client_event_frame(event, channel, data, user_id.as_deref());
        self.publisher
            .publish(app, channel, event, frame, Some(conn.socket_id()));
        app.webhooks()
            .client_event(channel, event, data, conn.socket_id(), user_id.as_deref());
    }
}
