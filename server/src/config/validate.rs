//! Validation of resolved settings.

use super::Settings;
use crate::error::Error;

/// Refuses settings that cannot run: zero limits, inconsistent apps.
pub(super) fn validate(s: &Settings) -> Result<(), Error> {
    let bad = |m: String| Err(Error::Invalid(m));
    if s.workers == 0 {
        return bad("workers must be at least 1".into());
    }
    if s.max_connections == 0 {
        return bad("max_connections must be at least 1".into());
    }
    if s.activity_timeout == 0 {
        return bad("activity_timeout must be at least 1 second".into());
    }
    if s.outbox == Some(0) {
        return bad("outbox must be at least 1 frame".into());
    }
    if s.silent_timeout == 0 {
        return bad("silent_timeout must be at least 1 second".into());
    }
    if s.max_http_buffer == 0 {
        return bad("max_http_buffer must be at least 1 byte".into());
    }
    if s.client_buffer == 0 {
        return bad("client_buffer must be at least 1 byte".into());
    }
    for app in &s.apps {
        let limits = s.client_limits(app);
        if limits.max_presence_members == 0
            || limits.max_subscriptions == 0
            || limits.max_channels == 0
        {
            return bad(format!(
                "app {}: max_presence_members, max_subscriptions_per_connection and max_channels must be at least 1",
                app.id
            ));
        }
        if limits.max_user_id_length == 0 || limits.max_member_size == 0 {
            return bad(format!(
                "app {}: max_user_id_length and max_member_size must be at least 1",
                app.id
            ));
        }
    }
    if s.cache_ttl == 0 || s.max_cache_channels == 0 {
        return bad("cache_ttl and max_cache_channels must be at least 1".into());
    }
    if s.webhook_queue == 0 || s.webhook_workers == 0 {
        return bad("webhook_queue and webhook_workers must be at least 1".into());
    }
    if s.webhook_timeout_ms == 0 {
        return bad("webhook_timeout_ms must be at least 1 millisecond".into());
    }
    for app in &s.apps {
        for target in &app.webhooks {
            target.validate(&app.id).map_err(Error::Invalid)?;
        }
    }
    if s.node_ttl < 2 {
        return bad("node_ttl must be at least 2 seconds".into());
    }
    if s.redis_namespace.is_empty() || s.redis_namespace.contains(char::is_whitespace) {
        return bad("redis_namespace must be non-empty, without spaces".into());
    }
    if let Some(url) = &s.redis {
        if !(url.starts_with("redis://") || url.starts_with("unix://")) {
            return bad("redis must be a redis:// (or unix://) URL".into());
        }
    }
    if s.max_message_size < 1024 {
        return bad("max_message_size must be at least 1024 bytes".into());
    }
    let path_safe = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
    };
    for (i, app) in s.apps.iter().enumerate() {
        if !path_safe(&app.id) {
            return bad(format!(
                "app id {:?} must be non-empty [A-Za-z0-9._~-]",
                app.id
            ));
        }
        if !path_safe(&app.key) {
            return bad(format!(
                "app key {:?} must be non-empty [A-Za-z0-9._~-]",
                app.key
            ));
        }
        if app.secret.is_empty() {
            return bad(format!("app {} has an empty secret", app.id));
        }
        if app.max_event_size == 0 || app.client_event_rate == 0 {
            return bad(format!("app {}: limits must be at least 1", app.id));
        }
        for other in &s.apps[..i] {
            if other.id == app.id {
                return bad(format!("duplicate app id {}", app.id));
            }
            if other.key == app.key {
                return bad(format!("duplicate app key {}", app.key));
            }
        }
    }
    if let Some(t) = &s.dashboard_token {
        if t.expose().chars().count() < 8 {
            return bad("dashboard_token must be at least 8 characters".into());
        }
    }
    Ok(())
}
