//! Test hooks for fuzz targets: drive the parsers and dispatchers with
//! arbitrary bytes. Hidden from the docs; not an API.

use std::sync::OnceLock;

use crate::config::Settings;
use crate::gateway::Gateway;
use crate::http_api::HttpRequest;

fn gateway() -> &'static Gateway {
    static G: OnceLock<Gateway> = OnceLock::new();
    G.get_or_init(|| Gateway::new(&Settings::default()))
}

/// Parses `data` as a client message and dispatches it on an in-memory
/// connection of the development app; must never panic.
pub fn fuzz_pusher_message(data: &[u8]) {
    let _ = std::str::from_utf8(data).map(crate::protocol::parse_client_message);
    let g = gateway();
    let Some(app) = g.apps().first() else { return };
    let (conn, _peer) = realtime::pipe();
    let Ok(client) = app
        .hub()
        .add(conn, crate::gateway::UpgradeDecision::auth(app))
    else {
        return;
    };
    let _ = g.open(&client);
    g.handle_message(&client, data);
    client.close();
    g.close(&client);
}

/// Splits `data` into `METHOD PATH?QUERY\nBODY` and serves it through the
/// HTTP API; must never panic.
pub fn fuzz_http_api(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once('\n').unwrap_or((&text, ""));
    let (method, target) = head.split_once(' ').unwrap_or(("GET", head));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let req = HttpRequest {
        method,
        path,
        query,
    };
    let _ = gateway().http(&req, body.as_bytes());
}
