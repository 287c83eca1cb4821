//! Answers to one client's own requests: replies, `pusher:error`,
//! `pusher:subscription_error`, each counted and logged.
//!
//! Replies are forced (R34): never dropped by the slow-consumer policy; a
//! client past its byte bound (it floods and does not read) is
//! disconnected instead.

use std::sync::Arc;

use realtime::{Client, Frame};

use crate::connection::Connection;
use crate::member::MemberLimit;
use crate::metrics::{self, Metrics};
use crate::protocol::{self, code};

/// The reply side of the protocol, with the counters it bumps.
#[derive(Debug, Clone)]
pub(crate) struct Replies {
    metrics: Arc<Metrics>,
}

impl Replies {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Sends a reply to the client's own request.
    pub(crate) fn reply(&self, client: &Client, text: String) {
        self.metrics.replies_out.inc();
        // A closed client has nobody to tell.
        let _ = client.send_reply(Frame::from_string(text));
    }

    /// Sends a `pusher:error`.
    pub(crate) fn error(&self, client: &Client, message: &str, code: Option<u16>) {
        let label = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
        metrics::inc(&self.metrics.errors, "code", label);
        tracing::debug!(client = client.id(), code, message, "pusher:error");
        self.reply(client, protocol::error_frame(message, code));
    }

    /// Sends a `pusher:subscription_error`.
    pub(crate) fn subscription_error(
        &self,
        conn: &Connection,
        channel: &str,
        kind: &str,
        error: &str,
        status: u16,
    ) {
        self.metrics.subscription_errors.inc();
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

    /// Refuses a subscribe at a configured limit (R35): a
    /// `pusher:subscription_error` of type `LimitReached` whose message
    /// names the limit, a count under `limit` in
    /// `realtime_limit_refusals_total`, and a log line.
    pub(crate) fn limit_refused(
        &self,
        conn: &Connection,
        channel: &str,
        limit: &str,
        message: &str,
        status: u16,
    ) {
        metrics::inc(&self.metrics.limit_refusals, "limit", limit);
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
    pub(crate) fn member_refused(&self, conn: &Connection, channel: &str, over: MemberLimit) {
        self.limit_refused(
            conn,
            channel,
            over.name(),
            &format!("Presence member refused: {over}"),
            code::OVER_LIMIT,
        );
    }
}
