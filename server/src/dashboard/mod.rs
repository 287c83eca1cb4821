//! The live dashboard and debug console on `/dashboard`, on when the
//! server has a `--dashboard-token` (without one every `/dashboard` path
//! is 404).
//!
//! # Pages and routes
//!
//! One page whose HTML, script and style are compiled into the binary
//! (`assets/`, `include_str!`): it fetches nothing from anywhere but this
//! server, and its `Content-Security-Policy` says so (`default-src
//! 'self'`, no inline script).
//!
//! | route | what |
//! |---|---|
//! | `GET /dashboard` | the dashboard with a session, the login form without |
//! | `GET /dashboard/app.js`, `/dashboard/app.css` | the assets |
//! | `POST /dashboard/login` | form field `token`; 302 to `/dashboard` with the session cookie, or 401 (429 when limited) |
//! | `POST /dashboard/logout` | ends the session |
//! | `GET /dashboard/api/overview` | per-app counts and rate history, node-wide counters and rate history (`stats.rs`) |
//! | `GET /dashboard/api/channels?app=&prefix=` | occupied channels with subscription and user counts |
//! | `GET /dashboard/api/members?app=&channel=` | a presence channel's members |
//! | `GET /dashboard/api/feed?app=&cursor=` | the debug feed from a cursor (`feed.rs`) |
//! | `POST /dashboard/api/events` | JSON `{app, channel, event, data}`: published as `POST /apps/{id}/events` publishes |
//!
//! Every `api/` route answers 401 without a live session cookie
//! (`session.rs`). The page polls `overview`, `channels` and `feed` once a
//! second. App secrets never leave the server: the documents carry app ids
//! and counts only (not even keys).
//!
//! # Cost to the gateway
//!
//! Nothing runs unless a page asks: the overview renders the metrics once
//! per poll, the channel list walks one Hub's table, and the feed records
//! only while it is read (`feed.rs`). A slow or closed page holds nothing
//! the gateway waits for. Dashboard requests are not counted in
//! `realtime_http_requests_total`, so the page does not watch itself.

mod feed;
mod session;
mod stats;

pub use feed::{Feed, FEED_CAPACITY};
pub use session::DashboardToken;

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use realtime_mio::{percent_decode, HttpResponse, Request};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::{App, Apps};
use crate::bus::Publisher;
use crate::http_api::events;
use crate::metrics::Metrics;
use session::{Login, Sessions};

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Most channels one `channels` answer lists.
const MAX_CHANNEL_ROWS: usize = 500;

/// The dashboard of one node; see the module docs.
#[derive(Debug)]
pub(crate) struct Dashboard {
    sessions: Sessions,
    apps: Arc<Apps>,
    publisher: Publisher,
    metrics: Arc<Metrics>,
    history: stats::History,
    node: String,
}

/// Answers `req` if its path is the dashboard's: served by `dashboard`,
/// 404 without one. `None` for every other path.
pub(crate) fn route(
    dashboard: Option<&Dashboard>,
    req: &Request,
    body: &[u8],
) -> Option<HttpResponse> {
    if req.path != "/dashboard" && !req.path.starts_with("/dashboard/") {
        return None;
    }
    Some(match dashboard {
        Some(d) => d.serve(req, body),
        None => HttpResponse::text(404, "Not found"),
    })
}

/// The headers every dashboard answer carries.
fn guarded(r: HttpResponse) -> HttpResponse {
    r.header("Cache-Control", "no-store")
        .header("X-Content-Type-Options", "nosniff")
        .header("X-Frame-Options", "DENY")
        .header("Referrer-Policy", "no-referrer")
        .header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        )
}

fn html(status: u16, body: impl Into<String>) -> HttpResponse {
    HttpResponse::new(status, body.into()).header("Content-Type", "text/html; charset=utf-8")
}

fn json_error(status: u16, msg: &str) -> HttpResponse {
    HttpResponse::json(status, json!({ "error": msg }).to_string())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The value of field `name` in an `application/x-www-form-urlencoded`
/// body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| percent_decode(k) == name)
        .map(|(_, v)| percent_decode(v))
}

/// What the event creator posts.
#[derive(Deserialize)]
struct SendEvent {
    app: String,
    channel: String,
    event: String,
    data: String,
}

