//! Local dispatch, shared by every driver: the subscription registry, one
//! bounded queue and one thread per subscription, and the counters (R22).
//!
//! # Who touches what
//!
//! - Publishers (any thread) take the registry's read lock, and `try_send`
//!   a clone of the event (the payload is shared, not copied) to each
//!   matching subscription. A full queue drops the event for that
//!   subscription only and counts it: a publisher never blocks on a slow
//!   handler.
//! - Each subscription's thread receives from its queue and calls the
//!   handler, in publish order, catching errors and panics (logged through
//!   `tracing`, counted, never propagated; the subscription keeps running).
//!   It blocks in a plain `recv` on that one queue. (It used to `select!`
//!   over the queue and a stop channel: a select parks and unparks through
//!   two wakers, ~9 µs per event here, which made a publish to 100
//!   subscriptions ~870 µs against ~10 µs for a plain `recv` loop:
//!   BENCHMARKS.md, issue #16.)
//! - `Subscription::cancel` removes the subscription from the registry,
//!   sets its `cancelled` flag, wakes its thread if it is waiting (an empty
//!   event through the queue; a full queue means it is not waiting) and
//!   joins it, so the handler has stopped when it returns. The thread checks
//!   the flag before each event, so queued events are discarded. Called
//!   from inside its own handler it cannot join itself: it signals, and the
//!   thread ends after the current event.
//! - `close` cancels every subscription and rejects later work.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::broadcaster::{Filter, Handler};
use crate::error::{Error, Result};
use crate::event::Event;

/// Default capacity of a subscription's queue, in events.
pub const DEFAULT_BUFFER: usize = 256;

/// A driver's counters. All are totals since the driver was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Events accepted by `publish`.
    pub published: u64,
    /// Events handed to a subscription's queue.
    pub delivered: u64,
    /// Events dropped on a full queue.
    pub dropped: u64,
    /// Handler calls that returned an error or panicked.
    pub handler_errors: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    handler_errors: AtomicU64,
}

