//! Hub behaviour through the public API: R1–R8, R13, R16, R17.

// Tests use the public API from outside the facade; std atomics are fine here.
#![allow(clippy::disallowed_types, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use realtime::{pipe, ChannelType, Conn, Error, Hub, MessageType};

#[test]
fn r1_text_and_binary_frames_keep_their_type_and_bytes() {
    let hub = Hub::new();
    let (c, peer) = connect(&hub);
    hub.subscribe(&c, "orders").unwrap();
    hub.broadcast("orders", "héllo").unwrap();
    hub.broadcast_binary("orders", &[0u8, 159, 255][..])
        .unwrap();
    assert_eq!(
        next(&peer),
        (MessageType::Text, "héllo".as_bytes().to_vec())
    );
    assert_eq!(next(&peer), (MessageType::Binary, vec![0, 159, 255]));
    assert_eq!(MessageType::Text.opcode(), 0x1);
    assert_eq!(MessageType::Binary.opcode(), 0x2);
}

#[test]
fn r1_text_broadcast_rejects_invalid_utf8() {
    let hub = Hub::new();
    let (c, peer) = connect(&hub);
    hub.subscribe(&c, "orders").unwrap();
    assert_eq!(
        hub.broadcast("orders", &[0xffu8, 0xfe][..]),
        Err(Error::InvalidUtf8)
    );
    assert_eq!(before_marker(&hub, "orders", &peer), Vec::<String>::new());
}

#[test]
fn r2_serve_delivers_inbound_messages_and_closes_on_peer_close() {
    let hub = Hub::new();
    let (c, peer) = connect(&hub);
    hub.subscribe(&c, "room").unwrap();
    peer.write_message(MessageType::Text, b"one").unwrap();
    peer.write_message(MessageType::Binary, &[1, 2]).unwrap();
    peer.close().unwrap();
    let mut seen = Vec::new();
    c.serve(|client, kind, data| seen.push((client.id().to_owned(), kind, data.to_vec())))
        .unwrap();
    assert_eq!(
        seen,
        [
            ("client-1".to_owned(), MessageType::Text, b"one".to_vec()),
            ("client-1".to_owned(), MessageType::Binary, vec![1, 2]),
        ]
    );
    // serve tore the client down.
    assert!(c.is_closed());
    assert_eq!(hub.count(), 0);
    assert_eq!(hub.channel_count("room"), 0);
}

#[test]
fn r2_client_close_unblocks_a_serving_reader() {
    let hub = Hub::new();
    let (c, _peer) = connect(&hub);
    let server = {
        let c = c.clone();
        std::thread::spawn(move || c.serve(|_, _, _| {}))
    };
    c.close();
    assert!(server.join().unwrap().is_ok());
}

#[test]
fn r2_in_memory_pipe_ends_both_directions_on_close() {
    let (a, b) = pipe();
    a.write_message(MessageType::Text, b"x").unwrap();
    b.close().unwrap();
    // Already-sent data is still readable, then end of stream.
    assert!(a.try_read().is_err());
    assert_eq!(b.read_message().unwrap().1.as_ref(), b"x");
    assert!(b.read_message().is_err());
    assert!(a.read_message().is_err());
    assert!(a.write_message(MessageType::Text, b"y").is_err());
}

#[test]
fn r2_attached_clients_cannot_be_served() {
    let hub = Hub::new();
    let (c, _probe) = attach(&hub);
    assert_eq!(c.serve(|_, _, _| {}), Err(Error::NotServable));
}

#[test]
fn r3_ids_count_from_one_per_hub_and_r34_buffer_defaults_to_1_mib_of_bytes() {
    let a = Hub::new();
    let b = Hub::new();
    let (a1, _p1) = connect(&a);
    let (a2, _p2) = connect(&a);
    let (b1, _p3) = connect(&b);
    assert_eq!(a1.id(), "client-1");
    assert_eq!(a2.id(), "client-2");
    assert_eq!(b1.id(), "client-1");
    // R34 supersedes R3's 64 frames: the bound is in bytes.
    assert_eq!(a1.buffer_limit(), 1 << 20);
    assert_eq!(realtime::DEFAULT_CLIENT_BUFFER, 1 << 20);
    assert_eq!(a1.frame_limit(), None);
    let capped = Hub::builder()
        .outbox(5)
        .client_buffer(4096)
        .build()
        .add(pipe().0, ())
        .unwrap();
    assert_eq!(
        (capped.frame_limit(), capped.buffer_limit()),
        (Some(5), 4096)
    );
}

