//! A client's subscription table: its [`Sub`]s, found by channel name.
//!
//! Each `Sub` already holds its channel, hence the channel's name, so the
//! table is keyed by that name in place (hashbrown's `HashTable`, which
//! takes the hash and the equality from the caller) rather than by a key
//! of its own (std's `HashMap<Arc<str>, Sub>`). A join then stores no
//! second `Arc` of the name: one locked reference-count increment less per
//! subscribe and one decrement less per unsubscribe, and 16 bytes less per
//! subscription (issue 16 item 4, BENCHMARKS.md).
//!
//! Names are hashed with the Hub's flooding-resistant hasher
//! (`hasher.rs`): a client chooses its channels' names. Every client's
//! table uses the hasher of the Hub's channel table (`table.rs`), so that
//! a subscribe hashes its channel's name once for both ([`Key`]).

use hashbrown::hash_table::{Entry, HashTable, VacantEntry};

use crate::client::Sub;
use crate::hasher::Hasher;
use crate::table::Key;

/// A client's subscriptions, keyed by their channels' names.
pub(crate) struct Subs {
    table: HashTable<Sub>,
    hasher: Hasher,
}

/// A name known to be absent from a [`Subs`], ready to take its `Sub`.
pub(crate) struct Vacant<'a> {
    entry: VacantEntry<'a, Sub>,
    #[cfg(debug_assertions)]
    name: &'a str,
}

impl Vacant<'_> {
    /// Records `sub`, whose channel must bear the name this entry was
    /// found for.
    pub(crate) fn insert(self, sub: Sub) {
        #[cfg(debug_assertions)]
        debug_assert_eq!(&*sub.channel.name, self.name);
        self.entry.insert(sub);
    }
}

/// The name a `Sub` is found by.
fn name(sub: &Sub) -> &str {
    &sub.channel.name
}

impl Subs {
    /// An empty table hashing with `hasher`, the Hub's channel table's
    /// (the [`Key`]s passed to [`Subs::vacant`] are hashed with it).
    pub(crate) fn new(hasher: Hasher) -> Self {
        Self {
            table: HashTable::new(),
            hasher,
        }
    }

    fn hash(&self, channel: &str) -> u64 {
        self.hasher.hash_one(channel)
    }

    /// Subscriptions held.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The subscription to `channel`, if any.
    pub(crate) fn get(&self, channel: &str) -> Option<&Sub> {
        self.table
            .find(self.hash(channel), |sub| name(sub) == channel)
    }

    /// Whether the client is subscribed to `channel`.
    pub(crate) fn contains(&self, channel: &str) -> bool {
        self.get(channel).is_some()
    }

    /// Removes and returns the subscription to `channel`, if any.
    pub(crate) fn remove(&mut self, channel: &str) -> Option<Sub> {
        let hash = self.hash(channel);
        let found = self.table.find_entry(hash, |sub| name(sub) == channel);
        found.ok().map(|entry| entry.remove().0)
    }

    /// The vacant entry of `key`'s channel, or `None` if the client is
    /// already subscribed to it. The name is not hashed again: `key` was
    /// hashed with the same hasher (`Subs::new`).
    pub(crate) fn vacant<'a>(&'a mut self, key: Key<'a>) -> Option<Vacant<'a>> {
        debug_assert_eq!(key.hash, self.hash(key.name));
        let channel = key.name;
        let hasher = &self.hasher;
        match self.table.entry(
            key.hash,
            |sub| name(sub) == channel,
            |sub| hasher.hash_one(name(sub)),
        ) {
            Entry::Occupied(_) => None,
            Entry::Vacant(entry) => Some(Vacant {
                entry,
                #[cfg(debug_assertions)]
                name: channel,
            }),
        }
    }

    /// The names of the channels subscribed to, in no order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.table.iter().map(name)
    }

    /// Empties the table, handing its subscriptions over.
    pub(crate) fn take(&mut self) -> impl Iterator<Item = Sub> {
        std::mem::take(&mut self.table).into_iter()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::channel::Channel;
    use crate::sync::Arc;

    fn sub(channel: &str, slot: usize) -> Sub {
        Sub {
            channel: Arc::new(Channel::new(Arc::from(channel))),
            slot,
            presence: None,
        }
    }

    #[test]
    fn subscriptions_are_found_by_their_channels_name() {
        let hasher = Hasher::default();
        let mut subs = Subs::new(hasher.clone());
        let key = |name: &str| hasher.hash_one(name);
        // Enough names to make the table grow (rehash through `name`).
        for i in 0..100 {
            let channel = format!("c{i}");
            let hash = key(&channel);
            let vacant = subs
                .vacant(Key {
                    name: &channel,
                    hash,
                })
                .expect("not subscribed yet");
            vacant.insert(sub(&channel, i));
        }
        assert_eq!(subs.len(), 100);
        let c7 = Key {
            name: "c7",
            hash: key("c7"),
        };
        assert!(subs.vacant(c7).is_none(), "already subscribed");
        assert_eq!(subs.get("c42").map(|s| s.slot), Some(42));
        assert!(subs.contains("c99") && !subs.contains("c100"));
        assert_eq!(subs.remove("c42").map(|s| s.slot), Some(42));
        assert!(subs.remove("c42").is_none());
        assert!(!subs.contains("c42") && subs.len() == 99);
        let mut names: Vec<&str> = subs.names().collect();
        names.sort_unstable();
        assert_eq!(names.len(), 99);
        assert!(names.binary_search(&"c42").is_err());
        assert_eq!(subs.take().count(), 99);
        assert_eq!(subs.len(), 0);
    }
}
