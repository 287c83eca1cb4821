//! The protocol layer: every app, every connection's Pusher state, and the
//! dispatch of client messages, with no socket in sight.
//!
//! A transport adapter (`handler.rs`) calls [`Gateway::upgrade`] for each
//! WebSocket upgrade, [`Gateway::open`] once the client is attached (and
//! sends the `pusher:connection_established` frame it returns),
//! [`Gateway::handle_message`] for each inbound message and
//! [`Gateway::close`] when the connection ends. Tests do the same with
//! `realtime::pipe()` connections added to an app's Hub. The HTTP API is in
//! `http_api.rs`, the activity sweep in `activity.rs`.
//!
//! # Publishing
//!
//! Every event meant for a channel (HTTP API events, client events) is
//! encoded once into its Pusher frame and handed to the [`Bus`]: by default
//! straight to this node's Hub, or through a broadcasting driver
//! (`bridge.rs`) so that every node delivers it. The socket id to exclude
//! travels with the frame.
//!
//! # Socket ids
//!
//! `"{node}.{seq}"`: `node` is a random number drawn at start-up (so two
//! nodes behind one bus do not hand out the same ids), `seq` counts
//! connections from 1. Both are decimal, as Pusher requires.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use realtime::{Client, Error as HubError, Frame};

use crate::app::{
    check_member, parse_channel_data, parse_user_data, App, MemberLimit, SubscribeParams,
};
use crate::auth;
use crate::channel::{self, ChannelKind};
use crate::cluster::ClusterRoster;
use crate::config::Settings;
use crate::connection::Connection;
use crate::metrics::{self, AppGauges, Metrics};
use crate::protocol::{self, code, ClientMessage};

/// How long a client may take to answer our `pusher:ping` (PUSHER.md).
pub const PONG_TIMEOUT: Duration = Duration::from_secs(30);

/// Where published frames go.
pub trait Bus: Send + Sync + 'static {
    /// Publishes the encoded Pusher `frame` of event `name` on `channel` of
    /// `app`, to be delivered to every subscriber but the connection with
    /// socket id `except`.
    ///
    /// # Errors
    ///
    /// A description of why the bus refused it.
    fn publish(
        &self,
        app: &Arc<App>,
        channel: &str,
        name: &str,
        frame: String,
        except: Option<&str>,
    ) -> Result<(), String>;
}

/// The default bus: this node's Hubs, directly.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalBus;

impl Bus for LocalBus {
    fn publish(
        &self,
        app: &Arc<App>,
        channel: &str,
        _name: &str,
        frame: String,
        except: Option<&str>,
    ) -> Result<(), String> {
        app.deliver(channel, Frame::from_string(frame), except);
        Ok(())
    }
}

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

type StatsProvider =
    Box<dyn Fn() -> Vec<(&'static str, &'static str, &'static str, u64)> + Send + Sync>;

/// Every app and the Pusher protocol state machine.
pub struct Gateway {
    apps: Vec<Arc<App>>,
    by_key: HashMap<String, Arc<App>>,
    by_id: HashMap<String, Arc<App>>,
    activity_timeout: u64,
    max_connections: usize,
    metrics: Metrics,
    node: u32,
    seq: AtomicU64,
    epoch: Instant,
    bus: OnceLock<Arc<dyn Bus>>,
    transport_stats: OnceLock<StatsProvider>,
    bus_stats: OnceLock<StatsProvider>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("apps", &self.apps)
            .field("node", &self.node)
            .finish()
    }
}

fn random_u32() -> u32 {
    // std's RandomState is seeded from the OS per process: enough to keep
    // the socket ids of two nodes apart; not a secret.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    (h.finish() % 1_000_000_000) as u32
}

