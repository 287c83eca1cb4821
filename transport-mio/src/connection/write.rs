//! The write side of a connection: the socket, the encoded buffers it has
//! not taken yet, and the drain of a client's outbox into it. It knows
//! nothing of phases or handlers, so it runs on any [`Stream`] (a test
//! drives it with an in-memory one).
//!
//! # Algorithm
//!
//! `pending` holds encoded buffers not yet accepted by the socket: empty
//! (and unallocated) unless the socket pushed back. The outbox is drained in
//! batches of at most [`BATCH_FRAMES`] frames or [`BATCH_BYTES`] bytes: each
//! frame's encoded bytes come from [`Frame::encoded_with`] (encoded once for
//! all recipients; with permessage-deflate negotiated, from the frame's
//! compressed slot, see `crate::deflate`), and the batch goes out in one
//! write: small frames (a batch of up to [`COALESCE_BYTES`]) are copied
//! into the loop thread's scratch buffer and written as one contiguous
//! buffer, larger ones with one vectored write (the kernel pays per iovec
//! segment; see `coalesced`). What the
//! socket does not take stays in `pending` (at most one batch plus a few
//! control frames), and no more frames are popped until it is flushed on
//! writable readiness: the rest waits in the client's outbox.
//!
//! # Invariants
//!
//! - The bytes held in `pending` are reported to the client
//!   (`Client::set_unsent`) after every write, so the Hub's byte bound
//!   (R34) counts what is queued plus what the socket has not taken: the
//!   slow-consumer policy applies only when the socket itself is behind,
//!   never because a burst is momentarily queued.
//! - While `pending` is non-empty the client stays scheduled
//!   (`finish_drain` is not called), so no wake-up is needed to resume:
//!   writable readiness is.
//! - `stalled_since` is set while `pending` waits and moves on whenever the
//!   socket takes bytes; the connection drops a socket that takes none for
//!   `write_timeout`.
//!
//! [`Writer::drain`] returns what happened ([`Drained`]); the connection
//! acts on it (closing, yielding), so the drain never calls back into the
//! connection. The per-frame path allocates nothing: the batch is the
//! loop's, lent for the call, and is kept by the writer only when the
//! socket pushes back.
//!
//! [`Frame::encoded_with`]: realtime::Frame::encoded_with

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use bytes::{Buf, Bytes};
use realtime::Client;

use crate::codec;
use crate::deflate::{self, Outbound};
use crate::stats::Counters;

/// Most frames popped from an outbox per write.
const BATCH_FRAMES: usize = 64;
/// Most bytes popped from an outbox per write (a batch may exceed it by one
/// frame).
const BATCH_BYTES: usize = 256 * 1024;
/// Batches written per wake-up before yielding to other connections.
const BATCHES_PER_TURN: usize = 4;
/// Buffers per vectored write.
const IOV: usize = 64;
/// Pongs are dropped when this many buffers already wait in `pending`.
const MAX_PENDING: usize = BATCH_FRAMES + 64;

/// A byte stream a connection runs on: a non-blocking `TcpStream` in the
/// server, an in-memory stream in tests.
///
/// A stream may hold bytes of its own that it has accepted from a write but
/// not yet given to the socket (TLS records): `has_unsent` says so, and
/// `flush` pushes them, returning `WouldBlock` while the socket refuses.
pub(crate) trait Stream: Read + Write {
    /// Shuts the write side down (our end of stream).
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Whether the stream holds accepted bytes the socket has not taken.
    fn has_unsent(&self) -> bool {
        false
    }

    /// Whether the peer sent bytes that `read` has not yielded as data yet
    /// (a TLS handshake in progress): the peer is not silent.
    fn heard(&self) -> bool {
        false
    }
}

impl Stream for mio::net::TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// What a drain did; the connection acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Drained {
    /// The outbox is empty and the client re-armed: a wake-up resumes.
    Idle,
    /// The socket pushed back: writable readiness resumes.
    Blocked,
    /// The turn's batches are written and the outbox still holds frames:
    /// continue after other connections.
    TurnOver,
    /// The client was closed (by the application or the Hub).
    ClientClosed,
    /// The socket failed.
    Failed,
}

/// The socket and what waits to be written to it.
pub(crate) struct Writer<S> {
    pub(crate) sock: S,
    pending: VecDeque<Bytes>,
    /// Since when the socket has taken no bytes while `pending` waits.
    stalled_since: Option<Instant>,
    /// permessage-deflate for outbound frames, if negotiated.
    deflate: Option<Outbound>,
}

