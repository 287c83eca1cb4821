//! The Hub's channel table: every live channel, found by its name.
//!
//! Written here rather than taken from dashmap (the table was a
//! `DashMap<Arc<str>, Arc<Channel>>` until issue 16 item 4), for two
//! costs that dashmap's safe API cannot avoid:
//! - the hash: a subscribe hashed the channel's name three times (the
//!   lookup, the insert of a new channel, the client's subscription
//!   table). Here the caller hashes a name once into a [`Key`] and hands
//!   the same hash to the table and to the client's subscriptions
//!   (`subs.rs`), which use this table's hasher. dashmap takes a hash from
//!   outside only through its raw API, which is `unsafe` to use, and the
//!   workspace forbids `unsafe`.
//! - the key: the table kept its own `Arc` of every channel's name beside
//!   the channel, which holds the name already (a locked increment per
//!   channel created, a decrement per channel destroyed, 16 bytes each).
//!   Here the table holds only the channels and finds them by the name
//!   each one holds.
//!
//! The shape is dashmap's: shards of hash tables (hashbrown's `HashTable`,
//! which takes the hash and the equality from the caller) under
//! read-write locks, the shard chosen by bits of the hash that the shard's
//! own table does not use. A lookup read-locks one shard for the time of
//! the probe and an `Arc` clone; an insert or removal write-locks it.
//! Nothing is ever dropped under a shard's lock that could be the last
//! reference to a channel (removals hand the channel back to the caller).
//!
//! Under loom the locks are loom's (the facade, `sync.rs`) and there are
//! two shards, as the former dashmap stand-in had, so the models explore
//! the same lock steps.

use hashbrown::hash_table::{Entry, HashTable};

use crate::channel::Channel;
use crate::hasher::Hasher;
use crate::sync::{read, write, Arc, RwLock};

/// A channel name with its hash under the table's hasher: computed once
/// per subscribe and used for the table and the client's subscriptions.
#[derive(Clone, Copy)]
pub(crate) struct Key<'a> {
    pub(crate) name: &'a str,
    pub(crate) hash: u64,
}

type Shard = RwLock<HashTable<Arc<Channel>>>;

/// The channel table (module doc).
pub(crate) struct ChannelTable {
    shards: Box<[Shard]>,
    hasher: Hasher,
}

/// Shards: as dashmap's default, four per core rounded up to a power of
/// two (at most 1,024), so that joins on different channels rarely meet
/// on a write lock. The core count is read once per process, as dashmap
/// does: `available_parallelism` reads cgroup files, and a Hub per input
/// (the `hub_ops` fuzz target) paid that at every input.
#[cfg(not(loom))]
fn shard_count() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        (cores * 4).next_power_of_two().min(1024)
    })
}

#[cfg(loom)]
fn shard_count() -> usize {
    2
}