#[test]
#[should_panic(expected = "outbox capacity")]
fn r3_zero_outbox_panics() {
    let _ = Hub::builder().outbox(0);
}

#[test]
fn r3_client_close_is_idempotent_and_thread_safe() {
    let hub = Hub::new();
    let (c, probe) = attach(&hub);
    hub.subscribe(&c, "a").unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || c.close())
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(probe.closes(), 1);
    assert_eq!(hub.count(), 0);
    assert_eq!(hub.channel_count("a"), 0);
}

#[test]
fn r4_add_passes_auth_and_fails_after_close() {
    let hub = Hub::new();
    let (conn, _peer) = pipe();
    let c = hub.add(conn, "token-1").unwrap();
    assert_eq!(c.auth().as_ref(), b"token-1");
    hub.close();
    assert_eq!(hub.add(pipe().0, ()).err(), Some(Error::Closed));
    assert_eq!(
        hub.attach(Arc::new(Probe::default()), ()).err(),
        Some(Error::Closed)
    );
}

#[test]
fn r5_channel_type_follows_the_name_prefix() {
    use realtime::classify_channel as k;
    assert_eq!(k("orders"), ChannelType::Public);
    assert_eq!(k("private-billing"), ChannelType::Private);
    assert_eq!(k("presence-room.7"), ChannelType::Presence);
    assert_eq!(k("presence"), ChannelType::Public);
    assert_eq!(k("privatex"), ChannelType::Public);
}

#[test]
fn r6_subscribe_and_unsubscribe_are_idempotent() {
    let hub = Hub::new();
    let (c, _p) = attach(&hub);
    hub.subscribe(&c, "a").unwrap();
    hub.subscribe(&c, "a").unwrap();
    assert_eq!(hub.channel_count("a"), 1);
    hub.unsubscribe(&c, "a").unwrap();
    hub.unsubscribe(&c, "a").unwrap();
    hub.unsubscribe(&c, "never").unwrap();
    assert_eq!(hub.channel_count("a"), 0);
}

#[test]
fn r6_channels_are_created_on_first_join_and_destroyed_with_the_last_member() {
    let hub = Hub::new();
    let (a, _pa) = attach(&hub);
    let (b, _pb) = attach(&hub);
    assert!(hub.channels().is_empty());
    hub.subscribe(&a, "room").unwrap();
    hub.subscribe(&b, "room").unwrap();
    assert_eq!(hub.channels(), [("room".to_owned(), 2)]);
    hub.unsubscribe(&a, "room").unwrap();
    assert_eq!(hub.channels(), [("room".to_owned(), 1)]);
    hub.unsubscribe(&b, "room").unwrap();
    assert!(hub.channels().is_empty());
    // A new member gets a fresh channel and receives its broadcasts.
    hub.subscribe(&a, "room").unwrap();
    hub.broadcast("room", "again").unwrap();
    assert_eq!(texts(&drain(&a)), ["again"]);
}

#[test]
fn r6_the_channel_table_holds_occupied_channels_only() {
    let hub = Hub::builder().max_subscriptions(1).build();
    let (a, _pa) = attach(&hub);
    assert_eq!(hub.channel_table_len(), 0);
    hub.subscribe(&a, "room").unwrap();
    assert_eq!(hub.channel_table_len(), 1);
    // Refused after it created "other": the join takes it out again.
    assert_eq!(
        hub.subscribe(&a, "other"),
        Err(Error::TooManySubscriptions(1))
    );
    assert_eq!(hub.channel_table_len(), 1);
    hub.unsubscribe(&a, "room").unwrap();
    assert_eq!(hub.channel_table_len(), 0);
}

