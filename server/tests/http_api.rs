//! The HTTP API: authentication edge cases, publishing, channel queries,
//! health and metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use realtime_server::auth;
use serde_json::json;

fn raw(g: &realtime_server::Node, method: &str, path: &str, query: &str, body: &str) -> Reply {
    g.api()
        .http(&request(method, path, query), body.as_bytes())
        .into()
}

#[test]
fn pusher_md_worked_example_verifies() {
    let msg = auth::channel_string("1234.1234", "private-foobar", None);
    let sig = "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
    assert_eq!(auth::sign("7ad3773142a6692b25b8", &msg), sig);
    assert!(auth::verify_token(
        "278d425bdf160c739803",
        "7ad3773142a6692b25b8",
        &format!("278d425bdf160c739803:{sig}"),
        &msg
    )
    .is_ok());
}

#[test]
fn events_are_published_with_double_encoded_data_and_answer_empty_object() {
    let g = gateway();
    let a = connect(&g);
    let b = connect(&g);
    subscribe_public(&g, &a, "c1");
    subscribe_public(&g, &b, "c2");
    let body = json!({"name":"ev","channels":["c1","c2"],"data":"{\"x\":1}"}).to_string();
    let v = api_json(&g, "POST", "/apps/1/events", &[], &body);
    assert_eq!(v, json!({}));
    assert_eq!(
        a.recv(),
        json!({"event":"ev","channel":"c1","data":"{\"x\":1}"})
    );
    assert_eq!(
        b.recv(),
        json!({"event":"ev","channel":"c2","data":"{\"x\":1}"})
    );
    // Non-string data is sent as its JSON text.
    let body = json!({"name":"ev","channel":"c1","data":{"y":2}}).to_string();
    api_json(&g, "POST", "/apps/1/events", &[], &body);
    assert_eq!(a.recv()["data"], "{\"y\":2}");
}

#[test]
fn a_single_node_publish_fans_out_on_the_publishing_thread() {
    // `Node::new` is the binary's single node: it delivers on the
    // publishing thread (issue 16 item 1), so the subscriber's transport is
    // woken by the thread that called the HTTP API, before it answers;
    // through a bus thread the wake would come from that thread.
    use realtime_server::UpgradeDecision;
    use std::sync::Mutex;
    use std::thread::ThreadId;

    struct Wakes(Mutex<Vec<ThreadId>>);
    impl realtime::Transport for Wakes {
        fn wake(&self) {
            self.0.lock().unwrap().push(std::thread::current().id());
        }
        fn closed(&self) {}
    }

    let g = gateway();
    let UpgradeDecision::Accept(app) = g.gateway().upgrade(&format!("/app/{KEY}"), Some("7"))
    else {
        panic!("upgrade refused");
    };
    let wakes = std::sync::Arc::new(Wakes(Mutex::new(Vec::new())));
    let client = app
        .hub()
        .attach(wakes.clone(), UpgradeDecision::auth(&app))
        .unwrap();
    g.gateway().open(&client).unwrap();
    let sub = json!({"event":"pusher:subscribe","data":{"channel":"solo"}});
    g.gateway()
        .handle_message(&client, sub.to_string().as_bytes());
    assert_eq!(client.subscription_count(), 1);
    // Drain what the subscribe queued, as a transport would.
    loop {
        while client.pop_frame().is_some() {}
        if !client.finish_drain() {
            break;
        }
    }
    wakes.0.lock().unwrap().clear();

    let body = json!({"name":"e","channel":"solo","data":"d"}).to_string();
    api_json(&g, "POST", "/apps/1/events", &[], &body);
    assert_eq!(
        *wakes.0.lock().unwrap(),
        vec![std::thread::current().id()],
        "one wake, from the publishing thread, before the API answered"
    );
    assert_eq!(client.pending(), 1);
}

