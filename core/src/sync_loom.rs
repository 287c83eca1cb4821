//! The loom side of the `sync` facade (issue #6), compiled only under
//! `--cfg loom`.
//!
//! Under loom every primitive whose interleavings matter to the Hub's
//! protocol must be one that loom's scheduler sees: its atomics, its locks
//! and the concurrent containers built from them. The real containers
//! (dashmap, arc-swap, crossbeam) are built on `std` atomics and, for
//! arc-swap and crossbeam, on `unsafe` code that loom cannot follow; so this
//! module replaces each with a small stand-in made of loom primitives that
//! keeps the API subset the Hub calls and the guarantees the Hub relies on.
//! A model then explores the Hub's own logic, not the containers'
//! (whose authors check them separately).
//!
//! | real | stand-in | what it models |
//! |---|---|---|
//! | `std::sync::atomic::*` | `loom::sync::atomic::*` | every interleaving and every value a load may read under the C11 model |
//! | `std::sync::Mutex` | `loom::sync::Mutex` | blocking, acquire/release, deadlock detection |
//! | `std::sync::RwLock` (the channel table's shards, `table.rs`) | `loom::sync::RwLock` | as the mutex, with shared readers |
//! | `dashmap::DashMap` (the client table) | [`DashMap`]: two shards, each a `loom::sync::RwLock<Vec<(K, V)>>` | shard locks held for exactly the lifetime of a guard (`get`, `entry`) or one call (`insert`, `remove_if`, `len`); `iter` visits shards one at a time, so an insert into an already-visited shard is missed, as with dashmap |
//! | `arc_swap::ArcSwapOption` | [`ArcSwapOption`]: a `loom::sync::Mutex<Option<Arc<T>>>` | a linearizable load/store cell: `store` releases, `load` acquires |
//! | `crossbeam_queue::SegQueue` (the outbox's overflow) | [`SegQueue`]: a loom-mutex-guarded `VecDeque` | unbounded linearizable FIFO; the outbox counts a frame in its own `ends` before pushing it, so its wake-up protocol rests on no ordering of the queue's (`outbox.rs`) |
//! | `crossbeam_utils::atomic::AtomicCell` (the outbox ring's slots) | [`AtomicCell`]: `std` storage published by a loom `AtomicBool` | `store` and `take` are swaps (AcqRel), as the real cell's are for a one-word `Option<Frame>`; a `take` before the `store` returns `None` |
//! | `crossbeam_utils::Backoff` | [`Backoff`]: `loom::thread::yield_now` | a consumer waiting for a producer's write under way lets the producer run |
//! | `std::sync::OnceLock` (channel segments) | [`OnceLock`]: a `std` `OnceLock` for storage plus a loom `AtomicBool` that publishes it | a reader that has not synchronised with the initialisation sees `None` (the segment array's lock-free readers, `channel.rs`) |
//!
//! The outbox's byte accounting (`queued`, `unsent` in `outbox.rs`) needs
//! no stand-in: it is two plain `AtomicU64`s, used `Relaxed`, so under loom
//! a relaxed load may return any value coherence allows (`pending_bytes` a
//! count a racing push or pop has already changed, a producer an `unsent`
//! report not yet visible to it), which is what the byte-accounting models
//! (`loom_bytes.rs`) explore.
//!
//! # SeqCst under loom
//!
//! The outbox's wake-up protocol is a store-buffering pair over SeqCst
//! operations (`outbox.rs`): the producer pushes (an RMW on `ends`) then
//! loads `scheduled`; the drainer stores `scheduled = false` then loads
//! `ends`. Loom checks this faithfully but for one gap: its
//! modification order is partial (vector clocks), so it does not know that
//! the drainer's `store(false)` comes after a concurrent producer's
//! `swap(true)` that read an earlier `true` (in C11 an RMW immediately
//! follows the store it read, so any later store of the drainer is after
//! it). Loom then lets a producer read that stale `true` after the re-arm
//! and reports a stranded frame that C11 forbids. Under `cfg(loom)` only,
//! `Outbox::rearm` therefore writes `false` with a `swap` (an RMW, which
//! loom orders after every store it has executed): the same value, the
//! same place in C11's order, and loom's verdict becomes exact. With that,
//! the wake-up model fails if the producer's load of `scheduled` is made
//! `Relaxed`, so it does check the orderings, not only the logic. The one
//! thing the swap adds is an acquire: the drainer synchronises with the
//! producer whose `true` it overwrites, a producer that has already woken
//! it; C11 gives the drainer that producer's push through the SeqCst order
//! anyway, so no outcome the real code can reach is hidden.
//!
//! What is deliberately *not* swapped:
//!
//! - `Arc` and `Weak` stay `std`'s. The Hub holds trait objects in `Arc`s
//!   (`Arc<dyn Transport>`, `Arc<dyn Authorizer>`, hooks) and a `Weak` to
//!   itself; loom's `Arc` supports neither unsized coercion nor `Weak`.
//!   Reference counting is not part of the Hub's protocol (every hand-off
//!   of an `Arc` goes through a loom-visible lock or cell above), and the
//!   models check that resources are freed by observing `Arc::strong_count`
//!   of their own transports.
//! - The blocking path (`Hub::add`, `conn.rs`: OS writer threads, `park`,
//!   crossbeam channels) is compiled but must not be called inside a model:
//!   it starts real threads that loom cannot schedule. Models register
//!   clients with `Hub::attach` and a test `Transport`.
//! - `Frame`'s encode cache and a client's close reason keep `std`'s
//!   `OnceLock`: they are write-once values outside the protocol.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::PoisonError;