impl Gateway {
    /// A gateway for these settings' apps.
    pub fn new(settings: &Settings) -> Self {
        let node = random_u32();
        let apps: Vec<Arc<App>> = settings
            .apps
            .iter()
            .map(|a| {
                let roster = settings
                    .redis
                    .as_ref()
                    .map(|_| Arc::new(ClusterRoster::new(node.to_string())));
                Arc::new(App::with_cluster(
                    a.clone(),
                    settings.client_limits(a),
                    roster,
                ))
            })
            .collect();
        Self {
            by_key: apps
                .iter()
                .map(|a| (a.config().key.clone(), a.clone()))
                .collect(),
            by_id: apps
                .iter()
                .map(|a| (a.config().id.clone(), a.clone()))
                .collect(),
            apps,
            activity_timeout: settings.activity_timeout,
            max_connections: settings.max_connections,
            metrics: Metrics::default(),
            node,
            seq: AtomicU64::new(1),
            epoch: Instant::now(),
            bus: OnceLock::new(),
            transport_stats: OnceLock::new(),
            bus_stats: OnceLock::new(),
        }
    }

    /// Routes publishing through `bus` instead of the local Hubs. Only the
    /// first call has an effect; returns whether it did.
    pub fn set_bus(&self, bus: Arc<dyn Bus>) -> bool {
        self.bus.set(bus).is_ok()
    }