#[test]
fn socket_id_excludes_that_connection() {
    let g = gateway();
    let a = connect(&g);
    let b = connect(&g);
    subscribe_public(&g, &a, "room");
    subscribe_public(&g, &b, "room");
    let body = json!({"name":"ev","channel":"room","data":"d","socket_id":a.socket_id}).to_string();
    api_json(&g, "POST", "/apps/1/events", &[], &body);
    assert_eq!(b.recv()["event"], "ev");
    marker(&g, "room");
    assert_eq!(a.recv()["event"], "marker");
    assert_eq!(b.recv()["event"], "marker");
}

#[test]
fn batch_events_are_published_and_limited_to_ten() {
    let g = gateway();
    let a = connect(&g);
    subscribe_public(&g, &a, "b");
    let batch: Vec<_> = (0..3)
        .map(|i| json!({"name":"ev","channel":"b","data":i.to_string()}))
        .collect();
    let v = api_json(
        &g,
        "POST",
        "/apps/1/batch_events",
        &[],
        &json!({"batch":batch}).to_string(),
    );
    assert_eq!(v, json!({}));
    for i in 0..3 {
        assert_eq!(a.recv()["data"], i.to_string());
    }
    let batch: Vec<_> = (0..11)
        .map(|_| json!({"name":"ev","channel":"b","data":"x"}))
        .collect();
    let r = api(
        &g,
        "POST",
        "/apps/1/batch_events",
        &[],
        &json!({"batch":batch}).to_string(),
    );
    assert_eq!(r.status, 400);
    // A bad event anywhere in the batch publishes nothing.
    let batch = json!({"batch":[{"name":"ok","channel":"b","data":"1"},{"name":"bad","channel":"a b","data":"1"}]});
    assert_eq!(
        api(&g, "POST", "/apps/1/batch_events", &[], &batch.to_string()).status,
        400
    );
    marker(&g, "b");
    assert_eq!(a.recv()["event"], "marker");
}

