//! The publisher: signed HTTP API requests (`batch_events`) at a rate or
//! saturated, over keep-alive connections.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::*;

pub(crate) fn event_data(args: &Args, start: Instant, seq: u64) -> String {
    let t = start.elapsed().as_nanos() as u64;
    let head = format!(r#"{{"t":{t},"s":{seq},"p":""#);
    let pad = args.payload.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// Publishes for `duration`; events published per channel.
pub(crate) fn publish(args: &Args, target: SocketAddr, start: Instant) -> Result<Vec<u64>, String> {
    let k = args.channels.max(1);
    let stop_at = Instant::now() + Duration::from_secs(args.duration);
    let workers = if args.rate == 0 {
        args.publishers.max(1)
    } else {
        1
    };
    let counts: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || -> Result<Vec<u64>, String> {
                    let mut http = Http::connect(target)?;
                    let mut counts = vec![0u64; k];
                    let mut seq = w as u64;
                    let batch = args.batch.clamp(1, 10);
                    let interval = (args.rate > 0)
                        .then(|| Duration::from_secs_f64(batch as f64 / args.rate as f64));
                    let mut next = Instant::now();
                    while Instant::now() < stop_at {
                        if let Some(iv) = interval {
                            let now = Instant::now();
                            if now < next {
                                std::thread::sleep(next - now);
                            }
                            next += iv;
                        }
                        let mut events = Vec::with_capacity(batch);
                        let mut chans = Vec::with_capacity(batch);
                        for _ in 0..batch {
                            let ch = (seq as usize) % k;
                            events.push(serde_json::json!({
                                "name": "bench",
                                "channel": format!("bench-{ch}"),
                                "data": event_data(args, start, seq),
                            }));
                            chans.push(ch);
                            seq += workers as u64;
                        }
                        let body = serde_json::json!({ "batch": events }).to_string();
                        let path = format!("/apps/{}/batch_events", args.app_id);
                        let status = http.post_signed(args, &path, &body)?;
                        if status != 200 {
                            return Err(format!("publish answered HTTP {status}"));
                        }
                        for ch in chans {
                            counts[ch] += 1;
                        }
                    }
                    Ok(counts)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("publisher panicked".into()))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut total = vec![0u64; k];
    for c in counts {
        for (i, n) in c.into_iter().enumerate() {
            total[i] += n;
        }
    }
    Ok(total)
}

/// A keep-alive HTTP/1.1 client that reconnects when the server closes.
pub(crate) struct Http {
    target: SocketAddr,
    sock: Option<StdStream>,
    buf: Vec<u8>,
}

impl Http {
    pub(crate) fn connect(target: SocketAddr) -> Result<Self, String> {
        let mut h = Self {
            target,
            sock: None,
            buf: Vec::new(),
        };
        h.reconnect()?;
        Ok(h)
    }

    pub(crate) fn reconnect(&mut self) -> Result<(), String> {
        let s = StdStream::connect(self.target).map_err(|e| format!("publisher connect: {e}"))?;
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        self.sock = Some(s);
        self.buf.clear();
        Ok(())
    }

    pub(crate) fn post_signed(
        &mut self,
        args: &Args,
        path: &str,
        body: &str,
    ) -> Result<u16, String> {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let md5 = hex::encode(Md5::digest(body.as_bytes()));
        let query = format!(
            "auth_key={}&auth_timestamp={ts}&auth_version=1.0&body_md5={md5}",
            args.app_key
        );
        let to_sign = format!("POST\n{path}\n{query}");
        let mut mac = Hmac::<Sha256>::new_from_slice(args.app_secret.as_bytes())
            .map_err(|e| e.to_string())?;
        mac.update(to_sign.as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        let req = format!(
            "POST {path}?{query}&auth_signature={sig} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.target,
            body.len()
        );
        for attempt in 0..2 {
            if self.sock.is_none() {
                self.reconnect()?;
            }
            match self.exchange(req.as_bytes()) {
                Ok(status) => return Ok(status),
                Err(e) if attempt == 0 => {
                    let _ = e;
                    self.sock = None;
                }
                Err(e) => return Err(format!("publish: {e}")),
            }
        }
        Err("publish failed".into())
    }

    pub(crate) fn exchange(&mut self, req: &[u8]) -> io::Result<u16> {
        let sock = self.sock.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        sock.write_all(req)?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
                let status: u16 = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    let n = sock.read(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                if head.contains("connection: close") {
                    self.sock = None;
                }
                return Ok(status);
            }
            let n = sock.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

// ------------------------------------------------------------- raw server
