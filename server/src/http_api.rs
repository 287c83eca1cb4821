//! The HTTP side of the port: Pusher's REST API (`/apps/{id}/...`),
//! `/metrics` and `/up`.
//!
//! Every API request is authenticated before it is routed: `auth_key` must
//! be the app's key, `auth_version` `1.0`, `auth_timestamp` within
//! ±[`MAX_CLOCK_SKEW`] seconds, `body_md5` the MD5 of a non-empty body, and
//! `auth_signature` the HMAC of `METHOD\nPATH\nQUERY` (`auth.rs`), checked
//! in constant time. Failures are 401 with a text body saying what is
//! wrong; malformed requests 400; oversized event data 413; unknown apps
//! and routes 404; wrong methods 405. Successful responses are JSON, as
//! the official server SDKs expect (`{}` for events, `{"channels":{..}}`,
//! `{"users":[..]}`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::auth;
use crate::channel::{self, ChannelKind};
use crate::gateway::Gateway;
use crate::protocol;

/// Largest accepted difference between `auth_timestamp` and our clock.
pub const MAX_CLOCK_SKEW: u64 = 600;
/// Most channels one event may name.
pub const MAX_CHANNELS_PER_EVENT: usize = 100;
/// Most events in one batch.
pub const MAX_BATCH: usize = 10;
/// Longest event name.
pub const MAX_EVENT_NAME: usize = 200;

/// A plain HTTP request, as the API sees it.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path as received (not decoded): it is what was signed.
    pub path: &'a str,
    /// The raw query string.
    pub query: &'a str,
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl HttpReply {
    /// A JSON reply.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.into(),
        }
    }

    /// A text reply.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Decodes `%XX` and `+` (form encoding); bad escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits and decodes a query string; `None` if a key repeats.
pub fn parse_query(query: &str) -> Option<Vec<(String, String)>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        if !seen.insert(k.to_ascii_lowercase()) {
            return None;
        }
        out.push((k, v));
    }
    Some(out)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

type ApiResult = Result<HttpReply, HttpReply>;

/// A request's query parameters, decoded, in order.
type Params = Vec<(String, String)>;

fn unauthorized(msg: impl Into<String>) -> HttpReply {
    HttpReply::text(401, msg)
}

fn bad_request(msg: impl Into<String>) -> HttpReply {
    HttpReply::text(400, msg)
}

/// Seconds since the Unix epoch (0 for a clock before it).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks an API request's body against the `body_md5` its signed query
/// carries (the signature itself is [`authenticate_query`]'s).
fn check_body(params: &[(String, String)], body: &[u8]) -> Result<(), HttpReply> {
    match param(params, "body_md5") {
        Some(md5) if !md5.eq_ignore_ascii_case(&auth::body_md5(body)) => {
            Err(unauthorized("body_md5 does not match the body"))
        }
        None if !body.is_empty() => Err(unauthorized("Missing body_md5")),
        _ => Ok(()),
    }
}

