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

use std::collections::HashSet;
use std::sync::Arc;

use dashmap::DashMap;
use realtime::{AuthRequest, AuthResult, ChannelType, Client, Frame, Hub, Member, PresenceMode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::auth;
use crate::cluster::{ClusterPresenceEncoder, ClusterRoster};
use crate::config::{AppConfig, ClientLimits, SlowConsumer};
use crate::connection::Connection;
use crate::presence_encoder::PusherPresenceEncoder;

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

/// A presence member as signed in `channel_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelData {
    /// `user_id`, as a string (numbers are spelled as sent).
    pub user_id: String,
    /// `user_info` JSON as sent, empty if absent.
    pub user_info: String,
}

#[derive(Deserialize)]
struct RawChannelData<'a> {
    #[serde(borrow)]
    user_id: &'a RawValue,
    #[serde(borrow, default)]
    user_info: Option<&'a RawValue>,
}

/// Parses `channel_data`: a JSON object with a string or number
/// `user_id` (required, non-empty) and any `user_info`.
pub fn parse_channel_data(text: &str) -> Option<ChannelData> {
    let raw: RawChannelData<'_> = serde_json::from_str(text).ok()?;
    let user_id = match serde_json::from_str::<serde_json::Value>(raw.user_id.get()).ok()? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    if user_id.is_empty() {
        return None;
    }
    Some(ChannelData {
        user_id,
        user_info: raw
            .user_info
            .map(|r| r.get().to_owned())
            .unwrap_or_default(),
    })
}

/// Parses sign-in `user_data`: a JSON object with a non-empty string or
/// number `id` and any `user_info` (kept as sent), as a [`ChannelData`]
/// (`user_id` is the `id`).
pub fn parse_user_data(text: &str) -> Option<ChannelData> {
    #[derive(Deserialize)]
    struct RawUserData<'a> {
        #[serde(borrow)]
        id: &'a RawValue,
        #[serde(borrow, default)]
        user_info: Option<&'a RawValue>,
    }
    let raw: RawUserData<'_> = serde_json::from_str(text).ok()?;
    let id = match serde_json::from_str::<serde_json::Value>(raw.id.get()).ok()? {
        serde_json::Value::String(s) if !s.is_empty() => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(ChannelData {
        user_id: id,
        user_info: raw
            .user_info
            .map(|r| r.get().to_owned())
            .unwrap_or_default(),
    })
}

/// A presence identity over one of the app's member limits (R35).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberLimit {
    /// `user_id` (or sign-in `id`) longer than `max_user_id_length`.
    UserIdLength {
        /// Its length, in characters.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// `user_info` larger than `max_member_size`.
    MemberSize {
        /// Its size, in bytes of the JSON as sent.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

impl MemberLimit {
    /// The limit's configuration name, which is also its counter label.
    pub fn name(&self) -> &'static str {
        match self {
            Self::UserIdLength { .. } => "max_user_id_length",
            Self::MemberSize { .. } => "max_member_size",
        }
    }
}

impl std::fmt::Display for MemberLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::UserIdLength { len, limit } => write!(
                f,
                "user_id is {len} characters long: at most {limit} are allowed (max_user_id_length)"
            ),
            Self::MemberSize { len, limit } => write!(
                f,
                "user_info is {len} bytes: presence member data is at most {limit} bytes (max_member_size)"
            ),
        }
    }
}

/// Checks a presence identity against `limits`: the user id in characters,
/// `user_info` in bytes of its JSON as sent (what rosters carry byte for
/// byte, R10).
///
/// # Errors
///
/// The first limit the identity is over.
pub fn check_member(limits: &ClientLimits, member: &ChannelData) -> Result<(), MemberLimit> {
    let len = member.user_id.chars().count();
    if len > limits.max_user_id_length {
        return Err(MemberLimit::UserIdLength {
            len,
            limit: limits.max_user_id_length,
        });
    }
    if member.user_info.len() > limits.max_member_size {
        return Err(MemberLimit::MemberSize {
            len: member.user_info.len(),
            limit: limits.max_member_size,
        });
    }
    Ok(())
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
        Self::with_cluster(config, limits, None)
    }

    /// An app whose presence is cluster-wide when `cluster` is given: the
    /// Hub gets the cluster presence encoder reading that roster.
    pub fn with_cluster(
        config: AppConfig,
        limits: ClientLimits,
        cluster: Option<Arc<ClusterRoster>>,
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
        Self {
            config,
            limits,
            hub,
            conns: DashMap::new(),
            sockets: DashMap::new(),
            users: DashMap::new(),
            cluster,
        }
    }

    /// Cluster mode: the cluster-wide presence roster.
    pub fn cluster_roster(&self) -> Option<&Arc<ClusterRoster>> {
        self.cluster.as_ref()
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
    /// `channel`, except the connection with socket id `except`.
    pub fn deliver(&self, channel: &str, frame: Frame, except: Option<&str>) {
        let except = except.and_then(|s| self.by_socket_id(s));
        let except = except.as_ref().map(|c| c.client());
        if let Err(e) = self.hub.broadcast_frame(channel, frame, except) {
            tracing::debug!(app = %self.config.id, channel, error = %e, "broadcast refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_needs_a_user_id_and_keeps_info_verbatim() {
        let cd = parse_channel_data(r#"{"user_id":7,"user_info":{"n":  "A"}}"#).unwrap();
        assert_eq!(cd.user_id, "7");
        assert_eq!(cd.user_info, r#"{"n":  "A"}"#);
        assert_eq!(
            parse_channel_data(r#"{"user_id":"u"}"#).unwrap().user_info,
            ""
        );
        assert!(parse_channel_data(r#"{"user_info":{}}"#).is_none());
        assert!(parse_channel_data(r#"{"user_id":""}"#).is_none());
        assert!(parse_channel_data(r#"{"user_id":[1]}"#).is_none());
        assert!(parse_channel_data("nope").is_none());
    }

    #[test]
    fn user_data_keeps_info_verbatim_and_needs_an_id() {
        let u = parse_user_data(r#"{"id":"u1","user_info":{"n":  1},"watchlist":[]}"#).unwrap();
        assert_eq!(
            (u.user_id.as_str(), u.user_info.as_str()),
            ("u1", r#"{"n":  1}"#)
        );
        assert_eq!(parse_user_data(r#"{"id":42}"#).unwrap().user_id, "42");
        assert!(parse_user_data(r#"{"id":""}"#).is_none());
        assert!(parse_user_data(r#"{"user_info":{}}"#).is_none());
    }

    #[test]
    fn member_limits_count_id_characters_and_info_bytes() {
        let limits = ClientLimits {
            max_user_id_length: 3,
            max_member_size: 4,
            ..ClientLimits::default()
        };
        let m = |id: &str, info: &str| ChannelData {
            user_id: id.into(),
            user_info: info.into(),
        };
        assert_eq!(
            check_member(&limits, &m("ééé", "[1,2]"))
                .unwrap_err()
                .name(),
            "max_member_size"
        );
        assert!(check_member(&limits, &m("ééé", "[12]")).is_ok());
        assert_eq!(
            check_member(&limits, &m("abcd", "")),
            Err(MemberLimit::UserIdLength { len: 4, limit: 3 })
        );
    }
}
