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
//! - The frames sit first in a **ring of [`RING`] slots inline in the
//!   outbox** (32; 2 under loom), and only when the ring is full in an
//!   **overflow**, crossbeam's `SegQueue`: blocks of 31 slots allocated as
//!   frames arrive, so a burst the server produces (1,000 subscription acks,
//!   a presence roster) can queue far more than the ring while within the
//!   byte bound.
//! - Why a ring of our own in front of the `SegQueue` (issue 16, item 3):
//!   a fan-out pushes one frame into each of thousands of outboxes, and
//!   with the `SegQueue` alone every push wrote into the member's current
//!   block, allocated somewhere in the heap as traffic went by: one cache
//!   miss per member that no prefetch can hide, 56% of a 10k presence
//!   fan-out's time in `SegQueue::push` (BENCHMARKS.md). The ring's slots
//!   sit next to the outbox's header, which the push reads anyway, and
//!   never move. A 32-slot ring (prototype) cut the 10k presence join ~40% and the 10k
//!   hub fan-out ~25% (BENCHMARKS.md). crossbeam's `ArrayQueue` is the same
//!   algorithm, but its buffer is one more heap allocation (the miss again)
//!   and it cannot hand over to an overflow in order; so the ring is
//!   written here, in safe code: the slots are crossbeam `AtomicCell`s,
//!   lock-free for a one-pointer `Option<Frame>` (asserted below).
//! - Memory: the ring is 32 × 8 = 256 bytes per client, half the one
//!   `SegQueue` block (31 slots, 512 bytes) that every client which had
//!   received a frame held before; now a client holds a block only once its
//!   ring has filled (BENCHMARKS.md).
//! - `queued` packs the queued bytes (low 40 bits) and frames (high 24
//!   bits) in one `AtomicU64`, so a push accounts for both with one
//!   compare-and-swap, taken only if the frame fits (a reservation made
//!   before the frame enters the queue, so a pop never releases bytes not
//!   yet counted). A frame that does not fit never shows in `queued`, so it
//!   cannot make a racing frame that fits look over the bound. Relaxed: it
//!   is a bound, not a synchronisation. `unsent` is a separate report, so a
//!   push may judge by one a drain old.
//! - The hot fields (`closed`, `scheduled`, `queued`, `unsent`, the limits,
//!   the ring's `ends`) come first in a `repr(C)` struct aligned
//!   like the `SegQueue` (128 bytes), so they share one cache line; the
//!   ring follows, then the `SegQueue`'s head and tail on lines of their
//!   own (crossbeam pads them).
//! - A frame's cost is its wire length ([`Frame::wire_len`]): the payload
//!   plus the 2–10 byte WebSocket header a server frame carries.
//!
//! # The ring and the overflow, in order
//!
//! `ends` packs the ring's head (the next index to take), its tail (the
//! next index to claim) and `spilled`, the number of frames counted into
//! the overflow, in one `AtomicU64` ([`Ends`]), so that a push is **one**
//! read-modify-write on it, and the three are never read apart. A slot is
//! an `AtomicCell<Option<Frame>>`: `None` when empty.
//!
//! Producer (`fifo_push`): while `spilled` is 0 and the ring is not full
//! (`tail - head < RING`), claim slot `tail` with a SeqCst CAS of `ends`
//! (`tail + 1`), then store the frame in it. Otherwise CAS `spilled + 1`
//! (SeqCst) and push the frame to the overflow. While `spilled` is not 0,
//! every frame goes to the overflow.
//!
//! Consumer (`fifo_pop`, the drainer, which alone moves `head`): take the
//! ring's slot `head`; if it held a frame, that is the next one. Otherwise
//! read `ends`: if `tail` is past `head`, a producer has claimed the slot
//! and is still storing into it: wait for it (as `SegQueue::pop` waits for
//! a slot being written). After a take, advance `head` (SeqCst
//! `fetch_add`): only then may the next lap's producer claim the slot, so
//! it never stores over a frame not yet taken. Only when the ring is empty
//! up to `tail` and `spilled` is not 0, pop the overflow (waiting, likewise,
//! for a producer that counted its frame and is pushing it) and then
//! subtract one from `spilled`. A pop that finds its frame in the ring is
//! two locked instructions (the take and the head), plus the byte
//! release.
//!
//! Order: a frame whose push happened before another's (the same producer,
//! or producers ordered by a lock, as the Hub's presence events are) leaves
//! first. Ring after ring: the claims are ordered in `ends`. Overflow after
//! overflow: the `SegQueue` is FIFO. Ring, then overflow: `tail` cannot
//! move while `spilled` is not 0 (a claim's CAS expects it 0), so when the
//! consumer reads a `spilled` that lets it pop the overflow, every ring
//! frame claimed before the overflow frame is below the `tail` it read in
//! the same word, and is taken first (the fast path takes a ring frame
//! without reading `ends`, which only takes it sooner). Overflow, then ring: a claim needs
//! `spilled` 0, which is only reached once every frame counted before has
//! been popped. The loom model `loom_fifo.rs` checks this through a ring
//! of 2 slots, with three mutants that break it (`crate::mutants`).
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
//! 1. push the frame (its SeqCst compare-and-swap on `ends`, a claim in the
//!    ring or a count into the overflow);
//! 2. load `scheduled` (SeqCst); if false, `swap(true)` (SeqCst) and, if this
//!    thread flipped it, call the transport's `wake` (exactly one producer
//!    wins).
//!
//! Drainer (`pop` until empty, then `rearm`, one thread at a time):
//! 1. pop until the queue is empty (or the socket is full: then it keeps
//!    `scheduled` set and resumes on writable readiness, no wake needed);
//! 2. store `scheduled = false` (SeqCst);
//! 3. if the queue is not empty (a SeqCst load of `ends`: a `tail` past the
//!    drainer's own `head`, or a `spilled` not 0) and `swap(true)` returns
//!    false, drain again without waiting for a wake.
//!
//! No lost wake-up: all the steps above are SeqCst, so they sit in one total
//! order. If a producer's load in 2 reads `true`, that load precedes the
//! drainer's store in 2, so the producer's push precedes the drainer's
//! emptiness check in 3, which sees the frame. If the load reads `false`, the
//! producer (or another producer, or the drainer) flips it, and whoever flips
//! it makes sure a drain follows. At most one wake is pending at a time: only
//! the thread whose `swap` turned `false` into `true` wakes the drainer.
//!
//! A frame counted in `ends` but still being written (a claimed slot, an
//! overflow push under way) makes the queue non-empty; the drainer's pop
//! waits for it, so the frame is not stranded either. The model
//! `loom_wakeup.rs` checks the protocol, through the ring and the overflow
//! (3 frames, 2 slots under loom). The byte accounting takes no part in it
//! (`loom_bytes.rs` models the bound).

