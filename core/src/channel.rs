//! Channels: a name, a type, and a member set that broadcasts read without
//! taking any lock.
//!
//! # The member set: copy-on-write chunks in a segmented array
//!
//! Members live in slots; slot `i` is entry `i % 16` of chunk `i / 16`. A
//! chunk is an immutable array of 16 optional members behind an `Arc`, held
//! in an [`ArcSwapOption`] cell. The cells sit in a segmented array: segment
//! `k` holds `4 << k` cells and is allocated once, the first time a cell in
//! it is needed; it never moves and is never freed before the channel.
//! Segment 0's four cells (64 members) sit in the channel itself: the first
//! join allocates no segment, and a broadcast to a small channel follows
//! one pointer less (issue 16). The slots of the other 27 segments sit in
//! a table allocated with segment 1, so a channel of up to 64 members does
//! not pay for 27 empty slots (~650 bytes each channel: most channels are
//! small, BENCHMARKS.md, issue #12).
//!
//! - **Broadcast** (any thread, no lock): reads the high-water mark `len`,
//!   loads each chunk cell below it (one wait-free arc-swap load per 16
//!   members) and walks the chunk's entries as plain pointers.
//! - **Join / leave** (any thread, under the channel's `state` mutex): a join
//!   takes a slot index from the free list, or the next index past `len`;
//!   a leave empties its slot and returns the index to the free list (the
//!   last leave only empties it: the channel is discarded next). Either
//!   publishes a new version of the one chunk holding the slot (16
//!   pointers) with that entry changed: a copy, or the spare (below).
//!   Nothing else is copied, so joining a channel of 100k members costs
//!   the same as joining an empty one (allocating a new segment is
//!   amortised O(1)). A channel's first member is placed before the
//!   channel is shared (`Channel::with_first`), not published.
//!
//! # Spare chunks
//!
//! Copying a chunk clones up to 16 `Arc`s (a locked increment each, and a
//! decrement each when the replaced chunk is freed) and allocates; at
//! ~300 ns a subscribe, that was most of it (issue 16). So the writer keeps,
//! under `state`, a spare of each chunk that holds at least `SPARE_MIN`
//! members: a private chunk equal to the published one. A store changes
//! the spare's one entry in place and swaps it in; the chunk it replaces,
//! if no broadcast still holds it (`Arc::get_mut` after the swap: arc-swap
//! has turned readers' debts into counts by then), gets the same change and
//! becomes the spare. A join or leave then costs two entry writes, no
//! allocation and no copy; when a broadcast does hold the old chunk it is
//! left to that broadcast, and the next store copies as before. The spare
//! holds exactly the members the published chunk holds, so it keeps no
//! client alive longer; the cost is one chunk (144 bytes) per 16 members of
//! channels with more than a few members.
//!
//! Why chunks of 16: a per-member cell costs every recipient of a fan-out
//! an arc-swap load and guard drop (a store to a thread-local debt slot
//! each); a copy-on-write list of all members costs every join O(n). Chunks
//! pay one load per 16 recipients and a 16-pointer copy per join. (Measured:
//! `BENCHMARKS.md`.)
//!
//! Invariants, all guarded by `state`:
//! - a client occupies at most one slot of a channel, recorded in the
//!   client's own subscription table together with the slot index;
//! - `members` equals the number of occupied slots;
//! - a chunk cell is written only under `state` (one writer per channel),
//!   or set before the channel enters the Hub's table (its first member:
//!   `Channel::with_first`); an all-empty chunk is stored as `None`;
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
use crate::sync::{Arc, ArcSwapOption, Mutex, OnceLock};

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

/// Members per chunk: a broadcast pays one arc-swap load per chunk, a join
/// or leave copies one chunk.
const CHUNK: usize = 16;
/// Chunk cells in segment 0; segment `k` has `BASE << k`.
const BASE_SHIFT: u32 = 2;
const BASE: usize = 1 << BASE_SHIFT;
/// Enough segments for more members than a process can hold.
const SEGMENTS: usize = 28;

pub(crate) type Chunk = [Option<Arc<ClientShared>>; CHUNK];
/// The writer's spare chunk per chunk index (module doc, "Spare chunks").
pub(crate) type Spares = Vec<Option<Arc<Chunk>>>;
/// Members a chunk must hold to keep a spare: copying a chunk costs one
/// reference-count increment per member (and a decrement when the copy it
/// replaced is freed), so a chunk of a few members is cheap to copy, and
/// the many one-member channels keep no second chunk.
#[cfg(not(loom))]
const SPARE_MIN: usize = 4;
/// Under loom every chunk keeps a spare, so that the models, whose channels
/// have two or three members, explore the spare's reuse and its fallback
/// when a racing broadcast still holds the replaced chunk.
#[cfg(loom)]
const SPARE_MIN: usize = 1;
type Cell = ArcSwapOption<Chunk>;
/// The slot of a segment past the first: its cells once allocated.
type Segment = OnceLock<Box<[Cell]>>;

