//! The Pusher protocol state machine through the Gateway API, with
//! in-memory connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use realtime_server::code;
use realtime_server::{auth, UpgradeDecision};
use serde_json::json;

#[test]
fn connection_established_comes_first_with_unique_socket_ids() {
    let g = gateway();
    let a = connect(&g);
    let b = connect(&g);
    assert_ne!(a.socket_id, b.socket_id);
    for id in [&a.socket_id, &b.socket_id] {
        let (x, y) = id.split_once('.').unwrap();
        assert!(x.parse::<u64>().is_ok() && y.parse::<u64>().is_ok(), "{id}");
    }
    assert_eq!(
        g.gateway().socket_id(&a.client).as_deref(),
        Some(a.socket_id.as_str())
    );
}

#[test]
fn ping_is_answered_with_pong() {
    let g = gateway();
    let p = connect(&g);
    send(&g, &p, json!({"event":"pusher:ping","data":{}}));
    let f = p.recv();
    assert_eq!(f, json!({"event":"pusher:pong","data":{}}));
}

#[test]
fn upgrade_refuses_unknown_key_bad_protocol_bad_path_and_full_apps() {
    let g = gateway();
    let code_of = |d: UpgradeDecision| match d {
        UpgradeDecision::Refuse { code, frame, .. } => {
            let f: serde_json::Value = serde_json::from_str(&frame).unwrap();
            assert_eq!(f["event"], "pusher:error");
            assert_eq!(f["data"]["code"], code);
            code
        }
        UpgradeDecision::Accept(_) => 0,
    };
    assert_eq!(
        code_of(g.gateway().upgrade("/app/nope", Some("7"))),
        code::APP_NOT_FOUND
    );
    assert_eq!(
        code_of(g.gateway().upgrade("/app/key-1", None)),
        code::NO_PROTOCOL
    );
    assert_eq!(
        code_of(g.gateway().upgrade("/app/key-1", Some("6"))),
        code::UNSUPPORTED_PROTOCOL
    );
    assert_eq!(
        code_of(g.gateway().upgrade("/socket", Some("7"))),
        code::PATH_NOT_FOUND
    );
    assert_eq!(code_of(g.gateway().upgrade("/app/key-1", Some("7"))), 0);
    // App 2 has a quota of one connection.
    let _first = connect_to(&g, "key-2");
    assert_eq!(
        code_of(g.gateway().upgrade("/app/key-2", Some("7"))),
        code::OVER_QUOTA
    );
    assert_eq!(
        metric_of(&g, "realtime_refused_connections_total{code=\"4001\"}"),
        1
    );
}

#[test]
fn upgrade_refuses_over_capacity() {
    let mut s = settings();
    s.max_connections = 1;
    let g = realtime_server::Node::new(&s).unwrap();
    let _p = connect(&g);
    assert!(matches!(
        g.gateway().upgrade("/app/key-1", Some("7")),
        UpgradeDecision::Refuse {
            code: code::OVER_CAPACITY,
            ..
        }
    ));
}

#[test]
fn public_subscribe_succeeds_and_receives_events() {
    let g = gateway();
    let p = connect(&g);
    subscribe_public(&g, &p, "orders");
    let body = json!({"name":"created","channel":"orders","data":"{\"id\":1}"}).to_string();
    api_json(&g, "POST", "/apps/1/events", &[], &body);
    let f = p.recv();
    assert_eq!(
        f,
        json!({"event":"created","channel":"orders","data":"{\"id\":1}"})
    );
}

#[test]
fn private_subscribe_checks_the_signature_against_the_socket_id() {
    let g = gateway();
    let p = connect(&g);
    let other = connect(&g);
    subscribe_private(&g, &p, "private-a");
    // A signature made for another socket is refused.
    let stolen = private_auth(&other.socket_id, "private-b");
    send(
        &g,
        &p,
        json!({"event":"pusher:subscribe","data":{"channel":"private-b","auth":stolen}}),
    );
    let f = p.recv();
    assert_eq!(f["event"], "pusher:subscription_error");
    assert_eq!(f["channel"], "private-b");
    let d = decode_data(&f);
    assert_eq!(d["type"], "AuthError");
    assert_eq!(d["status"], 401);
    // Missing auth, and auth signed with the wrong secret.
    send(
        &g,
        &p,
        json!({"event":"pusher:subscribe","data":{"channel":"private-c"}}),
    );
    assert_eq!(p.recv()["event"], "pusher:subscription_error");
    let wrong = format!(
        "{KEY}:{}",
        auth::sign("nope", &format!("{}:private-c", p.socket_id))
    );
    send(
        &g,
        &p,
        json!({"event":"pusher:subscribe","data":{"channel":"private-c","auth":wrong}}),
    );
    assert_eq!(p.recv()["event"], "pusher:subscription_error");
    assert_eq!(
        g.apps()
            .by_id("1")
            .unwrap()
            .hub()
            .channel_count("private-c"),
        0
    );
    assert_eq!(
        g.apps()
            .by_id("1")
            .unwrap()
            .hub()
            .channel_count("private-a"),
        1
    );
}

