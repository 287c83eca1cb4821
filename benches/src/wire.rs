//! The bytes on the wire, as the bench binaries (`loadgen`, `soak`) write
//! and read them: WebSocket frames from the client side (masked out,
//! unmasked in), a non-blocking connect from a chosen loopback source
//! address, a few byte searches that stand in for a JSON parse on the hot
//! path, and a keep-alive HTTP/1.1 client that signs Pusher API requests.
//!
//! Why hand-written rather than tungstenite and an HTTP client crate: the
//! drivers hold tens of thousands of sockets in their own mio loops, parse
//! frames in place out of one read buffer and must not spend the machine's
//! two cores on the client side; the frame layout they need is the few lines
//! below (RFC 6455 section 5.2). The HTTP client sends one request at a
//! time and reads `Content-Length` bodies only, which is all the server's
//! API answers with.
//!
//! Nothing here panics on what the server sends: a frame that is not complete
//! yet is `None`, a malformed HTTP answer is status 0 or an error.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use mio::net::TcpStream;
use sha2::Sha256;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream as StdStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `EINPROGRESS` on Linux: a non-blocking connect under way.
const EINPROGRESS: i32 = 115;

/// The `Sec-WebSocket-Key` every bench client sends (RFC 6455's sample
/// nonce); the drivers do not check `Sec-WebSocket-Accept`.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The mask of every client frame. RFC 6455 wants it unpredictable, against
/// proxies caching forged requests; on loopback to our own server a fixed
/// one keeps the bytes reproducible.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Opens a non-blocking TCP connection from `src` (any address in
/// 127.0.0.0/8; 127.0.0.1 is not bound, the kernel picks it) to `target`,
/// with `TCP_NODELAY`. `small_rcvbuf` shrinks the receive buffer to 4 KiB so
/// that a client that reads slowly pushes back on the server soon.
///
/// The connect is under way when this returns: register the socket for
/// `WRITABLE` and check `peer_addr()` on the event.
///
/// # Errors
///
/// The socket, bind or connect error (e.g. `EADDRNOTAVAIL` when `src`'s
/// ports run out), other than the connect being in progress.
pub fn connect_from(
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

/// The WebSocket upgrade request for app `app_key` on `host`, naming the
/// client `client` in the Pusher query (`protocol=7`, `version=1.0`).
pub fn upgrade_request(app_key: &str, client: &str, host: SocketAddr) -> String {
    format!(
        "GET /app/{app_key}?protocol=7&client={client}&version=1.0 HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// The first complete frame at the start of `b`: (opcode, payload start,
/// frame end), offsets into `b`. `None` while the frame is not all there,
/// header included. A masked frame (which a server must not send) is
/// measured right but its payload is left masked.
pub fn parse_frame(b: &[u8]) -> Option<(u8, usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let (len, mut at): (usize, usize) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => {
            let mut x = [0u8; 8];
            x.copy_from_slice(b.get(2..10)?);
            (usize::try_from(u64::from_be_bytes(x)).ok()?, 10)
        }
        n => (n as usize, 2),
    };
    if masked {
        at += 4;
    }
    if b.len() < at.checked_add(len)? {
        return None;
    }
    Some((opcode, at, at + len))
}

/// Appends one final (FIN) masked client frame of `opcode` carrying
/// `payload` to `out`, with the shortest length encoding.
pub fn push_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
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
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

/// The first position of `needle` in `hay`; an empty needle is at 0.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The unsigned decimal integer right after the first `key` in `b`
/// (`None` if `key` is missing, no digit follows or it overflows `u64`).
pub fn field_u64(b: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(b, key)? + key.len();
    let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&b[at..at + digits]).ok()?.parse().ok()
}

/// Hex HMAC-SHA256 of `msg` keyed with `secret`: Pusher's signature for
/// channel auth (`socket_id:channel`) and for API requests
/// (`METHOD\nPATH\nQUERY`).
pub fn sign(secret: &str, msg: &str) -> String {
    // HMAC takes a key of any length (a long one is hashed first), so this
    // never fails; the empty string would be refused by the server as 401.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(msg.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A signed `POST path` request for `host` with a JSON `body`, timestamped
/// `ts` (Unix seconds): the Pusher API's `auth_key`, `auth_timestamp`,
/// `auth_version`, `body_md5` and `auth_signature` in the query (already in
/// sorted order), `Content-Length` framing, keep-alive.
pub fn signed_post(
    host: SocketAddr,
    key: &str,
    secret: &str,
    path: &str,
    body: &str,
    ts: u64,
) -> String {
    let md5 = hex::encode(Md5::digest(body.as_bytes()));
    let query = format!("auth_key={key}&auth_timestamp={ts}&auth_version=1.0&body_md5={md5}");
    let sig = sign(secret, &format!("POST\n{path}\n{query}"));
    format!(
        "POST {path}?{query}&auth_signature={sig} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Why a request of [`Http`] got no HTTP status.
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpError {
    /// The system clock is before 1970: no `auth_timestamp`.
    Clock,
    /// Connecting to the server failed (or took over two seconds).
    Connect(io::Error),
    /// Writing the request or reading the answer failed, timed out or met
    /// the end of the stream; the request may have been served.
    Exchange(io::Error),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clock => f.write_str("system clock before 1970"),
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Exchange(e) => write!(f, "exchange: {e}"),
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Clock => None,
            Self::Connect(e) | Self::Exchange(e) => Some(e),
        }
    }
}

/// A keep-alive HTTP/1.1 client to one server: one request at a time,
/// connected on first use and again after the server closed or a request
/// failed. A failed request is never sent again: one that may have been
/// served must not be counted twice (the drivers count what they publish).
pub struct Http {
    target: SocketAddr,
    read_timeout: Duration,
    sock: Option<StdStream>,
    buf: Vec<u8>,
}

impl Http {
    /// How long a connect may take.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

    /// A client to `target` that waits at most `read_timeout` for each read
    /// of an answer. It does not connect yet.
    pub fn new(target: SocketAddr, read_timeout: Duration) -> Self {
        Self {
            target,
            read_timeout,
            sock: None,
            buf: Vec::new(),
        }
    }

    /// Connects now unless connected, so that a server that is not there
    /// shows before the first request.
    ///
    /// # Errors
    ///
    /// [`HttpError::Connect`].
    pub fn connect(&mut self) -> Result<(), HttpError> {
        if self.sock.is_none() {
            let s = StdStream::connect_timeout(&self.target, Self::CONNECT_TIMEOUT)
                .map_err(HttpError::Connect)?;
            s.set_nodelay(true).ok();
            s.set_read_timeout(Some(self.read_timeout)).ok();
            self.sock = Some(s);
        }
        Ok(())
    }

    /// POSTs `body` to `path` signed with the app's `key` and `secret`
    /// ([`signed_post`], timestamped now); the answer's HTTP status (0 if
    /// its status line is not one).
    ///
    /// # Errors
    ///
    /// [`HttpError`]: no connection, or the exchange failed (the connection
    /// is dropped and the request not retried).
    pub fn post_signed(
        &mut self,
        key: &str,
        secret: &str,
        path: &str,
        body: &str,
    ) -> Result<u16, HttpError> {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| HttpError::Clock)?
            .as_secs();
        let req = signed_post(self.target, key, secret, path, body, ts);
        self.connect()?;
        self.exchange(req.as_bytes()).map_err(|e| {
            self.sock = None;
            HttpError::Exchange(e)
        })
    }

    /// Writes `req` and reads one answer: its head, then `Content-Length`
    /// bytes of body; drops the connection if the answer says
    /// `Connection: close`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// Unmasks a masked frame's payload in place of the caller's copy.
    fn unmask(frame: &[u8], at: usize, end: usize) -> Vec<u8> {
        let mask = &frame[at - 4..at];
        frame[at..end]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect()
    }

    #[test]
    fn sign_matches_the_pusher_docs_worked_example() {
        // shared/PUSHER.md, "Auth signatures".
        assert_eq!(
            sign("7ad3773142a6692b25b8", "1234.1234:private-foobar"),
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
    }

    #[test]
    fn signed_post_bytes_match_an_independent_signer() {
        // The md5 and signature computed with Python's hashlib/hmac.
        let body = r#"{"name":"e","channel":"c","data":"{}"}"#;
        let host: SocketAddr = "127.0.0.1:6001".parse().unwrap();
        let req = signed_post(
            host,
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            "/apps/3/events",
            body,
            1_353_088_179,
        );
        let want = format!(
            "POST /apps/3/events?auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
             &body_md5=a94d6c028ba9813bbd0f842c5774180b\
             &auth_signature=8d268450b01c415118ac8e3c29095d6f0c07a35d6872ab18b020406b7e8267c6 HTTP/1.1\r\n\
             Host: 127.0.0.1:6001\r\nContent-Type: application/json\r\nContent-Length: 38\r\n\r\n{body}"
        );
        assert_eq!(req, want);
    }

    #[test]
    fn push_masked_round_trips_through_parse_frame_at_each_length_encoding() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut out = Vec::new();
            push_masked(&mut out, 0x2, &payload);
            assert_eq!(out[0], 0x82, "FIN and opcode, len {len}");
            let header = match len {
                0..=125 => 2,
                126..=65_535 => 4,
                _ => 10,
            };
            assert_eq!(
                out.len(),
                header + 4 + len,
                "shortest length encoding, len {len}"
            );
            let (opcode, at, end) = parse_frame(&out).expect("a whole frame");
            assert_eq!((opcode, at, end), (0x2, header + 4, out.len()));
            assert_eq!(unmask(&out, at, end), payload, "len {len}");
        }
    }

    #[test]
    fn push_masked_writes_the_known_bytes_of_a_short_text_frame() {
        let mut out = vec![0xaa];
        push_masked(&mut out, 0x1, b"Hello");
        let masked: Vec<u8> = b"Hello"
            .iter()
            .zip(MASK.iter().cycle())
            .map(|(b, m)| b ^ m)
            .collect();
        let mut want = vec![0xaa, 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d];
        want.extend(masked);
        assert_eq!(out, want, "appends after what `out` held");
    }

    #[test]
    fn parse_frame_waits_for_every_byte_of_a_split_frame() {
        // Unmasked server frames: a 16-bit length one, then a short one.
        let payload = vec![b'x'; 300];
        let mut wire = vec![0x81, 126];
        wire.extend_from_slice(&300u16.to_be_bytes());
        wire.extend_from_slice(&payload);
        let first_end = wire.len();
        wire.extend_from_slice(&[0x89, 2, b'h', b'i']);
        for cut in 0..first_end {
            assert_eq!(parse_frame(&wire[..cut]), None, "cut at {cut}");
        }
        assert_eq!(parse_frame(&wire[..first_end]), Some((0x1, 4, first_end)));
        assert_eq!(
            parse_frame(&wire),
            Some((0x1, 4, first_end)),
            "the first frame only"
        );
        let rest = &wire[first_end..];
        assert_eq!(parse_frame(rest), Some((0x9, 2, 4)));
        assert_eq!(&rest[2..4], b"hi");
    }

    #[test]
    fn parse_frame_refuses_a_64_bit_length_past_memory_without_panicking() {
        let mut wire = vec![0x82, 127];
        wire.extend_from_slice(&u64::MAX.to_be_bytes());
        wire.extend_from_slice(&[0; 16]);
        assert_eq!(parse_frame(&wire), None);
        let mut masked = vec![0x82, 0xff];
        masked.extend_from_slice(&(u64::MAX - 3).to_be_bytes());
        masked.extend_from_slice(&[0; 16]);
        assert_eq!(parse_frame(&masked), None);
    }

    #[test]
    fn field_u64_reads_the_digits_after_the_key() {
        let data = br#"{"event":"soak","data":"{\"t\":123456789,\"s\":0,\"c\":7}"}"#;
        assert_eq!(field_u64(data, br#"\"t\":"#), Some(123_456_789));
        assert_eq!(field_u64(data, br#"\"s\":"#), Some(0));
        assert_eq!(field_u64(data, br#"\"c\":"#), Some(7));
        assert_eq!(field_u64(data, br#"\"x\":"#), None, "no such key");
        assert_eq!(field_u64(br#""t":"abc""#, br#""t":"#), None, "no digits");
        assert_eq!(
            field_u64(br#""t":99999999999999999999"#, br#""t":"#),
            None,
            "past u64"
        );
        assert_eq!(field_u64(br#""t":"#, br#""t":"#), None, "key at the end");
    }

    #[test]
    fn find_returns_the_first_match_and_takes_an_empty_needle() {
        assert_eq!(find(b"ab\r\n\r\nc\r\n\r\n", b"\r\n\r\n"), Some(2));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"", b""), Some(0));
    }

    #[test]
    fn upgrade_request_is_the_pusher_handshake() {
        let host: SocketAddr = "127.0.0.3:33001".parse().unwrap();
        assert_eq!(
            upgrade_request("k", "soak", host),
            "GET /app/k?protocol=7&client=soak&version=1.0 HTTP/1.1\r\nHost: 127.0.0.3:33001\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
    }

    /// What the scripted server does with one request.
    enum Answer {
        /// These writes, in turn (an answer split over several).
        Writes(Vec<&'static [u8]>),
        /// A head promising more body than is sent, then close.
        Truncated,
    }

    /// Reads one request (head and `Content-Length` body) off `s`.
    fn read_request(s: &mut StdStream) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let len = field_u64(&buf[..end], b"Content-Length: ").unwrap_or(0) as usize;
                if buf.len() >= end + 4 + len {
                    return Some(buf);
                }
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// A server on an ephemeral loopback port that answers the requests of
    /// each accepted connection from `script` (one list a connection,
    /// closing after its last answer) and sends every request it read, tagged
    /// with its connection's number, down the channel.
    fn scripted_server(script: Vec<Vec<Answer>>) -> (SocketAddr, mpsc::Receiver<(usize, Vec<u8>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (n, answers) in script.into_iter().enumerate() {
                let (mut s, _) = listener.accept().unwrap();
                for answer in answers {
                    let Some(req) = read_request(&mut s) else {
                        return;
                    };
                    tx.send((n, req)).unwrap();
                    match answer {
                        Answer::Writes(parts) => {
                            for p in parts {
                                s.write_all(p).unwrap();
                                s.flush().unwrap();
                            }
                        }
                        Answer::Truncated => {
                            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")
                                .unwrap();
                        }
                    }
                }
            }
        });
        (addr, rx)
    }

    #[test]
    fn http_reads_split_answers_and_keeps_the_connection_alive() {
        let (addr, rx) = scripted_server(vec![vec![
            Answer::Writes(vec![
                b"HTTP/1.1 200 OK\r\nConte",
                b"nt-Length: 2\r\n\r",
                b"\n{",
                b"}",
            ]),
            Answer::Writes(vec![
                b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n",
            ]),
        ]]);
        let mut http = Http::new(addr, Duration::from_secs(30));
        assert_eq!(
            http.post_signed("k", "s", "/apps/1/events", "{}").unwrap(),
            200
        );
        assert_eq!(
            http.post_signed("k", "s", "/apps/1/events", "[]").unwrap(),
            413
        );
        let (n1, r1) = rx.recv().unwrap();
        let (n2, r2) = rx.recv().unwrap();
        assert_eq!((n1, n2), (0, 0), "both on the first connection");
        assert!(r1.ends_with(b"\r\n\r\n{}") && r2.ends_with(b"\r\n\r\n[]"));
    }

    #[test]
    fn http_reconnects_after_connection_close() {
        let (addr, rx) = scripted_server(vec![
            vec![Answer::Writes(vec![
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            ])],
            vec![Answer::Writes(vec![
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\n\r\nno\n",
            ])],
        ]);
        let mut http = Http::new(addr, Duration::from_secs(30));
        assert_eq!(http.post_signed("k", "s", "/p", "1").unwrap(), 200);
        assert_eq!(http.post_signed("k", "s", "/p", "2").unwrap(), 401);
        assert_eq!(rx.recv().unwrap().0, 0);
        assert_eq!(
            rx.recv().unwrap().0,
            1,
            "the second request on a new connection"
        );
    }

    #[test]
    fn http_fails_a_truncated_answer_and_does_not_send_the_request_again() {
        let (addr, rx) = scripted_server(vec![
            vec![Answer::Truncated],
            vec![Answer::Writes(vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            ])],
        ]);
        let mut http = Http::new(addr, Duration::from_secs(30));
        let err = http.post_signed("k", "s", "/p", "first").unwrap_err();
        assert!(
            matches!(&err, HttpError::Exchange(e) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{err}"
        );
        assert_eq!(http.post_signed("k", "s", "/p", "second").unwrap(), 200);
        let (n1, r1) = rx.recv().unwrap();
        let (n2, r2) = rx.recv().unwrap();
        assert_eq!((n1, n2), (0, 1));
        assert!(r1.ends_with(b"first"));
        assert!(
            r2.ends_with(b"second"),
            "the failed request was not sent again"
        );
    }

    #[test]
    fn http_connect_to_a_closed_port_is_a_connect_error() {
        // Bind then drop: a loopback port nobody listens on.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut http = Http::new(addr, Duration::from_secs(30));
        let err = http.connect().unwrap_err();
        assert!(matches!(err, HttpError::Connect(_)), "{err}");
        assert!(err.to_string().starts_with("connect: "), "{err}");
        let err = http.post_signed("k", "s", "/p", "").unwrap_err();
        assert!(matches!(err, HttpError::Connect(_)), "{err}");
    }
}