#[test]
fn r7_client_close_removes_it_from_every_channel() {
    let hub = Hub::new();
    let (c, _p) = attach(&hub);
    for ch in ["a", "b", "c"] {
        hub.subscribe(&c, ch).unwrap();
    }
    assert_eq!(c.channels().len(), 3);
    c.close();
    for ch in ["a", "b", "c"] {
        assert_eq!(hub.channel_count(ch), 0);
    }
    assert!(hub.channels().is_empty());
    assert_eq!(hub.count(), 0);
}

#[test]
fn r7_write_error_closes_the_client() {
    let hub = Hub::new();
    let (c, peer) = connect(&hub);
    hub.subscribe(&c, "a").unwrap();
    drop(peer); // the peer vanishes: the next write fails
    hub.broadcast("a", "x").unwrap();
    // The writer thread closes the client; serve observes the end.
    let _ = c.serve(|_, _, _| {});
    assert!(c.is_closed());
    assert_eq!(hub.channel_count("a"), 0);
    assert_eq!(hub.count(), 0);
}

#[test]
fn r7_hub_close_removes_every_client_from_every_channel() {
    let hub = Hub::new();
    let clients: Vec<_> = (0..10).map(|_| connect(&hub)).collect();
    for (i, (c, _)) in clients.iter().enumerate() {
        hub.subscribe(c, &format!("ch-{}", i % 3)).unwrap();
    }
    hub.close();
    assert_eq!(hub.count(), 0);
    assert!(hub.channels().is_empty());
    for (c, peer) in &clients {
        assert!(c.is_closed());
        assert!(until_eof(peer).is_empty());
    }
}

#[test]
fn r8_counts_reflect_live_state() {
    let hub = Hub::new();
    assert_eq!(hub.count(), 0);
    assert_eq!(hub.channel_count("x"), 0);
    let (a, _pa) = attach(&hub);
    let (b, _pb) = attach(&hub);
    assert_eq!(hub.count(), 2);
    hub.subscribe(&a, "x").unwrap();
    hub.subscribe(&b, "x").unwrap();
    assert_eq!(hub.channel_count("x"), 2);
    assert_eq!(hub.client(b.id()), Some(b.clone()));
    b.close();
    assert_eq!(hub.count(), 1);
    assert_eq!(hub.channel_count("x"), 1);
    assert_eq!(hub.client(b.id()), None);
}

#[test]
fn r13_broadcast_to_an_unknown_channel_is_a_no_op() {
    let hub = Hub::new();
    assert_eq!(hub.broadcast("nobody", "x"), Ok(()));
    assert_eq!(hub.broadcast_binary("nobody", "x"), Ok(()));
}

#[test]
fn r13_broadcast_except_skips_exactly_one_client() {
    let hub = Hub::new();
    let (a, pa) = connect(&hub);
    let (b, pb) = connect(&hub);
    let (c, pc) = connect(&hub);
    for x in [&a, &b, &c] {
        hub.subscribe(x, "chat.7").unwrap();
    }
    hub.broadcast_except("chat.7", "hi", &b).unwrap();
    assert_eq!(before_marker(&hub, "chat.7", &pa), ["hi"]);
    assert_eq!(before_marker(&hub, "chat.7", &pb), Vec::<String>::new());
    // pb got two markers (the first and this one); pc the message.
    assert_eq!(next_text(&pb), "__marker__");
    assert_eq!(next_text(&pc), "hi");
    hub.broadcast_binary_except("chat.7", &[7u8][..], &a)
        .unwrap();
    assert_eq!(before_marker(&hub, "chat.7", &pa), Vec::<String>::new());
}

#[test]
fn r13_send_to_reaches_one_client_by_id_in_text_and_binary() {
    let hub = Hub::new();
    let (a, pa) = connect(&hub);
    let (_b, pb) = connect(&hub);
    hub.send_to(a.id(), "direct").unwrap();
    hub.send_binary_to(a.id(), &[9u8][..]).unwrap();
    assert_eq!(next(&pa), (MessageType::Text, b"direct".to_vec()));
    assert_eq!(next(&pa), (MessageType::Binary, vec![9]));
    assert_eq!(pb.try_read().unwrap(), None);
}

