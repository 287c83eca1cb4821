//! Hostile input against what the server holds (issue #12, R35): channel
//! counts, request bodies in flight, sockets that never speak, sockets per
//! address, health and metrics at the socket cap, chunked bodies. Each test
//! asserts the refusal or bound (a counter, a status, a close) and that a
//! control client subscribed to a public channel still receives an event
//! published through the signed HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::live::*;
use common::*;
use serde_json::{json, Value};

/// The signed target (path and query) of a publish of `body`.
fn events_target(body: &str) -> String {
    let path = "/apps/1/events";
    format!(
        "{path}?{}",
        signed_query("POST", path, &[], body, SECRET, now_unix())
    )
}

fn event_body(channel: &str, name: &str) -> String {
    json!({"name": name, "channel": channel, "data": "d"}).to_string()
}

#[test]
fn channels_past_the_app_limit_are_refused_with_subscription_error() {
    let server = run(|s| s.apps[0].max_channels = Some(5));
    let addr = server.local_addr();
    let control = Control::new(addr);
    let (mut attacker, _) = ws(addr);
    let mut refused = 0;
    for i in 0..10 {
        let f = subscribe(&mut attacker, &format!("flood-{i}"));
        if f["event"] == "pusher:subscription_error" {
            let data: Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
            assert_eq!(data["type"], "LimitReached");
            assert!(data["error"].as_str().unwrap().contains("max_channels"));
            refused += 1;
        }
    }
    // "control" is one of the 5.
    assert_eq!(refused, 6);
    assert_eq!(server.node().apps().all()[0].hub().channels().len(), 5);
    assert_eq!(
        metric(
            &server,
            "realtime_limit_refusals_total{limit=\"max_channels\"}"
        ),
        6
    );
    control.still_served(addr);
    server.shutdown();
}

#[test]
fn an_unauthenticated_body_is_refused_from_its_head_before_it_is_read() {
    let server = run(|_| {});
    let addr = server.local_addr();
    let control = Control::new(addr);
    // A 1 MiB body announced behind a bad signature: the 401 arrives
    // without a single body byte sent.
    let req = "POST /apps/1/events?auth_key=key-1&auth_timestamp=1&auth_version=1.0&body_md5=x&auth_signature=bad HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n";
    let (status, text) = raw(addr, req.as_bytes());
    assert_eq!(status, 401, "{text}");
    assert_eq!(
        metric(&server, "realtime_transport_refused_before_body_total"),
        1
    );
    control.still_served(addr);
    server.shutdown();
}

#[test]
fn bodies_past_the_in_flight_budget_get_503_before_they_are_read() {
    let server = run(|s| s.max_http_buffer = 100 * 1024);
    let addr = server.local_addr();
    let control = Control::new(addr);
    // Two signed requests announce 40 KiB bodies and send none of it: 80 KiB
    // of the 100 KiB budget is held.
    let body = "x".repeat(40 * 1024);
    let head = |body: &str| {
        format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            events_target(body),
            body.len()
        )
    };
    let mut holders: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(head(&body).as_bytes()).unwrap();
            s
        })
        .collect();
    // Both heads are parsed and their bodies reserved: the gauge says so.
    eventually("the two bodies to be reserved", || {
        metric(&server, "realtime_transport_http_body_bytes") >= 80 * 1024
    });
    // The third does not fit: 503 at once, while the two hold theirs.
    let (status, third) = raw(addr, head(&body).as_bytes());
    assert_eq!(status, 503, "{third}");
    assert!(third.contains("max_http_buffer"), "{third}");
    assert_eq!(
        metric(&server, "realtime_transport_body_budget_refusals_total"),
        1
    );
    // Once a holder finishes its body the budget is back: it is served.
    holders[0].write_all(body.as_bytes()).unwrap();
    let mut answer = [0u8; 12];
    holders[0].set_read_timeout(Some(GUARD)).unwrap();
    holders[0].read_exact(&mut answer).unwrap();
    // The body is not a valid event, but it was read and answered.
    assert!(answer.starts_with(b"HTTP/1.1 4"), "{answer:?}");
    control.still_served(addr);
    drop(holders);
    server.shutdown();
}

#[test]
fn a_socket_that_never_speaks_is_dropped_at_the_silent_timeout() {
    let server = run(|s| s.silent_timeout = 1);
    let addr = server.local_addr();
    let control = Control::new(addr);
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(GUARD)).unwrap();
    let mut buf = [0u8; 1];
    // The server closes it: end of stream (or a reset), not a timeout.
    match silent.read(&mut buf) {
        Ok(0) => {}
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
        Ok(n) => panic!("a silent socket got {n} bytes"),
    }
    assert_eq!(
        metric(&server, "realtime_transport_silent_sockets_total"),
        1
    );
    control.still_served(addr);
    server.shutdown();
}

#[test]
fn sockets_past_the_per_address_limit_get_429_and_other_addresses_are_served() {
    let server = run(|s| s.max_connections_per_ip = 3);
    let addr = server.local_addr();
    // The control client comes from another loopback address.
    let control = Control::from_ws(ws_with(addr, None, Some([127, 0, 0, 2].into())).0);
    let held: Vec<Ws> = (0..3).map(|_| ws(addr).0).collect();
    let (status, text) = raw(addr, b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 429, "{text}");
    assert_eq!(
        metric(&server, "realtime_transport_rejected_per_ip_total"),
        1
    );
    // Publishing needs a socket from 127.0.0.1 too: free one first.
    drop(held);
    eventually("the address to be freed", || up(addr).0 == 200);
    control.still_served(addr);
    server.shutdown();
}

#[test]
fn health_and_metrics_answer_on_their_own_listener_when_the_main_port_is_full() {
    let server = run(|s| {
        s.max_connections = 4;
        s.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
        s.silent_timeout = 60;
    });
    let addr = server.local_addr();
    let control = Control::new(addr);
    // Fill the main port's socket cap with keep-alive sockets left open
    // after one request each.
    let mut idle = Vec::new();
    loop {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        s.write_all(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            // Served: the cap is not reached yet; keep it open, idle.
            Ok(n) if n > 0 => idle.push(s),
            // Dropped at accept: the cap is reached.
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                break
            }
            Err(e) => panic!("{e}"),
        }
        assert!(idle.len() < 1_000, "the socket cap never showed");
    }
    let metrics_addr = server.metrics_addr().unwrap();
    let (status, _) = up(metrics_addr);
    assert_eq!(status, 200);
    let (status, text) = raw(
        metrics_addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(text.contains("realtime_transport_rejected_over_capacity_total"));
    let (status, _) = raw(
        metrics_addr,
        b"GET /apps/1/channels HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 404, "only health and metrics there");
    drop(idle);
    eventually("the main port to serve again", || up(addr).0 == 200);
    control.still_served(addr);
    server.shutdown();
}

#[test]
fn a_body_of_one_byte_chunks_is_decoded_and_published() {
    let server = run(|_| {});
    let addr = server.local_addr();
    let control = Control::new(addr);
    let body = event_body("control", "chunked-event");
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        events_target(&body)
    )
    .into_bytes();
    for b in body.bytes() {
        req.extend_from_slice(b"1\r\n");
        req.push(b);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // Sent in small pieces, as a slow client would.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    for piece in req.chunks(7) {
        s.write_all(piece).unwrap();
    }
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let mut control = control;
    assert_eq!(next(&mut control.0)["event"], "chunked-event");
    control.still_served(addr);
    server.shutdown();
}

/// `GET /up` on a fresh connection: the status and the response.
fn up(addr: std::net::SocketAddr) -> (u16, String) {
    raw(
        addr,
        b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
}
