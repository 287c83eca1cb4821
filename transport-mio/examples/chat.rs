//! A chat server over the Hub: a runnable example of `realtime-mio`.
//!
//! Run it (the address is optional, default `127.0.0.1:6001`):
//!
//! ```text
//! cargo run -p realtime-mio --example chat -- 127.0.0.1:6001
//! ```
//!
//! Talk to it with any WebSocket client, e.g. `websocat ws://127.0.0.1:6001/`
//! in two terminals, sending one JSON object per message:
//!
//! ```text
//! {"subscribe":"room"}                      -> {"event":"subscribed","channel":"room"}
//! {"publish":"room","data":{"text":"hi"}}   -> every subscriber of "room" gets
//!                                              {"event":"message","channel":"room","data":{"text":"hi"}}
//! {"unsubscribe":"room"}                    -> {"event":"unsubscribed","channel":"room"}
//! ```
//!
//! Anything else gets `{"event":"error","message":...}`. Plain HTTP works on
//! the same port: `curl http://127.0.0.1:6001/up` and `/stats`. Press Enter
//! (or close stdin) to shut down gracefully: every client gets close 1001.

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use bytes::Bytes;
use realtime::{Client, Hub, MessageType};
use realtime_mio::{Config, Handler, HttpResponse, Request, Server, Upgrade};
use serde_json::{json, Value};

struct Chat {
    hub: Hub,
    server_stats: std::sync::OnceLock<Arc<dyn Fn() -> String + Send + Sync>>,
}

impl Chat {
    fn reply(client: &Client, value: &Value) {
        let _ = client.send_text(value.to_string());
    }

    fn error(client: &Client, message: &str) {
        Self::reply(client, &json!({"event": "error", "message": message}));
    }
}

impl Handler for Chat {
    fn on_upgrade(&self, _req: &Request) -> Upgrade {
        Upgrade::Accept {
            hub: self.hub.clone(),
            auth: Bytes::new(),
        }
    }

    fn on_message(&self, client: &Client, kind: MessageType, data: Bytes) {
        if kind != MessageType::Text {
            return Self::error(client, "send JSON text");
        }
        let Ok(msg) = serde_json::from_slice::<Value>(&data) else {
            return Self::error(client, "invalid JSON");
        };
        if let Some(channel) = msg.get("subscribe").and_then(Value::as_str) {
            match self.hub.subscribe(client, channel) {
                Ok(()) => Self::reply(client, &json!({"event": "subscribed", "channel": channel})),
                Err(e) => Self::error(client, &e.to_string()),
            }
        } else if let Some(channel) = msg.get("unsubscribe").and_then(Value::as_str) {
            let _ = self.hub.unsubscribe(client, channel);
            Self::reply(
                client,
                &json!({"event": "unsubscribed", "channel": channel}),
            );
        } else if let Some(channel) = msg.get("publish").and_then(Value::as_str) {
            let data = msg.get("data").cloned().unwrap_or(Value::Null);
            let frame = json!({"event": "message", "channel": channel, "data": data});
            if let Err(e) = self.hub.broadcast(channel, frame.to_string()) {
                Self::error(client, &e.to_string());
            }
        } else {
            Self::error(client, "expected subscribe, unsubscribe or publish");
        }
    }

    fn on_http(&self, req: &Request, _body: Bytes) -> HttpResponse {
        match req.path.as_str() {
            "/up" => HttpResponse::text(200, "ok\n"),
            "/stats" => {
                let stats = self.server_stats.get().map(|f| f()).unwrap_or_default();
                HttpResponse::text(200, stats)
            }
            _ => HttpResponse::text(404, "not found\n"),
        }
    }
}

fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6001".to_owned());
    let config = Config {
        bind: bind
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        ..Config::default()
    };
    let chat = Arc::new(Chat {
        hub: Hub::new(),
        server_stats: std::sync::OnceLock::new(),
    });
    let server = Arc::new(Server::bind(config, Arc::clone(&chat))?);
    let weak = Arc::downgrade(&server);
    let _ = chat.server_stats.set(Arc::new(move || {
        weak.upgrade()
            .map(|s| format!("{:#?}\n", s.stats()))
            .unwrap_or_default()
    }));
    println!(
        "chat server on ws://{}/ (Enter to stop)",
        server.local_addr()
    );
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    match Arc::try_unwrap(server) {
        Ok(server) => server.shutdown(),
        Err(_) => println!("server still referenced; dropping"),
    }
    Ok(())
}
