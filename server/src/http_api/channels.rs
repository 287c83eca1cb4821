//! The read side of the API: `GET /apps/{id}/channels`,
//! `/channels/{name}`, `/channels/{name}/users`, and the `info` of an
//! event's answer. Counts are this node's; in cluster mode presence
//! rosters and occupancy are the cluster's (its mirrored roster).

use realtime_mio::HttpResponse;
use serde_json::{json, Map, Value};

use super::{bad_request, param, ApiResult};
use crate::app::App;
use crate::channel::{self, ChannelKind};

fn info_fields(params: &[(String, String)]) -> Vec<&str> {
    param(params, "info")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn user_count(app: &App, channel: &str) -> usize {
    match app.cluster_roster() {
        // Cluster mode: the cluster-wide mirror.
        Some(r) => r.user_count(channel),
        // Per-user presence: the roster holds each user once.
        None => app.hub().presence(channel).len(),
    }
}

/// Occupied channels and their subscriber counts on this node; in cluster
/// mode, plus the presence channels occupied on other nodes (subscriber
/// count: this node's).
fn occupied_channels(app: &App) -> Vec<(String, usize)> {
    let mut out = app.hub().channels();
    if let Some(r) = app.cluster_roster() {
        for (name, _) in r.channels() {
            if !out.iter().any(|(n, _)| *n == name) {
                out.push((name, 0));
            }
        }
        out.sort();
    }
    out
}

/// The channel attributes an event asked for with `info` (this node's
/// counts, read right after publishing).
pub(super) fn event_info(app: &App, channel: &str, info: &[String]) -> Value {
    let mut o = Map::new();
    for field in info {
        match field.as_str() {
            "subscription_count" => {
                o.insert(field.clone(), json!(app.hub().channel_count(channel)));
            }
            "user_count" => {
                o.insert(field.clone(), json!(user_count(app, channel)));
            }
            _ => {}
        }
    }
    Value::Object(o)
}

pub(super) fn api_channels(app: &App, params: &[(String, String)]) -> ApiResult {
    let prefix = param(params, "filter_by_prefix").unwrap_or("");
    let info = info_fields(params);
    let want_users = info.contains(&"user_count");
    let want_subs = info.contains(&"subscription_count");
    if want_users && !prefix.starts_with("presence-") {
        return Err(bad_request(
            "info=user_count needs filter_by_prefix=presence-",
        ));
    }
    let mut channels = Map::new();
    for (name, subs) in occupied_channels(app) {
        if name.starts_with('#') || !name.starts_with(prefix) {
            continue;
        }
        let mut o = Map::new();
        if want_users {
            o.insert("user_count".into(), json!(user_count(app, &name)));
        }
        if want_subs {
            o.insert("subscription_count".into(), json!(subs));
        }
        channels.insert(name, Value::Object(o));
    }
    Ok(HttpResponse::json(
        200,
        json!({ "channels": channels }).to_string(),
    ))
}

pub(super) fn api_channel(app: &App, name: &str, params: &[(String, String)]) -> ApiResult {
    let kind = channel::classify(name).map_err(|e| bad_request(format!("Invalid channel: {e}")))?;
    let info = info_fields(params);
    let subs = app.hub().channel_count(name);
    let mut o = Map::new();
    let elsewhere = app.cluster_roster().is_some_and(|r| r.user_count(name) > 0);
    o.insert("occupied".into(), json!(subs > 0 || elsewhere));
    if info.contains(&"user_count") {
        if kind != ChannelKind::Presence {
            return Err(bad_request(
                "user_count is only available for presence channels",
            ));
        }
        o.insert("user_count".into(), json!(user_count(app, name)));
    }
    if info.contains(&"subscription_count") {
        o.insert("subscription_count".into(), json!(subs));
    }
    Ok(HttpResponse::json(200, Value::Object(o).to_string()))
}

pub(super) fn api_users(app: &App, name: &str) -> ApiResult {
    let kind = channel::classify(name).map_err(|e| bad_request(format!("Invalid channel: {e}")))?;
    if kind != ChannelKind::Presence {
        return Err(bad_request(
            "Users are only available for presence channels",
        ));
    }
    let members = match app.cluster_roster() {
        Some(r) => r.members(name),
        None => app.hub().presence(name),
    };
    let users: Vec<Value> = members.iter().map(|m| json!({ "id": m.id })).collect();
    Ok(HttpResponse::json(
        200,
        json!({ "users": users }).to_string(),
    ))
}
