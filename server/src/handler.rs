//! The `realtime-mio` adapter: a thin [`Handler`] that forwards every
//! WebSocket callback to the node's [`Gateway`] and every plain HTTP
//! request to its [`HttpApi`].

use std::sync::Arc;

use bytes::Bytes;
use realtime::{Client, MessageType};
use realtime_mio::{Handler, HttpResponse, Request, Upgrade};

use crate::gateway::{Gateway, UpgradeDecision};
use crate::http_api::HttpApi;
use crate::node::Node;

/// Serves the Pusher protocol and the HTTP API on `realtime-mio`.
#[derive(Debug, Clone)]
pub(crate) struct PusherHandler {
    gateway: Arc<Gateway>,
    api: Arc<HttpApi>,
}

impl PusherHandler {
    /// A handler over `node`.
    pub(crate) fn new(node: &Node) -> Self {
        Self {
            gateway: Arc::clone(node.gateway()),
            api: Arc::clone(node.api()),
        }
    }
}

impl Handler for PusherHandler {
    fn on_upgrade(&self, req: &Request) -> Upgrade {
        let protocol = req.query_param("protocol");
        match self.gateway.upgrade(&req.path, protocol.as_deref()) {
            UpgradeDecision::Accept(app) => Upgrade::Accept {
                hub: app.hub().clone(),
                auth: UpgradeDecision::auth(&app),
            },
            UpgradeDecision::Refuse {
                frame,
                code,
                reason,
            } => Upgrade::Refuse {
                frames: vec![frame],
                code,
                reason,
            },
        }
    }

    fn on_open(&self, client: &Client) {
        if let Some(hello) = self.gateway.open(client) {
            // Enqueued before the handshake response is written: the first
            // frame the client sees.
            let _ = client.send_text(hello);
        }
    }

    fn on_message(&self, client: &Client, kind: MessageType, data: Bytes) {
        match kind {
            MessageType::Text => self.gateway.handle_message(client, &data),
            MessageType::Binary => self.gateway.handle_binary(client, data.len()),
        }
    }

    fn on_activity(&self, client: &Client) {
        // WebSocket pings, pongs and fragments count as activity too.
        self.gateway.activity(client);
    }

    fn on_close(&self, client: &Client) {
        self.gateway.close(client);
    }

    fn on_http_head(&self, req: &Request) -> Option<HttpResponse> {
        self.api.http_head(req)
    }

    fn on_http(&self, req: &Request, body: Bytes) -> HttpResponse {
        self.api.http(req, &body)
    }
}
