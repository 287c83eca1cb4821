//! A client's outbox (v2): an unbounded-in-frames MPSC queue of frames whose
//! pending output is bounded in **bytes**, plus the wake-up flag that lets
//! any number of producers hand work to one drainer without a lost or a
//! redundant wake-up.
//!
//! # Why bytes, not frames (R34)
//!
//! A client is slow only when its socket stops taking bytes. A bound in
//! frames (v1: a 64-slot ring) made any burst the server itself produced in
//! one loop turn (1,000 subscription acks, a presence roster and 500
//! `member_removed` frames) look like a slow consumer, before the event loop
//! had written anything. The bound is now on the bytes owed to the socket:
//! what is queued here plus what the transport holds that the socket has not
//! accepted (`unsent`, reported by the transport). A client whose socket
//! keeps taking bytes never reaches it, whatever the burst; one that stops
//! reading reaches it after `limit` bytes (default 1 MiB: see
//! [`crate::DEFAULT_CLIENT_BUFFER`]).
//!
//! # Layout and cost
//!
//! - The queue is crossbeam's `SegQueue`: blocks of 31 slots allocated as
//!   frames arrive, so an idle client holds no ring (v1 held 64 slots,
//!   1 KiB, from the start) and a burst can queue more than 64 frames while
//!   within the byte bound.
//! - `queued` packs the queued bytes (low 40 bits) and frames (high 24
//!   bits) in one `AtomicU64`, so a push accounts for both with one
//!   compare-and-swap, taken only if the frame fits (a reservation made
//!   before the frame enters the queue, so a pop never releases bytes not
//!   yet counted). A frame that does not fit never shows in `queued`, so it
//!   cannot make a racing frame that fits look over the bound. Relaxed: it
//!   is a bound, not a synchronisation. `unsent` is a separate report, so a
//!   push may judge by one a drain old.
//! - The hot fields (`closed`, `scheduled`, `queued`, `unsent`, the limits)
//!   come first in a `repr(C)` struct aligned like the queue (128 bytes), so
//!   they share one cache line; the queue's head and tail follow on lines of
//!   their own (crossbeam pads them).
//! - A frame's cost is its wire length ([`Frame::wire_len`]): the payload
//!   plus the 2–10 byte WebSocket header a server frame carries.
//!
//! A queue that is empty of bytes and of unsent output always accepts one
//! frame, however large: a single message larger than the bound is still
//! delivered to a client that keeps up.
//!
//! # The wake-up protocol
//!
//! `scheduled` is true from the moment a producer decides the drainer must
//! be woken until the drainer has emptied the queue and re-armed.
//!
//! Producer (`push`, any thread):
//! 1. push the frame (a SeqCst compare-and-swap on the queue's tail);
//! 2. load `scheduled` (SeqCst); if false, `swap(true)` (SeqCst) and, if this
//!    thread flipped it, call the transport's `wake` (exactly one producer
//!    wins).
//!
//! Drainer (`pop` until empty, then `rearm`, one thread at a time):
//! 1. pop until the queue is empty (or the socket is full: then it keeps
//!    `scheduled` set and resumes on writable readiness, no wake needed);
//! 2. store `scheduled = false` (SeqCst);
//! 3. if the queue is not empty (SeqCst loads of head and tail) and
//!    `swap(true)` returns false, drain again without waiting for a wake.
//!
//! No lost wake-up: all the steps above are SeqCst, so they sit in one total
//! order. If a producer's load in 2 reads `true`, that load precedes the
//! drainer's store in 2, so the producer's push precedes the drainer's
//! emptiness check in 3, which sees the frame. If the load reads `false`, the
//! producer (or another producer, or the drainer) flips it, and whoever flips
//! it makes sure a drain follows. At most one wake is pending at a time: only
//! the thread whose `swap` turned `false` into `true` wakes the drainer.
//!
//! This relies on crossbeam's `SegQueue::push` being a SeqCst RMW on the
//! tail index and `is_empty` loading head and tail with SeqCst
//! (crossbeam-queue 0.3); the loom stand-in in `sync` keeps the same
//! orderings, and the model `loom_wakeup.rs` checks the protocol. The byte
//! accounting takes no part in it (`loom_bytes.rs` models the bound).