#[test]
fn invalid_channel_names_are_refused() {
    let g = gateway();
    let p = connect(&g);
    for bad in ["a b".to_owned(), "x".repeat(165), String::new()] {
        send(
            &g,
            &p,
            json!({"event":"pusher:subscribe","data":{"channel":bad}}),
        );
        let f = p.recv();
        assert_eq!(f["event"], "pusher:subscription_error", "{f}");
        assert_eq!(decode_data(&f)["status"], 400);
    }
    subscribe_public(&g, &p, &"x".repeat(164));
}

#[test]
fn presence_roster_includes_self_and_joins_reach_others_only() {
    let g = gateway();
    let a = connect(&g);
    let b = connect(&g);
    let roster = join_presence(&g, &a, "presence-room", "1");
    assert_eq!(roster["presence"]["ids"], json!(["1"]));
    assert_eq!(roster["presence"]["count"], 1);
    assert_eq!(roster["presence"]["hash"]["1"]["name"], "n1");

    let roster = join_presence(&g, &b, "presence-room", "2");
    assert_eq!(roster["presence"]["ids"], json!(["1", "2"]));
    assert_eq!(roster["presence"]["count"], 2);
    let added = a.recv_event("pusher_internal:member_added");
    assert_eq!(added, json!({"user_id":"2","user_info":{"name":"n2"}}));

    // A second connection of user 2: no member_added, a roster of two.
    let b2 = connect(&g);
    let roster = join_presence(&g, &b2, "presence-room", "2");
    assert_eq!(roster["presence"]["count"], 2);
    // b did not see its own join, nor the second tab: the marker is next.
    marker(&g, "presence-room");
    assert_eq!(b.recv()["event"], "marker");
    assert_eq!(a.recv()["event"], "marker");

    // Leaving: user 2 is removed only with its last connection.
    send(
        &g,
        &b,
        json!({"event":"pusher:unsubscribe","data":{"channel":"presence-room"}}),
    );
    marker(&g, "presence-room");
    assert_eq!(a.recv()["event"], "marker");
    b2.client.close();
    g.gateway().close(&b2.client);
    let removed = a.recv_event("pusher_internal:member_removed");
    assert_eq!(removed, json!({"user_id":"2"}));
}

