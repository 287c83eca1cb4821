//! Webhook targets (`[[apps.webhooks]]`, `--webhook-url`) and the limits of
//! their delivery (`--webhook-queue`, `--webhook-retry-ms`,
//! `--webhook-timeout-ms`, `--webhook-workers`). How they are used is in
//! `webhooks/`.

use serde::Deserialize;

/// Default bound on webhook events waiting to be batched: past it a new
/// event is dropped (counted as `realtime_webhooks_dropped_total{reason="queue_full"}`).
pub const DEFAULT_WEBHOOK_QUEUE: usize = 10_000;
/// Default time, in milliseconds, a batch may be retried after its first
/// attempt before it is dropped (one minute).
pub const DEFAULT_WEBHOOK_RETRY_MS: u64 = 60_000;
/// Default time, in milliseconds, one webhook request may take (connect,
/// send, answer) before it counts as failed.
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 5_000;
/// Default number of threads delivering webhooks.
pub const DEFAULT_WEBHOOK_WORKERS: usize = 2;

/// The event types a webhook target may ask for (PUSHER.md, Webhooks).
pub const WEBHOOK_EVENT_TYPES: [&str; 6] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
];

/// One webhook target of an app: `[[apps.webhooks]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// Where the events are POSTed: an `http://` URL (TLS is not built in:
    /// put a local proxy in front of an `https://` receiver).
    pub url: String,
    /// The event types sent there; all of them when absent.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Only events of matching channels are sent there.
    #[serde(default)]
    pub filter: Option<WebhookFilter>,
}

/// Which channels' events a target receives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFilter {
    /// Only channels whose name starts with this.
    #[serde(default)]
    pub channel_name_starts_with: Option<String>,
}

impl WebhookTarget {
    /// A target receiving every event type of every channel.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            event_types: None,
            filter: None,
        }
    }

    /// Whether an event `name` on `channel` goes to this target.
    pub fn wants(&self, name: &str, channel: &str) -> bool {
        let typed = self
            .event_types
            .as_ref()
            .is_none_or(|t| t.iter().any(|t| t == name));
        let prefix = self
            .filter
            .as_ref()
            .and_then(|f| f.channel_name_starts_with.as_deref())
            .is_none_or(|p| channel.starts_with(p));
        typed && prefix
    }

    /// Checks the URL and the event types.
    pub(super) fn validate(&self, app: &str) -> Result<(), String> {
        let host = self.url.strip_prefix("http://").unwrap_or_default();
        if host.is_empty() || host.starts_with('/') {
            return Err(format!(
                "app {app}: webhook url {:?} must be http://HOST[:PORT]/PATH (TLS is not built in)",
                self.url
            ));
        }
        if ureq::http::Uri::try_from(self.url.as_str()).is_err() {
            return Err(format!("app {app}: webhook url {:?} is invalid", self.url));
        }
        for t in self.event_types.iter().flatten() {
            if !WEBHOOK_EVENT_TYPES.contains(&t.as_str()) {
                return Err(format!(
                    "app {app}: unknown webhook event type {t:?} (known: {})",
                    WEBHOOK_EVENT_TYPES.join(", ")
                ));
            }
        }
        Ok(())
    }
}
