//! Hostile protocol input on real loopback sockets (issue #12, R35): oversized
//! presence members and sign-ins, `HEAD` requests, non-digit
//! `Content-Length`, binary WebSocket frames, and the transport's handshake
//! counters on `/metrics`. Every test asserts the refusal or the bound, and
//! then that a control client subscribed to a public channel still receives
//! an event published through the signed HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::live::{next, run, ws, Ws, GUARD};
use common::*;
use serde_json::{json, Value};
use tungstenite::Message;

fn send(ws: &mut Ws, v: &Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

/// Sends a signed presence subscribe with this exact `channel_data`.
fn subscribe_presence(ws: &mut Ws, socket_id: &str, channel: &str, channel_data: &str) -> Value {
    let auth = presence_auth(socket_id, channel, channel_data);
    send(
        ws,
        &json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":channel_data}}),
    );
    next(ws)
}

/// Sends a signed `pusher:signin` with this exact `user_data`.
fn signin(ws: &mut Ws, socket_id: &str, user_data: &str) -> Value {
    let sig = realtime_server::auth::sign(
        SECRET,
        &realtime_server::auth::user_string(socket_id, user_data),
    );
    send(
        ws,
        &json!({"event":"pusher:signin","data":{"auth":format!("{KEY}:{sig}"),"user_data":user_data}}),
    );
    next(ws)
}

/// Sends raw bytes on a fresh connection and reads until the server closes.
fn raw_http(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// Status and body of a `Connection: close` request.
fn http(addr: SocketAddr, method: &str, target: &str, body: &str) -> (u16, String) {
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let out = String::from_utf8(raw_http(addr, req.as_bytes())).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

fn metrics(addr: SocketAddr) -> String {
    let (status, text) = http(addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    text
}

/// Publishes `data` as event `name` on `channel` through the signed API.
fn publish(addr: SocketAddr, channel: &str, name: &str, data: &str) {
    let body = json!({"name": name, "channel": channel, "data": data}).to_string();
    let q = signed_query("POST", "/apps/1/events", &[], &body, SECRET, now_unix());
    let (status, resp) = http(addr, "POST", &format!("/apps/1/events?{q}"), &body);
    assert_eq!((status, resp.as_str()), (200, "{}"));
}

/// A client on the public channel `control`: after each hostile input the
/// server must still deliver to it.
struct Control {
    ws: Ws,
    sent: u32,
}

impl Control {
    fn join(addr: SocketAddr) -> Self {
        let (mut ws, _) = ws(addr);
        send(
            &mut ws,
            &json!({"event":"pusher:subscribe","data":{"channel":"control"}}),
        );
        let f = next(&mut ws);
        assert_eq!(f["event"], "pusher_internal:subscription_succeeded", "{f}");
        Self { ws, sent: 0 }
    }

    /// Publishes through the HTTP API and asserts the event arrives.
    fn still_receives(&mut self, addr: SocketAddr) {
        self.sent += 1;
        let data = format!("still-{}", self.sent);
        publish(addr, "control", "control-event", &data);
        assert_eq!(
            next(&mut self.ws),
            json!({"event":"control-event","channel":"control","data":data})
        );
    }
}

fn assert_limit_reached(f: &Value, channel: &str, limit: &str) {
    assert_eq!(f["event"], "pusher:subscription_error", "{f}");
    assert_eq!(f["channel"], channel);
    let data = decode_data(f);
    assert_eq!(data["type"], "LimitReached", "{data}");
    assert_eq!(data["status"], 4301, "{data}");
    assert!(data["error"].as_str().unwrap().contains(limit), "{data}");
}

fn refusals(addr: SocketAddr, limit: &str) -> u64 {
    let text = metrics(addr);
    let prefix = format!("realtime_limit_refusals_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |v| v.parse().unwrap())
}

#[test]
fn presence_user_id_over_128_characters_is_refused_and_delivery_goes_on() {
    let server = run(|_| {});
    let addr = server.local_addr();
    let mut control = Control::join(addr);
    let (mut a, sid) = ws(addr);
    let ch = "presence-ids";

    // The 10,240-character user_id, then one past the bound.
    for len in [10_240, 129] {
        let cd = json!({"user_id": "u".repeat(len), "user_info": {}}).to_string();
        assert_limit_reached(
            &subscribe_presence(&mut a, &sid, ch, &cd),
            ch,
            "max_user_id_length",
        );
    }
    assert_eq!(refusals(addr, "max_user_id_length"), 2);

    // Exactly 128 characters (multi-byte ones count as one) is a member.
    let id = "é".repeat(128);
    let cd = json!({"user_id": id, "user_info": {}}).to_string();
    let f = subscribe_presence(&mut a, &sid, ch, &cd);
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded", "{f}");
    assert_eq!(decode_data(&f)["presence"]["ids"], json!([id]));
    control.still_receives(addr);
}

#[test]
fn presence_member_data_over_2_kb_is_refused_even_with_a_raised_message_size() {
    let server = run(|s| s.max_message_size = 2 * 1024 * 1024);
    let addr = server.local_addr();
    let mut control = Control::join(addr);
    let ch = "presence-big";

    // A first member, to see that refused members are never announced.
    let (mut first, first_sid) = ws(addr);
    let cd = json!({"user_id": "first", "user_info": {}}).to_string();
    let f = subscribe_presence(&mut first, &first_sid, ch, &cd);
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded", "{f}");

    let (mut a, sid) = ws(addr);
    // `user_info` of exactly `len` bytes of JSON: a string of len - 2.
    let cd_of = |user: &str, len: usize| {
        format!(
            "{{\"user_id\":\"{user}\",\"user_info\":\"{}\"}}",
            "x".repeat(len - 2)
        )
    };
    for len in [1024 * 1024, 2049] {
        assert_limit_reached(
            &subscribe_presence(&mut a, &sid, ch, &cd_of("big", len)),
            ch,
            "max_member_size",
        );
    }
    assert_eq!(refusals(addr, "max_member_size"), 2);

    // The first member heard nothing of them: its next frame is a marker.
    publish(addr, ch, "marker", "m1");
    assert_eq!(next(&mut first)["event"], "marker");

    // 2,048 bytes is within the bound.
    let f = subscribe_presence(&mut a, &sid, ch, &cd_of("fits", 2048));
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded", "{f}");
    let roster = decode_data(&f);
    assert_eq!(roster["presence"]["count"], 2, "{roster}");
    let added = next(&mut first);
    assert_eq!(added["event"], "pusher_internal:member_added", "{added}");
    assert_eq!(decode_data(&added)["user_id"], "fits");
    control.still_receives(addr);
}

#[test]
fn an_apps_own_member_limits_win_over_the_server_wide_ones() {
    let server = run(|s| {
        s.max_user_id_length = 4;
        s.apps[0].max_member_size = Some(10);
    });
    let addr = server.local_addr();
    let mut control = Control::join(addr);
    let (mut a, sid) = ws(addr);
    let ch = "presence-app";
    let cd = json!({"user_id": "abcde", "user_info": 1}).to_string();
    assert_limit_reached(
        &subscribe_presence(&mut a, &sid, ch, &cd),
        ch,
        "max_user_id_length",
    );
    let cd = json!({"user_id": "abcd", "user_info": "123456789"}).to_string();
    assert_limit_reached(
        &subscribe_presence(&mut a, &sid, ch, &cd),
        ch,
        "max_member_size",
    );
    let cd = json!({"user_id": "abcd", "user_info": "12345678"}).to_string();
    let f = subscribe_presence(&mut a, &sid, ch, &cd);
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded", "{f}");
    control.still_receives(addr);
}

#[test]
fn sign_in_user_data_is_bounded_like_a_member_with_a_pusher_error() {
    let server = run(|_| {});
    let addr = server.local_addr();
    let mut control = Control::join(addr);
    let (mut a, sid) = ws(addr);

    let long_id = json!({"id": "u".repeat(129)}).to_string();
    let big_info = json!({"id": "u1", "user_info": {"bio": "x".repeat(2048)}}).to_string();
    for (user_data, limit) in [
        (long_id, "max_user_id_length"),
        (big_info, "max_member_size"),
    ] {
        let f = signin(&mut a, &sid, &user_data);
        assert_eq!(f["event"], "pusher:error", "{f}");
        assert_eq!(f["data"]["code"], 4301, "{f}");
        let message = f["data"]["message"].as_str().unwrap();
        assert!(message.contains(limit), "{message}");
        assert_eq!(refusals(addr, limit), 1);
    }

    // The connection is still usable, and a bounded sign-in succeeds.
    let ok = json!({"id": "u".repeat(128), "user_info": {"name": "Ada"}}).to_string();
    let f = signin(&mut a, &sid, &ok);
    assert_eq!(f["event"], "pusher:signin_success", "{f}");
    control.still_receives(addr);
}

/// Splits a raw HTTP/1.1 response at the end of its head: the head, and
/// every byte after it.
fn head_then_rest(out: &[u8]) -> (String, Vec<u8>) {
    let text = String::from_utf8_lossy(out);
    let (head, rest) = text.split_once("\r\n\r\n").expect("a response head");
    (head.to_owned(), rest.as_bytes().to_vec())
}

#[test]
fn head_requests_get_headers_and_never_a_body() {
    let server = run(|_| {});
    let addr = server.local_addr();
    let mut control = Control::join(addr);

    // HEAD /up on a keep-alive connection, then a GET on the same one: the
    // GET's response starts right after the HEAD's head.
    let out = raw_http(
        addr,
        b"HEAD /up HTTP/1.1\r\nHost: x\r\n\r\nGET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let (head, rest) = head_then_rest(&out);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 2\r\n"), "{head}");
    assert!(head.contains("Connection: keep-alive"), "{head}");
    let (get_head, get_body) = head_then_rest(&rest);
    assert!(get_head.starts_with("HTTP/1.1 200 OK\r\n"), "{get_head}");
    assert_eq!(get_body, b"OK");

    // Every HEAD answer ends at its head: metrics, an unknown path, and a
    // request the transport refuses.
    for (request, status) in [
        (
            &b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            200,
        ),
        (
            b"HEAD /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            404,
        ),
        (b"HEAD /up HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", 400),
    ] {
        let out = raw_http(addr, request);
        let (head, rest) = head_then_rest(&out);
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert!(
            rest.is_empty(),
            "HEAD got a body: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    control.still_receives(addr);
}

#[test]
fn a_content_length_that_is_not_only_digits_is_400_and_closes() {
    let server = run(|_| {});
    let addr = server.local_addr();
    let mut control = Control::join(addr);
    let body = json!({"name":"smuggled","channel":"control","data":"x"}).to_string();
    let q = signed_query("POST", "/apps/1/events", &[], &body, SECRET, now_unix());
    for length in [
        format!("+{}", body.len()),
        format!("{}, {}", body.len(), body.len()),
        String::new(),
        "184467440737095516160".to_owned(),
        format!("{}\r\nContent-Length: {}", body.len(), body.len() + 1),
    ] {
        let req = format!(
            "POST /apps/1/events?{q} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{body}"
        );
        // The server answers and closes: read_to_end returns.
        let out = raw_http(addr, req.as_bytes());
        let (head, _) = head_then_rest(&out);
        assert!(head.starts_with("HTTP/1.1 400 "), "{length:?}: {head}");
        assert!(head.contains("Connection: close"), "{head}");
    }
    // Nothing was published: the control client's next frame is its own.
    control.still_receives(addr);
}

#[test]
fn binary_frames_get_a_pusher_error_and_the_connection_stays() {
    let server = run(|_| {});
    let addr = server.local_addr();
    let mut control = Control::join(addr);
    let (mut a, _) = ws(addr);

    // A valid subscribe, but in a binary frame: refused, not parsed.
    let subscribe = json!({"event":"pusher:subscribe","data":{"channel":"bin"}}).to_string();
    a.send(Message::binary(subscribe.into_bytes())).unwrap();
    let f = next(&mut a);
    assert_eq!(f["event"], "pusher:error", "{f}");
    assert!(
        f["data"]["message"].as_str().unwrap().contains("Binary"),
        "{f}"
    );

    // Still open: a text ping is answered, a text subscribe works, and
    // the binary subscribe had no effect (the marker on `bin` is not
    // delivered before the one on `later`).
    send(&mut a, &json!({"event":"pusher:ping","data":{}}));
    assert_eq!(next(&mut a)["event"], "pusher:pong");
    send(
        &mut a,
        &json!({"event":"pusher:subscribe","data":{"channel":"later"}}),
    );
    assert_eq!(
        next(&mut a)["event"],
        "pusher_internal:subscription_succeeded"
    );
    publish(addr, "bin", "on-bin", "1");
    publish(addr, "later", "on-later", "2");
    assert_eq!(next(&mut a)["event"], "on-later");

    let text = metrics(addr);
    assert!(
        text.contains("\nrealtime_binary_messages_refused_total 1\n"),
        "{text}"
    );
    control.still_receives(addr);
}

fn sample(text: &str, name: &str) -> u64 {
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn the_transports_handshake_counters_are_on_metrics() {
    let server = run(|_| {});
    let addr = server.local_addr();
    let mut control = Control::join(addr);
    let before = metrics(addr);
    assert_eq!(
        sample(&before, "realtime_transport_handshake_timeouts_total"),
        0
    );
    assert_eq!(
        sample(&before, "realtime_transport_handshake_failures_total"),
        0
    );
    assert!(
        // OpenMetrics names the counter family without `_total`.
        before.contains("# TYPE realtime_transport_handshake_timeouts counter\n"),
        "{before}"
    );

    // A malformed request and a WebSocket handshake without a key.
    let out = raw_http(addr, b"\x16\x03\x01 not http\r\n\r\n");
    assert!(out.starts_with(b"HTTP/1.1 400 "));
    let out = raw_http(
        addr,
        format!("GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes(),
    );
    assert!(
        out.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let after = metrics(addr);
    assert_eq!(
        sample(&after, "realtime_transport_handshake_failures_total"),
        2
    );
    control.still_receives(addr);
}
