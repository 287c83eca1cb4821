//! Test hooks for fuzz targets: drive the parsers and dispatchers with
//! arbitrary bytes. Hidden from the docs; not an API.
//!
//! Every input gets a node of its own (the development app, delivering on
//! the calling thread through a [`LocalBus`]), and its clients are attached
//! to the app's Hub with a transport that starts no thread; the hook drains
//! their outboxes by hand. Nothing outlives an input, so inputs are
//! independent and libFuzzer runs them back to back on one thread. The
//! only thing kept between inputs is the immutable default [`Settings`]
//! (its constructor reads the CPU count from the OS).

use std::sync::{Arc, OnceLock};

use realtime::{Client, Transport};

use crate::auth;
use crate::bus::LocalBus;
use crate::config::Settings;
use crate::gateway::UpgradeDecision;
use crate::node::Node;

/// Messages of one `fuzz_pusher_message` input at most.
const MAX_MESSAGES: usize = 16;

/// The clock of `fuzz_http_api` (Unix seconds): signed requests carry it
/// as their `auth_timestamp`.
const NOW_UNIX: u64 = 1_700_000_000;

/// The default settings, built once (immutable).
fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(Settings::default)
}

/// A fresh node with the development app, delivering on the calling thread.
fn node() -> Node {
    Node::with_bus(settings(), 1, Arc::new(LocalBus))
}

/// A transport that starts no thread and ignores wake-ups: the hook
/// drains the outbox itself.
struct Drained;

impl Transport for Drained {
    fn wake(&self) {}
    fn closed(&self) {}
}

/// Pops everything queued for `client`, as a transport would.
fn drain(client: &Client) {
    loop {
        while client.pop_frame().is_some() {}
        if client.is_closed() || !client.finish_drain() {
            return;
        }
    }
}

/// Splits `data` at NUL bytes into up to 16 client messages (a NUL cannot
/// occur in a JSON text, so a single message is the whole input) and
/// dispatches them in order on one connection of the development app, a
/// second connection subscribed beside it to whatever it joins; must never
/// panic.
pub fn fuzz_pusher_message(data: &[u8]) {
    let node = node();
    let g = node.gateway();
    let Some(app) = g.apps().all().first().cloned() else {
        return;
    };
    let attach = || {
        app.hub()
            .attach(Arc::new(Drained), UpgradeDecision::auth(&app))
            .ok()
    };
    let (Some(client), Some(peer)) = (attach(), attach()) else {
        return;
    };
    let _ = g.open(&client);
    let _ = g.open(&peer);
    for msg in data.split(|&b| b == 0).take(MAX_MESSAGES) {
        let _ = std::str::from_utf8(msg).map(crate::protocol::parse_client_message);
        g.handle_message(&client, msg);
        drain(&client);
        // The peer sees client events and presence frames of the channels
        // the client joined, if it is in them too.
        drain(&peer);
    }
    for c in [&client, &peer] {
        c.close();
        g.close(c);
    }
    node.close();
}

/// Serves `data` through the HTTP API and returns the response status.
///
/// Byte 0 holds flags, the rest is `METHOD PATH?QUERY\nBODY`. Flag bit 0
/// signs the request with the development app's key and secret
/// (`auth_key`, `auth_timestamp`, `auth_version`, `body_md5` and
/// `auth_signature` appended to the query), so the routes behind the
/// signature check are reached. Must never panic.
pub fn fuzz_http_api(data: &[u8]) -> u16 {
    let Some((&flags, data)) = data.split_first() else {
        return 0;
    };
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once('\n').unwrap_or((&text, ""));
    let (method, target) = head.split_once(' ').unwrap_or(("GET", head));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let node = node();
    let mut query = query.to_owned();
    if flags & 1 != 0 {
        if let Some(app) = node.apps().all().first() {
            query = signed_query(method, path, &query, body.as_bytes(), app.config());
        }
    }
    let req = realtime_mio::Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        headers: Vec::new(),
        peer: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let status = node.api().http_at(&req, body.as_bytes(), NOW_UNIX).status;
    node.close();
    status
}

/// `query` with the authentication parameters of an API request of `app`
/// appended, as a Pusher server library signs it.
fn signed_query(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    app: &crate::config::AppConfig,
) -> String {
    let sep = if query.is_empty() { "" } else { "&" };
    let unsigned = format!(
        "{query}{sep}auth_key={}&auth_timestamp={NOW_UNIX}&auth_version=1.0&body_md5={}",
        app.key,
        auth::body_md5(body)
    );
    // A query the server refuses to parse (a repeated key) stays unsigned:
    // it is answered 400 before the signature is looked at.
    let Ok(params) = realtime_mio::parse_query(&unsigned) else {
        return unsigned;
    };
    let signature = auth::sign(
        &app.secret,
        &auth::api_string_to_sign(method, path, &params),
    );
    format!("{unsigned}&auth_signature={signature}")
}
