//! One application: its configuration, its Hub and its connection tables.
//!
//! Apps are isolated: each has its own [`Hub`] (per-user presence, the
//! Pusher presence encoder, an authorizer holding this app's key and
//! secret), and its own tables of connections, socket ids and signed-in
//! users. Tables are `DashMap`s: the transport loops insert and remove,
//! the HTTP API and the sweeper read.
//!
//! # The authorizer
//!
//! The Gateway passes each subscribe's credentials to the Hub as
//! [`AuthRequest::params`], JSON-encoded [`SubscribeParams`] (socket id,
//! `auth`, `channel_data`). The authorizer recomputes the string-to-sign
//! and checks the HMAC in constant time; for presence channels it turns
//! the signed `channel_data` into the roster [`Member`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use realtime::{AuthRequest, AuthResult, ChannelType, Client, Frame, Hub, Member, PresenceMode};
use serde::{Deserialize, Serialize};

use crate::auth;
use crate::cache::{CacheLimits, CacheMetrics, ChannelCache};
use crate::config::{AppConfig, ClientLimits, Settings, SlowConsumer};
use crate::connection::Connection;
use crate::dashboard::Feed;
use crate::member::parse_channel_data;
use crate::metrics::{self, AppGauges, Metrics};
use crate::presence::{ClusterPresenceEncoder, ClusterRoster, PusherPresenceEncoder};
use crate::protocol::code;
use crate::webhooks::Webhooks;

/// The per-subscribe credentials handed to the authorizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscribeParams {
    /// The subscriber's socket id.
    pub socket_id: String,
    /// `KEY:HEXSIG`.
    pub auth: String,
    /// The exact `channel_data` string (presence).
    pub channel_data: Option<String>,
}

/// The authorizer of one app: checks Pusher subscription signatures.
fn authorize(key: &str, secret: &str, req: &AuthRequest) -> AuthResult {
    let Ok(p) = serde_json::from_slice::<SubscribeParams>(&req.params) else {
        return AuthResult::deny();
    };
    let data = match req.channel_type {
        ChannelType::Presence => p.channel_data.as_deref(),
        _ => None,
    };
    let message = auth::channel_string(&p.socket_id, &req.channel, data);
    if auth::verify_token(key, secret, &p.auth, &message).is_err() {
        return AuthResult::deny();
    }
    match data {
        None => AuthResult::allow_anonymous(),
        Some(text) => match parse_channel_data(text) {
            Some(cd) => AuthResult::allow(Member::new(cd.user_id, cd.user_info)),
            None => AuthResult::deny(),
        },
    }
}

/// One app's cumulative message counts (`Relaxed` atomics: statistics,
/// each read on its own). The node-wide counters are in `metrics.rs`;
/// these split them per app for the dashboard's charts.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// Messages received from the app's clients.
    pub(crate) messages_in: AtomicU64,
    /// Frames fanned out to the app's subscribers (one per recipient).
    pub(crate) messages_out: AtomicU64,
    /// Events published to the app's channels (HTTP API, client events).
    pub(crate) published: AtomicU64,
    /// Frames dropped for the app's clients that are gone (live clients'
    /// drops are read from the clients).
    pub(crate) dropped_closed: AtomicU64,
}

impl Traffic {
    /// Adds `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Relaxed: a statistic.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The value of `counter`.
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        // Relaxed: a statistic.
        counter.load(Ordering::Relaxed)
    }
}

/// One app: configuration, Hub, connections.
pub struct App {
    config: AppConfig,
    /// The resolved limits of this app's clients (server-wide values with
    /// the app's own applied).
    limits: ClientLimits,
    hub: Hub,
    /// Connections by Hub client number.
    conns: DashMap<u64, Arc<Connection>>,
    /// Client number by socket id.
    sockets: DashMap<String, u64>,
    /// Client numbers by signed-in user id.
    users: DashMap<String, HashSet<u64>>,
    /// Cluster mode: the cluster-wide presence roster.
    cluster: Option<Arc<ClusterRoster>>,
    /// Where fan-outs are recorded.
    metrics: Arc<Metrics>,
    /// This app's own message counts, for the dashboard's per-app rates.
    traffic: Traffic,
    /// The last event of each cache channel (`cache/`).
    cache: ChannelCache,
    /// This app's webhook targets and the door to the node's delivery.
    webhooks: Webhooks,
    /// What passes through the app, for the dashboard (`dashboard/`).
    feed: Arc<Feed>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("id", &self.config.id)
            .field("connections", &self.conns.len())
            .finish()
    }
}

impl App {
    /// An app with a fresh Hub.
    pub fn new(config: AppConfig, limits: ClientLimits) -> Self {
        Self::with_cluster(config, limits, None, Arc::default())
    }

