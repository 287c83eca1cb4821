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
//! guarantees that the Hub's protocol relies on (see `outbox.rs`):
//! `ArrayQueue::push` is a SeqCst read-modify-write on the tail and
//! `ArrayQueue::is_empty` loads with SeqCst, exactly as crossbeam does.

#[cfg(not(loom))]
mod imp {
    #![expect(
        clippy::disallowed_types,
        reason = "the facade is the one place allowed to name the real types"
    )]
    pub(crate) use arc_swap::ArcSwapOption;
    pub(crate) use crossbeam_queue::ArrayQueue;
    pub(crate) use dashmap::DashMap;
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard, Weak};

    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    }

    /// Locks a mutex, recovering the data if a panicking thread poisoned it.
    ///
    /// The Hub never leaves a guarded structure half-updated across a call
    /// that can panic (user hooks run on copies), so the data is consistent.
    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(loom)]
mod imp;

pub(crate) use imp::*;
