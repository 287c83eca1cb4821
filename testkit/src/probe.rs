//! What the Hub oracles record: a [`Transport`] that counts its calls (the
//! oracle drains outboxes by hand), the presence hooks and authorizer calls
//! a Hub made, and the byte-prefix channel classification they are judged
//! by.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use realtime::{ChannelType, PresenceEvent, Transport};

/// A transport that records its calls; the oracle drains by hand.
#[derive(Default)]
pub(crate) struct Probe {
    pub(crate) wakes: AtomicUsize,
    pub(crate) closes: AtomicUsize,
}

impl Transport for Probe {
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
    fn closed(&self) {
        self.closes.fetch_add(1, Ordering::SeqCst);
    }
}

/// What the Hub's hooks and authorizer saw, shared with their closures.
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) events: Mutex<Vec<PresenceEvent>>,
    pub(crate) auth_calls: Mutex<Vec<(String, ChannelType, String)>>,
    pub(crate) deny_all: AtomicBool,
}

/// Locks a recorder's list, recovering it if a panicking hook poisoned it
/// (the Hub runs hooks under `catch_unwind`; each push is whole).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The channel type a name's bytes imply (R5): the reference that
/// `classify_channel` is compared with.
pub(crate) fn reference_class(name: &[u8]) -> ChannelType {
    if name.starts_with(b"private-") {
        ChannelType::Private
    } else if name.starts_with(b"presence-") {
        ChannelType::Presence
    } else {
        ChannelType::Public
    }
}
