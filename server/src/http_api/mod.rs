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
//!
//! The routes are in `events.rs` (publishing) and `channels.rs` (queries).

mod channels;
pub(crate) mod events;

pub use events::{MAX_BATCH, MAX_CHANNELS_PER_EVENT, MAX_EVENT_NAME};

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use realtime_mio::{parse_query, percent_decode, HttpResponse, Request};

use crate::app::{App, Apps};
use crate::auth;
use crate::bus::Publisher;
use crate::dashboard::{self, Dashboard};
use crate::metrics::{self, Metrics};
use crate::protocol::code;

/// Largest accepted difference between `auth_timestamp` and our clock.
pub const MAX_CLOCK_SKEW: u64 = 600;

/// The content type of `/metrics`.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The HTTP API of a node, over its apps and its bus.
#[derive(Debug)]
pub struct HttpApi {
    apps: Arc<Apps>,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    /// `/dashboard`, when the server has a dashboard token.
    dashboard: Option<Dashboard>,
}

pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(super) type ApiResult = Result<HttpResponse, HttpResponse>;

/// A request's query parameters, decoded, in order.
type Params = Vec<(String, String)>;

fn unauthorized(msg: impl Into<String>) -> HttpResponse {
    HttpResponse::text(401, msg.into())
}

pub(super) fn bad_request(msg: impl Into<String>) -> HttpResponse {
    HttpResponse::text(400, msg.into())
}

/// Seconds since the Unix epoch (0 for a clock before it).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks an API request's body against the `body_md5` its signed query
/// carries (the signature itself is [`authenticate_query`]'s).
fn check_body(params: &[(String, String)], body: &[u8]) -> Result<(), HttpResponse> {
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
    req: &Request,
    params: &[(String, String)],
    now_unix: u64,
) -> Result<(), HttpResponse> {
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
    let to_sign = auth::api_string_to_sign(&req.method, &req.path, params);
    if !auth::verify(&app.config().secret, &to_sign, signature) {
        return Err(unauthorized(format!(
            "Invalid signature: expected HMAC SHA256 hex digest of {to_sign:?}"
        )));
    }
    Ok(())
}

impl HttpApi {
    pub(crate) fn new(apps: Arc<Apps>, publisher: Publisher, metrics: Arc<Metrics>) -> Self {
        Self {
            apps,
            publisher,
            metrics,
            dashboard: None,
        }
    }

    /// This API with `/dashboard` served by `dashboard`.
    pub(crate) fn with_dashboard(mut self, dashboard: Option<Dashboard>) -> Self {
        self.dashboard = dashboard;
        self
    }
}

impl HttpApi {
    /// Checks a plain HTTP request from its head alone, before its body is
    /// read: an API request with a bad or missing signature, an unknown app
    /// or a malformed query is answered now (401/404/400), so an
    /// unauthenticated client cannot make the server buffer a body (R35).
    /// `None`: read the body and serve it with [`HttpApi::http`].
    pub fn http_head(&self, req: &Request) -> Option<HttpResponse> {
        self.http_head_at(req, unix_now())
    }

    /// [`HttpApi::http_head`] with the clock given (Unix seconds).
    pub fn http_head_at(&self, req: &Request, now_unix: u64) -> Option<HttpResponse> {
        let app_id = req.path.strip_prefix("/apps/")?.split('/').next()?;
        let reply = self.signed_request(req, app_id, now_unix).err()?;
        metrics::inc(&self.metrics.http, "status", reply.status.to_string());
        metrics::inc(
            &self.metrics.limit_refusals,
            "limit",
            "unauthenticated_body",
        );
        tracing::debug!(method = req.method, path = req.path, status = reply.status, body = %String::from_utf8_lossy(&reply.body), "HTTP API request refused before its body");
        Some(reply)
    }

    /// Serves one plain HTTP request.
    pub fn http(&self, req: &Request, body: &[u8]) -> HttpResponse {
        self.http_at(req, body, unix_now())
    }