impl Dashboard {
    /// A dashboard over `apps` for `token`, publishing through
    /// `publisher`; registers its counter in `metrics`.
    pub(crate) fn new(
        token: &DashboardToken,
        apps: Arc<Apps>,
        publisher: Publisher,
        metrics: Arc<Metrics>,
        node: String,
    ) -> Self {
        let failed = Counter::default();
        metrics.register(
            "realtime_dashboard_login_failures",
            "Dashboard logins refused for a wrong token.",
            failed.clone(),
        );
        Self {
            sessions: Sessions::new(token, failed),
            apps,
            publisher,
            metrics,
            history: stats::History::default(),
            node,
        }
    }

    /// Serves one request under `/dashboard`.
    pub(crate) fn serve(&self, req: &Request, body: &[u8]) -> HttpResponse {
        guarded(self.dispatch(req, body))
    }

    fn dispatch(&self, req: &Request, body: &[u8]) -> HttpResponse {
        let now = Instant::now();
        let method = req.method.to_ascii_uppercase();
        let get = method == "GET" || method == "HEAD";
        let post = method == "POST";
        let cookie = req.header("cookie");
        let path = req.path.trim_end_matches('/');
        match (path, get, post) {
            ("/dashboard", true, _) => {
                if self.sessions.valid(cookie, now) {
                    html(200, INDEX_HTML)
                } else {
                    html(200, LOGIN_HTML.replace("{{message}}", ""))
                }
            }
            ("/dashboard/app.js", true, _) => HttpResponse::new(200, APP_JS)
                .header("Content-Type", "text/javascript; charset=utf-8"),
            ("/dashboard/app.css", true, _) => {
                HttpResponse::new(200, APP_CSS).header("Content-Type", "text/css; charset=utf-8")
            }
            ("/dashboard/login", _, true) => self.login(req, body, now),
            ("/dashboard/logout", _, true) => {
                if !self.sessions.logout(cookie, now) {
                    for app in self.apps.all() {
                        app.feed().deactivate();
                    }
                }
                HttpResponse::new(302, "")
                    .header("Location", "/dashboard")
                    .header("Set-Cookie", session::clear_cookie())
            }
            (p, _, _) if p.starts_with("/dashboard/api/") => {
                if !self.sessions.valid(cookie, now) {
                    return json_error(401, "Log in to the dashboard first");
                }
                let api = &p["/dashboard/api/".len()..];
                self.api(api, req, body, get, post, now)
            }
            ("/dashboard" | "/dashboard/app.js" | "/dashboard/app.css", _, _)
            | ("/dashboard/login" | "/dashboard/logout", _, _) => {
                HttpResponse::text(405, "Method not allowed")
            }
            _ => HttpResponse::text(404, "Not found"),
        }
    }

    fn login(&self, req: &Request, body: &[u8], now: Instant) -> HttpResponse {
        let token = form_field(body, "token").unwrap_or_default();
        let refused = |status: u16, msg: &str| {
            html(
                status,
                LOGIN_HTML.replace(
                    "{{message}}",
                    &format!(
                        r#"<p class="error" role="alert" data-testid="login-error">{msg}</p>"#
                    ),
                ),
            )
        };
        match self.sessions.login(token.as_bytes(), now) {
            Login::Session(id) => {
                tracing::info!(peer = %req.peer.ip(), "dashboard login");
                HttpResponse::new(302, "")
                    .header("Location", "/dashboard")
                    .header("Set-Cookie", session::set_cookie(&id))
            }
            Login::Refused => {
                tracing::warn!(peer = %req.peer.ip(), "dashboard login refused: wrong token");
                refused(401, "Wrong token.")
            }
            Login::Limited => {
                tracing::warn!(peer = %req.peer.ip(), "dashboard login refused: too many wrong tokens, try later");
                refused(429, "Too many wrong tokens: try again in a minute.")
            }
            Login::Unavailable => {
                tracing::error!("dashboard login failed: no randomness for a session id");
                refused(500, "The server could not create a session.")
            }
        }
    }

    fn app(&self, req: &Request) -> Result<&Arc<App>, HttpResponse> {
        let id = req.query_param("app");
        match id.as_deref() {
            Some(id) => self.apps.by_id(id),
            None => self.apps.all().first(),
        }
        .ok_or_else(|| json_error(404, "Unknown app"))
    }

