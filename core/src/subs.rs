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
//! (`hasher.rs`): a client chooses its channels' names.

use hashbrown::hash_table::{Entry, HashTable, VacantEntry};

use crate::client::Sub;
use crate::hasher::Hasher;

/// A client's subscriptions, keyed by their channels' names.
#[derive(Default)]
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

    /// The vacant entry of `channel`, or `None` if the client is already
    /// subscribed to it. One hash of the name for the check and the insert.
    pub(crate) fn vacant<'a>(&'a mut self, channel: &'a str) -> Option<Vacant<'a>> {
        let hash = self.hash(channel);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
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
        let mut subs = Subs::default();
        // Enough names to make the table grow (rehash through `name`).
        for i in 0..100 {
            let channel = format!("c{i}");
            let vacant = subs.vacant(&channel).expect("not subscribed yet");
            vacant.insert(sub(&channel, i));
        }
        assert_eq!(subs.len(), 100);
        assert!(subs.vacant("c7").is_none(), "already subscribed");
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