pub(crate) use loom::sync::{Mutex, MutexGuard};
pub(crate) use loom::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub(crate) use std::sync::{Arc, Weak};

pub(crate) mod atomic {
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
}

use atomic::{AtomicBool, Ordering};

/// Locks a mutex, recovering the data if a panicking thread poisoned it
/// (loom's mutex never reports poison; kept for the same signature).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks, recovering the data from poison (as [`lock`]).
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks, recovering the data from poison (as [`lock`]).
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// OnceLock
// ---------------------------------------------------------------------------

/// `std::sync::OnceLock` with a loom-visible publication.
///
/// The value lives in a `std` `OnceLock` (loom runs its threads on one OS
/// thread, so that cell is never contended for real); `ready` is the loom
/// atomic that publishes it. `get` returns `None` unless it reads `ready`
/// (Acquire), so loom explores a reader that has not yet synchronised with
/// the initialiser, as the segment array's lock-free readers can be.
pub(crate) struct OnceLock<T> {
    value: std::sync::OnceLock<T>,
    ready: AtomicBool,
}

impl<T> OnceLock<T> {
    pub(crate) fn new() -> Self {
        Self {
            value: std::sync::OnceLock::new(),
            ready: AtomicBool::new(false),
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        // Acquire: pairs with the Release in `get_or_init`.
        if self.ready.load(Ordering::Acquire) {
            self.value.get()
        } else {
            None
        }
    }

    pub(crate) fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        if let Some(value) = self.get() {
            return value;
        }
        let value = self.value.get_or_init(f);
        // Release: a reader that sees `ready` sees the value.
        self.ready.store(true, Ordering::Release);
        value
    }
}

// ---------------------------------------------------------------------------
// AtomicCell, Backoff
// ---------------------------------------------------------------------------

/// `crossbeam_utils::atomic::AtomicCell`, reduced to the outbox ring's use
/// (`store` into an empty slot, `take`).
///
/// The value lives in `std` storage; `full` is the loom atomic that
/// publishes it. Both operations are a swap of `full` (AcqRel), as the
/// real cell's are swaps of its one word: an RMW reads the latest value,
/// so a `take` finds the value once its `store` has published it, and a
/// `take` that runs before returns the default (`None`) and leaves the
/// slot alone, which is what the ring's consumer waits out.
pub(crate) struct AtomicCell<T> {
    #[allow(
        clippy::disallowed_types,
        reason = "storage outside loom's view; `full` is the loom-visible publication"
    )]
    value: std::sync::Mutex<T>,
    full: AtomicBool,
}

impl<T: Default> AtomicCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            value: std::sync::Mutex::new(value),
            full: AtomicBool::new(false),
        }
    }

    fn value(&self) -> std::sync::MutexGuard<'_, T> {
        self.value.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn store(&self, value: T) {
        let old = std::mem::replace(&mut *self.value(), value);
        // AcqRel, as the real cell's swap: a take that reads it sees the
        // value.
        self.full.swap(true, Ordering::AcqRel);
        drop(old);
    }

    pub(crate) fn take(&self) -> T {
        // AcqRel, as the real cell's swap.
        if self.full.swap(false, Ordering::AcqRel) {
            std::mem::take(&mut *self.value())
        } else {
            T::default()
        }
    }
}