#[test]
fn r13_send_to_an_unknown_client_is_a_distinct_error() {
    let hub = Hub::new();
    assert_eq!(
        hub.send_to("client-99", "x"),
        Err(Error::ClientNotFound("client-99".into()))
    );
    assert_eq!(
        hub.send_to("garbage", "x"),
        Err(Error::ClientNotFound("garbage".into()))
    );
    let (a, _p) = attach(&hub);
    let id = a.id().to_owned();
    a.close();
    assert_eq!(hub.send_to(&id, "x"), Err(Error::ClientNotFound(id)));
}

#[test]
fn r13_every_operation_after_hub_close_returns_closed() {
    let hub = Hub::builder().authorizer(allow_all()).build();
    let (a, _p) = attach(&hub);
    hub.subscribe(&a, "room").unwrap();
    hub.close();
    assert_eq!(hub.broadcast("room", "x"), Err(Error::Closed));
    assert_eq!(hub.broadcast_binary("room", "x"), Err(Error::Closed));
    assert_eq!(hub.broadcast_except("room", "x", &a), Err(Error::Closed));
    assert_eq!(hub.send_to(a.id(), "x"), Err(Error::Closed));
    assert_eq!(hub.send_binary_to(a.id(), "x"), Err(Error::Closed));
    assert_eq!(hub.subscribe(&a, "room"), Err(Error::Closed));
    assert_eq!(hub.subscribe(&a, "private-x"), Err(Error::Closed));
    assert_eq!(hub.subscribe(&a, "presence-x"), Err(Error::Closed));
    assert_eq!(hub.unsubscribe(&a, "room"), Err(Error::Closed));
    assert_eq!(hub.add(pipe().0, ()).err(), Some(Error::Closed));
}

#[test]
fn r16_hub_close_is_idempotent_from_many_threads() {
    let hub = Hub::new();
    let peers: Vec<_> = (0..20).map(|_| connect(&hub)).collect();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let hub = hub.clone();
            std::thread::spawn(move || hub.close())
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    hub.close();
    // The first closer finished the sweep; the others may return early, so
    // synchronise on every peer seeing its end of stream.
    for (_, p) in &peers {
        until_eof(p);
    }
    assert!(hub.is_closed());
}

#[test]
fn r17_frames_from_one_thread_arrive_in_order_text_and_binary_alike() {
    let hub = Hub::new();
    let (a, pa) = connect(&hub);
    hub.subscribe(&a, "seq").unwrap();
    let n = 2_000u32;
    let reader = std::thread::spawn(move || {
        (0..n)
            .map(|_| {
                let (k, b) = next(&pa);
                (k, b)
            })
            .collect::<Vec<_>>()
    });
    for i in 0..n {
        // Keep within the outbox: the drop policy would otherwise (rightly)
        // discard frames; order is what is under test.
        while a.pending() > 32 {
            std::thread::yield_now();
        }
        if i % 2 == 0 {
            hub.broadcast("seq", i.to_string()).unwrap();
        } else {
            hub.broadcast_binary("seq", i.to_be_bytes().to_vec())
                .unwrap();
        }
    }
    let got = reader.join().unwrap();
    for (i, (k, b)) in got.into_iter().enumerate() {
        let i = i as u32;
        if i % 2 == 0 {
            assert_eq!((k, b), (MessageType::Text, i.to_string().into_bytes()));
        } else {
            assert_eq!((k, b), (MessageType::Binary, i.to_be_bytes().to_vec()));
        }
    }
    assert_eq!(a.drops(), 0);
}

#[test]
fn on_channel_fires_on_first_join_and_last_leave_only() {
    let hub = Hub::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    assert!(
        hub.on_channel(move |e| { log.lock().unwrap().push((e.channel.to_owned(), e.occupied)) })
    );
    assert!(!hub.on_channel(|_| {}), "one hook per Hub");
    let (a, _pa) = connect(&hub);
    let (b, _pb) = connect(&hub);
    hub.subscribe(&a, "orders").unwrap();
    hub.subscribe(&b, "orders").unwrap();
    hub.broadcast("orders", "x").unwrap();
    hub.unsubscribe(&a, "orders").unwrap();
    hub.unsubscribe(&b, "orders").unwrap();
    hub.subscribe(&a, "orders").unwrap();
    hub.close();
    let want = [true, false, true, false].map(|o| ("orders".to_owned(), o));
    assert_eq!(*seen.lock().unwrap(), want);
}
