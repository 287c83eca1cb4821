//! A tiny webhook receiver for the tests: one thread per connection,
//! keep-alive, answers from a script of statuses (then 200), checks that
//! every request is Pusher's (JSON, key, signature, id = SHA-256 of the
//! body) and reports it, before answering, on a channel.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use realtime_server::auth;
use serde_json::Value;

/// The app the requests are signed for (`common::KEY`, `common::SECRET`).
const KEY: &str = "key-1";
const SECRET: &str = "secret-1";

/// One request as received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// What the receiver answered.
    pub status: u16,
    /// `X-Pusher-Webhook-Id`.
    pub id: String,
    /// The parsed body.
    pub body: Value,
}

/// A running receiver.
pub struct Hooks {
    /// Its URL.
    pub url: String,
    /// Every request, in the order answered.
    pub hits: Receiver<Hit>,
    /// Statuses still to answer before 200s; the test may change it.
    pub script: Arc<Mutex<Vec<u16>>>,
}

/// Starts a receiver answering `script` in order, then 200.
pub fn start(script: &[u16]) -> Hooks {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let script = Arc::new(Mutex::new(script.to_vec()));
    let shared = Arc::clone(&script);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (tx, script) = (tx.clone(), Arc::clone(&shared));
            std::thread::spawn(move || serve(stream, &tx, &script));
        }
    });
    Hooks {
        url: format!("http://{addr}/hooks"),
        hits: rx,
        script,
    }
}

fn serve(stream: TcpStream, tx: &Sender<Hit>, script: &Mutex<Vec<u16>>) {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        assert!(line.starts_with("POST /hooks "), "{line}");
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.insert(k.to_ascii_lowercase(), v.trim().to_owned());
        }
        let len: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let body = String::from_utf8(body).unwrap();
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-pusher-key"], KEY);
        assert!(
            auth::verify(SECRET, &body, &headers["x-pusher-signature"]),
            "bad signature on {body}"
        );
        let id = headers["x-pusher-webhook-id"].clone();
        assert_eq!(id.len(), 64);
        let status = {
            let mut s = script.lock().unwrap();
            if s.is_empty() {
                200
            } else {
                s.remove(0)
            }
        };
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert!(parsed["time_ms"].as_u64().unwrap() > 0);
        // Reported before the answer: once the sender has its answer, the
        // test can see the hit.
        let _ = tx.send(Hit {
            status,
            id,
            body: parsed,
        });
        if write!(w, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").is_err() {
            return;
        }
        let _ = w.flush();
    }
}