    /// Installs the source of the transport's counters for `/metrics`:
    /// `(name, help, type, value)` samples. Only the first call counts.
    pub fn set_transport_stats(
        &self,
        provider: impl Fn() -> Vec<(&'static str, &'static str, &'static str, u64)>
            + Send
            + Sync
            + 'static,
    ) {
        let _ = self.transport_stats.set(Box::new(provider));
    }

    /// Installs the source of the bus driver's counters for `/metrics`
    /// (cluster mode). Only the first call counts.
    pub fn set_bus_stats(
        &self,
        provider: impl Fn() -> Vec<(&'static str, &'static str, &'static str, u64)>
            + Send
            + Sync
            + 'static,
    ) {
        let _ = self.bus_stats.set(Box::new(provider));
    }

    /// This node's id: the first part of its socket ids, and its id in a
    /// cluster.
    pub fn node_id(&self) -> String {
        self.node.to_string()
    }

    /// Every app.
    pub fn apps(&self) -> &[Arc<App>] {
        &self.apps
    }

    /// The app with this key.
    pub fn app_by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.by_key.get(key)
    }

    /// The app with this id.
    pub fn app_by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.by_id.get(id)
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The advertised activity timeout, seconds.
    pub fn activity_timeout(&self) -> u64 {
        self.activity_timeout
    }

    /// Live connections, all apps.
    pub fn connection_count(&self) -> usize {
        self.apps.iter().map(|a| a.connection_count()).sum()
    }

    /// The app `client` belongs to (its `auth` bytes are the app key).
    pub fn app_of(&self, client: &Client) -> Option<&Arc<App>> {
        std::str::from_utf8(client.auth())
            .ok()
            .and_then(|k| self.by_key.get(k))
    }

    /// The protocol state of `client`.
    pub fn connection(&self, client: &Client) -> Option<Arc<Connection>> {
        self.app_of(client)?.connection(client)
    }

    /// The socket id of `client`.
    pub fn socket_id(&self, client: &Client) -> Option<String> {
        self.connection(client).map(|c| c.socket_id().to_owned())
    }

    /// Milliseconds since the gateway started, plus one (0 means "never").
    pub(crate) fn clock(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    fn refuse(&self, message: &str, code: u16) -> UpgradeDecision {
        self.metrics.refused.inc(code.to_string());
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
        let Some(app) = self.by_key.get(key) else {
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
        if self.connection_count() >= self.max_connections {
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
        let Some(app) = self.app_of(client) else {
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
            self.clock(now),
        );
        app.insert(Arc::new(conn));
        metrics::inc(&self.metrics.connections_opened);
        tracing::debug!(app = app.id(), socket_id, "connection established");
        Some(protocol::connection_established(
            &socket_id,
            self.activity_timeout,
        ))
    }

    /// Forgets a closed client.
    pub fn close(&self, client: &Client) {
        let Some(app) = self.app_of(client) else {
            return;
        };
        if app.remove(client).is_none() {
            return;
        }
        metrics::add(&self.metrics.dropped_frames_closed, client.drops());
        let reason = match client.close_reason() {
            Some((code::PONG_TIMEOUT, _)) => "pong_timeout".to_owned(),
            Some((code::UNAUTHORIZED, _)) => "terminated".to_owned(),
            Some((code::RESTARTING, _)) => "shutdown".to_owned(),
            Some((c, _)) => format!("code_{c}"),
            None => "closed".to_owned(),
        };
        self.metrics.disconnects.inc(reason);
    }

    /// Sends a reply to the client's own request: never dropped (R34); a
    /// client past its byte bound (it floods and does not read) is
    /// disconnected instead.
    fn reply(&self, client: &Client, text: String) {
        metrics::inc(&self.metrics.replies_out);
        // A closed client has nobody to tell.
        let _ = client.send_reply(Frame::from_string(text));
    }

    fn send_error(&self, client: &Client, message: &str, code: Option<u16>) {
        self.metrics
            .errors
            .inc(code.map_or_else(|| "none".to_owned(), |c| c.to_string()));
        tracing::debug!(client = client.id(), code, message, "pusher:error");
        self.reply(client, protocol::error_frame(message, code));
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
            conn.touch(self.clock(now));
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
        metrics::inc(&self.metrics.messages_in);
        metrics::add(&self.metrics.bytes_in, len as u64);
        let app = self.app_of(client)?;
        let conn = app.connection(client)?;
        conn.touch(self.clock(now));
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
        metrics::inc(&self.metrics.binary_messages);
        tracing::debug!(socket_id = conn.socket_id(), len, "binary message refused");
        self.send_error(
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
            self.send_error(client, "Messages must be UTF-8 JSON text", None);
            return;
        };
        let msg = match protocol::parse_client_message(text) {
            Ok(m) => m,
            Err(e) => {
                self.send_error(client, &e.to_string(), None);
                return;
            }
        };
        match msg {
            ClientMessage::Ping => self.reply(client, protocol::PONG.to_owned()),
            ClientMessage::Pong => {}
            ClientMessage::Subscribe {
                channel,
                auth,
                channel_data,
            } => self.subscribe(app, &conn, &channel, auth, channel_data),
            ClientMessage::Unsubscribe { channel } => {
                if let Err(e) = app.hub().unsubscribe(client, &channel) {
                    tracing::debug!(error = %e, "unsubscribe refused");
                }
                conn.unsubscribed(&channel);
            }
            ClientMessage::Signin { auth, user_data } => self.signin(app, &conn, &auth, &user_data),
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

    fn subscription_error(
        &self,
        conn: &Connection,
        channel: &str,
        kind: &str,
        error: &str,
        status: u16,
    ) {
        metrics::inc(&self.metrics.subscription_errors);
        tracing::debug!(
            socket_id = conn.socket_id(),
            channel,
            error,
            "subscription refused"
        );
        self.reply(
            conn.client(),
            protocol::subscription_error(channel, kind, error, status),
        );
    }

    fn subscribe(
        &self,
        app: &Arc<App>,
        conn: &Connection,
        channel: &str,
        auth: Option<String>,
        channel_data: Option<String>,
    ) {
        let kind = match channel::classify(channel) {
            Ok(k) => k,
            Err(e) => {
                return self.subscription_error(
                    conn,
                    channel,
                    "InvalidChannel",
                    &e.to_string(),
                    400,
                )
            }
        };
        let client = conn.client();
        let mut user_id = None;
        let result = match kind {
            ChannelKind::Public => app.hub().subscribe(client, channel),
            ChannelKind::ServerToUser => {
                let wanted = channel.strip_prefix(channel::SERVER_TO_USER_PREFIX);
                if conn.user().as_deref() != wanted || wanted.is_none() {
                    return self.subscription_error(
                        conn,
                        channel,
                        "AuthError",
                        "Sign in as this user before subscribing to its channel",
                        403,
                    );
                }
                app.hub().subscribe(client, channel)
            }
            ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence => {
                let Some(auth) = auth else {
                    return self.subscription_error(
                        conn,
                        channel,
                        "AuthError",
                        "Private and presence channels need an auth signature",
                        401,
                    );
                };
                if kind == ChannelKind::Presence {
                    let Some(cd) = channel_data.as_deref().and_then(parse_channel_data) else {
                        return self.subscription_error(
                            conn,
                            channel,
                            "AuthError",
                            "Presence channels need channel_data with a user_id",
                            400,
                        );
                    };
                    // A repeated subscribe keeps the first identity (R6):
                    // only a new member is checked against the limits.
                    if conn.subscription(channel).is_none() {
                        if let Err(over) = check_member(app.limits(), &cd) {
                            return self.member_refused(conn, channel, over);
                        }
                    }
                    user_id = Some(cd.user_id);
                }
                let params = SubscribeParams {
                    socket_id: conn.socket_id().to_owned(),
                    auth,
                    channel_data: if kind == ChannelKind::Presence {
                        channel_data
                    } else {
                        None
                    },
                };
                match serde_json::to_vec(&params) {
                    Ok(bytes) => app.hub().subscribe_with(client, channel, bytes),
                    Err(_) => Err(HubError::Unauthorized),
                }
            }
        };
        match result {
            Ok(()) => {
                metrics::inc(&self.metrics.subscriptions);
                // A repeated subscribe is a no-op in the Hub (the first
                // identity stays): keep the first identity here too.
                if conn.subscription(channel).is_none() {
                    conn.subscribed(channel, user_id);
                }
            }
            Err(HubError::TooManySubscriptions(limit)) => self.limit_refused(
                conn,
                channel,
                "max_subscriptions_per_connection",
                &format!(
                    "Subscription limit reached: at most {limit} channels per connection (max_subscriptions_per_connection)"
                ),
                4100,
            ),
            Err(HubError::TooManyChannels(limit)) => self.limit_refused(
                conn,
                channel,
                "max_channels",
                &format!(
                    "Channel limit reached: this app holds at most {limit} channels (max_channels)"
                ),
                4100,
            ),
            Err(HubError::PresenceFull(limit)) => self.limit_refused(
                conn,
                channel,
                "max_presence_members",
                &format!("Presence channel is full: at most {limit} members (max_presence_members)"),
                4100,
            ),
            Err(HubError::Unauthorized) => {
                let expected = if kind == ChannelKind::Presence {
                    "socket_id:channel_name:channel_data"
                } else {
                    "socket_id:channel_name"
                };
                self.subscription_error(
                    conn,
                    channel,
                    "AuthError",
                    &format!("Invalid signature: expected HMAC SHA256 hex digest of {expected}"),
                    401,
                );
            }
            Err(e) => tracing::debug!(channel, error = %e, "subscribe on a closed client"),
        }
    }

    /// Refuses a subscribe at a configured limit (R35): a
    /// `pusher:subscription_error` of type `LimitReached` whose message
    /// names the limit, a count under `limit` in
    /// `realtime_limit_refusals_total`, and a log line.
    fn limit_refused(
        &self,
        conn: &Connection,
        channel: &str,
        limit: &str,
        message: &str,
        status: u16,
    ) {
        self.metrics.limit_refusals.inc(limit);
        tracing::info!(
            socket_id = conn.socket_id(),
            channel,
            limit,
            "subscription refused: {message}"
        );
        self.subscription_error(conn, channel, "LimitReached", message, status);
    }

    /// Refuses a presence subscribe whose member is over a limit, with
    /// status 4301 (as Soketi answers an oversized member).
    fn member_refused(&self, conn: &Connection, channel: &str, over: MemberLimit) {
        self.limit_refused(
            conn,
            channel,
            over.name(),
            &format!("Presence member refused: {over}"),
            code::OVER_LIMIT,
        );
    }

    fn signin(&self, app: &Arc<App>, conn: &Connection, auth: &str, user_data: &str) {
        let Some(user) = parse_user_data(user_data) else {
            self.send_error(
                conn.client(),
                "user_data must be JSON with a non-empty id",
                Some(code::UNAUTHORIZED),
            );
            return;
        };
        // Bounded like a presence member: the id is held in the user
        // tables and `user_info` is what a presence roster would carry.
        if let Err(over) = check_member(app.limits(), &user) {
            self.metrics.limit_refusals.inc(over.name());
            tracing::info!(
                socket_id = conn.socket_id(),
                limit = over.name(),
                "sign-in refused: {over}"
            );
            self.send_error(
                conn.client(),
                &format!("Sign-in refused: {over}"),
                Some(code::OVER_LIMIT),
            );
            return;
        }
        let id = user.user_id;
        let c = app.config();
        let message = auth::user_string(conn.socket_id(), user_data);
        if let Err(e) = auth::verify_token(&c.key, &c.secret, auth, &message) {
            self.send_error(
                conn.client(),
                &format!("Sign-in refused: {e}"),
                Some(code::UNAUTHORIZED),
            );
            return;
        }
        app.sign_in(conn, &id);
        tracing::debug!(socket_id = conn.socket_id(), user = id, "signed in");
        self.reply(conn.client(), protocol::signin_success(user_data));
    }

    fn client_event(
        &self,
        app: &Arc<App>,
        conn: &Connection,
        event: &str,
        channel: &str,
        data: &str,
        now: Instant,
    ) {
        let client = conn.client();
        if !app.config().client_messages {
            return self.send_error(client, "Client events are disabled for this app", None);
        }
        let kind = channel::classify(channel).ok();
        if !kind.is_some_and(ChannelKind::allows_client_events) {
            return self.send_error(
                client,
                "Client events are only allowed on private and presence channels (not private-encrypted)",
                None,
            );
        }
        let Some(user_id) = conn.subscription(channel) else {
            return self.send_error(client, &format!("Not subscribed to {channel}"), None);
        };
        if event.len() > 200 {
            return self.send_error(client, "Event name is longer than 200 characters", None);
        }
        if data.len() > app.config().max_event_size {
            return self.send_error(client, "Event data is too large", None);
        }
        if !conn.allow_client_event(now) {
            return self.send_error(
                client,
                "Client event rejected: rate limit exceeded",
                Some(code::CLIENT_EVENT_RATE_LIMIT),
            );
        }
        metrics::inc(&self.metrics.client_events);
        let frame = protocol::client_event_frame(event, channel, data, user_id.as_deref());
        self.publish(app, channel, event, frame, Some(conn.socket_id()));
    }

    /// Publishes an encoded frame of event `name` on `channel` through the
    /// bus, excluding socket id `except`.
    pub fn publish(
        &self,
        app: &Arc<App>,
        channel: &str,
        name: &str,
        frame: String,
        except: Option<&str>,
    ) {
        metrics::inc(&self.metrics.events_published);
        let result = match self.bus.get() {
            Some(bus) => bus.publish(app, channel, name, frame, except),
            None => LocalBus.publish(app, channel, name, frame, except),
        };
        if let Err(e) = result {
            metrics::inc(&self.metrics.bus_errors);
            tracing::warn!(app = app.id(), channel, error = %e, "publish failed");
        }
    }

    /// Closes every connection of `user` in `app` with 4009.
    pub fn terminate_user(&self, app: &App, user: &str) -> usize {
        let conns = app.user_connections(user);
        for conn in &conns {
            tracing::debug!(socket_id = conn.socket_id(), user, "terminating connection");
            conn.client()
                .close_with(code::UNAUTHORIZED, "You got disconnected by the app");
            self.close(conn.client());
        }
        conns.len()
    }

    /// Renders `/metrics`.
    pub fn render_metrics(&self) -> String {
        let apps: Vec<AppGauges> = self
            .apps
            .iter()
            .map(|a| AppGauges {
                app: a.id().to_owned(),
                connections: a.connection_count(),
                channels: a.hub().channels().len(),
                dropped_live: a.connections().iter().map(|c| c.client().drops()).sum(),
            })
            .collect();
        let mut transport = self.transport_stats.get().map(|f| f()).unwrap_or_default();
        transport.extend(self.bus_stats.get().map(|f| f()).unwrap_or_default());
        self.metrics.render(&apps, &transport)
    }

    /// Closes every Hub (every client); later operations fail.
    pub fn close_all(&self) {
        for app in &self.apps {
            app.hub().close();
        }
    }
}