use crate::message::Frame;
use crate::mutants;
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{AtomicCell, Backoff, SegQueue};

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

/// Slots in the ring (module docs): 32 in a build, 2 under loom so that
/// the models reach the overflow with a few frames.
#[cfg(not(loom))]
pub(crate) const RING: u32 = 32;
#[cfg(loom)]
pub(crate) const RING: u32 = 2;

/// `ends`' packing: the ring's head (top 20 bits), its tail (the next 20)
/// and the count of frames in the overflow (low 24 bits, which hold any
/// count the frame bound allows: [`MAX_FRAMES`] is 2^23). Head and tail are
/// indices modulo 2^20, compared only by their wrapping difference, which
/// is at most [`RING`].
#[derive(Clone, Copy)]
struct Ends(u64);

const SPILLED_BITS: u32 = 24;
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
const TAIL_SHIFT: u32 = SPILLED_BITS;
const HEAD_SHIFT: u32 = SPILLED_BITS + INDEX_BITS;
/// One frame taken from the ring: a `fetch_add` whose wrap falls off the
/// top of the word.
const HEAD_ONE: u64 = 1 << HEAD_SHIFT;

const _: () = assert!(HEAD_SHIFT + INDEX_BITS == 64);
const _: () = assert!(MAX_FRAMES < 1 << SPILLED_BITS);
// An index modulo 2^20 picks the same slot as the unwrapped index.
const _: () = assert!(RING.is_power_of_two() && RING <= 1 << (INDEX_BITS - 1));

impl Ends {
    fn head(self) -> u64 {
        self.0 >> HEAD_SHIFT
    }

    fn tail(self) -> u64 {
        (self.0 >> TAIL_SHIFT) & INDEX_MASK
    }

    fn spilled(self) -> u64 {
        self.0 & ((1 << SPILLED_BITS) - 1)
    }

    /// The word with one more ring slot claimed (the tail wraps within its
    /// 20 bits).
    fn claimed(self) -> u64 {
        let tail = (self.tail() + 1) & INDEX_MASK;
        (self.0 & !(INDEX_MASK << TAIL_SHIFT)) | (tail << TAIL_SHIFT)
    }
}