    /// An app whose presence is cluster-wide when `cluster` is given: the
    /// Hub gets the cluster presence encoder reading that roster.
    pub(crate) fn with_cluster(
        config: AppConfig,
        limits: ClientLimits,
        cluster: Option<Arc<ClusterRoster>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (key, secret) = (config.key.clone(), config.secret.clone());
        let policy = match limits.slow_consumer {
            SlowConsumer::Drop => realtime::SlowConsumerPolicy::DropMessage,
            SlowConsumer::Disconnect => realtime::SlowConsumerPolicy::DisconnectClient,
        };
        let mut builder = Hub::builder()
            .client_buffer(limits.client_buffer.max(1))
            .max_presence_members(limits.max_presence_members)
            .max_subscriptions(limits.max_subscriptions)
            .max_channels(limits.max_channels)
            .slow_consumer_policy(policy)
            .presence_mode(PresenceMode::PerUser)
            .authorizer(move |r: &AuthRequest| authorize(&key, &secret, r));
        if let Some(frames) = limits.outbox {
            builder = builder.outbox(frames.max(1));
        }
        let hub = match &cluster {
            Some(roster) => builder
                .presence_encoder(ClusterPresenceEncoder::new(Arc::clone(roster)))
                .build(),
            None => builder.presence_encoder(PusherPresenceEncoder).build(),
        };
        let cache = ChannelCache::new(&config.id, CacheLimits::default(), Arc::default());
        let feed = Arc::new(Feed::default());
        Self {
            webhooks: Webhooks::new(&config.id, &config.webhooks, Arc::clone(&feed)),
            config,
            limits,
            hub,
            conns: DashMap::new(),
            sockets: DashMap::new(),
            users: DashMap::new(),
            cluster,
            metrics,
            traffic: Traffic::default(),
            cache,
            feed,
        }
    }

    /// This app with a cache of these limits counting into `metrics`.
    pub(crate) fn with_cache(mut self, limits: CacheLimits, metrics: Arc<CacheMetrics>) -> Self {
        self.cache = ChannelCache::new(&self.config.id, limits, metrics);
        self
    }

    /// This app's message counts.
    pub(crate) fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The last events of the app's cache channels.
    pub(crate) fn cache(&self) -> &ChannelCache {
        &self.cache
    }

    /// The dashboard's debug feed of this app (records only while a
    /// dashboard reads it).
    pub(crate) fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Cluster mode: the cluster-wide presence roster.
    pub fn cluster_roster(&self) -> Option<&Arc<ClusterRoster>> {
        self.cluster.as_ref()
    }

    /// This app's webhooks (e.g. `app.webhooks().cache_miss(channel)`).
    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    /// The configuration.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// The limits this app's clients run with (R35).
    pub fn limits(&self) -> &ClientLimits {
        &self.limits
    }

    /// The app id.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The app's Hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Live connections (registered by `Gateway::open`).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The state of `client`.
    pub fn connection(&self, client: &Client) -> Option<Arc<Connection>> {
        self.conns
            .get(&client.number())
            .map(|c| Arc::clone(c.value()))
    }

    /// The connection with this socket id, if it is on this node.
    pub fn by_socket_id(&self, socket_id: &str) -> Option<Arc<Connection>> {
        let number = *self.sockets.get(socket_id)?.value();
        self.conns.get(&number).map(|c| Arc::clone(c.value()))
    }

    /// Every live connection (a snapshot).
    pub fn connections(&self) -> Vec<Arc<Connection>> {
        self.conns.iter().map(|e| Arc::clone(e.value())).collect()
    }

    pub(crate) fn insert(&self, conn: Arc<Connection>) {
        let number = conn.client().number();
        self.sockets.insert(conn.socket_id().to_owned(), number);
        self.conns.insert(number, conn);
    }

    pub(crate) fn remove(&self, client: &Client) -> Option<Arc<Connection>> {
        let (_, conn) = self.conns.remove(&client.number())?;
        self.sockets.remove(conn.socket_id());
        if let Some(user) = conn.user() {
            self.forget_user(&user, client.number());
        }
        Some(conn)
    }

    pub(crate) fn sign_in(&self, conn: &Connection, user: &str) {
        let number = conn.client().number();
        if let Some(previous) = conn.set_user(user.to_owned()) {
            self.forget_user(&previous, number);
        }
        self.users
            .entry(user.to_owned())
            .or_default()
            .insert(number);
    }

    fn forget_user(&self, user: &str, number: u64) {
        if let Some(mut set) = self.users.get_mut(user) {
            set.remove(&number);
        }
        self.users.remove_if(user, |_, set| set.is_empty());
    }

    /// The connections signed in as `user`.
    pub fn user_connections(&self, user: &str) -> Vec<Arc<Connection>> {
        let numbers: Vec<u64> = self
            .users
            .get(user)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        numbers
            .iter()
            .filter_map(|n| self.conns.get(n).map(|c| Arc::clone(c.value())))
            .collect()
    }

