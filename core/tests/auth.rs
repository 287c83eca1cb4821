//! Authorization: R15.

// Tests use the public API from outside the facade; std atomics are fine here.
#![allow(clippy::disallowed_types, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use realtime::{AuthRequest, AuthResult, ChannelType, Error, Hub, Member};

#[test]
fn r15_public_channels_need_no_authorizer() {
    let hub = Hub::new();
    let (c, _p) = attach(&hub);
    hub.subscribe(&c, "public-ish").unwrap();
    hub.subscribe(&c, "presence").unwrap(); // bare "presence" is public
}

#[test]
fn r15_without_an_authorizer_private_and_presence_joins_are_denied() {
    let hub = Hub::new();
    let (c, _p) = attach(&hub);
    assert_eq!(hub.subscribe(&c, "private-x"), Err(Error::Unauthorized));
    assert_eq!(hub.subscribe(&c, "presence-x"), Err(Error::Unauthorized));
    assert_eq!(hub.channel_count("private-x"), 0);
    assert!(hub.channels().is_empty());
}

#[test]
fn r15_authorizer_gets_channel_type_client_id_auth_and_params() {
    let seen = Arc::new(Mutex::new(Vec::<AuthRequest>::new()));
    let sink = seen.clone();
    let hub = Hub::builder()
        .authorizer(move |r: &AuthRequest| {
            sink.lock().unwrap().push(r.clone());
            if r.channel == "private-no" {
                AuthResult::deny()
            } else {
                AuthResult::allow_anonymous()
            }
        })
        .build();
    let (c, _p) = connect_with(&hub, "tok");
    hub.subscribe(&c, "private-yes").unwrap();
    hub.subscribe_with(&c, "presence-yes", "sig").unwrap();
    assert_eq!(hub.subscribe(&c, "private-no"), Err(Error::Unauthorized));
    hub.subscribe(&c, "public").unwrap();
    let seen = seen.lock().unwrap();
    let summary: Vec<_> = seen
        .iter()
        .map(|r| {
            (
                r.channel.as_str(),
                r.channel_type,
                r.client_id.as_str(),
                r.auth.as_ref(),
                r.params.as_ref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "private-yes",
                ChannelType::Private,
                "client-1",
                &b"tok"[..],
                &b""[..]
            ),
            (
                "presence-yes",
                ChannelType::Presence,
                "client-1",
                &b"tok"[..],
                &b"sig"[..]
            ),
            (
                "private-no",
                ChannelType::Private,
                "client-1",
                &b"tok"[..],
                &b""[..]
            ),
        ]
    );
}

#[test]
fn r15_empty_member_id_falls_back_to_the_client_id() {
    let hub = Hub::builder()
        .authorizer(|_: &AuthRequest| AuthResult::allow(Member::new("", "{}")))
        .build();
    let (c, _p) = attach(&hub);
    hub.subscribe(&c, "presence-r").unwrap();
    assert_eq!(hub.presence("presence-r"), [Member::new(c.id(), "{}")]);
}

#[test]
fn r15_the_authorizer_runs_outside_every_hub_lock() {
    // The authorizer of one join blocks until another join of the SAME
    // channel, a broadcast to it and a presence read have completed. Under a
    // Hub or channel lock this would deadlock.
    let (entered_tx, entered_rx) = crossbeam_channel::bounded::<()>(1);
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let calls = Arc::new(AtomicUsize::new(0));
    let calls2 = calls.clone();
    let hub = Hub::builder()
        .authorizer(move |r: &AuthRequest| {
            if calls2.fetch_add(1, Ordering::SeqCst) == 0 {
                entered_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            }
            AuthResult::allow(Member::new(String::from_utf8_lossy(&r.auth), ()))
        })
        .build();
    let (slow, _ps) = connect_with(&hub, "slow");
    let (fast, pf) = connect_with(&hub, "fast");
    std::thread::scope(|s| {
        let h = hub.clone();
        let t = s.spawn(move || h.subscribe(&slow, "presence-r"));
        entered_rx.recv().unwrap();
        hub.subscribe(&fast, "presence-r").unwrap();
        hub.broadcast("presence-r", "while-authorizing").unwrap();
        assert_eq!(hub.presence("presence-r").len(), 1);
        go_tx.send(()).unwrap();
        t.join().unwrap().unwrap();
    });
    assert_eq!(hub.presence("presence-r").len(), 2);
    let got: Vec<String> = (0..4).map(|_| next_text(&pf)).collect();
    assert!(got[2] == "while-authorizing", "{got:?}");
    assert!(got[3].contains("member_added"), "{got:?}");
}