/// The occupied entries of `chunk`, counted up to [`SPARE_MIN`]: all that
/// a store asks (is the chunk empty; does it hold enough members to keep a
/// spare). A full chunk is then read four entries deep, not sixteen: the
/// whole count was an eighth of a join into a large channel (issue 16
/// item 4).
fn occupied(chunk: &Chunk) -> usize {
    chunk.iter().filter(|e| e.is_some()).take(SPARE_MIN).count()
}

/// Maps a chunk index to (segment, offset within it).
fn locate(index: usize) -> (usize, usize) {
    let j = index + BASE;
    let k = (usize::BITS - 1 - j.leading_zeros()) - BASE_SHIFT;
    (k as usize, j - (BASE << k))
}

/// The segmented array of copy-on-write chunks described in the module doc.
pub(crate) struct Slots {
    /// Segment 0's cells, inline.
    first: [Cell; BASE],
    /// Segments 1.., allocated with segment 1.
    rest: OnceLock<Box<[Segment]>>,
    /// One past the highest slot index ever handed out.
    len: AtomicUsize,
}

impl Slots {
    fn new() -> Self {
        Self {
            first: std::array::from_fn(|_| Cell::const_empty()),
            rest: OnceLock::new(),
            len: AtomicUsize::new(0),
        }
    }

    /// Slots holding `first` at index 0, for a channel that no broadcast
    /// can reach yet (it is not in the Hub's table): the first chunk is
    /// placed in its cell, not stored through arc-swap, so the channel's
    /// creation pays no debt scan (`Hub` `create`, issue 16 item 4).
    #[inline]
    fn with_first(first: Arc<ClientShared>) -> Self {
        let mut entries: Chunk = std::array::from_fn(|_| None);
        entries[0] = Some(first);
        let mut chunk = Some(Arc::new(entries));
        Self {
            first: std::array::from_fn(|_| Cell::new(chunk.take())),
            rest: OnceLock::new(),
            len: AtomicUsize::new(1),
        }
    }

    /// The cells of segment `k`, if allocated (no allocation).
    fn segment(&self, k: usize) -> Option<&[Cell]> {
        match k {
            0 => Some(&self.first),
            _ => self.rest.get()?.get(k - 1)?.get().map(|cells| &cells[..]),
        }
    }

    /// The cell of chunk `c`, allocating its segment (and the table of
    /// segment slots) on first use past segment 0.
    fn cell(&self, c: usize) -> Option<&Cell> {
        let (k, off) = locate(c);
        if k == 0 {
            return self.first.get(off);
        }
        let seg = self
            .rest
            .get_or_init(|| (1..SEGMENTS).map(|_| OnceLock::new()).collect())
            .get(k - 1)?
            .get_or_init(|| (0..(BASE << k)).map(|_| Cell::const_empty()).collect());
        seg.get(off)
    }

    /// Stores `value` at slot `index` and publishes the chunk that holds it.
    /// Caller holds the channel's state mutex (one writer per channel) and
    /// passes the writer's spare chunks (module doc, "Spare chunks").
    fn store(&self, spares: &mut Spares, index: usize, value: Option<Arc<ClientShared>>) {
        let c = index / CHUNK;
        let Some(cell) = self.cell(c) else {
            // Unreachable in practice: 2^32 slots per channel.
            tracing::error!(index, "channel slot index out of range");
            return;
        };
        // The spare equals the published chunk and no broadcast holds it
        // (it was taken out of the cell unshared), so it is changed in
        // place; without a spare, the published chunk is copied (and an
        // emptied copy is never allocated).
        let at = index % CHUNK;
        // `members`: counted up to `SPARE_MIN` (`occupied`).
        let (next, members) = match spares.get_mut(c).and_then(Option::take) {
            Some(mut spare) => {
                let entries = Arc::make_mut(&mut spare);
                entries[at] = value;
                let members = occupied(entries);
                (Some(spare), members)
            }
            None => {
                // A chunk that no slot index has reached yet was never
                // stored: its cell holds `None`, so it is not loaded to be
                // copied (the first join of a new channel, or into each new
                // chunk of a growing one, skips an arc-swap load; issue 16
                // item 4). Relaxed: `len` is written only by the writer,
                // which holds `state`.
                let fresh = c * CHUNK >= self.len.load(Ordering::Relaxed);
                let mut entries: Chunk = match (!fresh).then(|| cell.load()).as_deref() {
                    Some(Some(current)) => (**current).clone(),
                    _ => std::array::from_fn(|_| None),
                };
                entries[at] = value;
                let members = occupied(&entries);
                ((members > 0).then(|| Arc::new(entries)), members)
            }
        };
        let kept = match &next {
            Some(chunk) if members >= SPARE_MIN => chunk[at].clone(),
            _ => None,
        };
        let old = cell.swap(next.filter(|_| members > 0));
        if index >= self.len.load(Ordering::Relaxed) {
            // Release: a broadcast that reads the new `len` (Acquire) sees the
            // segment initialised and the chunk stored.
            self.len.store(index + 1, Ordering::Release);
        }
        // The chunk just replaced becomes the spare if no broadcast holds
        // it any more (`get_mut`: arc-swap has turned every reader's debt
        // into a count by the time `swap` returns) and the chunk is worth
        // a spare, or was just emptied (an empty spare holds no client, and
        // the next join into this chunk then allocates nothing: a client
        // that joins and leaves the one-member tail chunk of a large
        // channel); it gets the same change, so it equals the new chunk.
        let Some(mut old) = old.filter(|_| members >= SPARE_MIN || members == 0) else {
            return;
        };
        let Some(stale) = Arc::get_mut(&mut old) else {
            return;
        };
        stale[at] = kept;
        if spares.len() <= c {
            spares.resize_with(c + 1, || None);
        }
        if let Some(slot) = spares.get_mut(c) {
            *slot = Some(old);
        }
    }

