//! `pusher:subscribe` and `pusher:signin`: channel authorization, presence
//! identities and the limits on both.
//!
//! A subscribe is classified by its channel name (`channel.rs`); public
//! channels go straight to the Hub, `private-`/`presence-` ones carry the
//! auth signature (and `channel_data`) to the Hub's authorizer (`app.rs`),
//! `#server-to-user-` ones need a signed-in user of that id. The Hub's
//! refusals become `pusher:subscription_error`s: `AuthError` for a bad
//! signature, `LimitReached` for a configured limit.

use std::time::Instant;

use realtime::Error as HubError;

use crate::app::{App, SubscribeParams};
use crate::auth;
use crate::cache;
use crate::channel::{self, ChannelKind};
use crate::connection::Connection;
use crate::member::{check_member, parse_channel_data, parse_user_data};
use crate::metrics;
use crate::protocol::{self, code};
use crate::reply::Replies;

/// A subscribe request as the client sent it.
pub(crate) struct Request<'a> {
    pub(crate) channel: &'a str,
    pub(crate) auth: Option<String>,
    pub(crate) channel_data: Option<String>,
    /// When it arrived (cache entries expire by it).
    pub(crate) now: Instant,
}

/// Handles `pusher:subscribe`. A cache channel's subscriber then gets the
/// channel's last event, or `pusher:cache_miss` (`cache/`), after
/// `subscription_succeeded`.
pub(crate) fn subscribe(r: &Replies, app: &App, conn: &Connection, req: Request<'_>) {
    let channel = req.channel;
    let now = req.now;
    let kind = match channel::classify(channel) {
        Ok(k) => k,
        Err(e) => {
            return r.subscription_error(conn, channel, "InvalidChannel", &e.to_string(), 400)
        }
    };
    let client = conn.client();
    let result = match kind {
        ChannelKind::Public => app.hub().subscribe(client, channel),
        ChannelKind::ServerToUser => {
            let wanted = channel.strip_prefix(channel::SERVER_TO_USER_PREFIX);
            if conn.user().as_deref() != wanted || wanted.is_none() {
                return r.subscription_error(
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
            match authorized(r, app, conn, kind, req) {
                Some(result) => result,
                None => return,
            }
        }
    };
    match result {
        // A repeated subscribe is a no-op in the Hub: the first identity
        // stays (R6).
        Ok(()) => {
            r.metrics().subscriptions.inc();
            app.feed()
                .subscription("subscribed", conn.socket_id(), channel);
            // The Hub queued subscription_succeeded: the cached event
            // follows it.
            cache::subscribed(app, client, channel, now);
        }
        Err(e) => refused(r, conn, channel, kind, e),
    }
}

/// The Hub's answer to a signed subscribe; `None` if it was refused before
/// the Hub (the refusal is sent).
fn authorized(
    r: &Replies,
    app: &App,
    conn: &Connection,
    kind: ChannelKind,
    req: Request<'_>,
) -> Option<Result<(), HubError>> {
    let channel = req.channel;
    let Some(auth) = req.auth else {
        r.subscription_error(
            conn,
            channel,
            "AuthError",
            "Private and presence channels need an auth signature",
            401,
        );
        return None;
    };
    if kind == ChannelKind::Presence {
        let Some(cd) = req.channel_data.as_deref().and_then(parse_channel_data) else {
            r.subscription_error(
                conn,
                channel,
                "AuthError",
                "Presence channels need channel_data with a user_id",
                400,
            );
            return None;
        };
        // A repeated subscribe keeps the first identity (R6): only a new
        // member is checked against the limits.
        if conn.subscription(channel).is_none() {
            if let Err(over) = check_member(app.limits(), &cd) {
                r.member_refused(conn, channel, over);
                return None;
            }
        }
    }
    let params = SubscribeParams {
        socket_id: conn.socket_id().to_owned(),
        auth,
        channel_data: if kind == ChannelKind::Presence {
            req.channel_data
        } else {
            None
        },
    };
    Some(match serde_json::to_vec(&params) {
        Ok(bytes) => app.hub().subscribe_with(conn.client(), channel, bytes),
        Err(_) => Err(HubError::Unauthorized),
    })
}

/// Answers a subscribe the Hub refused.
fn refused(r: &Replies, conn: &Connection, channel: &str, kind: ChannelKind, e: HubError) {
    match e {
        HubError::TooManySubscriptions(limit) => r.limit_refused(
            conn,
            channel,
            "max_subscriptions_per_connection",
            &format!(
                "Subscription limit reached: at most {limit} channels per connection (max_subscriptions_per_connection)"
            ),
            4100,
        ),
        HubError::TooManyChannels(limit) => r.limit_refused(
            conn,
            channel,
            "max_channels",
            &format!("Channel limit reached: this app holds at most {limit} channels (max_channels)"),
            4100,
        ),
        HubError::PresenceFull(limit) => r.limit_refused(
            conn,
            channel,
            "max_presence_members",
            &format!("Presence channel is full: at most {limit} members (max_presence_members)"),
            4100,
        ),
        HubError::Unauthorized => {
            let expected = if kind == ChannelKind::Presence {
                "socket_id:channel_name:channel_data"
            } else {
                "socket_id:channel_name"
            };
            r.subscription_error(
                conn,
                channel,
                "AuthError",
                &format!("Invalid signature: expected HMAC SHA256 hex digest of {expected}"),
                401,
            );
        }
        e => tracing::debug!(channel, error = %e, "subscribe on a closed client"),
    }
}

/// Handles `pusher:signin`.
pub(crate) fn signin(r: &Replies, app: &App, conn: &Connection, auth: &str, user_data: &str) {
    let Some(user) = parse_user_data(user_data) else {
        r.error(
            conn.client(),
            "user_data must be JSON with a non-empty id",
            Some(code::UNAUTHORIZED),
        );
        return;
    };
    // Bounded like a presence member: the id is held in the user tables
    // and `user_info` is what a presence roster would carry.
    if let Err(over) = check_member(app.limits(), &user) {
        metrics::inc(&r.metrics().limit_refusals, "limit", over.name());
        tracing::info!(
            socket_id = conn.socket_id(),
            limit = over.name(),
            "sign-in refused: {over}"
        );
        r.error(
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
        r.error(
            conn.client(),
            &format!("Sign-in refused: {e}"),
            Some(code::UNAUTHORIZED),
        );
        return;
    }
    app.sign_in(conn, &id);
    tracing::debug!(socket_id = conn.socket_id(), user = id, "signed in");
    r.reply(conn.client(), protocol::signin_success(user_data));
}
