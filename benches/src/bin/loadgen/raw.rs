//! `--raw-tcp`: this machine's ceiling, a minimal WebSocket server that
//! fans pre-built frames out from one thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use realtime_benches::wire::find;

/// The control server: minimal handshake, then pre-built frames fanned out
/// from one thread with large non-blocking writes.
pub(crate) struct RawServer {
    pub(crate) addr: SocketAddr,
    pub(crate) conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl RawServer {
    pub(crate) fn start(args: &Args, _start: Instant) -> io::Result<Self> {
        // A backlog of 4,096, not std's 128: 10,000 clients connect at
        // once and this thread answers each handshake before the next
        // accept; an overflowing accept queue left some of them stuck
        // until the connect deadline.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
        socket.listen(4096)?;
        let listener: TcpListener = socket.into();
        let addr = listener.local_addr()?;
        let conns = Arc::new(Mutex::new(Vec::new()));
        let sink = conns.clone();
        let channels = args.channels.max(1);
        std::thread::spawn(move || {
            let mut n = 0usize;
            for s in listener.incoming() {
                let Ok(mut s) = s else { continue };
                let ch = n % channels;
                n += 1;
                // Handshake: read the request, answer 101, then the events a
                // Pusher server sends on connect and subscribe.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                while find(&buf, b"\r\n\r\n").is_none() {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let mut out = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n".to_vec();
                push_unmasked(
                    &mut out,
                    br#"{"event":"pusher:connection_established","data":"{}"}"#,
                );
                push_unmasked(&mut out, format!(r#"{{"event":"pusher_internal:subscription_succeeded","channel":"bench-{ch}","data":"{{}}"}}"#).as_bytes());
                if s.write_all(&out).is_err() {
                    continue;
                }
                s.set_nonblocking(true).ok();
                s.set_nodelay(true).ok();
                if let Ok(mut g) = sink.lock() {
                    g.push(s);
                }
            }
        });
        Ok(Self { addr, conns })
    }

    /// Fans out events for `duration` from this thread; per-channel counts.
    pub(crate) fn publish(&self, args: &Args, start: Instant) -> Vec<u64> {
        let k = args.channels.max(1);
        let mut counts = vec![0u64; k];
        let Ok(mut conns) = self.conns.lock() else {
            return counts;
        };
        let mut pending: Vec<Vec<u8>> = vec![Vec::new(); conns.len()];
        let stop_at = Instant::now() + Duration::from_secs(args.duration);
        let interval = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64));
        let mut next = Instant::now();
        let mut seq = 0u64;
        while Instant::now() < stop_at {
            if let Some(iv) = interval {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep(next - now);
                }
                next += iv;
            }
            // Paced (`--rate`, events per second in total, as the HTTP
            // publisher counts them): one event per tick, to the channels
            // in turn, so `--raw-tcp` is the control of the same
            // scenario (issue 16 item 1). Saturated: 32 events per
            // channel per round, so each write moves many frames.
            let (first, n) = if interval.is_some() {
                (seq as usize, 1)
            } else {
                (0, 32 * k)
            };
            for r in first..first + n {
                let ch = r % k;
                let data = serde_json::to_string(&event_data(args, start, seq)).unwrap_or_default();
                seq += 1;
                let mut frame = Vec::new();
                push_unmasked(
                    &mut frame,
                    format!(r#"{{"event":"bench","channel":"bench-{ch}","data":{data}}}"#)
                        .as_bytes(),
                );
                for (i, p) in pending.iter_mut().enumerate() {
                    if i % k == ch && p.len() < 1 << 20 {
                        p.extend_from_slice(&frame);
                    }
                }
                counts[ch] += 1;
            }
            for (s, p) in conns.iter_mut().zip(pending.iter_mut()) {
                if p.is_empty() {
                    continue;
                }
                if let Ok(n) = s.write(p) {
                    p.drain(..n);
                }
            }
        }
        // Flush the rest.
        let flush_until = Instant::now() + Duration::from_secs(5);
        while pending.iter().any(|p| !p.is_empty()) && Instant::now() < flush_until {
            for (s, p) in conns.iter_mut().zip(pending.iter_mut()) {
                if let Ok(n) = s.write(p) {
                    p.drain(..n);
                }
            }
        }
        counts
    }
}

pub(crate) fn push_unmasked(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

// ----------------------------------------------------------------- /proc