    /// Empties the chunk of slot `index`, which holds no other member
    /// (the channel's last leave, `ChannelState::remove`): publishes `None`
    /// (an all-empty chunk is stored as `None`), keeps no spare.
    fn clear(&self, index: usize) {
        if let Some(cell) = self.cell(index / CHUNK) {
            cell.store(None);
        }
    }

    /// Calls `f` on every current member; lock-free. (The Hub's fan-outs
    /// walk chunks: `hub/delivery.rs`.)
    #[cfg(test)]
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<ClientShared>)) {
        self.for_each_chunk(|chunk| {
            for member in chunk.iter().flatten() {
                f(member);
            }
        });
    }

    /// Calls `f` on every non-empty chunk of up to 16 members; lock-free.
    /// A broadcast walks a chunk twice (`Hub::broadcast_frame`): first it
    /// reads every member's hot line with plain loads, so their cache
    /// misses overlap, then it pushes.
    pub(crate) fn for_each_chunk(&self, mut f: impl FnMut(&Chunk)) {
        // Acquire: pairs with the Release in `store`.
        let chunks = self.len.load(Ordering::Acquire).div_ceil(CHUNK);
        let mut c = 0;
        for k in 0..SEGMENTS {
            if c >= chunks {
                break;
            }
            let Some(seg) = self.segment(k) else {
                break;
            };
            let take = (BASE << k).min(chunks - c);
            for cell in &seg[..take] {
                if let Some(chunk) = &*cell.load() {
                    f(chunk);
                }
            }
            c += take;
        }
    }
}

/// Writer-side state of a channel, guarded by `Channel::state`.
pub(crate) struct ChannelState {
    /// Emptied slot indices, reused before growing (past `Slots::len`).
    free: Vec<usize>,
    /// Number of occupied slots.
    pub(crate) members: usize,
    /// Set when the last member left and the channel left the Hub's table.
    pub(crate) dead: bool,
    /// The roster, for presence channels. Boxed: a channel is built on the
    /// stack and moved into its `Arc`, and an inline roster (96 bytes) made
    /// every channel's move, presence or not, a third longer (issue 16
    /// item 4: creating a channel is part of the subscribe that needs it).
    pub(crate) roster: Option<Box<Roster>>,
    /// The spare chunks (module doc).
    spares: Spares,
}

impl ChannelState {
    /// Puts `client` in a free slot and returns its index.
    pub(crate) fn insert(&mut self, slots: &Slots, client: Arc<ClientShared>) -> usize {
        // Relaxed: `len` is written only under `state`, which we hold.
        let index = self
            .free
            .pop()
            .unwrap_or_else(|| slots.len.load(Ordering::Relaxed));
        slots.store(&mut self.spares, index, Some(client));
        self.members += 1;
        index
    }

    /// Empties slot `index`.
    pub(crate) fn remove(&mut self, slots: &Slots, index: usize) {
        self.members = self.members.saturating_sub(1);
        if self.members == 0 {
            // The last member: the Hub discards the channel next, under
            // this same lock (R6), and no slot of it is filled again. So
            // the slot is emptied but its chunk is not kept as a spare,
            // nor its index put on the free list: two allocations (and
            // their frees) for a channel about to be freed.
            slots.clear(index);
            return;
        }
        slots.store(&mut self.spares, index, None);
        self.free.push(index);
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
    /// An empty channel, to be put in the Hub's table and then joined.
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self::build(name, Slots::new(), 0)
    }

