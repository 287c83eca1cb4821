//! A TLS session over a byte stream, itself a byte stream: what the
//! connection's phases read and write is plaintext, and the ciphertext
//! moves between rustls and the socket inside [`TlsStream`]'s `read` and
//! `write`. [`Socket`] is what a connection of the server runs on: a plain
//! or a TLS stream over mio's `TcpStream`.
//!
//! # Algorithm
//!
//! - **Read**: return buffered plaintext if rustls has some; otherwise read
//!   ciphertext from the socket (`read_tls`), decrypt
//!   (`process_new_packets`), write whatever rustls wants to send (the
//!   handshake's flights, alerts, session tickets) and loop. The socket's
//!   `WouldBlock` and end of stream pass through as they are. A TLS error
//!   (a plaintext client, a garbage ClientHello, a bad record) sends
//!   rustls's alert, best effort, and is returned as an `InvalidData` error
//!   that [`is_handshake_failure`] recognises while the handshake runs.
//! - **Write**: first push what rustls still holds to the socket; if the
//!   socket does not take all of it, `WouldBlock`: the connection's writer
//!   keeps its own queue, so rustls never holds more than one call's worth
//!   of ciphertext (backpressure and the write timeout work as for a
//!   plain socket). Otherwise encrypt what rustls accepts of the buffers
//!   (one record per 16 KiB, not per buffer) and push it.
//! - **Flush** pushes what rustls holds; `WouldBlock` while some remains
//!   ([`Stream::has_unsent`] says so to the writer, so it waits for
//!   writable readiness instead of thinking the socket idle).
//! - **Shutdown** queues a `close_notify`, pushes it, then shuts the TCP
//!   write side.
//!
//! # Memory
//!
//! After the handshake rustls keeps the session keys and its incoming
//! record buffer; outgoing buffers are emptied as the socket takes them.
//! Measured figures are in BENCHMARKS.md (`examples/tls_memory.rs`).
//!
//! [`Stream::has_unsent`]: crate::connection::Stream::has_unsent

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ServerConnection;

use crate::connection::Stream;

/// Bytes of plaintext rustls accepts per write call before it pushes back:
/// a bound on the ciphertext a connection's TLS session holds.
const SEND_LIMIT: usize = 64 * 1024;

/// The error a failed TLS handshake is reported with.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake failed: {0}")]
struct HandshakeFailed(rustls::Error);

/// Whether a read error is a failed TLS handshake (to count it apart).
pub(crate) fn is_handshake_failure(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<HandshakeFailed>())
}

/// A server-side TLS session over `S`.
pub(crate) struct TlsStream<S> {
    pub(crate) sock: S,
    pub(crate) tls: ServerConnection,
    /// Some ciphertext arrived (the peer spoke).
    heard: bool,
}

impl<S: Read + Write> TlsStream<S> {
    pub(crate) fn new(sock: S, mut tls: ServerConnection) -> Self {
        tls.set_buffer_limit(Some(SEND_LIMIT));
        Self {
            sock,
            tls,
            heard: false,
        }
    }

    /// Writes what rustls holds until it is all written or the socket
    /// pushes back (`WouldBlock`).
    fn push(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `push`, with the socket's push-back not an error.
    fn push_some(&mut self) -> io::Result<()> {
        match self.push() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: an end of stream
                // like any other (the WebSocket layer knows whether the
                // session was finished).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => self.heard = true,
                Err(e) => return Err(e),
            }
            let handshaking = self.tls.is_handshaking();
            if let Err(e) = self.tls.process_new_packets() {
                // rustls queued an alert for the peer: send it, best effort.
                let _ = self.push_some();
                return Err(match handshaking {
                    true => io::Error::new(io::ErrorKind::InvalidData, HandshakeFailed(e)),
                    false => io::Error::new(io::ErrorKind::InvalidData, e),
                });
            }
            self.push_some()?;
        }
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.push()?;
        let n = self.tls.writer().write_vectored(bufs)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.push_some()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push()
    }
}

impl<S: Stream> Stream for TlsStream<S> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.tls.send_close_notify();
        let _ = self.push_some();
        self.sock.shutdown_write()
    }

    fn has_unsent(&self) -> bool {
        self.tls.wants_write()
    }

    fn heard(&self) -> bool {
        self.heard
    }
}

/// What a server connection runs on: a TCP socket, plain or with TLS.
pub(crate) enum Socket {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the session is large, the plain case stays
    /// small).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Socket {
    fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(t) => &mut t.sock,
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(t) => t.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Plain(s) => s.write_vectored(bufs),
            Self::Tls(t) => t.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(t) => t.flush(),
        }
    }
}

impl Stream for Socket {
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown(Shutdown::Write),
            Self::Tls(t) => t.shutdown_write(),
        }
    }

    fn has_unsent(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls(t) => t.has_unsent(),
        }
    }

    fn heard(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls(t) => t.heard(),
        }
    }
}

impl Source for Socket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.tcp().deregister(registry)
    }
}