/// Checks everything of an API request's authentication that does not
/// need the body: key, version, timestamp and the signature of method,
/// path and query (`body_md5` included, so the body is bound to it).
fn authenticate_query(
    app: &App,
    req: &HttpRequest<'_>,
    params: &[(String, String)],
    now_unix: u64,
) -> Result<(), HttpReply> {
    let need =
        |name: &str| param(params, name).ok_or_else(|| unauthorized(format!("Missing {name}")));
    let key = need("auth_key")?;
    let ts = need("auth_timestamp")?;
    let version = need("auth_version")?;
    let signature = need("auth_signature")?;
    if key != app.config().key {
        return Err(unauthorized("Unknown auth_key"));
    }
    if version != "1.0" {
        return Err(unauthorized("auth_version must be 1.0"));
    }
    let ts: u64 = ts
        .parse()
        .map_err(|_| unauthorized("auth_timestamp must be a Unix time in seconds"))?;
    if ts.abs_diff(now_unix) > MAX_CLOCK_SKEW {
        return Err(unauthorized(format!(
            "Timestamp expired: {ts} is more than {MAX_CLOCK_SKEW} s from the server time {now_unix}"
        )));
    }
    let to_sign = auth::api_string_to_sign(req.method, req.path, params);
    if !auth::verify(&app.config().secret, &to_sign, signature) {
        return Err(unauthorized(format!(
            "Invalid signature: expected HMAC SHA256 hex digest of {to_sign:?}"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
struct EventBody {
    name: Option<String>,
    data: Option<Value>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    socket_id: Option<String>,
    /// `subscription_count` and/or `user_count`: answer with channel info.
    info: Option<String>,
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

/// An event checked and ready to publish.
struct Checked {
    name: String,
    data: String,
    channels: Vec<String>,
    socket_id: Option<String>,
    info: Vec<String>,
}

fn valid_socket_id(s: &str) -> bool {
    s.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

fn check_event(app: &App, e: EventBody, batch: bool) -> Result<Checked, HttpReply> {
    let name = e
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad_request("Missing event name"))?;
    if name.len() > MAX_EVENT_NAME {
        return Err(bad_request("Event name is longer than 200 characters"));
    }
    let channels = match (e.channels, e.channel) {
        (Some(cs), None) if !batch => cs,
        (None, Some(c)) => vec![c],
        (Some(_), Some(_)) => return Err(bad_request("Give channels or channel, not both")),
        (Some(_), None) => return Err(bad_request("Batch events name one channel")),
        (None, None) => return Err(bad_request("Missing channels")),
    };
    if channels.is_empty() {
        return Err(bad_request("Missing channels"));
    }
    if channels.len() > MAX_CHANNELS_PER_EVENT {
        return Err(bad_request("An event may name at most 100 channels"));
    }
    for c in &channels {
        if let Err(err) = channel::classify(c) {
            return Err(bad_request(format!("Invalid channel {c:?}: {err}")));
        }
    }
    let data = match e.data {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => return Err(bad_request("Missing data")),
    };
    if data.len() > app.config().max_event_size {
        return Err(HttpReply::text(
            413,
            format!(
                "Event data is larger than {} bytes",
                app.config().max_event_size
            ),
        ));
    }
    if let Some(s) = &e.socket_id {
        if !valid_socket_id(s) {
            return Err(bad_request("Invalid socket_id"));
        }
    }
    let info: Vec<String> = e
        .info
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    if info.iter().any(|f| f == "user_count")
        && channels
            .iter()
            .any(|c| channel::classify(c) != Ok(ChannelKind::Presence))
    {
        return Err(bad_request(
            "info=user_count is only available for presence channels",
        ));
    }
    Ok(Checked {
        name,
        data,
        channels,
        socket_id: e.socket_id,
        info,
    })
}

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

impl Gateway {
    /// Checks a plain HTTP request from its head alone, before its body is
    /// read: an API request with a bad or missing signature, an unknown app
    /// or a malformed query is answered now (401/404/400), so an
    /// unauthenticated client cannot make the server buffer a body (R35).
    /// `None`: read the body and serve it with [`Gateway::http`].
    pub fn http_head(&self, req: &HttpRequest<'_>) -> Option<HttpReply> {
        self.http_head_at(req, unix_now())
    }

    /// [`Gateway::http_head`] with the clock given (Unix seconds).
    pub fn http_head_at(&self, req: &HttpRequest<'_>, now_unix: u64) -> Option<HttpReply> {
        let app_id = req.path.strip_prefix("/apps/")?.split('/').next()?;
        let reply = self.signed_request(req, app_id, now_unix).err()?;
        self.metrics().http.inc(reply.status.to_string());
        self.metrics().limit_refusals.inc("unauthenticated_body");
        tracing::debug!(method = req.method, path = req.path, status = reply.status, body = %reply.body, "HTTP API request refused before its body");
        Some(reply)
    }

    /// Serves one plain HTTP request.
    pub fn http(&self, req: &HttpRequest<'_>, body: &[u8]) -> HttpReply {
        self.http_at(req, body, unix_now())
    }

    /// The app an API request names (its first path segment after
    /// `/apps/`, not decoded) and the request's query parameters, once the
    /// query's signature checks out (404, 400 or 401 otherwise). Shared by
    /// the check from the head ([`Gateway::http_head`]) and the route.
    fn signed_request(
        &self,
        req: &HttpRequest<'_>,
        app_id: &str,
        now_unix: u64,
    ) -> Result<(Arc<App>, Params), HttpReply> {
        let Some(app) = self.app_by_id(&percent_decode(app_id)) else {
            return Err(HttpReply::text(404, "Unknown app"));
        };
        let params =
            parse_query(req.query).ok_or_else(|| bad_request("Repeated query parameter"))?;
        authenticate_query(app, req, &params, now_unix)?;
        Ok((Arc::clone(app), params))
    }

    /// [`Gateway::http`] with the clock given (Unix seconds).
    pub fn http_at(&self, req: &HttpRequest<'_>, body: &[u8], now_unix: u64) -> HttpReply {
        let reply = self.route(req, body, now_unix).unwrap_or_else(|e| e);
        self.metrics().http.inc(reply.status.to_string());
        if reply.status >= 400 {
            tracing::debug!(method = req.method, path = req.path, status = reply.status, body = %reply.body, "HTTP API error");
        }
        reply
    }

    fn route(&self, req: &HttpRequest<'_>, body: &[u8], now_unix: u64) -> ApiResult {
        // HEAD is served wherever GET is (RFC 9110 §9.3.2): same status and
        // headers; the transport writes no body for it.
        let get = req.method.eq_ignore_ascii_case("GET") || req.method.eq_ignore_ascii_case("HEAD");
        let post = req.method.eq_ignore_ascii_case("POST");
        match req.path {
            "/up" | "/up/" => {
                return if get {
                    Ok(HttpReply::text(200, "OK"))
                } else {
                    Err(HttpReply::text(405, "Method not allowed"))
                };
            }
            "/metrics" => {
                return if get {
                    Ok(HttpReply {
                        status: 200,
                        content_type: "text/plain; version=0.0.4; charset=utf-8",
                        body: self.render_metrics(),
                    })
                } else {
                    Err(HttpReply::text(405, "Method not allowed"))
                };
            }
            _ => {}
        }
        let Some(rest) = req.path.strip_prefix("/apps/") else {
            return Err(HttpReply::text(404, "Not found"));
        };
        let mut segments = rest.split('/');
        let app_id = segments.next().unwrap_or_default();
        let (app, params) = self.signed_request(req, app_id, now_unix)?;
        check_body(&params, body)?;
        let segments: Vec<String> = segments.map(percent_decode).collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method_ok = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(HttpReply::text(405, "Method not allowed"))
            }
        };
        match segs.as_slice() {
            ["events"] => {
                method_ok(post)?;
                self.api_events(&app, body)
            }
            ["batch_events"] => {
                method_ok(post)?;
                self.api_batch(&app, body)
            }
            ["channels"] => {
                method_ok(get)?;
                api_channels(&app, &params)
            }
            ["channels", name] => {
                method_ok(get)?;
                api_channel(&app, name, &params)
            }
            ["channels", name, "users"] => {
                method_ok(get)?;
                api_users(&app, name)
            }
            ["users", user, "terminate_connections"] => {
                method_ok(post)?;
                let n = self.terminate_user(&app, user);
                tracing::info!(
                    app = app.id(),
                    user,
                    connections = n,
                    "terminated user connections"
                );
                Ok(HttpReply::json(200, "{}"))
            }
            _ => Err(HttpReply::text(404, "Not found")),
        }
    }

    fn publish_checked(&self, app: &Arc<App>, e: &Checked) {
        for ch in &e.channels {
            // Encoded once per channel (the channel is part of the frame);
            // every recipient shares it.
            let frame = protocol::event_frame(&e.name, Some(ch), &e.data);
            self.publish(app, ch, &e.name, frame, e.socket_id.as_deref());
        }
    }

    fn api_events(&self, app: &Arc<App>, body: &[u8]) -> ApiResult {
        let e: EventBody = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("Invalid JSON body: {e}")))?;
        let e = check_event(app, e, false)?;
        self.publish_checked(app, &e);
        if e.info.is_empty() {
            return Ok(HttpReply::json(200, "{}"));
        }
        let channels: Map<String, Value> = e
            .channels
            .iter()
            .map(|c| (c.clone(), event_info(app, c, &e.info)))
            .collect();
        Ok(HttpReply::json(
            200,
            json!({ "channels": channels }).to_string(),
        ))
    }

    fn api_batch(&self, app: &Arc<App>, body: &[u8]) -> ApiResult {
        let b: BatchBody = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("Invalid JSON body: {e}")))?;
        if b.batch.len() > MAX_BATCH {
            return Err(bad_request("A batch may hold at most 10 events"));
        }
        let checked = b
            .batch
            .into_iter()
            .map(|e| check_event(app, e, true))
            .collect::<Result<Vec<_>, _>>()?;
        for e in &checked {
            self.publish_checked(app, e);
        }
        if checked.iter().all(|e| e.info.is_empty()) {
            return Ok(HttpReply::json(200, "{}"));
        }
        let batch: Vec<Value> = checked
            .iter()
            .map(|e| event_info(app, &e.channels[0], &e.info))
            .collect();
        Ok(HttpReply::json(200, json!({ "batch": batch }).to_string()))
    }
}

