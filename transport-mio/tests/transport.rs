//! Behaviour of the mio transport over real loopback sockets.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use realtime::{AuthResult, Hub, Member, SlowConsumerPolicy};
use realtime_mio::{AcceptMode, Config};
use tungstenite::Message;

#[test]
fn broadcast_reaches_every_subscriber_across_loops() {
    for accept in [AcceptMode::RoundRobin, AcceptMode::ReusePort] {
        let f = start(Config { accept, ..config() }, Hub::new());
        let mut clients: Vec<Ws> = (0..16).map(|_| connect(f.addr(), "/")).collect();
        f.hub().broadcast("all", "hello everyone").unwrap();
        for ws in &mut clients {
            assert_eq!(recv_text(ws), "hello everyone");
        }
        let per_loop: Vec<u64> = f
            .server
            .loop_stats()
            .iter()
            .map(|s| s.connections)
            .collect();
        assert_eq!(per_loop.iter().sum::<u64>(), 16);
        if accept == AcceptMode::RoundRobin {
            assert_eq!(per_loop, vec![8, 8], "round-robin spreads exactly");
        }
    }
}

#[test]
fn text_and_binary_messages_round_trip() {
    let f = start(config(), Hub::new());
    let mut ws = connect(f.addr(), "/");
    send_text(&mut ws, "héllo");
    assert_eq!(recv_text(&mut ws), "héllo");
    ws.send(Message::binary(vec![0u8, 159, 255])).unwrap();
    assert_eq!(recv(&mut ws), Message::binary(vec![0u8, 159, 255]));
    f.hub().broadcast_binary("all", vec![1u8, 2, 3]).unwrap();
    assert_eq!(recv(&mut ws), Message::binary(vec![1u8, 2, 3]));
    // A fragmented message is joined before it reaches the handler.
    let big = "x".repeat(40_000);
    send_text(&mut ws, &big);
    assert_eq!(recv_text(&mut ws), big);
    assert_eq!(f.server.stats().frames_in, 3);
}

#[test]
fn per_client_order_is_preserved_under_concurrent_publishers() {
    let f = start(config(), Hub::builder().outbox(8192).build());
    let mut clients: Vec<Ws> = (0..4).map(|_| connect(f.addr(), "/")).collect();
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let hub = f.hub().clone();
            std::thread::spawn(move || {
                for n in 0..500 {
                    hub.broadcast("all", format!("{p} {n}")).unwrap();
                }
            })
        })
        .collect();
    for ws in &mut clients {
        let mut next = [0u32; 4];
        for _ in 0..2000 {
            let text = recv_text(ws);
            let (p, n) = text.split_once(' ').unwrap();
            let (p, n): (usize, u32) = (p.parse().unwrap(), n.parse().unwrap());
            assert_eq!(n, next[p], "publisher {p} out of order");
            next[p] += 1;
        }
    }
    for p in publishers {
        p.join().unwrap();
    }
}

#[test]
fn a_client_that_stops_reading_is_disconnected_without_delaying_others() {
    let hub = Hub::builder()
        .slow_consumer_policy(SlowConsumerPolicy::DisconnectClient)
        .build();
    let f = start(config(), hub);
    // The slow client: a small receive buffer, and it never reads.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&f.addr().into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(GUARD)).unwrap();
    let (_slow, _) = tungstenite::client(format!("ws://{}/", f.addr()), stream).unwrap();
    let mut fast = connect(f.addr(), "/");
    let payload = "y".repeat(16 * 1024);
    // Paced by the fast reader, so only the slow one falls behind.
    for n in 0..1000 {
        f.hub().broadcast("all", format!("{n} {payload}")).unwrap();
        let got = recv_text(&mut fast);
        assert!(
            got.starts_with(&format!("{n} ")),
            "fast client lost frame {n}"
        );
    }
    let closed = f.next_close();
    assert_eq!(closed, "client-1", "the slow client is the one dropped");
    assert_eq!(f.server.stats().closes_with(1008), 1);
    send_text(&mut fast, "still here");
    assert_eq!(recv_text(&mut fast), "still here");
}

