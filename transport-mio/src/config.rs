//! Server configuration: addresses, limits and timeouts, with the defaults
//! the gateway ships with.
//!
//! Every field is public so that callers can write
//! `Config { bind, ..Config::default() }`. The values are read once, when
//! [`crate::Server::bind`] starts the event loops.

use std::net::SocketAddr;
use std::time::Duration;

/// How accepted sockets are spread across the event loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceptMode {
    /// One `SO_REUSEPORT` listener per loop: the kernel spreads incoming
    /// connections by a hash of the 4-tuple, no socket crosses threads. The
    /// default on Linux.
    #[default]
    ReusePort,
    /// One listener on loop 0, which hands accepted sockets to the loops
    /// round-robin (a queue push and a wake per socket). Exactly even
    /// spreading; loop 0 does all the accepting.
    RoundRobin,
}

/// Options for [`crate::Server::bind`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use realtime_mio::Config;
///
/// let config = Config {
///     workers: 2,
///     idle_timeout: Duration::from_secs(60),
///     ..Config::default()
/// };
/// assert_eq!(config.max_message_size, 64 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (default `127.0.0.1:6001`). Port 0 picks a free
    /// port: see [`crate::Server::local_addr`].
    pub bind: SocketAddr,
    /// Number of event loops (default: available cores). 0 means 1.
    pub workers: usize,
    /// Open WebSocket connections allowed at once (default 10,000). An
    /// upgrade beyond it is answered with HTTP 503 before any
    /// per-connection WebSocket state is allocated.
    pub max_connections: usize,
    /// Largest inbound message, fragments included (default 64 KiB); a
    /// bigger one closes the connection with 1009.
    pub max_message_size: usize,
    /// Largest plain-HTTP request body (default 1 MiB); a bigger one gets
    /// HTTP 413.
    pub max_http_body: usize,
    /// Request-body bytes buffered at once across every connection
    /// (default 32 MiB): a body that would pass it is answered 503 at once,
    /// before it is read, so many slow or large unauthenticated bodies
    /// cannot exhaust memory. A `Content-Length` body reserves its whole
    /// length when its head arrives; a chunked body reserves as it grows.
    pub max_http_buffer: usize,
    /// A socket that has sent no byte this long after it was accepted is
    /// dropped (default 5 s), well before `handshake_timeout`: idle sockets
    /// opened to exhaust the socket cap are shed quickly.
    pub silent_timeout: Duration,
    /// Sockets one IP address may hold at once (default 0: no limit, as a
    /// gateway behind a load balancer sees one address). Over it, the new
    /// socket gets HTTP 429 and is closed.
    pub max_connections_per_ip: usize,
    /// Time allowed from accept to a complete request (headers and body) and
    /// between keep-alive requests (default 10 s): slowloris protection.
    pub handshake_timeout: Duration,
    /// A WebSocket ping is sent after this long without inbound traffic, and
    /// again every interval while the peer stays silent (default 30 s).
    pub ping_interval: Duration,
    /// A connection without any inbound traffic for this long is closed
    /// (default 120 s): a best-effort close frame 1001 "idle timeout", then
    /// the socket is dropped at once, so a dead peer sees 1006.
    pub idle_timeout: Duration,
    /// A socket that accepts no bytes for this long while data waits to be
    /// sent is dropped (default 10 s); the client is closed.
    pub write_timeout: Duration,
    /// Time [`crate::Server::shutdown`] gives clients to receive their close
    /// frame before the sockets are dropped (default 5 s).
    pub shutdown_timeout: Duration,
    /// How accepted sockets are spread across loops (default
    /// [`AcceptMode::ReusePort`]).
    pub accept: AcceptMode,
    /// Listen backlog of each listener (default 1024).
    pub backlog: u32,
    /// TLS on the port (default none: plain TCP). With it every accepted
    /// socket must start with a TLS handshake; the handshake counts against
    /// `handshake_timeout` with the first request.
    pub tls: Option<crate::Tls>,
    /// Negotiate permessage-deflate (RFC 7692) when a client offers it
    /// (default true). Each broadcast is compressed once and its bytes
    /// shared by every recipient, so the CPU cost does not grow with the
    /// audience while the bytes on the wire shrink several times for JSON;
    /// no per-connection state is kept for sending.
    pub compression: bool,
    /// Outbound payloads shorter than this many bytes are sent
    /// uncompressed even when compression is negotiated (default 256):
    /// small frames gain little and cost a compression.
    pub compression_threshold: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 6001)),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_connections: 10_000,
            max_message_size: 64 * 1024,
            max_http_body: 1024 * 1024,
            max_http_buffer: 32 * 1024 * 1024,
            silent_timeout: Duration::from_secs(5),
            max_connections_per_ip: 0,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            accept: AcceptMode::default(),
            backlog: 1024,
            tls: None,
            compression: true,
            compression_threshold: 256,
        }
    }
}

impl Config {
    /// The number of loops actually started.
    pub(crate) fn loops(&self) -> usize {
        self.workers.max(1)
    }

    /// The timer resolution: a quarter of the shortest timeout, between
    /// 1 ms and 100 ms.
    pub(crate) fn tick(&self) -> Duration {
        let shortest = [
            self.handshake_timeout,
            self.silent_timeout,
            self.ping_interval,
            self.idle_timeout,
            self.write_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1));
        (shortest / 4).clamp(Duration::from_millis(1), Duration::from_millis(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_follows_the_shortest_timeout() {
        let c = Config {
            idle_timeout: Duration::from_millis(200),
            ..Config::default()
        };
        assert_eq!(c.tick(), Duration::from_millis(50));
        assert_eq!(Config::default().tick(), Duration::from_millis(100));
    }
}
