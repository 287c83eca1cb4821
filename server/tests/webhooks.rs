//! Webhooks against a real receiver on loopback that checks every
//! request's signature: occupancy, presence members per user, client
//! events, retries, and a receiver that is down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, TcpListener};

use common::live::*;
use common::*;
use realtime_server::{Running, WebhookTarget};
use serde_json::{json, Value};

mod webhook_receiver;

use webhook_receiver as receiver;

use receiver::Hit;

fn next_hit(r: &receiver::Hooks) -> Hit {
    r.hits.recv_timeout(GUARD).expect("a webhook request")
}

/// The next `n` acknowledged events, in order.
fn events(r: &receiver::Hooks, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let hit = next_hit(r);
        if hit.status == 200 {
            out.extend(hit.body["events"].as_array().unwrap().iter().cloned());
        }
    }
    assert_eq!(out.len(), n, "more events than expected: {out:?}");
    out
}

fn server_with(target: WebhookTarget, retry_ms: u64) -> Running {
    run(|s| {
        s.apps[0].webhooks = vec![target];
        s.webhook_retry_ms = retry_ms;
    })
}

fn unsubscribe(ws: &mut Ws, channel: &str) {
    send_now(
        ws,
        &json!({"event":"pusher:unsubscribe","data":{"channel":channel}}),
    );
}

fn join_presence_ws(ws: &mut Ws, socket_id: &str, channel: &str, user: &str) {
    let data = json!({"user_id": user, "user_info": {"n": 1}}).to_string();
    let auth = presence_auth(socket_id, channel, &data);
    send_now(
        ws,
        &json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":data}}),
    );
    loop {
        let f = next(ws);
        if f["event"] == "pusher_internal:subscription_succeeded" {
            return;
        }
    }
}

#[test]
fn a_public_channel_is_occupied_then_vacated() {
    let rx = receiver::start(&[]);
    let server = server_with(WebhookTarget::new(&rx.url), 60_000);
    let (mut ws, _) = ws(server.local_addr());
    subscribe(&mut ws, "news");
    unsubscribe(&mut ws, "news");
    assert_eq!(
        events(&rx, 2),
        vec![
            json!({"name":"channel_occupied","channel":"news"}),
            json!({"name":"channel_vacated","channel":"news"}),
        ]
    );
}

#[test]
fn two_connections_of_one_user_make_one_member_added_and_one_member_removed() {
    let rx = receiver::start(&[]);
    let server = server_with(WebhookTarget::new(&rx.url), 60_000);
    let (mut a, a_id) = ws(server.local_addr());
    let (mut b, b_id) = ws(server.local_addr());
    join_presence_ws(&mut a, &a_id, "presence-room", "u1");
    join_presence_ws(&mut b, &b_id, "presence-room", "u1");
    unsubscribe(&mut a, "presence-room");
    drop(b); // the last connection goes away without unsubscribing
    assert_eq!(
        events(&rx, 4),
        vec![
            json!({"name":"channel_occupied","channel":"presence-room"}),
            json!({"name":"member_added","channel":"presence-room","user_id":"u1"}),
            json!({"name":"member_removed","channel":"presence-room","user_id":"u1"}),
            json!({"name":"channel_vacated","channel":"presence-room"}),
        ]
    );
    drop(a);
}

#[test]
fn client_events_are_sent_with_their_socket_and_user() {
    let rx = receiver::start(&[]);
    let mut target = WebhookTarget::new(&rx.url);
    target.event_types = Some(vec!["client_event".into()]);
    let server = server_with(target, 60_000);
    let (mut a, a_id) = ws(server.local_addr());
    let (mut b, b_id) = ws(server.local_addr());
    join_presence_ws(&mut a, &a_id, "presence-chat", "ann");
    join_presence_ws(&mut b, &b_id, "presence-chat", "bob");
    send_now(
        &mut a,
        &json!({"event":"client-typing","channel":"presence-chat","data":{"on":true}}),
    );
    // Bob gets the event (after Ann's member_added): it went through.
    loop {
        if next(&mut b)["event"] == "client-typing" {
            break;
        }
    }
    assert_eq!(
        events(&rx, 1),
        vec![json!({
            "name":"client_event","channel":"presence-chat","event":"client-typing",
            "data":"{\"on\":true}","socket_id":a_id,"user_id":"ann"
        })]
    );
}

#[test]
fn a_receiver_failing_twice_gets_the_batch_once_after_retries() {
    let rx = receiver::start(&[500, 500]);
    let server = server_with(WebhookTarget::new(&rx.url), 60_000);
    let (mut ws, _) = ws(server.local_addr());
    subscribe(&mut ws, "retry-me");
    let (first, second, third) = (next_hit(&rx), next_hit(&rx), next_hit(&rx));
    assert_eq!((first.status, second.status, third.status), (500, 500, 200));
    // The same batch each time: one id, one body.
    assert_eq!(first.id, third.id);
    assert_eq!(first.body, third.body);
    assert_eq!(
        third.body["events"],
        json!([{"name":"channel_occupied","channel":"retry-me"}])
    );
    eventually("the acknowledgement counted", || {
        metric(&server, "realtime_webhooks_sent_total ") == 1
    });
    assert_eq!(metric(&server, "realtime_webhooks_failed_total "), 2);
    assert_eq!(metric(&server, "realtime_webhooks_retried_total "), 2);
    // Nothing more comes: the vacated of a second channel is next.
    subscribe(&mut ws, "other");
    let hit = next_hit(&rx);
    assert_eq!(hit.status, 200);
    assert_eq!(
        hit.body["events"],
        json!([{"name":"channel_occupied","channel":"other"}])
    );
}

#[test]
fn a_receiver_that_is_down_costs_dropped_events_and_nothing_else() {
    // A port with nothing listening.
    let free: SocketAddr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let server = server_with(WebhookTarget::new(format!("http://{free}/hooks")), 300);
    let (mut ws, _) = ws(server.local_addr());
    let control = Control::new(server.local_addr());
    subscribe(&mut ws, "lost");
    eventually("the batch dropped after the retry budget", || {
        server
            .node()
            .render_metrics()
            .contains("realtime_webhooks_dropped_total{reason=\"retry_budget\"} 2\n")
    });
    assert!(metric(&server, "realtime_webhooks_failed_total ") >= 2);
    assert_eq!(metric(&server, "realtime_webhooks_sent_total "), 0);
    eventually("the queue empty", || {
        metric(&server, "realtime_webhook_queue_depth ") == 0
    });
    // The gateway kept serving all along.
    control.still_served(server.local_addr());
}

#[test]
fn a_subscriber_finding_an_empty_cache_channel_fires_cache_miss() {
    let rx = receiver::start(&[]);
    let mut target = WebhookTarget::new(&rx.url);
    target.event_types = Some(vec!["cache_miss".into()]);
    let server = server_with(target, 60_000);
    let (mut ws, _) = ws(server.local_addr());
    subscribe(&mut ws, "cache-prices");
    assert_eq!(
        events(&rx, 1),
        vec![json!({"name":"cache_miss","channel":"cache-prices"})]
    );
}