    /// A channel whose one member, `first`, holds slot 0, built before it
    /// is put in the Hub's table (no broadcast can reach it before then).
    /// The caller records the subscription and runs the occupancy hook.
    #[inline]
    pub(crate) fn with_first(name: Arc<str>, first: Arc<ClientShared>) -> Self {
        Self::build(name, Slots::with_first(first), 1)
    }

    #[inline]
    fn build(name: Arc<str>, slots: Slots, members: usize) -> Self {
        let kind = classify_channel(&name);
        Self {
            name,
            kind,
            slots,
            state: Mutex::new(ChannelState {
                free: Vec::new(),
                members,
                dead: false,
                roster: (kind == ChannelType::Presence).then(Box::default),
                spares: Vec::new(),
            }),
            count: AtomicUsize::new(members),
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
    fn chunked_slots_visit_exactly_the_members_across_chunks() {
        let ch = Channel::new(Arc::from("c"));
        let members: Vec<Arc<ClientShared>> = (0..100).map(|_| test_client()).collect();
        let mut state = crate::sync::lock(&ch.state);
        let slots: Vec<usize> = members
            .iter()
            .map(|m| state.insert(&ch.slots, m.clone()))
            .collect();
        // Empty every third slot, then refill some of them.
        for i in (0..100).step_by(3) {
            state.remove(&ch.slots, slots[i]);
        }
        let mut seen = 0;
        ch.slots.for_each(|_| seen += 1);
        assert_eq!(seen, 100 - 34);
        assert_eq!(state.members, 66);
        let again = test_client();
        let at = state.insert(&ch.slots, again.clone());
        assert!(at < 100, "free slots are reused before growing");
        let mut found = false;
        ch.slots.for_each(|m| found |= Arc::ptr_eq(m, &again));
        assert!(found);
        for (i, slot) in slots.iter().enumerate() {
            if i % 3 != 0 {
                state.remove(&ch.slots, *slot);
            }
        }
        state.remove(&ch.slots, at);
        let mut left = 0;
        ch.slots.for_each(|_| left += 1);
        assert_eq!((left, state.members), (0, 0));
    }

    /// Joins and leaves through spare chunks, with and without a
    /// broadcast holding the published chunk, must publish exactly the
    /// members a plain model holds, and a member that left must not be
    /// kept alive by a spare.
    #[test]
    fn spare_chunks_publish_exactly_the_members_and_keep_no_leaver() {
        let ch = Channel::new(Arc::from("c"));
        let clients: Vec<Arc<ClientShared>> = (0..40).map(|_| test_client()).collect();
        let base: Vec<usize> = clients.iter().map(Arc::strong_count).collect();
        let mut state = crate::sync::lock(&ch.state);
        let mut model: Vec<Option<usize>> = vec![None; clients.len()];
        let check = |model: &[Option<usize>]| {
            let mut seen: Vec<*const ClientShared> = Vec::new();
            ch.slots.for_each(|m| seen.push(Arc::as_ptr(m)));
            let mut want: Vec<*const ClientShared> = model
                .iter()
                .enumerate()
                .filter(|(_, slot)| slot.is_some())
                .map(|(i, _)| Arc::as_ptr(&clients[i]))
                .collect();
            seen.sort();
            want.sort();
            assert_eq!(seen, want);
        };
        // A fixed pseudo-random walk of joins and leaves; every 7th step a
        // "broadcast" holds chunk 0 across the store, so the store cannot
        // reuse the chunk it replaced.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % clients.len() as u64) as usize;
            let held = (step % 7 == 0).then(|| ch.slots.cell(0).map(|c| Option::clone(&c.load())));
            match model[i] {
                Some(slot) => {
                    state.remove(&ch.slots, slot);
                    model[i] = None;
                }
                None => model[i] = Some(state.insert(&ch.slots, clients[i].clone())),
            }
            drop(held);
            check(&model);
        }
        for (i, slot) in model.iter_mut().enumerate() {
            if let Some(at) = slot.take() {
                state.remove(&ch.slots, at);
            }
            assert_eq!(Arc::strong_count(&clients[i]), base[i], "client {i}");
        }
        check(&model);
        // An emptied chunk may keep its spare, but an empty one.
        assert!(state
            .spares
            .iter()
            .flatten()
            .all(|spare| spare.iter().all(Option::is_none)));
    }

    fn test_client() -> Arc<ClientShared> {
        struct Nop;
        impl crate::Transport for Nop {
            fn wake(&self) {}
            fn closed(&self) {}
        }
        let hub = crate::Hub::new();
        hub.attach(Arc::new(Nop), ()).map(|c| c.0).unwrap()
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