struct SubShared {
    id: u64,
    filter: Filter,
    tx: Sender<Event>,
    /// Set by `stop`; the thread checks it before each event.
    cancelled: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The registry and counters of one driver.
pub(crate) struct Dispatcher {
    subs: RwLock<Vec<Arc<SubShared>>>,
    closed: AtomicBool,
    next_id: AtomicU64,
    buffer: usize,
    counters: Arc<Counters>,
    driver: &'static str,
}

impl Dispatcher {
    /// # Panics
    ///
    /// If `buffer` is 0.
    pub(crate) fn new(buffer: usize, driver: &'static str) -> Arc<Self> {
        assert!(buffer > 0, "subscription buffer must be at least 1");
        Arc::new(Self {
            subs: RwLock::new(Vec::new()),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            buffer,
            counters: Arc::default(),
            driver,
        })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Hands `event` to every matching subscription without blocking;
    /// returns how many queues took it.
    pub(crate) fn dispatch(&self, event: &Event) -> usize {
        let subs = self.subs.read().unwrap_or_else(PoisonError::into_inner);
        let mut taken = 0;
        for sub in subs.iter().filter(|s| s.filter.matches(&event.channel)) {
            match sub.tx.try_send(event.clone()) {
                Ok(()) => taken += 1,
                Err(TrySendError::Full(_)) => {
                    // Relaxed: statistics.
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        driver = self.driver,
                        subscription = sub.id,
                        channel = %event.channel,
                        "subscriber queue full: event dropped"
                    );
                }
                // The thread is stopping (cancel in progress).
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        self.counters
            .delivered
            .fetch_add(taken as u64, Ordering::Relaxed);
        taken
    }

    /// Counts a publish accepted by the driver.
    pub(crate) fn count_published(&self) {
        self.counters.published.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn subscribe(
        self: &Arc<Self>,
        filter: Filter,
        handler: Handler,
    ) -> Result<Subscription> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(self.buffer);
        let cancelled = Arc::new(AtomicBool::new(false));
        let counters = self.counters.clone();
        let driver = self.driver;
        let flag = cancelled.clone();
        let thread = std::thread::Builder::new()
            .name(format!("bcast-sub-{id}"))
            .spawn(move || run(id, driver, &rx, &flag, &handler, &counters))?;
        let shared = Arc::new(SubShared {
            id,
            filter,
            tx,
            cancelled,
            thread: Mutex::new(Some(thread)),
        });
        {
            let mut subs = self.subs.write().unwrap_or_else(PoisonError::into_inner);
            // Re-check under the lock: a close that ran meanwhile has already
            // taken the registry, and would never cancel this one.
            if self.is_closed() {
                drop(subs);
                stop(&shared);
                return Err(Error::Closed);
            }
            subs.push(shared.clone());
        }
        Ok(Subscription {
            shared,
            dispatcher: Arc::downgrade(self),
        })
    }

    pub(crate) fn close(&self) {
        let subs = {
            let mut subs = self.subs.write().unwrap_or_else(PoisonError::into_inner);
            self.closed.store(true, Ordering::SeqCst);
            std::mem::take(&mut *subs)
        };
        for sub in subs {
            stop(&sub);
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            published: c.published.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            handler_errors: c.handler_errors.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    fn remove(&self, id: u64) {
        self.subs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| s.id != id);
    }
}

/// Signals a subscription's thread and joins it, unless called from it.
fn stop(sub: &SubShared) {
    // SeqCst: the thread's check after its `recv` must see it (the wake-up
    // below is ordered after it through the channel, too).
    sub.cancelled.store(true, Ordering::SeqCst);
    // Wakes a thread waiting on an empty queue. Full: it is not waiting,
    // and sees the flag at its next event. Disconnected: it is gone.
    let _ = sub.tx.try_send(Event {
        channel: String::new(),
        name: String::new(),
        payload: bytes::Bytes::new(),
    });
    let handle = sub
        .thread
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(handle) = handle {
        if handle.thread().id() == std::thread::current().id() {
            return; // cancel from inside the handler: the loop ends after it
        }
        if handle.join().is_err() {
            tracing::error!(subscription = sub.id, "subscription thread panicked");
        }
    }
}

fn run(
    id: u64,
    driver: &'static str,
    rx: &Receiver<Event>,
    cancelled: &AtomicBool,
    handler: &Handler,
    counters: &Counters,
) {
    // Ends when cancelled, or when every sender is gone.
    while let Ok(event) = rx.recv() {
        // SeqCst: pairs with `stop`'s store.
        if cancelled.load(Ordering::SeqCst) {
            return;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| handler(&event)));
        let failed = match outcome {
            Ok(Ok(())) => false,
            Ok(Err(e)) => {
                tracing::warn!(driver, subscription = id, channel = %event.channel, error = %e, "handler failed");
                true
            }
            Err(_) => {
                tracing::error!(driver, subscription = id, channel = %event.channel, "handler panicked");
                true
            }
        };
        if failed {
            // Relaxed: a statistic.
            counters.handler_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A live subscription. It keeps running when this handle is dropped (so
/// `let _ = bus.subscribe(..)` does not silently unsubscribe); stop it with
/// [`Subscription::cancel`] or by closing the broadcaster.
pub struct Subscription {
    shared: Arc<SubShared>,
    dispatcher: Weak<Dispatcher>,
}

impl Subscription {
    /// Stops the subscription. Returns after its handler has stopped (unless
    /// called from inside that handler, where it returns at once and the
    /// handler's thread ends after the current event). Queued events not yet
    /// handled are discarded.
    pub fn cancel(self) {
        if let Some(d) = self.dispatcher.upgrade() {
            d.remove(self.shared.id);
        }
        stop(&self.shared);
    }

    /// The subscription's filter.
    pub fn filter(&self) -> &Filter {
        &self.shared.filter
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.shared.id)
            .field("filter", &self.shared.filter)
            .finish()
    }
}