/// `crossbeam_utils::Backoff`: under loom a wait for another thread's write
/// must yield, or the model would spin on the waiting thread forever.
pub(crate) struct Backoff;

impl Backoff {
    pub(crate) fn new() -> Self {
        Self
    }

    pub(crate) fn snooze(&self) {
        loom::thread::yield_now();
    }
}

// ---------------------------------------------------------------------------
// ArcSwapOption
// ---------------------------------------------------------------------------

/// `arc_swap::ArcSwapOption` as a loom mutex around the pointer.
///
/// arc-swap's load and store are linearizable, a store happens-before every
/// load that returns it; a mutex gives exactly that, and loom sees it.
pub(crate) struct ArcSwapOption<T> {
    cell: Mutex<Option<Arc<T>>>,
}

/// What [`ArcSwapOption::load`] returns: a snapshot of the pointer.
pub(crate) struct Guard<T>(T);

impl<T> Deref for Guard<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> ArcSwapOption<T> {
    /// An empty cell (not `const` under loom: loom objects are created at
    /// run time).
    pub(crate) fn const_empty() -> Self {
        Self {
            cell: Mutex::new(None),
        }
    }

    /// A cell holding `value`.
    pub(crate) fn new(value: Option<Arc<T>>) -> Self {
        Self {
            cell: Mutex::new(value),
        }
    }

    pub(crate) fn load(&self) -> Guard<Option<Arc<T>>> {
        Guard(lock(&self.cell).clone())
    }

    /// Replaces the pointer and returns the one it replaced.
    pub(crate) fn swap(&self, value: Option<Arc<T>>) -> Option<Arc<T>> {
        std::mem::replace(&mut *lock(&self.cell), value)
    }

    pub(crate) fn store(&self, value: Option<Arc<T>>) {
        let old = std::mem::replace(&mut *lock(&self.cell), value);
        // Dropped outside the lock, as arc-swap drops the old value after
        // the swap.
        drop(old);
    }
}

// ---------------------------------------------------------------------------
// SegQueue
// ---------------------------------------------------------------------------

/// `crossbeam_queue::SegQueue`, reduced to what the outbox's overflow
/// needs: a `VecDeque` under a loom mutex (the hand-off of a frame from
/// producer to consumer, which crossbeam does with per-slot state bits;
/// both are linearizable FIFO queues). The outbox's wake-up protocol no
/// longer rests on the queue's own orderings: a push is counted in the
/// outbox's `ends` (SeqCst) before it reaches the queue (`outbox.rs`).
pub(crate) struct SegQueue<T> {
    items: Mutex<VecDeque<T>>,
}

impl<T> SegQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
        }
    }

    pub(crate) fn push(&self, value: T) {
        lock(&self.items).push_back(value);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        lock(&self.items).pop_front()
    }
}

// ---------------------------------------------------------------------------
// DashMap
// ---------------------------------------------------------------------------

/// Shards of the [`DashMap`] stand-in: two, so that `iter` can miss an insert
/// into a shard it already visited (as dashmap's can), while keeping the
/// number of locks, hence interleavings, small.
const SHARDS: usize = 2;

type Shard<K, V> = RwLock<Vec<(K, V)>>;

/// `dashmap::DashMap`, reduced to what the Hub's tables need.
///
/// Each shard is a loom `RwLock` over a small vector (models hold a handful
/// of entries; a vector keeps iteration order deterministic). Keys are
/// spread by `std`'s `DefaultHasher` with its fixed keys, so a model's runs
/// are reproducible. Guards hold their shard's lock for their lifetime, as
/// dashmap's do, so a guard kept across another lock is a lock-order edge
/// that loom's deadlock detection sees.
pub(crate) struct DashMap<K, V> {
    shards: [Shard<K, V>; SHARDS],
}

fn shard_of<Q: Hash + ?Sized>(key: &Q) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    // Truncation is fine: only the low bits choose the shard.
    (h.finish() as usize) % SHARDS
}

/// A read guard on one entry (`dashmap::mapref::one::Ref`).
pub(crate) struct Ref<'a, K, V> {
    guard: RwLockReadGuard<'a, Vec<(K, V)>>,
    index: usize,
}

