//! The bytes on the wire: WebSocket frames (client side: masked out,
//! unmasked in), a non-blocking connect from a chosen loopback source
//! address, and a keep-alive HTTP/1.1 client that signs Pusher API requests.
//!
//! These mirror the loadgen's helpers (`../loadgen/client.rs`,
//! `publish.rs`), which are written against the loadgen's `Args`; the soak
//! driver needs them per node and per app key instead.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use mio::net::TcpStream;
use sha2::Sha256;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream as StdStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `EINPROGRESS` on Linux: a non-blocking connect under way.
const EINPROGRESS: i32 = 115;

/// Opens a non-blocking TCP connection from `src` (any 127.0.0.x) to
/// `target`; `small_rcvbuf` shrinks the receive buffer so a client that
/// reads slowly pushes back on the server soon.
pub(crate) fn connect_from(
    src: Ipv4Addr,
    target: SocketAddr,
    small_rcvbuf: bool,
) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    if small_rcvbuf {
        s.set_recv_buffer_size(4096)?;
    }
    if src != Ipv4Addr::LOCALHOST {
        s.bind(&SocketAddr::new(IpAddr::V4(src), 0).into())?;
    }
    match s.connect(&target.into()) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(StdStream::from(s)))
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

/// Appends one masked client frame.
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

/// The first position of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The unsigned integer after `key` in `b`.
pub(crate) fn field_u64(b: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(b, key)? + key.len();
    let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&b[at..at + digits]).ok()?.parse().ok()
}

/// HMAC-SHA256 of `msg` with `secret`, hex.
pub(crate) fn sign(secret: &str, msg: &str) -> String {
    // A key of any length is valid for HMAC.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(msg.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A keep-alive HTTP/1.1 client to one node that reconnects when needed.
pub(crate) struct Http {
    target: SocketAddr,
    sock: Option<StdStream>,
    buf: Vec<u8>,
}

impl Http {
    pub(crate) fn new(target: SocketAddr) -> Self {
        Self {
            target,
            sock: None,
            buf: Vec::new(),
        }
    }

    /// POSTs `body` to `path` signed with the app's key and secret; the
    /// HTTP status, or why there is none.
    pub(crate) fn post_signed(
        &mut self,
        key: &str,
        secret: &str,
        path: &str,
        body: &str,
    ) -> Result<u16, String> {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let md5 = hex::encode(Md5::digest(body.as_bytes()));
        let query = format!("auth_key={key}&auth_timestamp={ts}&auth_version=1.0&body_md5={md5}");
        let sig = sign(secret, &format!("POST\n{path}\n{query}"));
        let req = format!(
            "POST {path}?{query}&auth_signature={sig} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.target,
            body.len()
        );
        if self.sock.is_none() {
            let s = StdStream::connect_timeout(&self.target, Duration::from_secs(2))
                .map_err(|e| format!("connect: {e}"))?;
            s.set_nodelay(true).ok();
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            self.sock = Some(s);
        }
        match self.exchange(req.as_bytes()) {
            Ok(status) => Ok(status),
            Err(e) => {
                // No retry: a request that may have been served must not be
                // sent twice (the driver would count its event once).
                self.sock = None;
                Err(e.to_string())
            }
        }
    }

    fn exchange(&mut self, req: &[u8]) -> io::Result<u16> {
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
                        return Err(io::ErrorKind::UnexpectedEof.into());
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