#[test]
fn presence_needs_channel_data_with_user_id_signed() {
    let g = gateway();
    let p = connect(&g);
    let auth = presence_auth(&p.socket_id, "presence-x", "{}");
    send(
        &g,
        &p,
        json!({"event":"pusher:subscribe","data":{"channel":"presence-x","auth":auth,"channel_data":"{}"}}),
    );
    assert_eq!(p.recv()["event"], "pusher:subscription_error");
    // Signed data differs from the data sent.
    let auth = presence_auth(&p.socket_id, "presence-x", r#"{"user_id":"1"}"#);
    send(
        &g,
        &p,
        json!({"event":"pusher:subscribe","data":{"channel":"presence-x","auth":auth,"channel_data":"{\"user_id\":\"2\"}"}}),
    );
    assert_eq!(p.recv()["event"], "pusher:subscription_error");
    assert!(g
        .apps()
        .by_id("1")
        .unwrap()
        .hub()
        .presence("presence-x")
        .is_empty());
}

#[test]
fn client_events_reach_other_subscribers_but_not_the_sender() {
    let g = gateway();
    let a = connect(&g);
    let b = connect(&g);
    subscribe_private(&g, &a, "private-chat");
    subscribe_private(&g, &b, "private-chat");
    send(
        &g,
        &a,
        json!({"event":"client-typing","channel":"private-chat","data":{"who":"a"}}),
    );
    let f = b.recv();
    assert_eq!(
        f,
        json!({"event":"client-typing","channel":"private-chat","data":{"who":"a"}})
    );
    marker(&g, "private-chat");
    assert_eq!(a.recv()["event"], "marker");
}

#[test]
fn client_events_on_presence_carry_the_user_id() {
    let g = gateway();
    let a = connect(&g);
    let b = connect(&g);
    join_presence(&g, &a, "presence-p", "u1");
    join_presence(&g, &b, "presence-p", "u2");
    a.recv_event("pusher_internal:member_added");
    send(
        &g,
        &a,
        json!({"event":"client-hi","channel":"presence-p","data":"x"}),
    );
    let f = b.recv();
    assert_eq!(f["user_id"], "u1");
    assert_eq!(f["data"], "x");
}

#[test]
fn client_events_are_refused_on_public_encrypted_and_unsubscribed_channels() {
    let g = gateway();
    let a = connect(&g);
    subscribe_public(&g, &a, "pub");
    subscribe_private(&g, &a, "private-encrypted-x");
    for ch in ["pub", "private-encrypted-x", "private-notjoined"] {
        send(&g, &a, json!({"event":"client-x","channel":ch,"data":{}}));
        let f = a.recv();
        assert_eq!(f["event"], "pusher:error", "{ch}: {f}");
    }
    // Clients never send pusher_internal events.
    send(
        &g,
        &a,
        json!({"event":"pusher_internal:member_added","channel":"pub","data":{}}),
    );
    assert_eq!(a.recv()["event"], "pusher:error");
}

#[test]
fn client_events_over_ten_per_second_get_4301() {
    let g = gateway();
    let a = connect(&g);
    let b = connect(&g);
    subscribe_private(&g, &a, "private-r");
    subscribe_private(&g, &b, "private-r");
    let t = Instant::now();
    for i in 0..11 {
        let msg = json!({"event":"client-n","channel":"private-r","data":i}).to_string();
        g.gateway().handle_message_at(&a.client, msg.as_bytes(), t);
    }
    let f = a.recv();
    assert_eq!(f["event"], "pusher:error");
    assert_eq!(f["data"]["code"], 4301);
    for i in 0..10 {
        assert_eq!(b.recv()["data"], i);
    }
    // A second later the bucket has refilled.
    let msg = json!({"event":"client-n","channel":"private-r","data":99}).to_string();
    g.gateway()
        .handle_message_at(&a.client, msg.as_bytes(), t + Duration::from_secs(1));
    assert_eq!(b.recv()["data"], 99);
}

#[test]
fn malformed_messages_get_an_error_and_the_connection_lives() {
    let g = gateway();
    let p = connect(&g);
    for bad in [
        &b"not json"[..],
        b"[]",
        b"{\"event\":\"pusher:subscribe\"}",
        b"\xff\xfe",
    ] {
        g.gateway().handle_message(&p.client, bad);
        assert_eq!(p.recv()["event"], "pusher:error");
    }
    send(&g, &p, json!({"event":"pusher:ping","data":{}}));
    assert_eq!(p.recv()["event"], "pusher:pong");
    assert!(metric_of(&g, "realtime_errors_sent_total{code=\"none\"}") >= 4);
}

#[test]
fn signin_then_server_to_user_channel_and_termination() {
    let g = gateway();
    let p = connect(&g);
    let other = connect(&g);
    let user_data = r#"{"id":"42","name":"Ada"}"#;
    let sig = auth::sign(SECRET, &auth::user_string(&p.socket_id, user_data));
    // The other connection may not join user 42's channel.
    send(
        &g,
        &other,
        json!({"event":"pusher:subscribe","data":{"channel":"#server-to-user-42","auth":""}}),
    );
    assert_eq!(other.recv()["event"], "pusher:subscription_error");

    send(
        &g,
        &p,
        json!({"event":"pusher:signin","data":{"auth":format!("{KEY}:{sig}"),"user_data":user_data}}),
    );
    let d = p.recv_event("pusher:signin_success");
    assert_eq!(d["user_data"], user_data);
    subscribe_public(&g, &p, "#server-to-user-42");
    let body = json!({"name":"note","channel":"#server-to-user-42","data":"hi"}).to_string();
    api_json(&g, "POST", "/apps/1/events", &[], &body);
    assert_eq!(p.recv()["data"], "hi");

    api_json(
        &g,
        "POST",
        "/apps/1/users/42/terminate_connections",
        &[],
        "",
    );
    assert!(p.client.is_closed());
    assert_eq!(p.client.close_reason().map(|(c, _)| c), Some(4009));
    assert!(!other.client.is_closed());
    assert_eq!(
        metric_of(&g, "realtime_disconnects_total{reason=\"terminated\"}"),
        1
    );
}

#[test]
fn signin_with_a_bad_signature_is_refused() {
    let g = gateway();
    let p = connect(&g);
    let user_data = r#"{"id":"42"}"#;
    let sig = auth::sign(SECRET, &auth::user_string("1.1", user_data));
    send(
        &g,
        &p,
        json!({"event":"pusher:signin","data":{"auth":format!("{KEY}:{sig}"),"user_data":user_data}}),
    );
    let f = p.recv();
    assert_eq!(f["event"], "pusher:error");
    assert_eq!(f["data"]["code"], 4009);
    assert!(g
        .apps()
        .by_id("1")
        .unwrap()
        .user_connections("42")
        .is_empty());
}

#[test]
fn websocket_pings_pongs_and_fragments_reset_the_activity_clock() {
    let g = gateway();
    let p = connect(&g);
    let quiet = connect(&g);
    let t0 = Instant::now();
    // p sends a WebSocket ping at +100 s (the transport's on_activity).
    g.gateway()
        .activity_at(&p.client, t0 + Duration::from_secs(100));
    let s = g.activity().sweep(t0 + Duration::from_secs(125));
    assert_eq!(s.pinged, 1);
    assert_eq!(quiet.recv()["event"], "pusher:ping");
    // Silent 120 s since its ping, p is pinged; quiet, which never
    // answered, is closed.
    let s = g.activity().sweep(t0 + Duration::from_secs(221));
    assert_eq!((s.pinged, s.closed), (1, 1));
    assert_eq!(p.recv()["event"], "pusher:ping");
    assert_eq!(quiet.client.close_reason().map(|(c, _)| c), Some(4201));
    // A WebSocket pong answers p's ping: it stays.
    g.gateway()
        .activity_at(&p.client, t0 + Duration::from_secs(230));
    assert_eq!(
        g.activity().sweep(t0 + Duration::from_secs(260)),
        realtime_server::Swept::default()
    );
    assert!(!p.client.is_closed());
}

#[test]
fn silent_clients_are_pinged_then_closed_with_4201() {
    let g = gateway();
    let p = connect(&g);
    let quiet = connect(&g);
    let t0 = Instant::now();
    assert_eq!(g.activity().sweep(t0 + Duration::from_secs(60)).pinged, 0);
    // p talks at +100 s; quiet does not.
    g.gateway().handle_message_at(
        &p.client,
        br#"{"event":"pusher:ping","data":{}}"#,
        t0 + Duration::from_secs(100),
    );
    assert_eq!(p.recv()["event"], "pusher:pong");
    let s = g.activity().sweep(t0 + Duration::from_secs(125));
    assert_eq!(s.pinged, 1);
    assert_eq!(quiet.recv(), json!({"event":"pusher:ping","data":{}}));
    // Past 30 s without an answer: closed with 4201.
    let s = g.activity().sweep(t0 + Duration::from_secs(156));
    assert_eq!(s.closed, 1);
    assert_eq!(quiet.client.close_reason().map(|(c, _)| c), Some(4201));
    assert!(!p.client.is_closed());
    // p answers its own ping in time and stays.
    let s = g.activity().sweep(t0 + Duration::from_secs(221));
    assert_eq!(s.pinged, 1);
    assert_eq!(p.recv()["event"], "pusher:ping");
    g.gateway().handle_message_at(
        &p.client,
        br#"{"event":"pusher:pong","data":{}}"#,
        t0 + Duration::from_secs(230),
    );
    assert_eq!(
        g.activity().sweep(t0 + Duration::from_secs(260)),
        realtime_server::Swept::default()
    );
    assert!(!p.client.is_closed());
    assert_eq!(
        metric_of(&g, "realtime_disconnects_total{reason=\"pong_timeout\"}"),
        1
    );
}

#[test]
fn apps_are_isolated() {
    let g = gateway();
    let a = connect_to(&g, KEY);
    let b = connect_to(&g, "key-2");
    subscribe_public(&g, &a, "news");
    subscribe_public(&g, &b, "news");
    let body = json!({"name":"e","channel":"news","data":"for app 1"}).to_string();
    api_json(&g, "POST", "/apps/1/events", &[], &body);
    assert_eq!(a.recv()["data"], "for app 1");
    // App 2's client got nothing: its next frame is app 2's own event.
    let body = json!({"name":"e2","channel":"news","data":"for app 2"}).to_string();
    let q = signed_query_as(
        "key-2",
        "POST",
        "/apps/2/events",
        &[],
        &body,
        "secret-2",
        now_unix(),
    );
    let r: Reply = g
        .api()
        .http(&request("POST", "/apps/2/events", &q), body.as_bytes())
        .into();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(b.recv()["data"], "for app 2");
    // App 1's key cannot publish to app 2.
    let r = api(&g, "POST", "/apps/2/events", &[], &body);
    assert_eq!(r.status, 401);
}

#[test]
fn closing_forgets_the_connection_and_frees_its_channels() {
    let g = gateway();
    let p = connect(&g);
    subscribe_public(&g, &p, "c");
    let app = g.apps().by_id("1").unwrap();
    assert_eq!(app.connection_count(), 1);
    p.client.close();
    g.gateway().close(&p.client);
    assert_eq!(app.connection_count(), 0);
    assert_eq!(app.hub().channel_count("c"), 0);
    assert!(app.by_socket_id(&p.socket_id).is_none());
}

#[test]
fn fuzz_hooks_survive_garbage() {
    for input in [
        &b""[..],
        b"\xff",
        b"{\"event\":\"client-x\",\"channel\":\"private-a\",\"data\":",
        b"POST /apps/app-id/events?auth_key=app-key\n{",
    ] {
        realtime_server::fuzz_pusher_message(input);
        realtime_server::fuzz_http_api(input);
    }
}
