//! The real server on a loopback socket, spoken to with tungstenite and a
//! hand-written HTTP client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;
use realtime_server::{start, Running};
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

#[test]
fn a_client_sending_only_websocket_pings_is_not_pinged_while_a_silent_one_is() {
    // Issue #12 item 6: with the activity timeout at 1 s, a client whose
    // only traffic is WebSocket pings never gets `pusher:ping` (so never
    // 4201), while a silent client does. The pinging client connects first:
    // were its pings not activity, it would be due no later than the
    // silent one, in the same sweep.
    let mut s = settings();
    s.bind = "127.0.0.1:0".parse().unwrap();
    s.workers = 2;
    s.activity_timeout = 1;
    let server = start(&s).unwrap();
    let addr = server.local_addr();
    let mut pinger = ws(addr, KEY, "protocol=7");
    assert_eq!(next(&mut pinger)["event"], "pusher:connection_established");
    let mut silent = ws(addr, KEY, "protocol=7");
    assert_eq!(next(&mut silent)["event"], "pusher:connection_established");
    // The wait for the silent client's frame paces the pings (one per
    // 50 ms at most); the total is bounded by the round count.
    match silent.get_ref() {
        MaybeTlsStream::Plain(s) => s
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap(),
        _ => unreachable!("plain ws://"),
    }
    let mut rounds = 0;
    let ping = loop {
        // A WebSocket ping, and its pong: the server has read it (the
        // activity hook runs before the pong is written).
        pinger.send(Message::Ping(vec![1].into())).unwrap();
        loop {
            match pinger.read().unwrap() {
                Message::Pong(_) => break,
                Message::Ping(_) => continue,
                other => panic!("the pinging client got {other:?}"),
            }
        }
        match silent.read() {
            Ok(Message::Text(t)) => break serde_json::from_str::<Value>(t.as_str()).unwrap(),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("the silent client got {other:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("the silent client: {e}"),
        }
        rounds += 1;
        assert!(rounds < 400, "the silent client was never pinged");
    };
    assert_eq!(ping, json!({"event":"pusher:ping","data":{}}));
    // A request after that sweep: a `pusher:ping` the sweep queued for the
    // pinging client would arrive before the reply.
    send(
        &mut pinger,
        json!({"event":"pusher:subscribe","data":{"channel":"after-the-sweep"}}),
    );
    let f = next(&mut pinger);
    assert_eq!(
        f["event"], "pusher_internal:subscription_succeeded",
        "the pinging client got {f}"
    );
    assert_eq!(
        metric_of(
            server.node(),
            "realtime_disconnects_total{reason=\"pong_timeout\"}"
        ),
        0
    );
}
