//! Presence: R9–R12.

// Tests use the public API from outside the facade; std atomics are fine here.
#![allow(clippy::disallowed_types, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use realtime::{AuthRequest, AuthResult, Hub, Member, PresenceEvent, PresenceMode};
use serde_json::{json, Value};

fn hub(mode: PresenceMode) -> Hub {
    Hub::builder()
        .authorizer(|r: &AuthRequest| {
            // auth = "id|info"
            let s = String::from_utf8_lossy(&r.auth).into_owned();
            let (id, info) = s.split_once('|').unwrap_or((&s, ""));
            AuthResult::allow(Member::new(id, info.to_owned()))
        })
        .presence_mode(mode)
        .build()
}

fn event(v: &Value) -> &str {
    v["event"].as_str().unwrap()
}

#[test]
fn r9_newcomer_gets_the_roster_before_member_added_and_before_any_broadcast() {
    let hub = hub(PresenceMode::PerConnection);
    let (a, pa) = connect_with(&hub, "u1|{\"name\":\"Ada\"}");
    hub.subscribe(&a, "presence-room").unwrap();
    assert_eq!(
        next_json(&pa),
        json!({"event":"presence:subscription_succeeded","channel":"presence-room","members":[]})
    );
    assert_eq!(
        next_json(&pa),
        json!({"event":"presence:member_added","channel":"presence-room","member":{"id":"u1","info":{"name":"Ada"}}})
    );
    let (b, pb) = connect_with(&hub, "u2");
    hub.subscribe(&b, "presence-room").unwrap();
    hub.broadcast("presence-room", "hello").unwrap();
    let roster = next_json(&pb);
    assert_eq!(event(&roster), "presence:subscription_succeeded");
    assert_eq!(
        roster["members"],
        json!([{"id":"u1","info":{"name":"Ada"}}])
    );
    assert_eq!(
        next_json(&pb),
        json!({"event":"presence:member_added","channel":"presence-room","member":{"id":"u2"}})
    );
    assert_eq!(next_text(&pb), "hello");
    // The old member sees the join, then the broadcast.
    assert_eq!(event(&next_json(&pa)), "presence:member_added");
    assert_eq!(next_text(&pa), "hello");
    b.close();
    assert_eq!(
        next_json(&pa),
        json!({"event":"presence:member_removed","channel":"presence-room","member":{"id":"u2"}})
    );
}

#[test]
fn r9_every_member_sees_one_order_of_concurrent_joins_and_leaves() {
    let hub = hub(PresenceMode::PerConnection);
    let n = 12;
    let peers: Vec<_> = (0..n)
        .map(|i| connect_with(&hub, &format!("u{i}")))
        .collect();
    let barrier = Arc::new(std::sync::Barrier::new(n));
    std::thread::scope(|s| {
        for (i, (c, _)) in peers.iter().enumerate() {
            let hub = hub.clone();
            let barrier = barrier.clone();
            s.spawn(move || {
                barrier.wait();
                hub.subscribe(c, "presence-x").unwrap();
                if i % 3 == 0 {
                    hub.unsubscribe(c, "presence-x").unwrap();
                }
            });
        }
    });
    hub.broadcast("presence-x", "__end__").unwrap();
    // Each peer's sequence of presence events after its own roster.
    let mut seqs: Vec<Vec<String>> = Vec::new();
    for (i, (_, p)) in peers.iter().enumerate() {
        let mut seq = Vec::new();
        let first = next_json(p);
        assert_eq!(event(&first), "presence:subscription_succeeded", "peer {i}");
        if i % 3 == 0 {
            // Left: it may or may not see the end marker; read what it got.
            while let Ok(Some((_, b))) = p.try_read() {
                let t = String::from_utf8(b.to_vec()).unwrap();
                if t == "__end__" {
                    break;
                }
                let v: Value = serde_json::from_str(&t).unwrap();
                seq.push(format!("{}:{}", event(&v), v["member"]["id"]));
            }
        } else {
            loop {
                let t = next_text(p);
                if t == "__end__" {
                    break;
                }
                let v: Value = serde_json::from_str(&t).unwrap();
                seq.push(format!("{}:{}", event(&v), v["member"]["id"]));
            }
        }
        seqs.push(seq);
    }
    // Consistency: for any two members, the events both saw appear in the
    // same relative order.
    for a in &seqs {
        for b in &seqs {
            let common: Vec<_> = a.iter().filter(|e| b.contains(e)).collect();
            let common_b: Vec<_> = b.iter().filter(|e| a.contains(e)).collect();
            assert_eq!(common, common_b);
        }
    }
    // Survivors all saw exactly the same, complete history after their join.
    let roster: Vec<String> = hub
        .presence("presence-x")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(roster.len(), n - n.div_ceil(3));
}

#[test]
fn r10_roster_order_is_join_order_and_info_rules_apply() {
    let hub = hub(PresenceMode::PerConnection);
    let (a, _pa) = connect_with(&hub, "a|{\"x\":1}");
    let (b, _pb) = connect_with(&hub, "b|plain text");
    let (c, _pc) = connect_with(&hub, "c");
    let (d, pd) = connect_with(&hub, "d");
    for x in [&b, &a, &c] {
        hub.subscribe(x, "presence-r").unwrap();
    }
    hub.subscribe(&d, "presence-r").unwrap();
    assert_eq!(
        next_text(&pd),
        r#"{"event":"presence:subscription_succeeded","channel":"presence-r","members":[{"id":"b","info":"plain text"},{"id":"a","info":{"x":1}},{"id":"c"}]}"#
    );
}