    /// Delivers an encoded Pusher frame to this node's subscribers of
    /// `channel`, except the connection with socket id `except`; on a
    /// cache channel it becomes the channel's last event first (`cache/`).
    /// The fan-out's size and time go to the `realtime_fanout_*`
    /// histograms.
    pub fn deliver(&self, channel: &str, frame: Frame, except: Option<&str>) {
        let start = std::time::Instant::now();
        self.cache.store_at(channel, &frame, start);
        let except = except.and_then(|s| self.by_socket_id(s));
        let except = except.as_ref().map(|c| c.client());
        let recipients = self.hub.channel_count(channel);
        if let Err(e) = self.hub.broadcast_frame(channel, frame, except) {
            tracing::debug!(app = %self.config.id, channel, error = %e, "broadcast refused");
            return;
        }
        self.metrics.fanout(recipients, start.elapsed());
        Traffic::add(&self.traffic.messages_out, recipients as u64);
    }
}

/// Every app of a node, by key and by id; the one place that maps a Hub
/// client back to its app (its `auth` bytes are the app key) and forgets a
/// closed connection.
#[derive(Debug)]
pub struct Apps {
    list: Vec<Arc<App>>,
    by_key: HashMap<String, Arc<App>>,
    by_id: HashMap<String, Arc<App>>,
}

impl Apps {
    /// The apps of `settings`; in cluster mode (`settings.redis`) each
    /// carries a cluster roster with this `node` id.
    pub(crate) fn new(settings: &Settings, node: &str, metrics: &Arc<Metrics>) -> Self {
        let cache_metrics = CacheMetrics::register(metrics);
        let list: Vec<Arc<App>> = settings
            .apps
            .iter()
            .map(|a| {
                let roster = settings
                    .redis
                    .as_ref()
                    .map(|_| Arc::new(ClusterRoster::new(node.to_owned())));
                Arc::new(
                    App::with_cluster(
                        a.clone(),
                        settings.client_limits(a),
                        roster,
                        Arc::clone(metrics),
                    )
                    .with_cache(settings.cache_limits(), Arc::clone(&cache_metrics)),
                )
            })
            .collect();
        let index = |f: fn(&AppConfig) -> &String| {
            list.iter()
                .map(|a| (f(a.config()).clone(), Arc::clone(a)))
                .collect()
        };
        Self {
            by_key: index(|c| &c.key),
            by_id: index(|c| &c.id),
            list,
        }
    }

    /// Every app.
    pub fn all(&self) -> &[Arc<App>] {
        &self.list
    }

    /// The app with this key.
    pub fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.by_key.get(key)
    }

    /// The app with this id.
    pub fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.by_id.get(id)
    }

    /// The app `client` belongs to.
    pub fn of(&self, client: &Client) -> Option<&Arc<App>> {
        std::str::from_utf8(client.auth())
            .ok()
            .and_then(|k| self.by_key.get(k))
    }

    /// The protocol state of `client`.
    pub fn connection(&self, client: &Client) -> Option<Arc<Connection>> {
        self.of(client)?.connection(client)
    }

    /// Live connections, all apps.
    pub fn connection_count(&self) -> usize {
        self.list.iter().map(|a| a.connection_count()).sum()
    }

    /// Forgets a closed client: its connection state goes, its drops and
    /// the reason it ended are counted.
    pub(crate) fn forget(&self, client: &Client, metrics: &Metrics) {
        let Some(app) = self.of(client) else {
            return;
        };
        let Some(conn) = app.remove(client) else {
            return;
        };
        app.feed()
            .connection_closed(conn.socket_id(), client.close_reason());
        metrics.dropped_frames_closed.inc_by(client.drops());
        Traffic::add(&app.traffic.dropped_closed, client.drops());
        let reason = match client.close_reason() {
            Some((code::PONG_TIMEOUT, _)) => "pong_timeout".to_owned(),
            Some((code::UNAUTHORIZED, _)) => "terminated".to_owned(),
            Some((code::RESTARTING, _)) => "shutdown".to_owned(),
            Some((c, _)) => format!("code_{c}"),
            None => "closed".to_owned(),
        };
        metrics::inc(&metrics.disconnects, "reason", reason);
    }

    /// The per-app values `/metrics` samples.
    pub(crate) fn gauges(&self) -> Vec<AppGauges> {
        self.list
            .iter()
            .map(|a| AppGauges {
                app: a.id().to_owned(),
                connections: a.connection_count(),
                channels: a.hub().channels().len(),
                dropped_live: a.connections().iter().map(|c| c.client().drops()).sum(),
            })
            .collect()
    }

    /// Closes every Hub (every client); later operations fail.
    pub fn close_all(&self) {
        for app in &self.list {
            app.hub().close();
        }
    }
}