impl ChannelTable {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..shard_count())
                .map(|_| RwLock::new(HashTable::new()))
                .collect(),
            hasher: Hasher::default(),
        }
    }

    /// The hasher of the table, which the clients' subscription tables
    /// share so that one [`Key`] serves both.
    pub(crate) fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// `name` with its hash.
    pub(crate) fn key<'a>(&self, name: &'a str) -> Key<'a> {
        Key {
            name,
            hash: self.hasher.hash_one(name),
        }
    }

    /// The shard of `hash`: bits 32.. pick it; hashbrown's tables use the
    /// low bits (bucket) and the top seven (tag), so a shard's entries
    /// still spread over its whole table. The count is a power of two.
    fn shard(&self, hash: u64) -> &Shard {
        // Truncation is intended: only the low bits of the shifted hash
        // are kept by the mask.
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        &self.shards[index]
    }

    /// The channel named `key.name`, if in the table.
    pub(crate) fn get(&self, key: Key<'_>) -> Option<Arc<Channel>> {
        read(self.shard(key.hash))
            .find(key.hash, |ch| &*ch.name == key.name)
            .cloned()
    }

    /// [`ChannelTable::get`] by name.
    pub(crate) fn find(&self, name: &str) -> Option<Arc<Channel>> {
        self.get(self.key(name))
    }

    /// Puts `ch` in the table, whose name must hash to `hash`, unless a
    /// channel of that name is there already: that one is returned then,
    /// and `ch` is not inserted.
    pub(crate) fn insert_new(&self, hash: u64, ch: &Arc<Channel>) -> Option<Arc<Channel>> {
        debug_assert_eq!(hash, self.hasher.hash_one(&*ch.name));
        let mut shard = write(self.shard(hash));
        let entry = shard.entry(
            hash,
            |c| c.name == ch.name,
            |c| self.hasher.hash_one(&*c.name),
        );
        match entry {
            Entry::Occupied(found) => Some(Arc::clone(found.get())),
            Entry::Vacant(vacant) => {
                vacant.insert(Arc::clone(ch));
                None
            }
        }
    }

    /// Removes `ch` itself (not another channel of its name); returns it
    /// if it was in the table, to be dropped by the caller after the
    /// shard's lock is released.
    pub(crate) fn remove_same(&self, ch: &Arc<Channel>) -> Option<Arc<Channel>> {
        self.remove_where(&ch.name, |c| Arc::ptr_eq(c, ch))
    }

    /// Removes the channel named `name`, whichever it is (the
    /// `dead_channel` mutant's removal, `crate::mutants`).
    pub(crate) fn remove_named(&self, name: &str) -> Option<Arc<Channel>> {
        self.remove_where(name, |c| &*c.name == name)
    }

    /// Removes the channel of `name`'s shard that `is` picks, and returns
    /// it (dropped by the caller, after the lock).
    fn remove_where(&self, name: &str, is: impl Fn(&Arc<Channel>) -> bool) -> Option<Arc<Channel>> {
        let hash = self.hasher.hash_one(name);
        let mut shard = write(self.shard(hash));
        let found = shard.find_entry(hash, is).ok()?;
        Some(found.remove().0)
    }

    /// Channels in the table: each shard read-locked in turn, so the sum
    /// is exact only when nothing joins or leaves meanwhile.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }

    /// The channels in the table, each shard copied under its read lock in
    /// turn (a channel inserted into a shard already visited is missed, as
    /// with dashmap's `iter`).
    pub(crate) fn snapshot(&self) -> Vec<Arc<Channel>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(read(shard).iter().cloned());
        }
        out
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn channel(name: &str) -> Arc<Channel> {
        Arc::new(Channel::new(Arc::from(name)))
    }

    #[test]
    fn channels_are_found_inserted_once_and_removed_by_identity() {
        let table = ChannelTable::new();
        // Enough channels for every shard's table to grow (rehash through
        // the channels' names).
        let all: Vec<_> = (0..500).map(|i| channel(&format!("c{i}"))).collect();
        for ch in &all {
            let key = table.key(&ch.name);
            assert!(table.get(key).is_none());
            assert!(table.insert_new(key.hash, ch).is_none(), "first insert");
        }
        assert_eq!(table.len(), 500);
        assert_eq!(table.snapshot().len(), 500);
        for ch in &all {
            let found = table.find(&ch.name).expect("inserted");
            assert!(Arc::ptr_eq(&found, ch));
        }
        // A second channel of a taken name is refused; the first is returned.
        let twin = channel("c7");
        let key = table.key("c7");
        let held = table.insert_new(key.hash, &twin).expect("name taken");
        assert!(Arc::ptr_eq(&held, &all[7]));
        // Removal is by identity: the twin is not in the table.
        assert!(table.remove_same(&twin).is_none());
        assert!(table.remove_same(&all[7]).is_some());
        assert!(table.find("c7").is_none());
        assert!(table
            .remove_named("c8")
            .is_some_and(|c| Arc::ptr_eq(&c, &all[8])));
        assert!(table.remove_named("c8").is_none());
        assert_eq!(table.len(), 498);
    }
}
