//! The one door through which the Hub reaches synchronisation primitives.
//!
//! Every atomic, `Arc`, lock and concurrent container that the Hub's
//! concurrency protocol depends on is imported from here, never from `std`,
//! `dashmap`, `arc_swap` or `crossbeam` directly (`core/.clippy.toml` turns a
//! reach-around into a clippy error). Under `cfg(loom)` this module swaps in
//! loom's primitives and small loom-visible stand-ins for the containers, so
//! that a loom model explores the Hub's own logic (the `loom-tests/` crate).
//!
//! The stand-ins keep the API subset the Hub uses and the same memory-order
//! guarantees that the Hub's protocol relies on (see `outbox.rs`). The
//! table of stand-ins, and what stays `std` under loom and why (`Arc`,
//! `Weak`, the blocking `Hub::add` path), is in `sync_loom.rs`.
//!
//! `AtomicCell` (crossbeam-utils) holds the outbox ring's frames; under loom
//! it is a stand-in (`sync_loom.rs`).
//! `Backoff` is how a consumer waits for a write already under way; under
//! loom it yields to the other threads.
//!
//! `OnceLock` is here too: the channel's segment array publishes segments
//! past the first (segment 0 is inline) to lock-free readers through it,
//! so under loom it is a stand-in whose publication loom sees (a model
//! reaches it only with more than 64 members in one channel).

#[cfg(not(loom))]
#[expect(
    clippy::disallowed_types,
    reason = "the facade is the one place allowed to name the real types"
)]
mod imp {
    // Type aliases, not re-exports: a use site then names the facade's item,
    // which clippy's `disallowed-types` accepts, while any direct use of the
    // real types elsewhere is an error.
    pub(crate) type ArcSwapOption<T> = arc_swap::ArcSwapOption<T>;
    pub(crate) type AtomicCell<T> = crossbeam_utils::atomic::AtomicCell<T>;
    pub(crate) type SegQueue<T> = crossbeam_queue::SegQueue<T>;
    pub(crate) type DashMap<K, V> = dashmap::DashMap<K, V, crate::hasher::Hasher>;
    pub(crate) type Mutex<T> = std::sync::Mutex<T>;
    pub(crate) type OnceLock<T> = std::sync::OnceLock<T>;
    pub(crate) type RwLock<T> = std::sync::RwLock<T>;
    pub(crate) use std::sync::{Arc, MutexGuard, RwLockReadGuard, RwLockWriteGuard, Weak};

    pub(crate) mod atomic {
        pub(crate) type AtomicBool = std::sync::atomic::AtomicBool;
        pub(crate) type AtomicU64 = std::sync::atomic::AtomicU64;
        pub(crate) type AtomicUsize = std::sync::atomic::AtomicUsize;
        pub(crate) use std::sync::atomic::Ordering;
    }

    /// Waits for another thread's write that is already under way (a
    /// lock-free queue's slot claimed but not yet written): spins, then
    /// yields the CPU, as crossbeam's own queues wait.
    pub(crate) struct Backoff(crossbeam_utils::Backoff);

    impl Backoff {
        pub(crate) fn new() -> Self {
            Self(crossbeam_utils::Backoff::new())
        }

        pub(crate) fn snooze(&self) {
            self.0.snooze();
        }
    }

    /// Locks a mutex, recovering the data if a panicking thread poisoned it.
    ///
    /// The Hub never leaves a guarded structure half-updated across a call
    /// that can panic (user hooks run under `catch_unwind`), so the data is
    /// consistent.
    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Read-locks, recovering the data from poison (as [`lock`]).
    pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
        l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Write-locks, recovering the data from poison (as [`lock`]).
    pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
        l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(loom)]
#[path = "sync_loom.rs"]
mod imp;

pub(crate) use imp::*;
