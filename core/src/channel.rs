//! Channels: a name, a type, and a member set that broadcasts read without
//! taking any lock.
//!
//! # The member set: a segmented slot array
//!
//! Members live in slots of a segmented array. Segment `k` holds
//! `BASE << k` slots and is allocated once, the first time a slot in it is
//! needed; it never moves and is never freed before the channel. Each slot is
//! an [`ArcSwapOption`] holding a member's shared client state or nothing.
//!
//! - **Broadcast** (any thread, no lock): reads the high-water mark `len`
//!   and loads every slot below it. A load is wait-free (arc-swap).
//! - **Join / leave** (any thread, under the channel's `state` mutex): a join
//!   takes a slot index from the free list, or the next index past `len`;
//!   a leave empties its slot and returns the index to the free list. Both are
//!   O(1): no member list is ever copied, so joining a channel of 100k members
//!   costs the same as joining an empty one (allocating a new segment is a
//!   zeroed allocation, amortised O(1)).
//!
//! Invariants, all guarded by `state`:
//! - a client occupies at most one slot of a channel, recorded in the
//!   client's own subscription table together with the slot index;
//! - `members` equals the number of occupied slots;
//! - once `dead` is set (last member left and the channel was removed from
//!   the Hub's table) no slot is ever filled again: a subscriber that finds a
//!   dead channel retries with a fresh one from the table (R6).
//!
//! A broadcast that loaded a slot just before its member left may still
//! enqueue to that member: a broadcast concurrent with an unsubscribe may or
//! may not reach it. A closed client refuses every enqueue, so nothing is
//! delivered after `Client::close` returns (R7).

use crate::client::ClientShared;
use crate::presence::Roster;
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{Arc, ArcSwapOption, Mutex};

/// A channel's type, derived from its name (R5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelType {
    /// No authorization.
    Public,
    /// `private-…`: joins ask the authorizer.
    Private,
    /// `presence-…`: joins ask the authorizer and the channel keeps a roster.
    Presence,
}

/// Classifies a channel by its name prefix (R5): `private-` is
/// [`ChannelType::Private`], `presence-` is [`ChannelType::Presence`], and
/// anything else, a bare `presence` included, is [`ChannelType::Public`].
///
/// # Examples
///
/// ```
/// use realtime::{classify_channel, ChannelType};
///
/// assert_eq!(classify_channel("orders"), ChannelType::Public);
/// assert_eq!(classify_channel("private-billing"), ChannelType::Private);
/// assert_eq!(classify_channel("presence-room.7"), ChannelType::Presence);
/// assert_eq!(classify_channel("presence"), ChannelType::Public);
/// ```
pub fn classify_channel(name: &str) -> ChannelType {
    if name.starts_with("private-") {
        ChannelType::Private
    } else if name.starts_with("presence-") {
        ChannelType::Presence
    } else {
        ChannelType::Public
    }
}

/// Slots in segment 0; segment `k` has `BASE << k`.
const BASE_SHIFT: u32 = 5;
const BASE: usize = 1 << BASE_SHIFT;
/// Enough segments for more members than a process can hold.
const SEGMENTS: usize = 26;

type Slot = ArcSwapOption<ClientShared>;

/// Maps a slot index to (segment, offset within it).
fn locate(index: usize) -> (usize, usize) {
    let j = index + BASE;
    let k = (usize::BITS - 1 - j.leading_zeros()) - BASE_SHIFT;
    (k as usize, j - (BASE << k))
}

/// The segmented slot array described in the module doc.
pub(crate) struct Slots {
    segments: [std::sync::OnceLock<Box<[Slot]>>; SEGMENTS],
    /// One past the highest index ever handed out.
    len: AtomicUsize,
}

impl Slots {
    fn new() -> Self {
        Self {
            segments: std::array::from_fn(|_| std::sync::OnceLock::new()),
            len: AtomicUsize::new(0),
        }
    }

    fn slot(&self, index: usize) -> Option<&Slot> {
        let (k, off) = locate(index);
        self.segments.get(k)?.get()?.get(off)
    }

