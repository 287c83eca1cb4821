//! `Conn`, the blocking transport abstraction (R2); the writer-thread
//! adapter that drains a client's outbox onto it; and an in-memory `Conn`
//! pair for tests, docs and examples.
//!
//! One reader thread (the one in [`crate::Client::serve`]) and one writer
//! thread (started by [`crate::Hub::add`]) touch a `Conn`; only `close` may
//! race them, and it must unblock both.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::client::{Client, Transport};
use crate::message::{Frame, IntoPayload, MessageType};
use crate::sync::{lock, Arc, Mutex};

/// A blocking, message-framed transport (R2).
pub trait Conn: Send + Sync + 'static {
    /// Blocks for the next message. A clean end of stream is
    /// `io::ErrorKind::UnexpectedEof`.
    ///
    /// # Errors
    ///
    /// End of stream, or any transport error.
    fn read_message(&self) -> io::Result<(MessageType, Bytes)>;

    /// Writes one message.
    ///
    /// # Errors
    ///
    /// Any transport error; the Hub then closes the client.
    fn write_message(&self, kind: MessageType, payload: &[u8]) -> io::Result<()>;

    /// Writes a frame; override to reuse the frame's shared bytes or its
    /// cached encoding.
    ///
    /// # Errors
    ///
    /// As [`Conn::write_message`].
    fn write_frame(&self, frame: &Frame) -> io::Result<()> {
        self.write_message(frame.kind(), frame.payload())
    }

    /// Closes the transport, unblocking a pending read or write.
    /// Idempotent.
    ///
    /// # Errors
    ///
    /// Any transport error (ignored by the Hub).
    fn close(&self) -> io::Result<()>;
}

/// The transport of a client added with `Hub::add`: a writer thread parked
/// until its outbox has work.
pub(crate) struct WriterTransport {
    pub(crate) conn: Arc<dyn Conn>,
    pub(crate) thread: std::sync::OnceLock<std::thread::Thread>,
}

impl Transport for WriterTransport {
    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    fn closed(&self) {
        if let Err(e) = self.conn.close() {
            tracing::debug!(error = %e, "conn close failed");
        }
        self.wake();
    }
}

/// The writer thread's body: drain, re-arm, park (protocol in `outbox`).
pub(crate) fn writer_loop(client: &Client, conn: &dyn Conn) {
    loop {
        while let Some(frame) = client.pop_frame() {
            if let Err(e) = conn.write_frame(&frame) {
                if !client.is_closed() {
                    tracing::debug!(client = client.id(), error = %e, "write failed: closing");
                    client.close();
                }
                return;
            }
        }
        if client.is_closed() {
            return;
        }
        if client.finish_drain() {
            continue;
        }
        std::thread::park();
    }
}

/// One end of an in-memory, message-framed duplex pipe: a [`Conn`] for
/// tests, docs and examples. Created in pairs by [`pipe`].
///
/// Closing either end ends the stream for both: messages already sent can
/// still be read, then reads return `UnexpectedEof`; writes fail with
/// `BrokenPipe`.
pub struct MemoryConn {
    tx: Sender<(MessageType, Bytes)>,
    rx: Receiver<(MessageType, Bytes)>,
    /// Dropping the sender signals "closed" to both ends.
    done_tx: Arc<Mutex<Option<Sender<()>>>>,
    done_rx: Receiver<()>,
}

/// Creates a connected pair of in-memory connections.
///
/// # Examples
///
/// ```
/// use realtime::{pipe, Conn, MessageType};
///
/// let (a, b) = pipe();
/// a.write_message(MessageType::Text, b"hi").unwrap();
/// assert_eq!(b.recv_text().unwrap(), "hi");
/// a.close().unwrap();
/// assert!(b.read_message().is_err());
/// ```
pub fn pipe() -> (MemoryConn, MemoryConn) {
    let (a_tx, a_rx) = crossbeam_channel::unbounded();
    let (b_tx, b_rx) = crossbeam_channel::unbounded();
    let (done_tx, done_rx) = crossbeam_channel::bounded(0);
    let done_tx = Arc::new(Mutex::new(Some(done_tx)));
    let a = MemoryConn {
        tx: a_tx,
        rx: b_rx,
        done_tx: done_tx.clone(),
        done_rx: done_rx.clone(),
    };
    let b = MemoryConn {
        tx: b_tx,
        rx: a_rx,
        done_tx,
        done_rx,
    };
    (a, b)
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")
}

impl MemoryConn {
    fn is_closed(&self) -> bool {
        matches!(
            self.done_rx.try_recv(),
            Err(TryRecvError::Disconnected) | Ok(())
        )
    }

    /// Reads one message, waiting at most `timeout`. `Ok(None)` on timeout.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` once closed and drained.
    pub fn read_timeout(&self, timeout: Duration) -> io::Result<Option<(MessageType, Bytes)>> {
        if let Ok(m) = self.rx.try_recv() {
            return Ok(Some(m));
        }
        crossbeam_channel::select! {
            recv(self.rx) -> m => Ok(m.ok()),
            recv(self.done_rx) -> _ => self.rx.try_recv().map(Some).map_err(|_| eof()),
            default(timeout) => Ok(None),
        }
    }

    /// Reads one message if one is already there.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` once closed and drained.
    pub fn try_read(&self) -> io::Result<Option<(MessageType, Bytes)>> {
        match self.rx.try_recv() {
            Ok(m) => Ok(Some(m)),
            Err(_) if self.is_closed() => Err(eof()),
            Err(_) => Ok(None),
        }
    }

    /// Reads the next message and returns it as text.
    ///
    /// # Errors
    ///
    /// End of stream; `InvalidData` for a binary message or invalid UTF-8.
    pub fn recv_text(&self) -> io::Result<String> {
        match self.read_message()? {
            (MessageType::Text, b) => String::from_utf8(b.to_vec())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            (MessageType::Binary, _) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "binary message where text was expected",
            )),
        }
    }

    /// Sends a text message (test convenience).
    ///
    /// # Errors
    ///
    /// `BrokenPipe` once closed.
    pub fn send_text(&self, text: impl IntoPayload) -> io::Result<()> {
        let payload = text.into_payload();
        self.write_message(MessageType::Text, &payload)
    }
}

impl Conn for MemoryConn {
    fn read_message(&self) -> io::Result<(MessageType, Bytes)> {
        if let Ok(m) = self.rx.try_recv() {
            return Ok(m);
        }
        crossbeam_channel::select! {
            recv(self.rx) -> m => m.map_err(|_| eof()),
            recv(self.done_rx) -> _ => self.rx.try_recv().map_err(|_| eof()),
        }
    }

    fn write_message(&self, kind: MessageType, payload: &[u8]) -> io::Result<()> {
        self.send(kind, Bytes::copy_from_slice(payload))
    }

    fn write_frame(&self, frame: &Frame) -> io::Result<()> {
        self.send(frame.kind(), frame.payload().clone())
    }

    fn close(&self) -> io::Result<()> {
        lock(&self.done_tx).take();
        Ok(())
    }
}

impl MemoryConn {
    fn send(&self, kind: MessageType, payload: Bytes) -> io::Result<()> {
        if self.is_closed() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "connection closed",
            ));
        }
        self.tx
            .send((kind, payload))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "peer dropped"))
    }
}

impl Drop for MemoryConn {
    /// Dropping an end closes the pipe, like dropping a socket.
    fn drop(&mut self) {
        lock(&self.done_tx).take();
    }
}