#[test]
fn oversized_message_closes_with_1009() {
    let f = start(
        Config {
            max_message_size: 1024,
            ..config()
        },
        Hub::new(),
    );
    let mut ws = connect(f.addr(), "/");
    ws.send(Message::binary(vec![7u8; 2000])).unwrap();
    assert_eq!(recv_close(&mut ws), 1009);
    f.next_close();
    assert_eq!(f.server.stats().closed_for_violation, 1);
}

#[test]
fn invalid_utf8_text_closes_with_1007() {
    let f = start(config(), Hub::new());
    let mut s = raw_upgrade(f.addr(), "/");
    raw_frame(&mut s, 0x81, &[b'o', b'k', 0xff], true);
    assert_eq!(raw_close_code(&mut s), 1007);
    // The server closes the TCP connection after its close frame.
    read_to_end(&mut s);
    f.next_close();
}

#[test]
fn protocol_errors_close_with_1002() {
    let f = start(config(), Hub::new());
    // An unmasked client frame.
    let mut s = raw_upgrade(f.addr(), "/");
    raw_frame(&mut s, 0x81, b"hi", false);
    assert_eq!(raw_close_code(&mut s), 1002);
    // A continuation frame with no message to continue.
    let mut s = raw_upgrade(f.addr(), "/");
    raw_frame(&mut s, 0x80, b"hi", true);
    assert_eq!(raw_close_code(&mut s), 1002);
    // A fragmented ping.
    let mut s = raw_upgrade(f.addr(), "/");
    raw_frame(&mut s, 0x09, b"hi", true);
    assert_eq!(raw_close_code(&mut s), 1002);
    f.next_close();
    f.next_close();
    f.next_close();
    assert_eq!(f.server.stats().closes_with(1002), 3);
}

#[test]
fn a_fragmented_message_with_interleaved_ping_is_assembled_and_ponged() {
    let f = start(config(), Hub::new());
    let mut s = raw_upgrade(f.addr(), "/");
    raw_frame(&mut s, 0x01, b"frag", true);
    raw_frame(&mut s, 0x89, b"p1", true);
    raw_frame(&mut s, 0x80, b"mented", true);
    assert_eq!(raw_read(&mut s), Some((0xA, b"p1".to_vec())));
    assert_eq!(raw_read(&mut s), Some((0x1, b"fragmented".to_vec())));
    // A clean close is echoed.
    raw_frame(&mut s, 0x88, &1000u16.to_be_bytes(), true);
    assert_eq!(raw_close_code(&mut s), 1000);
    f.next_close();
    assert_eq!(f.server.stats().closed_by_peer, 1);
}