// The ring's slots must be one atomic word each: `AtomicCell` falls back to
// a global lock table for types that are not.
#[cfg(not(loom))]
const _: () = assert!(AtomicCell::<Option<Frame>>::is_lock_free());

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
    /// The ring's head and tail and the frames counted into the overflow
    /// ([`Ends`]; module docs).
    ends: AtomicU64,
    ring: [AtomicCell<Option<Frame>>; RING as usize],
    /// Frames that found the ring full, and every frame after them until
    /// the consumer has taken them all.
    overflow: SegQueue<Frame>,
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
            ends: AtomicU64::new(0),
            ring: std::array::from_fn(|_| AtomicCell::new(None)),
            overflow: SegQueue::new(),
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
        self.fifo_push(frame);
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
        // (module docs); the push's SeqCst CAS on `ends` is what the
        // wake-up protocol relies on.
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
        let frame = self.fifo_pop()?;
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
        !self.fifo_is_empty() && !self.scheduled.swap(true, Ordering::SeqCst)
    }

    /// Queues a frame in the ring, or in the overflow if the ring is full or
    /// frames wait there (module docs: "The ring and the overflow").
    fn fifo_push(&self, frame: Frame) {
        // Relaxed: a first guess; the CAS decides on the latest value.
        let mut ends = self.ends.load(Ordering::Relaxed);
        loop {
            let e = Ends(ends);
            // Mutant `ring_after_spill` (`crate::mutants`): the ring is used
            // whenever it has room, and a frame can pass one that waits in
            // the overflow.
            let to_ring = (e.spilled() == 0 || mutants::ring_after_spill())
                && e.tail().wrapping_sub(e.head()) & INDEX_MASK < u64::from(RING);
            // SeqCst (both CASes): the push's point in the wake-up protocol.
            let next = if to_ring { e.claimed() } else { ends + 1 };
            match self
                .ends
                .compare_exchange_weak(ends, next, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) if to_ring => {
                    // The slot's frame of the previous lap was taken before
                    // the consumer's head passed it, which the CAS read.
                    self.ring[(e.tail() % u64::from(RING)) as usize].store(Some(frame));
                    return;
                }
                Ok(_) => {
                    self.overflow.push(frame);
                    return;
                }
                Err(now) => ends = now,
            }
        }
    }

    /// Takes the oldest frame: the ring's, then the overflow's (module
    /// docs). Drainer only.
    fn fifo_pop(&self) -> Option<Frame> {
        // The head is the drainer's: only its own RMWs move it, and a load
        // never reads `ends` older than its own last write, so a Relaxed
        // load gives the head exactly (the rest of the word is not used).
        let head = Ends(self.ends.load(Ordering::Relaxed)).head();
        let slot = &self.ring[(head % u64::from(RING)) as usize];
        if mutants::head_before_take() && self.ring_has_frame(head) {
            // Mutant (`crate::mutants`): the slot is released before it is
            // emptied; the next lap's producer can store over its frame.
            self.ends.fetch_add(HEAD_ONE, Ordering::SeqCst);
            return self.take_claimed(slot, 0);
        }
        // The common case: the frame is there. The slot can only hold index
        // `head`'s frame: the next lap's producer needs the head past it.
        if let Some(frame) = slot.take() {
            self.release_head();
            return Some(frame);
        }
        let e = self.read_ends();
        if e.tail() != head {
            // A producer has claimed `head` and is still storing into it.
            let frame = self.take_claimed(slot, e.spilled())?;
            self.release_head();
            return Some(frame);
        }
        if e.spilled() == 0 {
            return None;
        }
        self.pop_overflow()
    }

    /// Whether the ring holds (or is being given) the frame of `head`.
    fn ring_has_frame(&self, head: u64) -> bool {
        self.read_ends().tail() != head
    }

    /// Waits for the producer that claimed `slot` to store its frame, as
    /// `SegQueue::pop` waits for a slot being written. Mutant
    /// `pop_skips_unwritten` (`crate::mutants`): take the overflow's frame
    /// meanwhile, which is later than this one.
    fn take_claimed(&self, slot: &AtomicCell<Option<Frame>>, spilled: u64) -> Option<Frame> {
        let backoff = Backoff::new();
        loop {
            if let Some(frame) = slot.take() {
                return Some(frame);
            }
            if mutants::pop_skips_unwritten() && spilled != 0 {
                return self.pop_overflow();
            }
            backoff.snooze();
        }
    }

    /// Frees the slot just emptied for the next lap (SeqCst, as every
    /// modification of `ends`). The head sits in the top bits, so its wrap
    /// falls off the word.
    fn release_head(&self) {
        if !mutants::head_before_take() {
            self.ends.fetch_add(HEAD_ONE, Ordering::SeqCst);
        }
    }

    /// The drainer's read of `ends` when the head slot is empty: is a frame
    /// claimed there, or waiting in the overflow?
    fn read_ends(&self) -> Ends {
        // Acquire is enough: the order argument rests on reading `tail`,
        // `head` and `spilled` in one word, not on this load's ordering.
        #[cfg(not(loom))]
        return Ends(self.ends.load(Ordering::Acquire));
        // Under loom, the same read as an RMW that adds nothing. Loom's
        // search did not reorder a load here after the producers' later
        // CAS (loom-tests/README.md), so with a load the models' drainers
        // never met a push under way and two `loom_bytes` mutants
        // survived. An RMW reads the latest value; the staler values C11
        // allows a load here are those of an earlier read (the drainer's
        // own writes are always visible to it, and `tail` cannot move
        // while it sees `spilled` above 0), which the search covers by
        // running the drainer earlier. SeqCst, as every modification of
        // `ends`: the wake-up argument needs all of them in the single
        // total order (with an AcqRel one, a re-arm's SeqCst load could
        // read this RMW's value, older than a producer's claim, which C11
        // allows for a non-SeqCst write: `loom_wakeup` failed).
        #[cfg(loom)]
        return Ends(self.ends.fetch_add(0, Ordering::SeqCst));
    }

    /// Pops a frame counted into the overflow, waiting for a producer that
    /// counted it and is still pushing it, then uncounts it.
    fn pop_overflow(&self) -> Option<Frame> {
        let backoff = Backoff::new();
        loop {
            if let Some(frame) = self.overflow.pop() {
                // SeqCst, as every RMW of `ends`.
                self.ends.fetch_sub(1, Ordering::SeqCst);
                return Some(frame);
            }
            backoff.snooze();
        }
    }

    /// Whether nothing is queued: the drainer's re-arm check (SeqCst, the
    /// wake-up protocol's load).
    fn fifo_is_empty(&self) -> bool {
        let e = Ends(self.ends.load(Ordering::SeqCst));
        e.tail() == e.head() && e.spilled() == 0
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

    /// An outbox whose ring indices start at `start` (as if `start` frames
    /// had passed through it), to test the wrap of the 20-bit indices.
    fn outbox_at(start: u64) -> Outbox {
        let o = Outbox::new(1 << 30, None);
        let start = start & INDEX_MASK;
        o.ends.store(
            (start << HEAD_SHIFT) | (start << TAIL_SHIFT),
            Ordering::Relaxed,
        );
        o
    }

    fn ends(o: &Outbox) -> (u64, u64, u64) {
        let e = Ends(o.ends.load(Ordering::Relaxed));
        (e.head(), e.tail(), e.spilled())
    }

    fn numbered(n: u32) -> Frame {
        Frame::from_string(n.to_string())
    }

    #[allow(
        clippy::unwrap_used,
        reason = "a test helper: a bad frame fails the test"
    )]
    fn number(f: &Frame) -> u32 {
        std::str::from_utf8(f.payload()).unwrap().parse().unwrap()
    }

    /// FIFO through ring, overflow and ring again, across the wrap of the
    /// ring's `u32` indices (module docs: "The ring and the overflow").
    #[test]
    fn frames_leave_in_order_through_the_ring_the_overflow_and_the_wrap() {
        for start in [0, INDEX_MASK - 40, INDEX_MASK - 3] {
            let o = outbox_at(start);
            let (mut next_in, mut next_out) = (0, 0);
            // Rounds of pushes and pops of varied sizes: some fit the ring,
            // some spill, some pops empty the overflow and hand back to it.
            for (push, pop) in [(10, 5), (40, 20), (3, 28), (100, 90), (5, 13), (64, 66)] {
                for _ in 0..push {
                    o.push(numbered(next_in)).unwrap();
                    next_in += 1;
                }
                for _ in 0..pop {
                    let f = o.pop().expect("a frame is queued");
                    assert_eq!(number(&f), next_out, "start {start}");
                    next_out += 1;
                }
                let (head, tail, spilled) = ends(&o);
                let queued = u64::from(next_in - next_out);
                assert_eq!(o.len() as u64, queued);
                assert_eq!((tail.wrapping_sub(head) & INDEX_MASK) + spilled, queued);
            }
            assert!(o.pop().is_none());
            assert!(o.fifo_is_empty());
            assert_eq!(o.pending_bytes(), 0);
        }
    }

    #[test]
    fn a_full_ring_spills_and_the_ring_is_used_again_once_the_overflow_is_empty() {
        let o = Outbox::new(1 << 30, None);
        for n in 0..RING + 2 {
            o.push(numbered(n)).unwrap();
        }
        assert_eq!(ends(&o), (0, u64::from(RING), 2));
        // While two frames wait in the overflow, a push goes there too,
        // although popping one frame has freed a ring slot.
        assert_eq!(number(&o.pop().unwrap()), 0);
        o.push(numbered(RING + 2)).unwrap();
        assert_eq!(ends(&o), (1, u64::from(RING), 3));
        for n in 1..RING + 3 {
            assert_eq!(number(&o.pop().unwrap()), n);
        }
        o.push(numbered(7)).unwrap();
        assert_eq!(ends(&o), (u64::from(RING), u64::from(RING) + 1, 0));
        assert_eq!(number(&o.pop().unwrap()), 7);
        assert!(o.pop().is_none());
    }

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