#[test]
fn r11_presence_returns_a_copy_and_is_empty_for_unknown_or_public_channels() {
    let hub = hub(PresenceMode::PerConnection);
    let (a, _pa) = connect_with(&hub, "u1|{}");
    hub.subscribe(&a, "presence-r").unwrap();
    hub.subscribe(&a, "public").unwrap();
    let mut copy = hub.presence("presence-r");
    assert_eq!(copy, [Member::new("u1", "{}")]);
    copy.clear();
    assert_eq!(hub.presence("presence-r").len(), 1);
    assert!(hub.presence("public").is_empty());
    assert!(hub.presence("presence-unknown").is_empty());
}

#[test]
fn r11_on_presence_sees_joins_and_leaves_and_hub_close_fires_a_leave_for_every_member() {
    let hub = hub(PresenceMode::PerConnection);
    let events = Arc::new(Mutex::new(Vec::<PresenceEvent>::new()));
    let sink = events.clone();
    hub.on_presence(move |e| sink.lock().unwrap().push(e.clone()));
    let (a, _pa) = connect_with(&hub, "ua");
    let (b, _pb) = connect_with(&hub, "ub");
    hub.subscribe(&a, "presence-1").unwrap();
    hub.subscribe(&b, "presence-1").unwrap();
    hub.subscribe(&b, "presence-2").unwrap();
    hub.unsubscribe(&a, "presence-1").unwrap();
    hub.close();
    let got: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.channel.clone(), e.joined, e.member.id.clone()))
        .collect();
    let mut joins: HashMap<(String, String), i32> = HashMap::new();
    for (ch, joined, id) in &got {
        *joins.entry((ch.clone(), id.clone())).or_default() += if *joined { 1 } else { -1 };
    }
    assert!(joins.values().all(|&v| v == 0), "{got:?}");
    assert_eq!(got.len(), 6);
    assert_eq!(got[0], ("presence-1".into(), true, "ua".into()));
    assert_eq!(got[3], ("presence-1".into(), false, "ua".into()));
    assert!(hub.presence("presence-1").is_empty());
}

#[test]
fn r12_per_connection_mode_counts_two_tabs_as_two_members() {
    let hub = hub(PresenceMode::PerConnection);
    let (a, _pa) = connect_with(&hub, "same");
    let (b, _pb) = connect_with(&hub, "same");
    hub.subscribe(&a, "presence-r").unwrap();
    hub.subscribe(&b, "presence-r").unwrap();
    assert_eq!(hub.presence("presence-r").len(), 2);
}

#[test]
fn r12_per_user_mode_deduplicates_by_member_id() {
    let hub = hub(PresenceMode::PerUser);
    let events = Arc::new(Mutex::new(Vec::<(bool, String)>::new()));
    let sink = events.clone();
    hub.on_presence(move |e| sink.lock().unwrap().push((e.joined, e.member.id.clone())));
    let (w, pw) = connect_with(&hub, "watcher");
    let (a, _pa) = connect_with(&hub, "same");
    let (b, pb) = connect_with(&hub, "same");
    hub.subscribe(&w, "presence-r").unwrap();
    hub.subscribe(&a, "presence-r").unwrap();
    hub.subscribe(&b, "presence-r").unwrap();
    assert_eq!(hub.presence("presence-r").len(), 2);
    // The second tab's roster already contains its user.
    let roster = next_json(&pb);
    assert_eq!(roster["members"], json!([{"id":"watcher"},{"id":"same"}]));
    a.close();
    assert_eq!(hub.presence("presence-r").len(), 2);
    b.close();
    assert_eq!(hub.presence("presence-r").len(), 1);
    // The watcher saw one join and one leave of "same".
    let seen = before_marker(&hub, "presence-r", &pw);
    let kinds: Vec<String> = seen
        .iter()
        .map(|t| {
            let v: Value = serde_json::from_str(t).unwrap();
            format!(
                "{}:{}",
                event(&v),
                v.get("member")
                    .map(|m| m["id"].to_string())
                    .unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "presence:subscription_succeeded:",
            "presence:member_added:\"watcher\"",
            "presence:member_added:\"same\"",
            "presence:member_removed:\"same\"",
        ]
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            (true, "watcher".to_owned()),
            (true, "same".to_owned()),
            (false, "same".to_owned())
        ]
    );
}

#[test]
fn a_client_answers_which_member_it_subscribed_as() {
    let hub = hub(PresenceMode::PerUser);
    let (a, _pa) = connect_with(&hub, "u7|{\"n\":1}");
    assert_eq!(a.subscription("presence-r"), None);
    hub.subscribe(&a, "presence-r").unwrap();
    hub.subscribe(&a, "news").unwrap();
    assert_eq!(a.subscription("presence-r"), Some(Some("u7".to_owned())));
    assert_eq!(a.subscription("news"), Some(None));
    hub.unsubscribe(&a, "presence-r").unwrap();
    assert_eq!(a.subscription("presence-r"), None);
    assert_eq!(a.subscription("news"), Some(None));
}