    /// Stores `value` at `index`, allocating its segment on first use.
    /// Caller holds the channel's state mutex.
    fn store(&self, index: usize, value: Option<Arc<ClientShared>>) {
        let (k, off) = locate(index);
        let Some(seg) = self.segments.get(k) else {
            // Unreachable in practice: 2^31 slots per channel.
            tracing::error!(index, "channel slot index out of range");
            return;
        };
        let seg = seg.get_or_init(|| (0..(BASE << k)).map(|_| Slot::const_empty()).collect());
        if let Some(slot) = seg.get(off) {
            slot.store(value);
        }
        if index >= self.len.load(Ordering::Relaxed) {
            // Release: a broadcast that reads the new `len` (Acquire) sees the
            // segment initialised and the slot stored.
            self.len.store(index + 1, Ordering::Release);
        }
    }

    /// Calls `f` on every current member; lock-free.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<ClientShared>)) {
        // Acquire: pairs with the Release in `store`.
        let len = self.len.load(Ordering::Acquire);
        let mut index = 0;
        for (k, seg) in self.segments.iter().enumerate() {
            if index >= len {
                break;
            }
            let Some(seg) = seg.get() else { break };
            let take = (BASE << k).min(len - index);
            for slot in &seg[..take] {
                if let Some(member) = &*slot.load() {
                    f(member);
                }
            }
            index += take;
        }
    }
}

/// Writer-side state of a channel, guarded by `Channel::state`.
pub(crate) struct ChannelState {
    /// Emptied slot indices, reused before growing.
    free: Vec<usize>,
    /// Next never-used slot index.
    next: usize,
    /// Number of occupied slots.
    pub(crate) members: usize,
    /// Set when the last member left and the channel left the Hub's table.
    pub(crate) dead: bool,
    /// The roster, for presence channels.
    pub(crate) roster: Option<Roster>,
}

impl ChannelState {
    /// Puts `client` in a free slot and returns its index.
    pub(crate) fn insert(&mut self, slots: &Slots, client: Arc<ClientShared>) -> usize {
        let index = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        slots.store(index, Some(client));
        self.members += 1;
        index
    }

    /// Empties slot `index`.
    pub(crate) fn remove(&mut self, slots: &Slots, index: usize) {
        if let Some(slot) = slots.slot(index) {
            slot.store(None);
        }
        self.free.push(index);
        self.members = self.members.saturating_sub(1);
    }
}

/// A channel: its name, type, lock-free member slots and writer state.
pub(crate) struct Channel {
    pub(crate) name: Arc<str>,
    pub(crate) kind: ChannelType,
    pub(crate) slots: Slots,
    pub(crate) state: Mutex<ChannelState>,
    /// Mirror of `state.members` for lock-free reads (R8).
    pub(crate) count: AtomicUsize,
}

impl Channel {
    pub(crate) fn new(name: Arc<str>) -> Self {
        let kind = classify_channel(&name);
        Self {
            name,
            kind,
            slots: Slots::new(),
            state: Mutex::new(ChannelState {
                free: Vec::new(),
                next: 0,
                members: 0,
                dead: false,
                roster: (kind == ChannelType::Presence).then(Roster::default),
            }),
            count: AtomicUsize::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_maps_indices_onto_growing_segments() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(BASE - 1), (0, BASE - 1));
        assert_eq!(locate(BASE), (1, 0));
        assert_eq!(locate(3 * BASE - 1), (1, 2 * BASE - 1));
        assert_eq!(locate(3 * BASE), (2, 0));
        // Every index maps inside its segment, and consecutive indices are
        // consecutive positions.
        let mut prev = (0, 0);
        for i in 1..10_000 {
            let (k, off) = locate(i);
            assert!(off < BASE << k);
            assert!((k, off) == (prev.0, prev.1 + 1) || (k, off) == (prev.0 + 1, 0));
            prev = (k, off);
        }
    }

    #[test]
    fn classify_channel_follows_prefixes() {
        assert_eq!(classify_channel(""), ChannelType::Public);
        assert_eq!(classify_channel("private"), ChannelType::Public);
        assert_eq!(classify_channel("private-"), ChannelType::Private);
        assert_eq!(classify_channel("presence-"), ChannelType::Presence);
        assert_eq!(
            classify_channel("private-encrypted-x"),
            ChannelType::Private
        );
        assert_eq!(classify_channel("Presence-x"), ChannelType::Public);
    }
}
