//! A client's outbox: a bounded MPSC queue of frames plus the wake-up flag
//! that lets any number of producers hand work to one drainer without a lost
//! or a redundant wake-up.
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
//! This relies on crossbeam's `ArrayQueue::push` being a SeqCst RMW on the
//! tail and `is_empty` loading head and tail with SeqCst (crossbeam-queue
//! 0.3); the loom stand-in in `sync` keeps the same orderings, and the model
//! `loom_wakeup.rs` checks the protocol.

use crate::message::Frame;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::ArrayQueue;

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; the drainer was already scheduled.
    Queued,
    /// Queued, and the caller must wake the drainer.
    Wake,
}

pub(crate) struct Outbox {
    queue: ArrayQueue<Frame>,
    /// Written once per batch (by the producer that schedules and by the
    /// drainer that re-arms) and read by every push: a read-mostly flag.
    /// It is deliberately not cache-padded: padding would put it on a line of
    /// its own and cost every recipient of a fan-out one more cache miss.
    scheduled: AtomicBool,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: ArrayQueue::new(capacity),
            scheduled: AtomicBool::new(false),
        }
    }

    /// Pushes a frame; hands it back when the outbox is full.
    pub(crate) fn push(&self, frame: Frame) -> Result<Pushed, Frame> {
        self.queue.push(frame)?;
        #[cfg(loom_mutant = "lost_wakeup")]
        {
            // Mutant: a plain load-then-store, so two producers can both see
            // `false` and a drainer's re-arm can race the check.
            if !self.scheduled.load(Ordering::Relaxed) {
                self.scheduled.store(true, Ordering::Relaxed);
                return Ok(Pushed::Wake);
            }
            return Ok(Pushed::Queued);
        }
        #[cfg(not(loom_mutant = "wakeup_relaxed"))]
        let check = Ordering::SeqCst;
        // Mutant `wakeup_relaxed` (loom_wakeup.rs): the producer's check is
        // Relaxed, so it can read the `true` from before the drainer's
        // re-arm, skip the wake and strand its frame: the argument above
        // needs SeqCst (push, then load, in the single total order).
        #[cfg(loom_mutant = "wakeup_relaxed")]
        let check = Ordering::Relaxed;
        #[allow(unreachable_code)]
        if !self.scheduled.load(check) && !self.scheduled.swap(true, Ordering::SeqCst) {
            Ok(Pushed::Wake)
        } else {
            Ok(Pushed::Queued)
        }
    }

    pub(crate) fn pop(&self) -> Option<Frame> {
        self.queue.pop()
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

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.queue.capacity()
    }
}
