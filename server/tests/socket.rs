//! The real server on a loopback socket, spoken to with tungstenite and a
//! hand-written HTTP client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;
use realtime_server::server::{start, Running};
use serde_json::{json, Value};
use tungstenite::{stream::MaybeTlsStream, Message, WebSocket};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn run() -> Running {
    let mut s = settings();
    s.bind = "127.0.0.1:0".parse().unwrap();
    s.workers = 2;
    start(&s).unwrap()
}

fn ws(addr: SocketAddr, key: &str, query: &str) -> Ws {
    let (ws, _) = tungstenite::connect(format!("ws://{addr}/app/{key}?{query}")).unwrap();
    ws
}

fn next(ws: &mut Ws) -> Value {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn pusher_protocol_over_a_real_socket() {
    let server = run();
    let addr = server.local_addr();
    assert_eq!(http(addr, "GET", "/up", ""), (200, "OK".to_owned()));

    let mut a = ws(addr, KEY, "protocol=7&client=js&version=8.4.0");
    let hello = next(&mut a);
    assert_eq!(hello["event"], "pusher:connection_established");
    let data: Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
    let socket_id = data["socket_id"].as_str().unwrap().to_owned();

    let auth = private_auth(&socket_id, "private-x");
    send(
        &mut a,
        json!({"event":"pusher:subscribe","data":{"channel":"private-x","auth":auth}}),
    );
    let f = next(&mut a);
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded");

    let body = json!({"name":"hello","channel":"private-x","data":"{\"n\":1}"}).to_string();
    let q = signed_query("POST", "/apps/1/events", &[], &body, SECRET, now_unix());
    let (status, resp) = http(addr, "POST", &format!("/apps/1/events?{q}"), &body);
    assert_eq!((status, resp.as_str()), (200, "{}"));
    assert_eq!(
        next(&mut a),
        json!({"event":"hello","channel":"private-x","data":"{\"n\":1}"})
    );

    send(&mut a, json!({"event":"pusher:ping","data":{}}));
    assert_eq!(next(&mut a)["event"], "pusher:pong");

    let (status, metrics) = http(addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("realtime_connections{app=\"1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("realtime_transport_bytes_out_total"),
        "{metrics}"
    );

    // Shutdown closes clients with 4200.
    server.shutdown();
    loop {
        match a.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 4200);
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

#[test]
fn unknown_key_and_missing_protocol_are_refused_with_pusher_codes() {
    let server = run();
    let addr = server.local_addr();
    for (key, query, code) in [
        ("nope", "protocol=7", 4001),
        (KEY, "client=js", 4008),
        (KEY, "protocol=5", 4007),
    ] {
        let mut c = ws(addr, key, query);
        let f = next(&mut c);
        assert_eq!(f["event"], "pusher:error");
        assert_eq!(f["data"]["code"], code);
        loop {
            match c.read() {
                Ok(Message::Close(Some(frame))) => {
                    assert_eq!(u16::from(frame.code), code);
                    break;
                }
                Ok(_) => continue,
                Err(e) => panic!("no close frame: {e}"),
            }
        }
    }
}
