//! The dashboard (issue 17): off without a token, the login and its
//! session cookie, the API behind it, and the debug feed's ring under a
//! dashboard that stopped reading.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use realtime_mio::{HttpResponse, Request};
use realtime_server::{DashboardToken, Node, Settings};
use serde_json::{json, Value};

const TOKEN: &str = "let-me-in-please";

fn with_dashboard() -> Arc<Node> {
    let settings = Settings {
        dashboard_token: Some(DashboardToken::new(TOKEN)),
        ..settings()
    };
    Arc::new(Node::new(&settings).unwrap())
}

fn req(method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Request {
    let mut r = request(method, path, query);
    r.headers = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    r
}

fn header<'a>(r: &'a HttpResponse, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn login(g: &Node, token: &str) -> HttpResponse {
    let body = format!("token={token}");
    g.api().http(
        &req(
            "POST",
            "/dashboard/login",
            "",
            &[("Content-Type", "application/x-www-form-urlencoded")],
        ),
        body.as_bytes(),
    )
}

/// Logs in and returns the `Cookie` header value to send back.
fn session(g: &Node) -> String {
    let r = login(g, TOKEN);
    assert_eq!(r.status, 302);
    let set = header(&r, "set-cookie").unwrap();
    set.split(';').next().unwrap().to_owned()
}

fn get(g: &Node, path: &str, query: &str, cookie: &str) -> HttpResponse {
    g.api()
        .http(&req("GET", path, query, &[("Cookie", cookie)]), b"")
}

fn get_json(g: &Node, path: &str, query: &str, cookie: &str) -> Value {
    let r = get(g, path, query, cookie);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

const API: [&str; 4] = [
    "/dashboard/api/overview",
    "/dashboard/api/channels",
    "/dashboard/api/members",
    "/dashboard/api/feed",
];

#[test]
fn without_a_token_every_dashboard_path_is_404() {
    let g = gateway();
    for path in ["/dashboard", "/dashboard/", "/dashboard/app.js"]
        .into_iter()
        .chain(API)
    {
        assert_eq!(get(&g, path, "", "").status, 404, "{path}");
    }
    assert_eq!(login(&g, TOKEN).status, 404);
}

#[test]
fn the_right_token_sets_a_strict_http_only_session_cookie() {
    let g = with_dashboard();
    let page = get(&g, "/dashboard", "", "");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains(r#"name="token""#));
    let r = login(&g, TOKEN);
    assert_eq!(r.status, 302);
    assert_eq!(header(&r, "location"), Some("/dashboard"));
    let set = header(&r, "set-cookie").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/dashboard"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(
        !set.contains(TOKEN),
        "the cookie is a session id, not the token"
    );
    let cookie = set.split(';').next().unwrap();
    let page = get(&g, "/dashboard", "", cookie);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains(r#"data-testid="connections""#), "{html}");
    assert!(header(&page, "content-security-policy")
        .unwrap()
        .contains("default-src 'self'"));
}

#[test]
fn a_wrong_token_is_refused_and_no_api_answers_without_the_session() {
    let g = with_dashboard();
    let r = login(&g, "not-the-token");
    assert_eq!(r.status, 401);
    assert!(header(&r, "set-cookie").is_none());
    for path in API {
        assert_eq!(get(&g, path, "", "").status, 401, "{path}");
        let forged = "realtime_dashboard=00ff";
        assert_eq!(get(&g, path, "", forged).status, 401, "{path}");
    }
    let post = g.api().http(
        &req(
            "POST",
            "/dashboard/api/events",
            "",
            &[("Content-Type", "application/json")],
        ),
        br#"{"app":"1","channel":"c","event":"e","data":"{}"}"#,
    );
    assert_eq!(post.status, 401);
    assert!(metric_of(&g, "realtime_dashboard_login_failures_total ") >= 1);
}

#[test]
fn wrong_tokens_are_rate_limited() {
    let g = with_dashboard();
    let statuses: Vec<u16> = (0..12)
        .map(|_| login(&g, "guessing-token").status)
        .collect();
    assert_eq!(statuses[0], 401);
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    // Limited means not even the right token is looked at for now.
    assert_eq!(login(&g, TOKEN).status, 429);
}

#[test]
fn the_overview_and_channels_count_clients_and_never_carry_secrets() {
    let g = with_dashboard();
    let cookie = session(&g);
    let a = connect(&g);
    let b = connect(&g);
    subscribe_public(&g, &a, "room-1");
    subscribe_public(&g, &b, "room-1");
    join_presence(&g, &a, "presence-lobby", "u1");
    let o = get_json(&g, "/dashboard/api/overview", "", &cookie);
    let app = &o["apps"][0];
    assert_eq!(app["id"], APP_ID);
    assert_eq!(app["connections"], 2);
    assert_eq!(app["presence_users"], 1);
    // Each app carries its own rate history (empty after one sample).
    assert_eq!(app["rates"], json!([]));
    let c = get_json(&g, "/dashboard/api/channels", "app=1&prefix=room-", &cookie);
    assert_eq!(
        c["channels"],
        json!([{"name":"room-1","occupied":true,"subscription_count":2,"user_count":null}])
    );
    let m = get_json(
        &g,
        "/dashboard/api/members",
        "app=1&channel=presence-lobby",
        &cookie,
    );
    assert_eq!(m["members"][0]["id"], "u1");
    for body in [o.to_string(), c.to_string(), m.to_string()] {
        assert!(
            !body.contains(SECRET) && !body.contains("secret-2"),
            "{body}"
        );
    }
}

#[test]
fn the_event_creator_publishes_through_the_api_path() {
    let g = with_dashboard();
    let cookie = session(&g);
    let a = connect(&g);
    subscribe_public(&g, &a, "news");
    let send = |body: &str, content_type: &str| {
        g.api().http(
            &req(
                "POST",
                "/dashboard/api/events",
                "",
                &[("Cookie", &cookie), ("Content-Type", content_type)],
            ),
            body.as_bytes(),
        )
    };
    let ok = send(
        r#"{"app":"1","channel":"news","event":"flash","data":"{\"n\":1}"}"#,
        "application/json",
    );
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(
        a.recv(),
        json!({"event":"flash","channel":"news","data":"{\"n\":1}"})
    );
    // Checked as the API checks: an invalid channel name is a 400.
    let bad = send(
        r#"{"app":"1","channel":"bad channel","event":"flash","data":"{}"}"#,
        "application/json",
    );
    assert_eq!(bad.status, 400);
    // A form post (what a cross-site page could send) is not accepted.
    let form = send("app=1&channel=news&event=x&data=1", "text/plain");
    assert_eq!(form.status, 415);
}

#[test]
fn the_feed_shows_connections_subscriptions_and_publishes_while_read() {
    let g = with_dashboard();
    let cookie = session(&g);
    // Nothing is recorded before a dashboard reads the feed.
    let early = connect(&g);
    let first = get_json(&g, "/dashboard/api/feed", "app=1", &cookie);
    assert_eq!(first["events"], json!([]));
    let a = connect(&g);
    subscribe_public(&g, &a, "feed-room");
    marker(&g, "feed-room");
    let cursor = first["next"].to_string();
    let f = get_json(
        &g,
        "/dashboard/api/feed",
        &format!("app=1&cursor={cursor}"),
        &cookie,
    );
    let kinds: Vec<&str> = f["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["connection_opened", "subscribed", "api_event"]);
    assert_eq!(f["events"][1]["channel"], "feed-room");
    assert_eq!(f["events"][2]["event"], "marker");
    assert_eq!(f["events"][2]["data"], "m");
    drop(early);
}

#[test]
fn a_stalled_dashboard_never_slows_or_drops_delivery_to_clients() {
    const EVENTS: usize = 2_000;
    let g = with_dashboard();
    let cookie = session(&g);
    // One read turns the feed on; then the dashboard stalls.
    let start = get_json(&g, "/dashboard/api/feed", "app=1", &cookie);
    let capacity = start["capacity"].as_u64().unwrap();
    assert!((EVENTS as u64) > capacity, "the test must overrun the ring");
    let peers: Vec<Peer> = (0..3).map(|_| connect(&g)).collect();
    for p in &peers {
        subscribe_public(&g, p, "firehose");
    }
    for i in 0..EVENTS {
        let body = json!({"name":"tick","channel":"firehose","data":i.to_string()}).to_string();
        api_json(&g, "POST", "/apps/1/events", &[], &body);
    }
    // Every ordinary client gets every event, in order.
    for p in &peers {
        for i in 0..EVENTS {
            let f = p.recv();
            assert_eq!(f["event"], "tick");
            assert_eq!(f["data"], i.to_string());
        }
    }
    assert_eq!(metric_of(&g, "realtime_dropped_frames_total "), 0);
    // The dashboard comes back: the ring kept only its last `capacity`
    // entries and says how many it missed.
    let recorded = (peers.len() * 2 + EVENTS) as u64; // opened + subscribed + publishes
    let f = get_json(&g, "/dashboard/api/feed", "app=1&cursor=0", &cookie);
    assert_eq!(f["missed"].as_u64().unwrap(), recorded - capacity);
    let mut got = f["events"].as_array().unwrap().len() as u64;
    let mut next = f["next"].as_u64().unwrap();
    loop {
        let more = get_json(
            &g,
            "/dashboard/api/feed",
            &format!("app=1&cursor={next}"),
            &cookie,
        );
        let n = more["events"].as_array().unwrap().len() as u64;
        if n == 0 {
            break;
        }
        assert_eq!(more["missed"], 0);
        got += n;
        next = more["next"].as_u64().unwrap();
    }
    assert_eq!(got, capacity);
    assert_eq!(next, recorded);
}

#[test]
fn the_token_comes_from_the_flag_or_the_file_and_must_be_eight_characters() {
    use clap::Parser;
    use realtime_server::{parse_file, Cli};
    let file = parse_file("dashboard_token = \"from-the-file\"").unwrap();
    let cli = Cli::try_parse_from(["realtime-server"]).unwrap();
    let s = Settings::resolve(&cli, file.clone()).unwrap();
    assert_eq!(
        s.dashboard_token.as_ref().map(DashboardToken::expose),
        Some("from-the-file")
    );
    assert!(
        !format!("{s:?}").contains("from-the-file"),
        "never in Debug"
    );
    let cli =
        Cli::try_parse_from(["realtime-server", "--dashboard-token", "from-the-flag"]).unwrap();
    let s = Settings::resolve(&cli, file).unwrap();
    assert_eq!(
        s.dashboard_token.as_ref().map(DashboardToken::expose),
        Some("from-the-flag")
    );
    let short = Cli::try_parse_from(["realtime-server", "--dashboard-token", "short"]).unwrap();
    assert!(Settings::resolve(&short, Default::default()).is_err());
}