#[test]
fn event_limits_give_400_and_413() {
    let g = gateway();
    let channels: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let body = json!({"name":"e","channels":channels,"data":"x"}).to_string();
    assert_eq!(api(&g, "POST", "/apps/1/events", &[], &body).status, 400);
    let body = json!({"name":"e","channel":"c","data":"x".repeat(10 * 1024 + 1)}).to_string();
    assert_eq!(api(&g, "POST", "/apps/1/events", &[], &body).status, 413);
    let body = json!({"name":"e","channel":"c","data":"x".repeat(10 * 1024)}).to_string();
    assert_eq!(api(&g, "POST", "/apps/1/events", &[], &body).status, 200);
    for bad in [
        json!({"channel":"c","data":"x"}),
        json!({"name":"e","data":"x"}),
        json!({"name":"e","channel":"c"}),
        json!({"name":"e","channel":"bad name","data":"x"}),
        json!({"name":"e","channel":"c","data":"x","socket_id":"nope"}),
    ] {
        let r = api(&g, "POST", "/apps/1/events", &[], &bad.to_string());
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    assert_eq!(
        api(&g, "POST", "/apps/1/events", &[], "{not json").status,
        400
    );
}

#[test]
fn wrong_secret_is_401() {
    let g = gateway();
    let body = r#"{"name":"e","channel":"c","data":"x"}"#;
    let q = signed_query(
        "POST",
        "/apps/1/events",
        &[],
        body,
        "wrong-secret",
        now_unix(),
    );
    let r = raw(&g, "POST", "/apps/1/events", &q, body);
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Invalid signature"), "{}", r.body);
}

#[test]
fn stale_and_future_timestamps_are_401_within_600_s_is_fine() {
    let g = gateway();
    let now = now_unix();
    for (ts, status) in [
        (now - 601, 401),
        (now + 601, 401),
        (now - 590, 200),
        (now + 590, 200),
    ] {
        let q = signed_query("GET", "/apps/1/channels", &[], "", SECRET, ts);
        let r: Reply = g
            .api()
            .http_at(&request("GET", "/apps/1/channels", &q), b"", now)
            .into();
        assert_eq!(r.status, status, "ts {ts}: {}", r.body);
    }
}

#[test]
fn body_md5_must_match_and_be_present_with_a_body() {
    let g = gateway();
    let body = r#"{"name":"e","channel":"c","data":"x"}"#;
    let q = signed_query("POST", "/apps/1/events", &[], body, SECRET, now_unix());
    // The same signed query with another body.
    let r = raw(
        &g,
        "POST",
        "/apps/1/events",
        &q,
        r#"{"name":"e","channel":"c","data":"y"}"#,
    );
    assert_eq!(r.status, 401);
    assert!(r.body.contains("body_md5"), "{}", r.body);
    // Signed without body_md5 but sent with a body.
    let q = signed_query("POST", "/apps/1/events", &[], "", SECRET, now_unix());
    let r = raw(&g, "POST", "/apps/1/events", &q, body);
    assert_eq!(r.status, 401);
}

#[test]
fn missing_or_wrong_auth_params_are_401() {
    let g = gateway();
    let q = signed_query("GET", "/apps/1/channels", &[], "", SECRET, now_unix());
    for drop in [
        "auth_key",
        "auth_timestamp",
        "auth_version",
        "auth_signature",
    ] {
        let without: Vec<&str> = q
            .split('&')
            .filter(|kv| !kv.starts_with(&format!("{drop}=")))
            .collect();
        let r = raw(&g, "GET", "/apps/1/channels", &without.join("&"), "");
        assert_eq!(r.status, 401, "without {drop}");
        if drop != "auth_signature" {
            assert!(r.body.contains(drop), "{}", r.body);
        }
    }
    // Wrong key, wrong version, tampered parameter, repeated parameter.
    let r = raw(
        &g,
        "GET",
        "/apps/1/channels",
        &q.replace("auth_key=key-1", "auth_key=key-2"),
        "",
    );
    assert_eq!(r.status, 401);
    let q2 = signed_query(
        "GET",
        "/apps/1/channels",
        &[("auth_version", "2.0")],
        "",
        SECRET,
        now_unix(),
    );
    assert_eq!(raw(&g, "GET", "/apps/1/channels", &q2, "").status, 400); // auth_version given twice
    let q3 = signed_query(
        "GET",
        "/apps/1/channels",
        &[("filter_by_prefix", "a")],
        "",
        SECRET,
        now_unix(),
    );
    let r = raw(
        &g,
        "GET",
        "/apps/1/channels",
        &q3.replace("filter_by_prefix=a", "filter_by_prefix=b"),
        "",
    );
    assert_eq!(r.status, 401);
    // The signature covers the path.
    let r = raw(&g, "GET", "/apps/1/channels/x", &q, "");
    assert_eq!(r.status, 401);
}

#[test]
fn upper_case_keys_and_escaped_values_verify() {
    let g = gateway();
    // Signed over lower-cased, decoded pairs; sent with an escaped value.
    let ts = now_unix().to_string();
    let params = vec![
        ("auth_key".to_owned(), KEY.to_owned()),
        ("auth_timestamp".to_owned(), ts.clone()),
        ("auth_version".to_owned(), "1.0".to_owned()),
        ("filter_by_prefix".to_owned(), "presence-".to_owned()),
        ("info".to_owned(), "user_count".to_owned()),
    ];
    let sig = auth::sign(
        SECRET,
        &auth::api_string_to_sign("GET", "/apps/1/channels", &params),
    );
    let q = format!("Auth_Key={KEY}&auth_timestamp={ts}&auth_version=1.0&filter_by_prefix=presence%2D&info=user_count&auth_signature={sig}");
    let r = raw(&g, "GET", "/apps/1/channels", &q, "");
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn channels_listing_filters_by_prefix_and_counts_users() {
    let g = gateway();
    let a = connect(&g);
    let a2 = connect(&g);
    let b = connect(&g);
    subscribe_public(&g, &a, "news");
    join_presence(&g, &a, "presence-room", "1");
    join_presence(&g, &a2, "presence-room", "1");
    join_presence(&g, &b, "presence-room", "2");
    let v = api_json(&g, "GET", "/apps/1/channels", &[], "");
    assert_eq!(v, json!({"channels":{"news":{},"presence-room":{}}}));
    let v = api_json(
        &g,
        "GET",
        "/apps/1/channels",
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        "",
    );
    assert_eq!(v, json!({"channels":{"presence-room":{"user_count":2}}}));
    let r = api(&g, "GET", "/apps/1/channels", &[("info", "user_count")], "");
    assert_eq!(r.status, 400);
}

#[test]
fn channel_info_and_users() {
    let g = gateway();
    let a = connect(&g);
    let a2 = connect(&g);
    join_presence(&g, &a, "presence-r", "1");
    join_presence(&g, &a2, "presence-r", "1");
    let v = api_json(
        &g,
        "GET",
        "/apps/1/channels/presence-r",
        &[("info", "user_count,subscription_count")],
        "",
    );
    assert_eq!(
        v,
        json!({"occupied":true,"user_count":1,"subscription_count":2})
    );
    let v = api_json(&g, "GET", "/apps/1/channels/empty", &[], "");
    assert_eq!(v, json!({"occupied":false}));
    let v = api_json(&g, "GET", "/apps/1/channels/presence-r/users", &[], "");
    assert_eq!(v, json!({"users":[{"id":"1"}]}));
    assert_eq!(
        api(&g, "GET", "/apps/1/channels/public/users", &[], "").status,
        400
    );
    assert_eq!(
        api(
            &g,
            "GET",
            "/apps/1/channels/public",
            &[("info", "user_count")],
            ""
        )
        .status,
        400
    );
}

#[test]
fn unknown_apps_routes_and_methods() {
    let g = gateway();
    assert_eq!(api(&g, "GET", "/apps/9/channels", &[], "").status, 404);
    assert_eq!(api(&g, "GET", "/apps/1/nothing", &[], "").status, 404);
    assert_eq!(api(&g, "GET", "/apps/1/events", &[], "").status, 405);
    assert_eq!(raw(&g, "GET", "/elsewhere", "", "").status, 404);
}

#[test]
fn up_and_metrics() {
    let g = gateway();
    let r = raw(&g, "GET", "/up", "", "");
    assert_eq!((r.status, r.body.as_str()), (200, "OK"));
    let p = connect(&g);
    subscribe_public(&g, &p, "m");
    let _ = api(&g, "GET", "/apps/9/channels", &[], "");
    let r = raw(&g, "GET", "/metrics", "", "");
    assert_eq!(r.status, 200);
    // OpenMetrics text, as prometheus-client writes it.
    assert!(r.content_type.starts_with("application/openmetrics-text"));
    assert!(
        r.body.contains("realtime_connections{app=\"1\"} 1\n"),
        "{}",
        r.body
    );
    assert!(r.body.contains("realtime_channels{app=\"1\"} 1\n"));
    assert!(r
        .body
        .contains("realtime_http_requests_total{status=\"404\"} 1\n"));
    assert!(r.body.contains("realtime_messages_in_total 1\n"));
}

#[test]
fn events_with_info_answer_channel_attributes() {
    let g = gateway();
    let a = connect(&g);
    join_presence(&g, &a, "presence-i", "7");
    subscribe_public(&g, &a, "pub-i");
    let body = json!({"name":"e","channels":["presence-i"],"data":"x","info":"user_count,subscription_count"}).to_string();
    let v = api_json(&g, "POST", "/apps/1/events", &[], &body);
    assert_eq!(
        v,
        json!({"channels":{"presence-i":{"user_count":1,"subscription_count":1}}})
    );
    let batch = json!({"batch":[{"name":"e","channel":"pub-i","data":"x","info":"subscription_count"},{"name":"e","channel":"none","data":"x"}]});
    let v = api_json(&g, "POST", "/apps/1/batch_events", &[], &batch.to_string());
    assert_eq!(v, json!({"batch":[{"subscription_count":1},{}]}));
    let body = json!({"name":"e","channel":"pub-i","data":"x","info":"user_count"}).to_string();
    assert_eq!(api(&g, "POST", "/apps/1/events", &[], &body).status, 400);
}