/// The channel attributes an event asked for with `info` (this node's
/// counts, read right after publishing).
fn event_info(app: &App, channel: &str, info: &[String]) -> Value {
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

fn api_channels(app: &App, params: &[(String, String)]) -> ApiResult {
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
    Ok(HttpReply::json(
        200,
        json!({ "channels": channels }).to_string(),
    ))
}

fn api_channel(app: &App, name: &str, params: &[(String, String)]) -> ApiResult {
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
    Ok(HttpReply::json(200, Value::Object(o).to_string()))
}

fn api_users(app: &App, name: &str) -> ApiResult {
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
    Ok(HttpReply::json(200, json!({ "users": users }).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_form_decoding() {
        assert_eq!(percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%e2%98%83"), "☃");
    }

    #[test]
    fn queries_split_decode_and_refuse_repeats() {
        let q = parse_query("a=1&b=x%20y&c&&").unwrap();
        assert_eq!(
            q,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), String::new())
            ]
        );
        assert!(parse_query("a=1&A=2").is_none());
    }

    #[test]
    fn socket_ids_are_two_decimal_numbers() {
        assert!(valid_socket_id("123.456"));
        for bad in ["123", ".1", "1.", "a.1", "1.2.3", ""] {
            assert!(!valid_socket_id(bad), "{bad}");
        }
    }
}
