//! The client side: mio event loops holding the WebSocket connections,
//! parsing frames and recording latencies.

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream as StdStream};
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

pub(crate) const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

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
        match connect_from(src, target) {
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
    let path = format!(
        "/app/{}?protocol=7&client=loadgen&version=1.0",
        args.app_key
    );
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
                    let req = format!(
                        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                    );
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

pub(crate) fn connect_from(src: Ipv4Addr, target: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    if src != Ipv4Addr::new(127, 0, 0, 1) {
        s.bind(&SocketAddr::new(IpAddr::V4(src), 0).into())?;
    }
    match s.connect(&target.into()) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(libc_einprogress())
                || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(StdStream::from(s)))
}

pub(crate) fn libc_einprogress() -> i32 {
    115 // EINPROGRESS on Linux
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

/// (opcode, payload start, frame end) of the first complete unmasked frame.
pub(crate) fn parse_frame(b: &[u8]) -> Option<(u8, usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let (len, mut at) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => {
            let mut x = [0u8; 8];
            x.copy_from_slice(b.get(2..10)?);
            (u64::from_be_bytes(x) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if masked {
        at += 4;
    }
    if b.len() < at + len {
        return None;
    }
    Some((opcode, at, at + len))
}

pub(crate) fn push_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The unsigned integer after `key` in `b`.
pub(crate) fn field_u64(b: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(b, key)? + key.len();
    let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&b[at..at + digits]).ok()?.parse().ok()
}

// -------------------------------------------------------------- publisher