    fn api(
        &self,
        api: &str,
        req: &Request,
        body: &[u8],
        get: bool,
        post: bool,
        now: Instant,
    ) -> HttpResponse {
        let result = match (api, get, post) {
            ("overview", true, _) => Ok(self.overview(now)),
            ("channels", true, _) => self.app(req).map(|a| channels(a, req)),
            ("members", true, _) => self.app(req).map(|a| members(a, req)),
            ("feed", true, _) => self.app(req).map(|a| feed(a, req)),
            // JSON only: a cross-site form cannot send it without a
            // preflight (the cookie is SameSite=Strict as well).
            ("events", _, true)
                if !req
                    .header("content-type")
                    .is_some_and(|t| t.starts_with("application/json")) =>
            {
                Err(json_error(415, "Send JSON"))
            }
            ("events", _, true) => self.send_event(body),
            ("overview" | "channels" | "members" | "feed" | "events", _, _) => {
                Err(json_error(405, "Method not allowed"))
            }
            _ => Err(json_error(404, "Not found")),
        };
        match result {
            Ok(v) => HttpResponse::json(200, v.to_string()),
            Err(e) => e,
        }
    }

    fn overview(&self, now: Instant) -> Value {
        let text = self.metrics.render(&self.apps.gauges());
        stats::overview(&self.apps, &text, &self.history, &self.node, now, unix_ms())
    }

    /// The event creator: checked and published exactly as
    /// `POST /apps/{id}/events` is.
    fn send_event(&self, body: &[u8]) -> Result<Value, HttpResponse> {
        let e: SendEvent = serde_json::from_slice(body)
            .map_err(|e| json_error(400, &format!("Invalid request: {e}")))?;
        let app = self
            .apps
            .by_id(&e.app)
            .ok_or_else(|| json_error(404, "Unknown app"))?;
        let api_body = json!({ "name": e.event, "channel": e.channel, "data": e.data });
        match events::events(&self.publisher, app, api_body.to_string().as_bytes()) {
            Ok(_) => {
                tracing::info!(
                    app = app.id(),
                    channel = e.channel,
                    event = e.event,
                    "dashboard published an event"
                );
                Ok(json!({ "ok": true }))
            }
            Err(r) => Err(json_error(r.status, &String::from_utf8_lossy(&r.body))),
        }
    }
}

fn channels(app: &App, req: &Request) -> Value {
    let prefix = req.query_param("prefix").unwrap_or_default();
    let mut list = app.hub().channels();
    if let Some(r) = app.cluster_roster() {
        for (name, _) in r.channels() {
            if !list.iter().any(|(n, _)| *n == name) {
                list.push((name, 0));
            }
        }
    }
    list.retain(|(n, _)| n.starts_with(&prefix));
    list.sort();
    let total = list.len();
    let rows: Vec<Value> = list
        .iter()
        .take(MAX_CHANNEL_ROWS)
        .map(|(name, subs)| {
            let presence = name.starts_with("presence-");
            json!({
                "name": name,
                "occupied": *subs > 0 || presence && stats::user_count(app, name) > 0,
                "subscription_count": subs,
                "user_count": presence.then(|| stats::user_count(app, name)),
            })
        })
        .collect();
    json!({ "app": app.id(), "total": total, "channels": rows })
}

fn members(app: &App, req: &Request) -> Value {
    let channel = req.query_param("channel").unwrap_or_default();
    let list = match app.cluster_roster() {
        Some(r) => r.members(&channel),
        None => app.hub().presence(&channel),
    };
    let members: Vec<Value> = list
        .iter()
        .map(|m| {
            let info = serde_json::from_slice::<Value>(&m.info).unwrap_or(Value::Null);
            json!({ "id": m.id, "info": info })
        })
        .collect();
    json!({ "channel": channel, "members": members })
}

fn feed(app: &App, req: &Request) -> Value {
    let cursor = req.query_param("cursor").and_then(|c| c.parse().ok());
    let page = app.feed().read(cursor);
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|(seq, e)| {
            let mut v = serde_json::to_value(&**e).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut v {
                o.insert("seq".into(), json!(seq));
            }
            v
        })
        .collect();
    json!({
        "app": app.id(),
        "next": page.next,
        "missed": page.missed,
        "capacity": FEED_CAPACITY,
        "events": events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_field(b"a=1&token=x%26y+z", "token").as_deref(),
            Some("x&y z")
        );
        assert_eq!(form_field(b"a=1", "token"), None);
    }
}