    /// The app an API request names (its first path segment after
    /// `/apps/`, not decoded) and the request's query parameters, once the
    /// query's signature checks out (404, 400 or 401 otherwise). Shared by
    /// the check from the head ([`HttpApi::http_head`]) and the route.
    fn signed_request(
        &self,
        req: &Request,
        app_id: &str,
        now_unix: u64,
    ) -> Result<(Arc<App>, Params), HttpResponse> {
        let Some(app) = self.apps.by_id(&percent_decode(app_id)) else {
            return Err(HttpResponse::text(404, "Unknown app"));
        };
        let params =
            parse_query(&req.query).map_err(|_| bad_request("Repeated query parameter"))?;
        authenticate_query(app, req, &params, now_unix)?;
        Ok((Arc::clone(app), params))
    }

    /// [`HttpApi::http`] with the clock given (Unix seconds).
    pub fn http_at(&self, req: &Request, body: &[u8], now_unix: u64) -> HttpResponse {
        // Not counted: the page's polls would fill the counts it shows.
        if let Some(reply) = dashboard::route(self.dashboard.as_ref(), req, body) {
            return reply;
        }
        let start = Instant::now();
        let reply = self.route(req, body, now_unix).unwrap_or_else(|e| e);
        metrics::inc(&self.metrics.http, "status", reply.status.to_string());
        self.metrics
            .http_seconds
            .observe(start.elapsed().as_secs_f64());
        if reply.status >= 400 {
            tracing::debug!(method = req.method, path = req.path, status = reply.status, body = %String::from_utf8_lossy(&reply.body), "HTTP API error");
        }
        reply
    }

    fn route(&self, req: &Request, body: &[u8], now_unix: u64) -> ApiResult {
        // HEAD is served wherever GET is (RFC 9110 §9.3.2): same status and
        // headers; the transport writes no body for it.
        let method = req.method.as_str();
        let get = method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD");
        let post = method.eq_ignore_ascii_case("POST");
        match req.path.as_str() {
            "/up" | "/up/" => {
                return if get {
                    Ok(HttpResponse::text(200, "OK"))
                } else {
                    Err(HttpResponse::text(405, "Method not allowed"))
                };
            }
            "/metrics" => {
                return if get {
                    Ok(
                        HttpResponse::new(200, self.metrics.render(&self.apps.gauges()))
                            .header("Content-Type", OPENMETRICS),
                    )
                } else {
                    Err(HttpResponse::text(405, "Method not allowed"))
                };
            }
            _ => {}
        }
        let Some(rest) = req.path.strip_prefix("/apps/") else {
            return Err(HttpResponse::text(404, "Not found"));
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
                Err(HttpResponse::text(405, "Method not allowed"))
            }
        };
        match segs.as_slice() {
            ["events"] => {
                method_ok(post)?;
                events::events(&self.publisher, &app, body)
            }
            ["batch_events"] => {
                method_ok(post)?;
                events::batch(&self.publisher, &app, body)
            }
            ["channels"] => {
                method_ok(get)?;
                channels::api_channels(&app, &params)
            }
            ["channels", name] => {
                method_ok(get)?;
                channels::api_channel(&app, name, &params)
            }
            ["channels", name, "users"] => {
                method_ok(get)?;
                channels::api_users(&app, name)
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
                Ok(HttpResponse::json(200, "{}"))
            }
            _ => Err(HttpResponse::text(404, "Not found")),
        }
    }

    /// Closes every connection of `user` in `app` with 4009.
    fn terminate_user(&self, app: &App, user: &str) -> usize {
        let conns = app.user_connections(user);
        for conn in &conns {
            tracing::debug!(socket_id = conn.socket_id(), user, "terminating connection");
            conn.client()
                .close_with(code::UNAUTHORIZED, "You got disconnected by the app");
            self.apps.forget(conn.client(), &self.metrics);
        }
        conns.len()
    }
}