impl<S: Stream> Writer<S> {
    pub(crate) fn new(sock: S) -> Self {
        Self {
            sock,
            pending: VecDeque::new(),
            stalled_since: None,
            deflate: None,
        }
    }

    /// Compresses outbound frames from now on, as negotiated (`None`:
    /// never).
    pub(crate) fn set_deflate(&mut self, deflate: Option<Outbound>) {
        self.deflate = deflate;
    }

    /// Whether nothing waits for the socket (here or in the stream).
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty() && !self.sock.has_unsent()
    }

    /// Since when the socket has taken no bytes while some wait.
    pub(crate) fn stalled_since(&self) -> Option<Instant> {
        self.stalled_since
    }

    /// Queues `buf` behind what waits.
    pub(crate) fn push(&mut self, buf: Bytes) {
        self.pending.push_back(buf);
    }

    /// Queues a pong, unless the socket is that far behind (a peer that
    /// pings and never reads gets no more pongs).
    pub(crate) fn push_pong(&mut self, payload: &[u8]) {
        if self.pending.len() < MAX_PENDING {
            self.pending.push_back(codec::encode_pong(payload));
        }
    }

    /// Writes `pending` until it is empty or the socket pushes back; then
    /// reports what is left to `client`, if any.
    pub(crate) fn flush(
        &mut self,
        now: Instant,
        counters: &Counters,
        client: Option<&Client>,
    ) -> io::Result<()> {
        let mut queue = std::mem::take(&mut self.pending);
        let result = self.write_queue(&mut queue, now, counters);
        self.pending = queue;
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            // Free the write buffer while there is nothing to write.
            self.pending = VecDeque::new();
        }
        if let Some(client) = client {
            self.report_unsent(client);
        }
        result
    }

    /// Tells the client's outbox how many bytes wait here for the socket:
    /// they count toward its byte bound with what is queued (R34).
    fn report_unsent(&self, client: &Client) {
        client.set_unsent(self.pending.iter().map(Bytes::len).sum());
    }

    /// Writes `queue` until it is empty or the socket pushes back, each
    /// write contiguous (small frames, `coalesced`) or vectored; tracks
    /// stalls and counts bytes.
    fn write_queue(
        &mut self,
        queue: &mut VecDeque<Bytes>,
        now: Instant,
        counters: &Counters,
    ) -> io::Result<()> {
        let mut progress = false;
        let result = loop {
            if queue.is_empty() {
                if !self.sock.has_unsent() {
                    break Ok(());
                }
                // The stream's own bytes (TLS records) go last.
                match self.sock.flush() {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            }
            let attempt = match coalesced(queue) {
                Some(n) => SCRATCH.with_borrow_mut(|scratch| {
                    scratch.clear();
                    for buf in queue.iter().take(n) {
                        scratch.extend_from_slice(buf);
                    }
                    self.sock.write(scratch)
                }),
                None => {
                    let mut iov = [IoSlice::new(&[]); IOV];
                    let mut n = 0;
                    for (slot, buf) in iov.iter_mut().zip(queue.iter()) {
                        *slot = IoSlice::new(buf);
                        n += 1;
                    }
                    self.sock.write_vectored(&iov[..n])
                }
            };
            match attempt {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    progress = true;
                    Counters::add(&counters.writes, 1);
                    Counters::add(&counters.bytes_out, written as u64);
                    consume(queue, written);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if queue.is_empty() && !self.sock.has_unsent() {
            self.stalled_since = None;
        } else if progress || self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
        result
    }

    /// Drains `client`'s outbox onto the socket, at most
    /// [`BATCHES_PER_TURN`] batches; `batch` is the loop's, lent (see the
    /// module docs).
    pub(crate) fn drain(
        &mut self,
        client: &Client,
        batch: &mut VecDeque<Bytes>,
        now: Instant,
        counters: &Counters,
    ) -> Drained {
        for _ in 0..BATCHES_PER_TURN {
            if !self.pending.is_empty() {
                if self.flush(now, counters, Some(client)).is_err() {
                    return Drained::Failed;
                }
                if !self.pending.is_empty() {
                    return Drained::Blocked;
                }
            }
            fill_batch(client, batch, self.deflate);
            if batch.is_empty() {
                if client.is_closed() {
                    return Drained::ClientClosed;
                }
                if client.finish_drain() {
                    // Frames came in after the last pop: go on.
                    continue;
                }
                return Drained::Idle;
            }
            Counters::add(&counters.frames_out, batch.len() as u64);
            let result = self.write_queue(batch, now, counters);
            if !batch.is_empty() {
                // The socket pushed back: the writer keeps the rest (and
                // the batch's allocation); the loop gets a fresh batch.
                self.pending = std::mem::take(batch);
                self.report_unsent(client);
            }
            if result.is_err() {
                return Drained::Failed;
            }
            if !self.pending.is_empty() {
                return Drained::Blocked;
            }
        }
        Drained::TurnOver
    }

    /// Moves what `client`'s outbox holds now into `pending`, in order,
    /// before a close frame is queued: replies produced before a protocol
    /// error or a close (echoes, acknowledgements) are written before our
    /// close frame (Autobahn 3.*, 4.*, 5.15, 7.1.6). Must run before the
    /// client is closed: `pop_frame` returns nothing after that. Bounded by
    /// the frames queued when it starts (what a concurrent broadcaster adds
    /// meanwhile stays behind), so by the client's byte bound.
    pub(crate) fn take_queued(&mut self, client: &Client, counters: &Counters) {
        let queued = client.pending();
        let mut taken = 0u64;
        for _ in 0..queued {
            let Some(frame) = client.pop_frame() else {
                break;
            };
            self.pending.push_back(deflate::wire(&frame, self.deflate));
            taken += 1;
        }
        Counters::add(&counters.frames_out, taken);
    }
}

/// Pops frames from `client`'s outbox into `batch`, up to one batch's
/// worth, each as its encoded bytes (encoded once for every recipient).
fn fill_batch(client: &Client, batch: &mut VecDeque<Bytes>, deflate: Option<Outbound>) {
    let mut bytes = 0;
    while batch.len() < BATCH_FRAMES && bytes < BATCH_BYTES {
        let Some(frame) = client.pop_frame() else {
            break;
        };
        let wire = deflate::wire(&frame, deflate);
        bytes += wire.len();
        batch.push_back(wire);
    }
}

/// Largest write assembled by copying small frames into one buffer.
const COALESCE_BYTES: usize = 16 * 1024;

thread_local! {
    /// The loop thread's buffer for coalesced writes (`coalesced`).
    static SCRATCH: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(COALESCE_BYTES));
}

/// How many buffers at the front of `queue` to copy into one contiguous
/// write instead of a vectored one: `None` for a single buffer (written as
/// it is) or when the first two already pass [`COALESCE_BYTES`]. The kernel
/// pays per iovec segment when it copies a vectored write in; small
/// broadcast frames (tens of bytes each, many per write) cost more as
/// segments than as one `memcpy` here (issue 16 item 5, BENCHMARKS.md).
fn coalesced(queue: &VecDeque<Bytes>) -> Option<usize> {
    let mut total = 0;
    let mut n = 0;
    for buf in queue.iter().take(IOV) {
        if total + buf.len() > COALESCE_BYTES {
            break;
        }
        total += buf.len();
        n += 1;
    }
    (n >= 2).then_some(n)
}

/// Drops the first `written` bytes of `queue`.
fn consume(queue: &mut VecDeque<Bytes>, mut written: usize) {
    while written > 0 {
        let Some(front) = queue.front_mut() else {
            break;
        };
        if front.len() <= written {
            written -= front.len();
            queue.pop_front();
        } else {
            front.advance(written);
            written = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use realtime::Hub;

    use super::*;
    use crate::connection::testing::{detached_client, server_frames, MemStream};

    #[test]
    fn a_partial_write_keeps_the_rest_pending_and_resumes_where_it_stopped() {
        let counters = Counters::default();
        let t0 = Instant::now();
        let mut w = Writer::new(MemStream::with_room(7));
        w.push(Bytes::from_static(b"hello "));
        w.push(Bytes::from_static(b"world"));
        w.flush(t0, &counters, None).unwrap();
        assert_eq!(w.sock.written, b"hello w");
        assert!(!w.is_empty());
        assert_eq!(w.stalled_since(), Some(t0));

        // No room: nothing taken, the stall keeps its start.
        w.flush(t0 + Duration::from_secs(1), &counters, None)
            .unwrap();
        assert_eq!(w.stalled_since(), Some(t0));

        let t1 = t0 + Duration::from_secs(2);
        w.sock.room = 100;
        w.flush(t1, &counters, None).unwrap();
        assert_eq!(w.sock.written, b"hello world");
        assert!(w.is_empty());
        assert_eq!(w.stalled_since(), None);
        assert_eq!(
            counters
                .bytes_out
                .load(std::sync::atomic::Ordering::Relaxed),
            11
        );
    }

    #[test]
    fn a_drain_the_socket_blocks_resumes_in_order_and_reports_what_waits() {
        let hub = Hub::new();
        let client = detached_client(&hub);
        for text in ["one", "two", "three"] {
            client.send_text(text).unwrap();
        }
        let counters = Counters::default();
        let mut batch = VecDeque::new();
        let mut w = Writer::new(MemStream::with_room(4));
        let now = Instant::now();
        assert_eq!(
            w.drain(&client, &mut batch, now, &counters),
            Drained::Blocked
        );
        // One vectored write took the first 4 bytes of the three frames.
        assert_eq!(w.sock.writes, 1);
        assert_eq!(client.pending(), 0);
        assert_eq!(client.pending_bytes(), 5 + 5 + 7 - 4);
        assert!(batch.is_empty());

        w.sock.room = usize::MAX;
        assert_eq!(w.drain(&client, &mut batch, now, &counters), Drained::Idle);
        let texts: Vec<_> = server_frames(&w.sock.written)
            .into_iter()
            .map(|(op, payload)| (op, String::from_utf8(payload).unwrap()))
            .collect();
        let want = [(1, "one"), (1, "two"), (1, "three")].map(|(op, t)| (op, t.to_owned()));
        assert_eq!(texts, want);
        assert_eq!(client.pending_bytes(), 0);
    }

    #[test]
    fn a_closed_client_is_reported_to_the_caller_not_acted_on() {
        let hub = Hub::new();
        let client = detached_client(&hub);
        client.close();
        let mut w = Writer::new(MemStream::with_room(usize::MAX));
        let drained = w.drain(
            &client,
            &mut VecDeque::new(),
            Instant::now(),
            &Counters::default(),
        );
        assert_eq!(drained, Drained::ClientClosed);
        assert!(w.sock.written.is_empty());
    }

    #[test]
    fn a_failing_socket_fails_the_drain() {
        let hub = Hub::new();
        let client = detached_client(&hub);
        client.send_text("x").unwrap();
        // A socket the peer reset.
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::ConnectionReset.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::ConnectionReset.into())
            }
        }
        impl Stream for Broken {
            fn shutdown_write(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = Writer::new(Broken);
        let drained = w.drain(
            &client,
            &mut VecDeque::new(),
            Instant::now(),
            &Counters::default(),
        );
        assert_eq!(drained, Drained::Failed);
    }

    #[test]
    fn small_frames_are_copied_into_one_write_and_large_ones_go_vectored() {
        let small = |n| VecDeque::from(vec![Bytes::from(vec![b'x'; 70]); n]);
        assert_eq!(coalesced(&small(1)), None, "one buffer is written as it is");
        assert_eq!(coalesced(&small(20)), Some(20));
        assert_eq!(coalesced(&small(IOV + 5)), Some(IOV), "one write's worth");
        let mut q = small(3);
        q.push_back(Bytes::from(vec![b'y'; COALESCE_BYTES]));
        assert_eq!(
            coalesced(&q),
            Some(3),
            "the large frame waits for its own write"
        );
        let big = VecDeque::from(vec![Bytes::from(vec![b'z'; COALESCE_BYTES / 2 + 1]); 2]);
        assert_eq!(coalesced(&big), None);
    }

    #[test]
    fn a_coalesced_write_the_socket_takes_in_part_resumes_in_order() {
        let counters = Counters::default();
        let t0 = Instant::now();
        let mut w = Writer::new(MemStream::with_room(10));
        for text in ["alpha ", "beta ", "gamma ", "delta"] {
            w.push(Bytes::from(text));
        }
        w.flush(t0, &counters, None).unwrap();
        assert_eq!(w.sock.written, b"alpha beta");
        assert_eq!(w.sock.writes, 1, "four frames, one write");
        w.sock.room = usize::MAX;
        w.flush(t0, &counters, None).unwrap();
        assert_eq!(w.sock.written, b"alpha beta gamma delta");
        assert_eq!(w.sock.writes, 2);
        assert!(w.is_empty());
    }
}