#[test]
fn garbage_handshake_gets_400_and_only_that_socket_is_closed() {
    let f = start(config(), Hub::new());
    let mut good = connect(f.addr(), "/");
    let mut bad = TcpStream::connect(f.addr()).unwrap();
    bad.set_read_timeout(Some(GUARD)).unwrap();
    bad.write_all(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        .unwrap();
    let response = String::from_utf8_lossy(&read_to_end(&mut bad)).into_owned();
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    // A bad WebSocket key is a 400 too, a bad version a 426.
    let mut bad = TcpStream::connect(f.addr()).unwrap();
    bad.set_read_timeout(Some(GUARD)).unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: x\r\n\r\n").unwrap();
    let response = String::from_utf8_lossy(&read_to_end(&mut bad)).into_owned();
    assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
    send_text(&mut good, "unaffected");
    assert_eq!(recv_text(&mut good), "unaffected");
    assert_eq!(f.server.stats().handshake_failures, 2);
}

#[test]
fn handshake_timeout_drops_a_silent_socket() {
    let f = start(
        Config {
            handshake_timeout: Duration::from_millis(200),
            ..config()
        },
        Hub::new(),
    );
    let mut s = TcpStream::connect(f.addr()).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: slow").unwrap();
    assert!(read_to_end(&mut s).is_empty());
    assert_eq!(f.server.stats().handshake_timeouts, 1);
}

#[test]
fn idle_timeout_closes_a_silent_client_after_pings() {
    let f = start(
        Config {
            ping_interval: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(400),
            ..config()
        },
        Hub::new(),
    );
    let mut s = raw_upgrade(f.addr(), "/");
    let mut pings = 0;
    let code = loop {
        match raw_read(&mut s) {
            Some((0x9, _)) => pings += 1,
            Some((0x8, p)) => break u16::from_be_bytes([p[0], p[1]]),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(pings >= 1, "a ping precedes the idle close");
    assert_eq!(code, 1001);
    f.next_close();
    let stats = f.server.stats();
    assert_eq!(stats.idle_timeouts, 1);
    assert!(stats.pings_sent >= 1);
}

#[test]
fn a_client_answering_pings_stays_connected() {
    let f = start(
        Config {
            ping_interval: Duration::from_millis(50),
            idle_timeout: Duration::from_millis(300),
            ..config()
        },
        Hub::new(),
    );
    let mut s = raw_upgrade(f.addr(), "/");
    // Answer five pings; the idle timeout would have fired without them.
    for _ in 0..5 {
        let (op, payload) = raw_read(&mut s).unwrap();
        assert_eq!(op, 0x9);
        raw_frame(&mut s, 0x8A, &payload, true);
    }
    raw_frame(&mut s, 0x81, b"alive", true);
    assert_eq!(raw_read(&mut s), Some((0x1, b"alive".to_vec())));
    assert_eq!(f.server.stats().idle_timeouts, 0);
}

#[test]
fn max_connections_is_enforced_with_503() {
    let f = start(
        Config {
            max_connections: 2,
            ..config()
        },
        Hub::new(),
    );
    let mut a = connect(f.addr(), "/");
    let _b = connect(f.addr(), "/");
    match try_connect(f.addr(), "/") {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            assert_eq!(r.status().as_u16(), 503)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("third connection accepted"),
    }
    assert_eq!(f.server.stats().rejected_over_capacity, 1);
    assert_eq!(f.app.opened.load(std::sync::atomic::Ordering::SeqCst), 2);
    // Freeing a slot lets the next one in.
    send_text(&mut a, "close 1000");
    assert_eq!(recv_close(&mut a), 1000);
    f.next_close();
    let mut c = connect(f.addr(), "/");
    send_text(&mut c, "in");
    assert_eq!(recv_text(&mut c), "in");
}

#[test]
fn two_thousand_connections_across_two_loops_all_receive_a_broadcast() {
    let f = start(config(), Hub::new());
    let mut clients: Vec<Ws> = (0..2000).map(|_| connect(f.addr(), "/")).collect();
    assert_eq!(f.server.connections(), 2000);
    f.hub().broadcast("all", "to all 2000").unwrap();
    for ws in &mut clients {
        assert_eq!(recv_text(ws), "to all 2000");
    }
    let per_loop: Vec<u64> = f
        .server
        .loop_stats()
        .iter()
        .map(|s| s.connections)
        .collect();
    assert!(
        per_loop.iter().all(|&n| n > 0),
        "both loops serve: {per_loop:?}"
    );
}

#[test]
fn abrupt_reset_mid_frame_removes_the_client_everywhere() {
    let hub = Hub::builder()
        .authorizer(|req: &realtime::AuthRequest| {
            AuthResult::allow(Member::new(String::from_utf8_lossy(&req.auth), "{}"))
        })
        .build();
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    hub.on_presence(move |e| {
        let _ = tx.lock().unwrap().send((e.joined, e.member.id.clone()));
    });
    let f = start(config(), hub);
    let mut alice = connect(f.addr(), "/?user=alice");
    send_text(&mut alice, "sub presence-room");
    // Alice's join first: her connection and bob's may live on two loops.
    assert_eq!(rx.recv_timeout(GUARD).unwrap(), (true, "alice".into()));
    let mut s = raw_upgrade(f.addr(), "/?user=bob");
    raw_frame(&mut s, 0x81, b"sub presence-room", true);
    raw_frame(&mut s, 0x81, b"sub private-x", true);
    assert_eq!(rx.recv_timeout(GUARD).unwrap(), (true, "bob".into()));
    // Wait for bob's second subscribe to be done.
    loop {
        let (_, p) = raw_read(&mut s).unwrap();
        if p == b"sub private-x true" {
            break;
        }
    }
    assert_eq!(f.hub().channel_count("private-x"), 1);
    // Half a frame, then a reset.
    s.write_all(&[0x81, 0x85, 1, 2]).unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    assert_eq!(rx.recv_timeout(GUARD).unwrap(), (false, "bob".into()));
    assert_eq!(f.next_close(), "client-2");
    assert_eq!(f.hub().channel_count("private-x"), 0);
    assert_eq!(f.hub().channel_count("all"), 1);
    let roster: Vec<String> = f
        .hub()
        .presence("presence-room")
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(roster, vec!["alice".to_owned()]);
    assert_eq!(f.hub().count(), 1);
    assert_eq!(f.server.connections(), 1);
    // Alice saw bob leave.
    loop {
        if recv_text(&mut alice).contains("member_removed") {
            break;
        }
    }
}

#[test]
fn shutdown_sends_1001_to_connected_clients() {
    let f = start(config(), Hub::new());
    let mut clients: Vec<Ws> = (0..3).map(|_| connect(f.addr(), "/")).collect();
    let Fixture {
        server,
        app,
        closed,
    } = f;
    let stopper = std::thread::spawn(move || server.shutdown());
    for ws in &mut clients {
        assert_eq!(recv_close(ws), 1001);
    }
    stopper.join().unwrap();
    for _ in 0..3 {
        closed.recv_timeout(GUARD).unwrap();
    }
    assert_eq!(app.hub.count(), 0);
}

#[test]
fn shutdown_with_sends_the_given_code() {
    let f = start(config(), Hub::new());
    let mut ws = connect(f.addr(), "/");
    let Fixture { server, .. } = f;
    let stopper = std::thread::spawn(move || server.shutdown_with(4200, "maintenance"));
    assert_eq!(recv_close(&mut ws), 4200);
    stopper.join().unwrap();
}

#[test]
fn a_burst_of_10000_broadcasts_to_100_clients_arrives_complete_and_in_order() {
    let f = start(config(), Hub::builder().outbox(16_384).build());
    let clients: Vec<Ws> = (0..100).map(|_| connect(f.addr(), "/")).collect();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            std::thread::spawn(move || {
                for n in 0..10_000u32 {
                    assert_eq!(recv_text(&mut ws), n.to_string());
                }
            })
        })
        .collect();
    for n in 0..10_000u32 {
        f.hub().broadcast("all", n.to_string()).unwrap();
    }
    for r in readers {
        r.join().unwrap();
    }
    let stats = f.server.stats();
    assert_eq!(stats.frames_out, 1_000_000);
}

#[test]
fn http_requests_are_routed_to_on_http_with_body_and_keep_alive() {
    let f = start(config(), Hub::new());
    let mut s = TcpStream::connect(f.addr()).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(
        b"POST /apps/1/events?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world",
    )
    .unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Connection: keep-alive"));
    let mut body = vec![0u8; "POST /apps/1/events hello world".len()];
    s.read_exact(&mut body).unwrap();
    assert_eq!(body, b"POST /apps/1/events hello world");
    // A second request on the same connection, then close.
    s.write_all(b"GET /up HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let rest = String::from_utf8(read_to_end(&mut s)).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    assert!(rest.ends_with("GET /up "), "{rest}");
    // Too big a body: 413.
    let f2 = start(
        Config {
            max_http_body: 4,
            ..config()
        },
        Hub::new(),
    );
    let mut s = TcpStream::connect(f2.addr()).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let rest = String::from_utf8(read_to_end(&mut s)).unwrap();
    assert!(rest.starts_with("HTTP/1.1 413 "), "{rest}");
    assert_eq!(f.server.stats().http_requests, 2);
}

#[test]
fn chunked_request_bodies_reach_on_http_whole() {
    let f = start(config(), Hub::new());
    let mut s = TcpStream::connect(f.addr()).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    // Sent in pieces, as a streaming client would.
    s.write_all(b"POST /apps/1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello ")
        .unwrap();
    s.write_all(b"\r\n5\r\nworld\r\n0\r\n\r\n").unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let mut body = vec![0u8; "POST /apps/1/events hello world".len()];
    s.read_exact(&mut body).unwrap();
    assert_eq!(body, b"POST /apps/1/events hello world");
}

#[test]
fn refuse_sends_frames_then_the_close_code() {
    let f = start(config(), Hub::new());
    let mut ws = connect(f.addr(), "/refuse");
    assert_eq!(
        recv_text(&mut ws),
        r#"{"event":"error","data":{"code":4001}}"#
    );
    assert_eq!(recv_close(&mut ws), 4001);
    assert_eq!(f.server.connections(), 0);
    assert_eq!(f.server.stats().refused, 1);
}

#[test]
fn reject_answers_the_upgrade_with_http() {
    let f = start(config(), Hub::new());
    match try_connect(f.addr(), "/reject") {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            assert_eq!(r.status().as_u16(), 401)
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("rejected upgrade accepted"),
    }
}

#[test]
fn application_close_sends_its_code_and_runs_on_close_once() {
    let f = start(config(), Hub::new());
    let mut ws = connect(f.addr(), "/");
    send_text(&mut ws, "close 4321");
    assert_eq!(recv_close(&mut ws), 4321);
    f.next_close();
    // From another thread, through the Hub.
    let mut ws = connect(f.addr(), "/");
    let client = f.hub().client("client-2").unwrap();
    client.close();
    assert_eq!(recv_close(&mut ws), 1000);
    assert_eq!(f.next_close(), "client-2");
    assert!(
        f.closed.recv_timeout(Duration::from_millis(100)).is_err(),
        "on_close ran twice"
    );
}

#[test]
fn a_panicking_handler_closes_only_its_connection_with_1011() {
    let f = start(config(), Hub::new());
    let mut other = connect(f.addr(), "/");
    let mut ws = connect(f.addr(), "/");
    send_text(&mut ws, "panic");
    assert_eq!(recv_close(&mut ws), 1011);
    send_text(&mut other, "fine");
    assert_eq!(recv_text(&mut other), "fine");
}

#[test]
fn dropping_the_server_closes_clients() {
    let f = start(config(), Hub::new());
    let mut ws = connect(f.addr(), "/");
    let Fixture { server, app, .. } = f;
    let dropper = std::thread::spawn(move || drop(server));
    assert_eq!(recv_close(&mut ws), 1001);
    dropper.join().unwrap();
    assert_eq!(app.hub.count(), 0);
    let _ = Arc::strong_count(&app);
}

#[test]
fn queued_frames_go_out_in_one_vectored_write() {
    let f = start(
        Config {
            workers: 1,
            ..config()
        },
        Hub::new(),
    );
    let mut ws = connect(f.addr(), "/");
    send_text(&mut ws, "burst 50");
    for i in 0..50 {
        assert_eq!(recv_text(&mut ws), i.to_string());
    }
    let stats = f.server.stats();
    assert_eq!(stats.frames_out, 50);
    // The 101 response, then one write for the 50 frames (a short write
    // would add one).
    assert!(stats.writes <= 3, "{} writes for 50 frames", stats.writes);
}

// ----- what is produced before a violation or a close goes out first -------

#[test]
fn a_message_then_a_bad_frame_in_one_write_is_echoed_before_the_1002_close() {
    // Autobahn 3.2: a text message, a frame with RSV bits set, a ping, in
    // one write: the echo, then close 1002; the ping is never read.
    let f = start(config(), Hub::new());
    let mut s = raw_upgrade(f.addr(), "/");
    let mut burst = frame_bytes(0x81, b"Hello, world!", true);
    burst.extend(frame_bytes(0x81 | 0x20, b"Hello, world!", true));
    burst.extend(frame_bytes(0x89, b"", true));
    s.write_all(&burst).unwrap();
    assert_eq!(raw_read(&mut s), Some((0x1, b"Hello, world!".to_vec())));
    assert_eq!(raw_close_code(&mut s), 1002);
    assert_eq!(raw_read(&mut s), None, "nothing after the close frame");
    f.next_close();
}

#[test]
fn every_frame_queued_before_a_violation_is_written_before_the_close() {
    // 200 frames queued by one message, then an unmasked frame in the same
    // read: all 200 (more than one write batch), in order, then 1002.
    let f = start(config(), Hub::new());
    let mut s = raw_upgrade(f.addr(), "/");
    let mut burst = frame_bytes(0x81, b"burst 200", true);
    burst.extend(frame_bytes(0x81, b"unmasked", false));
    s.write_all(&burst).unwrap();
    for i in 0..200 {
        assert_eq!(raw_read(&mut s), Some((0x1, i.to_string().into_bytes())));
    }
    assert_eq!(raw_close_code(&mut s), 1002);
    f.next_close();
    assert_eq!(f.server.stats().frames_out, 200);
}

#[test]
fn a_message_then_a_close_in_one_write_is_echoed_before_the_close_reply() {
    // Autobahn 7.1.6 (small): a message, a close, a ping, back to back.
    let f = start(config(), Hub::new());
    let mut s = raw_upgrade(f.addr(), "/");
    let mut burst = frame_bytes(0x81, &[b'x'; 1000], true);
    burst.extend(frame_bytes(0x81, b"Hello World!", true));
    burst.extend(frame_bytes(0x88, &1000u16.to_be_bytes(), true));
    burst.extend(frame_bytes(0x89, b"", true));
    s.write_all(&burst).unwrap();
    assert_eq!(raw_read(&mut s), Some((0x1, vec![b'x'; 1000])));
    assert_eq!(raw_read(&mut s), Some((0x1, b"Hello World!".to_vec())));
    assert_eq!(raw_close_code(&mut s), 1000);
    assert_eq!(raw_read(&mut s), None, "no pong after the close");
    f.next_close();
    assert_eq!(f.server.stats().closed_by_peer, 1);
}

#[test]
fn invalid_utf8_in_a_fragment_closes_with_1007_before_the_message_ends() {
    // Autobahn 6.4.1: the message is never finished; the 1007 comes anyway.
    let f = start(config(), Hub::new());
    let mut s = raw_upgrade(f.addr(), "/");
    raw_frame(&mut s, 0x01, "κόσμε".as_bytes(), true);
    raw_frame(&mut s, 0x00, &[0xf4, 0x90, 0x80, 0x80], true);
    assert_eq!(raw_close_code(&mut s), 1007);
    f.next_close();
    assert_eq!(f.server.stats().closes_with(1007), 1);
}

// ----- activity ------------------------------------------------------------

#[test]
fn pings_pongs_and_fragments_reach_on_activity_and_messages_do_not() {
    let f = start(config(), Hub::new());
    let mut s = raw_upgrade(f.addr(), "/");
    let activity = || f.app.activity.load(std::sync::atomic::Ordering::SeqCst);
    // A ping: counted before its pong is written.
    raw_frame(&mut s, 0x89, b"1", true);
    assert_eq!(raw_read(&mut s), Some((0xA, b"1".to_vec())));
    assert_eq!(activity(), 1);
    // An unsolicited pong, then a ping to synchronise on.
    raw_frame(&mut s, 0x8A, b"", true);
    raw_frame(&mut s, 0x89, b"2", true);
    assert_eq!(raw_read(&mut s), Some((0xA, b"2".to_vec())));
    assert_eq!(activity(), 3);
    // A first fragment, then a ping.
    raw_frame(&mut s, 0x01, b"frag", true);
    raw_frame(&mut s, 0x89, b"3", true);
    assert_eq!(raw_read(&mut s), Some((0xA, b"3".to_vec())));
    assert_eq!(activity(), 5);
    // The final fragment completes a message: on_message, not on_activity.
    raw_frame(&mut s, 0x80, b"mented", true);
    assert_eq!(raw_read(&mut s), Some((0x1, b"fragmented".to_vec())));
    send_and_echo(&mut s, b"plain");
    assert_eq!(activity(), 5);
}

/// Sends a text message and reads its echo.
fn send_and_echo(s: &mut TcpStream, text: &[u8]) {
    raw_frame(s, 0x81, text, true);
    assert_eq!(raw_read(s), Some((0x1, text.to_vec())));
}