use crate::message::Frame;
use crate::mutants;
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::SegQueue;

/// Bits of `queued` that count bytes; the rest count frames.
const BYTE_BITS: u32 = 40;
const BYTE_MASK: u64 = (1 << BYTE_BITS) - 1;
/// One frame, in `queued`'s packing.
const ONE_FRAME: u64 = 1 << BYTE_BITS;
/// The largest byte bound `queued` can hold with room for in-flight
/// reservations (half of the 40 bits).
pub(crate) const MAX_BYTES: usize = 1 << (BYTE_BITS - 1);
/// The largest frame bound, likewise (half of the 24 bits).
pub(crate) const MAX_FRAMES: usize = 1 << (63 - BYTE_BITS);

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; the drainer was already scheduled.
    Queued,
    /// Queued, and the caller must wake the drainer.
    Wake,
}

/// The hot fields first, in declaration order, on the queue's alignment.
#[repr(C)]
pub(crate) struct Outbox {
    /// Set once by the client's close (phase 1, `client.rs`); read by every
    /// enqueue. Lives here to share the enqueue's cache line.
    pub(crate) closed: AtomicBool,
    /// Written once per batch (by the producer that schedules and by the
    /// drainer that re-arms) and read by every push: a read-mostly flag.
    scheduled: AtomicBool,
    /// Queued bytes (low 40 bits) and frames (high 24 bits).
    queued: AtomicU64,
    /// Bytes the transport holds that the socket has not accepted; written
    /// by the drainer only.
    unsent: AtomicU64,
    /// The byte bound (R34).
    limit_bytes: u64,
    /// An optional bound in frames on top of it ([`MAX_FRAMES`] when
    /// none).
    limit_frames: u64,
    queue: SegQueue<Frame>,
}

impl Outbox {
    /// An empty outbox bounded by `limit_bytes` and, optionally, a number of
    /// frames. Callers clamp to [`MAX_BYTES`] and [`MAX_FRAMES`].
    pub(crate) fn new(limit_bytes: usize, limit_frames: Option<usize>) -> Self {
        Self {
            closed: AtomicBool::new(false),
            scheduled: AtomicBool::new(false),
            queued: AtomicU64::new(0),
            unsent: AtomicU64::new(0),
            limit_bytes: limit_bytes.min(MAX_BYTES) as u64,
            limit_frames: limit_frames.map_or(MAX_FRAMES, |f| f.min(MAX_FRAMES)) as u64,
            queue: SegQueue::new(),
        }
    }

    /// Pushes a frame unless the pending output would pass the bound; hands
    /// it back when it would.
    pub(crate) fn push(&self, frame: Frame) -> Result<Pushed, Frame> {
        let cost = frame.wire_len() as u64;
        if mutants::account_after_push() {
            // Mutant (`crate::mutants`): the bound is checked with a load
            // and the bytes are added after the frame is queued (below); the
            // drainer can pop and release them first, `queued` wraps below
            // zero and the next producer finds a client that keeps up
            // hopelessly slow.
            if self.over(self.queued.load(Ordering::Relaxed), cost) {
                return Err(frame);
            }
        } else if !self.reserve(cost) {
            return Err(frame);
        }
        self.queue.push(frame);
        if mutants::account_after_push() {
            self.queued.fetch_add(ONE_FRAME | cost, Ordering::Relaxed);
        }
        if mutants::lost_wakeup() {
            // Mutant (`crate::mutants`): a plain load-then-store, so two
            // producers can both see `false` and a drainer's re-arm can race
            // the check.
            if !self.scheduled.load(Ordering::Relaxed) {
                self.scheduled.store(true, Ordering::Relaxed);
                return Ok(Pushed::Wake);
            }
            return Ok(Pushed::Queued);
        }
        // SeqCst: the argument above needs it (push, then load, in the
        // single total order). Mutant `wakeup_relaxed` (`crate::mutants`):
        // a Relaxed check can read the `true` from before the drainer's
        // re-arm, skip the wake and strand the frame.
        let check = if mutants::wakeup_relaxed() {
            Ordering::Relaxed
        } else {
            Ordering::SeqCst
        };
        if !self.scheduled.load(check) && !self.scheduled.swap(true, Ordering::SeqCst) {
            Ok(Pushed::Wake)
        } else {
            Ok(Pushed::Queued)
        }
    }

