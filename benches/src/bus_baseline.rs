//! The baseline pub/sub bus, written like the Go reference's Memory driver,
//! to measure `broadcasting::Memory` against.
//!
//! One global `RwLock` around `HashMap<String, Vec<Sender<Event>>>`;
//! `publish` takes the read lock, clones the channel's sender `Vec`, unlocks
//! and `try_send`s a clone of the event to each (a full queue drops it and
//! counts it). Each subscription is a thread receiving from its bounded
//! crossbeam channel and calling the handler (the reference's goroutine per
//! subscription).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use broadcasting::Event;
use crossbeam_channel::Sender;

/// The reference-style bus (see the module doc).
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use realtime_benches::BaselineBus;
///
/// let bus = BaselineBus::new(256);
/// let seen = Arc::new(AtomicU64::new(0));
/// let s = seen.clone();
/// bus.subscribe("orders", move |_e| {
///     s.fetch_add(1, Ordering::SeqCst);
/// });
/// bus.publish(broadcasting::Event::new("orders", "created", "{}"));
/// drop(bus); // joins the subscription threads
/// assert_eq!(seen.load(Ordering::SeqCst), 1);
/// ```
pub struct BaselineBus {
    subs: RwLock<HashMap<String, Vec<Sender<Event>>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    buffer: usize,
    dropped: AtomicU64,
}

impl BaselineBus {
    /// A bus whose subscriptions queue up to `buffer` events.
    pub fn new(buffer: usize) -> Self {
        Self {
            subs: RwLock::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            buffer,
            dropped: AtomicU64::new(0),
        }
    }

    /// Subscribes `handler` to `channel` on a thread of its own.
    ///
    /// # Panics
    ///
    /// If the thread cannot be spawned.
    pub fn subscribe(&self, channel: &str, handler: impl Fn(&Event) + Send + 'static) {
        let (tx, rx) = crossbeam_channel::bounded::<Event>(self.buffer);
        let handle = std::thread::Builder::new()
            .name("baseline-sub".into())
            .spawn(move || {
                for e in rx {
                    handler(&e);
                }
            })
            .unwrap_or_else(|e| panic!("spawn subscription thread: {e}"));
        self.threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(handle);
        self.subs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(channel.to_owned())
            .or_default()
            .push(tx);
    }

    /// Publishes without blocking: read lock, clone the senders, unlock,
    /// `try_send` to each.
    pub fn publish(&self, event: Event) {
        let senders = match self
            .subs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&event.channel)
        {
            Some(s) => s.clone(),
            None => return,
        };
        for tx in &senders {
            if tx.try_send(event.clone()).is_err() {
                // Relaxed: a statistic.
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events dropped on full queues.
    pub fn dropped(&self) -> u64 {
        // Relaxed: a statistic.
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for BaselineBus {
    fn drop(&mut self) {
        self.subs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for BaselineBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaselineBus")
            .field("dropped", &self.dropped())
            .finish()
    }
}
