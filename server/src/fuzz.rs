//! Test hooks for fuzz targets: drive the parsers and dispatchers with
//! arbitrary bytes. Hidden from the docs; not an API.

use std::sync::{Arc, OnceLock};

use crate::bus::LocalBus;
use crate::config::Settings;
use crate::gateway::UpgradeDecision;
use crate::node::Node;

/// One node for every input, delivering on the calling thread (no bus
/// thread to outlive an input).
fn node() -> &'static Node {
    static N: OnceLock<Node> = OnceLock::new();
    N.get_or_init(|| Node::with_bus(&Settings::default(), 1, Arc::new(LocalBus)))
}

/// Parses `data` as a client message and dispatches it on an in-memory
/// connection of the development app; must never panic.
pub fn fuzz_pusher_message(data: &[u8]) {
    let _ = std::str::from_utf8(data).map(crate::protocol::parse_client_message);
    let g = node().gateway();
    let Some(app) = g.apps().all().first() else {
        return;
    };
    let (conn, _peer) = realtime::pipe();
    let Ok(client) = app.hub().add(conn, UpgradeDecision::auth(app)) else {
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
    let req = realtime_mio::Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: Vec::new(),
        peer: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let _ = node().api().http(&req, body.as_bytes());
}