    /// Adds one frame of `cost` bytes to `queued` if it fits the bound;
    /// false if it does not (and then `queued` is untouched).
    ///
    /// A compare-and-swap loop rather than a `fetch_add` undone when over:
    /// a frame that does not fit never shows in `queued`, even for a
    /// moment, so it cannot make a racing frame that fits look over the
    /// bound (a reply or a presence frame would then disconnect a client
    /// that is within it: `loom_bytes.rs`). Both the reservation and the
    /// refusal are decided on the latest count, as `fetch_add` was.
    fn reserve(&self, cost: u64) -> bool {
        if mutants::reserve_then_undo() {
            // Mutant (`crate::mutants`): the reservation is taken first and
            // undone if over, so a racing push reads a frame that will not
            // be queued.
            let before = self.queued.fetch_add(ONE_FRAME | cost, Ordering::Relaxed);
            if self.over(before, cost) {
                self.queued.fetch_sub(ONE_FRAME | cost, Ordering::Relaxed);
                return false;
            }
            return true;
        }
        // Relaxed (load and both orderings of the CAS): accounting only
        // (module docs); the queue's own SeqCst push is what the wake-up
        // protocol relies on.
        let mut queued = self.queued.load(Ordering::Relaxed);
        loop {
            if self.over(queued, cost) {
                // A plain load may return a count older than the latest (from
                // before a pop released its bytes, say, while the transport's
                // report of them as unsent is already visible: they would
                // count twice). Refuse only on the latest count, which a
                // read-modify-write reads; the accepting path has the CAS.
                // Mutant `refuse_on_stale_count` (`crate::mutants`): refuse
                // on the loaded count as it is.
                if mutants::refuse_on_stale_count() {
                    return false;
                }
                match self.queued.compare_exchange(
                    queued,
                    queued,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return false,
                    Err(now) => {
                        queued = now;
                        continue;
                    }
                }
            }
            let reserved = queued + (ONE_FRAME | cost);
            if mutants::reserve_not_atomic() {
                // Mutant (`crate::mutants`): a plain store instead of the
                // compare-and-swap, so a racing push's bytes are lost from
                // the count.
                self.queued.store(reserved, Ordering::Relaxed);
                return true;
            }
            match self.queued.compare_exchange_weak(
                queued,
                reserved,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => queued = now,
            }
        }
    }

    /// Whether one more frame of `cost` bytes passes the bound, given
    /// `queued` (the packed count) and what the transport holds unsent.
    /// Never true for an outbox that owes nothing.
    fn over(&self, queued: u64, cost: u64) -> bool {
        let bytes = queued & BYTE_MASK;
        // Mutant `bound_ignores_unsent` (`crate::mutants`): the bound counts
        // only what is queued, so bytes the socket refused do not count and
        // a client that stopped reading is never found slow.
        let owed = if mutants::bound_ignores_unsent() {
            bytes
        } else {
            // Relaxed: accounting only; a report one drain old is good
            // enough.
            bytes + self.unsent.load(Ordering::Relaxed)
        };
        owed != 0 && (owed + cost > self.limit_bytes || (queued >> BYTE_BITS) >= self.limit_frames)
    }

    /// Pass 1 of a two-pass fan-out (`Hub::broadcast_frame`): reads the
    /// hot line with a plain load, so that the misses of a chunk's members
    /// overlap. True if the client is open; a hint only, `push`'s caller
    /// re-checks. (Touching the queue's indices here too was measured: no
    /// gain within the noise, and the head index is the drainer's line.)
    ///
    /// Under loom it reads nothing (and says open): it is a cache hint, and
    /// its loads would only multiply the interleavings a model explores.
    pub(crate) fn warm(&self) -> bool {
        #[cfg(loom)]
        return true;
        // Relaxed: a hint (see above).
        #[cfg(not(loom))]
        !self.closed.load(Ordering::Relaxed)
    }

