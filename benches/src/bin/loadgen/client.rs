//! The client side: mio event loops holding the WebSocket connections,
//! parsing frames and recording latencies.

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use realtime_benches::wire::{
    connect_from, field_u64, find, parse_frame, push_masked, upgrade_request,
};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;

pub(crate) enum State {
    Connecting,
    Handshaking,
    Open,
    Closed,
}

pub(crate) struct Conn {
    sock: TcpStream,
    state: State,
    buf: Vec<u8>,
    out: Vec<u8>,
    channel: String,
}

pub(crate) fn client_loop(
    args: &Args,
    target: SocketAddr,
    first: usize,
    count: usize,
    shared: &Shared,
    start: Instant,
) {
    let mut poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("poll: {e}");
            shared.failed.fetch_add(count, Ordering::SeqCst);
            return;
        }
    };
    let mut conns: Vec<Option<Conn>> = Vec::with_capacity(count);
    for i in 0..count {
        let n = first + i;
        let src = source_addr(n, args.source_ips);
        match connect_from(src, target, false) {
            Ok(mut sock) => {
                if poll
                    .registry()
                    .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
                    .is_err()
                {
                    shared.failed.fetch_add(1, Ordering::SeqCst);
                    conns.push(None);
                    continue;
                }
                conns.push(Some(Conn {
                    sock,
                    state: State::Connecting,
                    buf: Vec::new(),
                    out: Vec::new(),
                    channel: format!("bench-{}", n % args.channels.max(1)),
                }));
            }
            Err(e) => {
                if n == first {
                    eprintln!("connect: {e}");
                }
                shared.failed.fetch_add(1, Ordering::SeqCst);
                conns.push(None);
            }
        }
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).ok();
    let mut events = Events::with_capacity(1024);
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut received_local = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        if poll
            .poll(&mut events, Some(Duration::from_millis(50)))
            .is_err()
        {
            continue;
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(c) = conns.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            let mut dead = false;
            if matches!(c.state, State::Connecting) && ev.is_writable() {
                if c.sock.peer_addr().is_ok() {
                    let req = upgrade_request(&args.app_key, "loadgen", target);
                    c.out.extend_from_slice(req.as_bytes());
                    c.state = State::Handshaking;
                } else if ev.is_error() || ev.is_write_closed() {
                    dead = true;
                }
            }
            if ev.is_readable() || ev.is_read_closed() {
                loop {
                    match c.sock.read(&mut rbuf) {
                        Ok(0) => {
                            dead = true;
                            break;
                        }
                        Ok(n) => c.buf.extend_from_slice(&rbuf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            dead = true;
                            break;
                        }
                    }
                }
                if !dead {
                    let n = process(c, shared, start, hist.as_mut());
                    received_local += n;
                    if n > 0 {
                        shared.received.fetch_add(n, Ordering::Relaxed);
                    }
                    if matches!(c.state, State::Closed) {
                        dead = true;
                    }
                }
            }
            if !c.out.is_empty() && !dead {
                match c.sock.write(&c.out) {
                    Ok(n) => {
                        c.out.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => dead = true,
                }
            }
            if dead {
                let was_subscribed = matches!(c.state, State::Open | State::Closed);
                let _ = poll.registry().deregister(&mut c.sock);
                conns[i] = None;
                if !was_subscribed {
                    shared.failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
    let _ = received_local;
    if let (Some(h), Ok(mut g)) = (hist, shared.hist.lock()) {
        match g.as_mut() {
            Some(all) => {
                let _ = all.add(&h);
            }
            None => *g = Some(h),
        }
    }
}

/// Parses what `c.buf` holds; returns bench events received.
pub(crate) fn process(
    c: &mut Conn,
    shared: &Shared,
    start: Instant,
    mut hist: Option<&mut Histogram<u64>>,
) -> u64 {
    let mut got = 0;
    if matches!(c.state, State::Handshaking) {
        let Some(end) = find(&c.buf, b"\r\n\r\n") else {
            return 0;
        };
        if !c.buf.starts_with(b"HTTP/1.1 101") {
            c.state = State::Closed;
            return 0;
        }
        c.buf.drain(..end + 4);
        c.state = State::Open;
        shared.open.fetch_add(1, Ordering::SeqCst);
    }
    let mut pos = 0;
    while let Some((opcode, start_payload, end)) = parse_frame(&c.buf[pos..]) {
        let payload = &c.buf[pos + start_payload..pos + end];
        match opcode {
            0x1 => {
                if let Some(t) = field_u64(payload, b"\\\"t\\\":") {
                    got += 1;
                    if let Some(h) = hist.as_deref_mut() {
                        let now = start.elapsed().as_nanos() as u64;
                        let _ = h.record(now.saturating_sub(t).max(1));
                    }
                } else if find(payload, b"pusher:connection_established").is_some() {
                    let sub = format!(
                        r#"{{"event":"pusher:subscribe","data":{{"channel":"{}"}}}}"#,
                        c.channel
                    );
                    push_masked(&mut c.out, 0x1, sub.as_bytes());
                } else if find(payload, b"subscription_succeeded").is_some() {
                    shared.subscribed.fetch_add(1, Ordering::SeqCst);
                } else if find(payload, b"pusher:ping").is_some() {
                    push_masked(&mut c.out, 0x1, br#"{"event":"pusher:pong","data":{}}"#);
                } else if find(payload, b"pusher:error").is_some() {
                    eprintln!("server error: {}", String::from_utf8_lossy(payload));
                }
            }
            0x8 => c.state = State::Closed,
            0x9 => {
                let p = payload.to_vec();
                push_masked(&mut c.out, 0xA, &p);
            }
            _ => {}
        }
        pos += end;
    }
    c.buf.drain(..pos);
    got
}