impl<K, V> Ref<'_, K, V> {
    #[allow(dead_code)]
    pub(crate) fn key(&self) -> &K {
        &self.guard[self.index].0
    }

    pub(crate) fn value(&self) -> &V {
        &self.guard[self.index].1
    }
}

impl<K, V> Deref for Ref<'_, K, V> {
    type Target = V;

    fn deref(&self) -> &V {
        self.value()
    }
}

/// A write guard on one entry (`dashmap::mapref::one::RefMut`).
pub(crate) struct RefMut<'a, K, V> {
    guard: RwLockWriteGuard<'a, Vec<(K, V)>>,
    index: usize,
}

impl<K, V> RefMut<'_, K, V> {
    #[allow(dead_code)]
    pub(crate) fn key(&self) -> &K {
        &self.guard[self.index].0
    }

    pub(crate) fn value(&self) -> &V {
        &self.guard[self.index].1
    }
}

impl<K, V> Deref for RefMut<'_, K, V> {
    type Target = V;

    fn deref(&self) -> &V {
        self.value()
    }
}

/// An entry, holding its shard's write lock (`dashmap::mapref::entry::Entry`).
pub(crate) struct Entry<'a, K, V> {
    guard: RwLockWriteGuard<'a, Vec<(K, V)>>,
    key: K,
}

impl<'a, K: Eq, V> Entry<'a, K, V> {
    pub(crate) fn or_insert_with(self, f: impl FnOnce() -> V) -> RefMut<'a, K, V> {
        let Entry { mut guard, key } = self;
        let index = match guard.iter().position(|(k, _)| *k == key) {
            Some(index) => index,
            None => {
                guard.push((key, f()));
                guard.len() - 1
            }
        };
        RefMut { guard, index }
    }
}

/// One item of [`DashMap::iter`]: a copy of the entry taken under its shard's
/// read lock (`dashmap::mapref::multiple::RefMulti`).
pub(crate) struct Item<K, V> {
    key: K,
    value: V,
}

impl<K, V> Item<K, V> {
    pub(crate) fn key(&self) -> &K {
        &self.key
    }

    pub(crate) fn value(&self) -> &V {
        &self.value
    }
}

/// Iterates shard by shard: each shard is copied under its read lock, then
/// the lock is released before the next shard is visited.
pub(crate) struct Iter<'a, K, V> {
    map: &'a DashMap<K, V>,
    next_shard: usize,
    current: std::vec::IntoIter<(K, V)>,
}

impl<K: Clone, V: Clone> Iterator for Iter<'_, K, V> {
    type Item = Item<K, V>;

    fn next(&mut self) -> Option<Item<K, V>> {
        loop {
            if let Some((key, value)) = self.current.next() {
                return Some(Item { key, value });
            }
            let shard = self.map.shards.get(self.next_shard)?;
            self.next_shard += 1;
            self.current = read(shard).clone().into_iter();
        }
    }
}

impl<K: Eq + Hash, V> Default for DashMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash, V> DashMap<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| RwLock::new(Vec::new())),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Shard<K, V> {
        &self.shards[shard_of(key)]
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<Ref<'_, K, V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let guard = read(self.shard(key));
        let index = guard.iter().position(|(k, _)| k.borrow() == key)?;
        Some(Ref { guard, index })
    }

    pub(crate) fn entry(&self, key: K) -> Entry<'_, K, V> {
        let guard = write(self.shard(&key));
        Entry { guard, key }
    }

    pub(crate) fn insert(&self, key: K, value: V) -> Option<V> {
        let mut guard = write(self.shard(&key));
        match guard.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                guard.push((key, value));
                None
            }
        }
    }

    #[allow(dead_code)]
    pub(crate) fn remove<Q>(&self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut guard = write(self.shard(key));
        let index = guard.iter().position(|(k, _)| k.borrow() == key)?;
        Some(guard.swap_remove(index))
    }

    pub(crate) fn remove_if<Q>(&self, key: &Q, f: impl FnOnce(&K, &V) -> bool) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut guard = write(self.shard(key));
        let index = guard.iter().position(|(k, _)| k.borrow() == key)?;
        let (k, v) = &guard[index];
        if f(k, v) {
            Some(guard.swap_remove(index))
        } else {
            None
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }

    pub(crate) fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            map: self,
            next_shard: 0,
            current: Vec::new().into_iter(),
        }
    }
}