    /// Pops the next frame and releases its bytes from the bound.
    pub(crate) fn pop(&self) -> Option<Frame> {
        let frame = self.queue.pop()?;
        // Relaxed: accounting only.
        self.queued
            .fetch_sub(ONE_FRAME | frame.wire_len() as u64, Ordering::Relaxed);
        Some(frame)
    }

    /// Re-arms after a drain; true if frames arrived meanwhile and the caller
    /// must drain again (no wake will come for them).
    pub(crate) fn rearm(&self) -> bool {
        #[cfg(not(loom))]
        self.scheduled.store(false, Ordering::SeqCst);
        // Under loom, the same store as a swap: C11 puts this store after
        // every RMW that read an earlier `true` (an RMW follows the store it
        // read in modification order), loom's partial modification order
        // does not; a swap makes loom order it too (see `sync_loom.rs`).
        #[cfg(loom)]
        self.scheduled.swap(false, Ordering::SeqCst);
        !self.queue.is_empty() && !self.scheduled.swap(true, Ordering::SeqCst)
    }

    /// The transport's report of the bytes it holds that the socket has not
    /// accepted yet.
    pub(crate) fn set_unsent(&self, bytes: usize) {
        // Relaxed: accounting only; the drainer is the only writer.
        if self.unsent.load(Ordering::Relaxed) != bytes as u64 {
            self.unsent.store(bytes as u64, Ordering::Relaxed);
        }
    }

    /// Frames queued.
    pub(crate) fn len(&self) -> usize {
        // Relaxed: a statistic.
        (self.queued.load(Ordering::Relaxed) >> BYTE_BITS) as usize
    }

    /// Bytes owed to the socket: queued plus unsent.
    pub(crate) fn pending_bytes(&self) -> usize {
        // Relaxed: a statistic.
        let queued = self.queued.load(Ordering::Relaxed) & BYTE_MASK;
        (queued + self.unsent.load(Ordering::Relaxed)) as usize
    }

    pub(crate) fn limit_bytes(&self) -> usize {
        self.limit_bytes as usize
    }

    pub(crate) fn limit_frames(&self) -> Option<usize> {
        (self.limit_frames < MAX_FRAMES as u64).then_some(self.limit_frames as usize)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn frame(len: usize) -> Frame {
        Frame::from_string("x".repeat(len))
    }

    #[test]
    fn the_bound_is_in_bytes_and_an_empty_outbox_takes_any_frame() {
        let o = Outbox::new(1000, None);
        // 100 frames of 8 wire bytes: far more than v1's 64 slots.
        for _ in 0..100 {
            assert!(o.push(frame(6)).is_ok());
        }
        assert_eq!((o.len(), o.pending_bytes()), (100, 800));
        assert_eq!(frame(125).wire_len(), 127);
        assert_eq!(frame(126).wire_len(), 130);
        assert_eq!(frame(70_000).wire_len(), 70_010);
        assert!(o.push(frame(98)).is_ok());
        assert!(o.push(frame(98)).is_ok(), "exactly at the bound");
        assert!(o.push(frame(0)).is_err(), "one byte over");
        while o.pop().is_some() {}
        assert_eq!((o.len(), o.pending_bytes()), (0, 0));
        // Larger than the bound, into an empty outbox: accepted.
        assert!(o.push(frame(5000)).is_ok());
        assert!(o.push(frame(0)).is_err());
    }

    #[test]
    fn unsent_bytes_count_toward_the_bound() {
        let o = Outbox::new(1000, None);
        o.set_unsent(995);
        assert!(o.push(frame(3)).is_ok());
        assert!(o.push(frame(0)).is_err());
        o.set_unsent(0);
        assert!(o.push(frame(0)).is_ok());
        assert_eq!(o.pending_bytes(), 7);
    }

    #[test]
    fn a_frame_bound_applies_on_top() {
        let o = Outbox::new(1 << 20, Some(3));
        for _ in 0..3 {
            assert!(o.push(frame(1)).is_ok());
        }
        assert!(o.push(frame(1)).is_err());
        assert_eq!(o.limit_frames(), Some(3));
        assert_eq!(Outbox::new(10, None).limit_frames(), None);
    }
}
