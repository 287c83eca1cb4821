//! The baseline: a Hub written the way the Go reference works, to measure
//! the `realtime` Hub against.
//!
//! # Design (deliberately the reference's)
//!
//! - **One global lock.** A `std::sync::RwLock` around every table: the
//!   channels (`HashMap<String, Vec<Arc<ClientB>>>`), the client table used
//!   by `send_to`, and the presence rosters.
//! - **Broadcast** takes the read lock, clones the channel's member `Vec`
//!   (one allocation and one `Arc` increment per member), releases the lock,
//!   then `try_send`s the frame to each member's bounded crossbeam channel
//!   (a full channel drops the frame and counts it, like `DropMessage`).
//! - **Subscribe** takes the write lock and pushes (no duplicate check:
//!   the benches never subscribe a client twice, and skipping it is the
//!   baseline's best case). **Unsubscribe** takes the write lock and
//!   `retain`s: O(members) under the global lock.
//! - **Presence** (per connection, as the reference; per user, deduplicated
//!   by member id with a count): under the write lock the roster changes and
//!   the roster frame is built; the members `Vec` is cloned; after the lock
//!   is released the roster goes to the newcomer and `member_added` to every
//!   member (the reference sends after unlocking, which is its ordering bug;
//!   it is also what makes it cheap, so the baseline keeps it).
//!
//! Frames are [`realtime::Frame`]s, so the per-recipient payload work (one
//! `Arc` increment) is the same as the Hub's and the comparison isolates
//! the membership structure, the locking and the queue.
//!
//! Nothing here is for production: no close protocol, no authorization.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use realtime::{Frame, JsonPresenceEncoder, Member, PresenceEncoder, PresenceMode};

/// A baseline client: an id and a bounded crossbeam channel as its outbox.
#[derive(Debug)]
pub struct ClientB {
    id: String,
    tx: Sender<Frame>,
    rx: Receiver<Frame>,
    drops: AtomicU64,
}

impl ClientB {
    /// The client's id, `client-N`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Frames dropped on a full outbox.
    pub fn drops(&self) -> u64 {
        // Relaxed: a statistic.
        self.drops.load(Ordering::Relaxed)
    }

    /// Takes the next queued frame, if any (the reference's writer
    /// goroutine receiving from its channel).
    pub fn pop_frame(&self) -> Option<Frame> {
        self.rx.try_recv().ok()
    }

    /// Pops every queued frame; returns how many.
    pub fn drain(&self) -> usize {
        self.rx.try_iter().count()
    }

    /// Enqueues without blocking; a full outbox drops the frame and counts
    /// it.
    pub fn enqueue(&self, frame: Frame) {
        match self.tx.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                // Relaxed: a statistic.
                self.drops.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One roster entry: the member and, in per-user mode, its connection count.
struct RosterEntry {
    member: Member,
    conns: usize,
}

#[derive(Default)]
struct State {
    channels: HashMap<String, Vec<Arc<ClientB>>>,
    clients: HashMap<String, Arc<ClientB>>,
    /// Presence rosters in join order, keyed by channel.
    rosters: HashMap<String, Vec<RosterEntry>>,
}

/// The reference-style Hub: one global `RwLock` (see the module doc).
///
/// # Examples
///
/// ```
/// use realtime_benches::BaselineHub;
///
/// let hub = BaselineHub::new(64);
/// let c = hub.add();
/// hub.subscribe(&c, "orders");
/// hub.broadcast("orders", realtime::Frame::from_string("hi"));
/// assert_eq!(c.drain(), 1);
/// hub.unsubscribe(&c, "orders");
/// assert_eq!(hub.channel_count("orders"), 0);
/// ```
pub struct BaselineHub {
    state: RwLock<State>,
    next_id: AtomicU64,
    outbox: usize,
    mode: PresenceMode,
    encoder: JsonPresenceEncoder,
}

impl BaselineHub {
    /// A baseline Hub whose clients have outboxes of `outbox` frames, with
    /// per-connection presence.
    pub fn new(outbox: usize) -> Self {
        Self::with_mode(outbox, PresenceMode::PerConnection)
    }

    /// A baseline Hub with the given presence mode.
    pub fn with_mode(outbox: usize, mode: PresenceMode) -> Self {
        Self {
            state: RwLock::new(State::default()),
            next_id: AtomicU64::new(1),
            outbox,
            mode,
            encoder: JsonPresenceEncoder,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a client (no writer thread: the caller drains).
    pub fn add(&self) -> Arc<ClientB> {
        // Relaxed: only uniqueness matters.
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(self.outbox);
        let client = Arc::new(ClientB {
            id: format!("client-{n}"),
            tx,
            rx,
            drops: AtomicU64::new(0),
        });
        self.write()
            .clients
            .insert(client.id.clone(), client.clone());
        client
    }

    /// Subscribes: write lock, push.
    pub fn subscribe(&self, client: &Arc<ClientB>, channel: &str) {
        let mut state = self.write();
        match state.channels.get_mut(channel) {
            Some(members) => members.push(client.clone()),
            None => {
                state
                    .channels
                    .insert(channel.to_owned(), vec![client.clone()]);
            }
        }
    }

    /// Unsubscribes: write lock, `retain` (O(members)); an emptied channel
    /// is removed.
    pub fn unsubscribe(&self, client: &Arc<ClientB>, channel: &str) {
        let mut state = self.write();
        let emptied = match state.channels.get_mut(channel) {
            Some(members) => {
                members.retain(|m| !Arc::ptr_eq(m, client));
                members.is_empty()
            }
            None => false,
        };
        if emptied {
            state.channels.remove(channel);
        }
    }

    /// Broadcasts: read lock, clone the member `Vec`, unlock, `try_send` to
    /// each.
    pub fn broadcast(&self, channel: &str, frame: Frame) {
        let members = match self.read().channels.get(channel) {
            Some(members) => members.clone(),
            None => return,
        };
        for m in &members {
            m.enqueue(frame.clone());
        }
    }

    /// Sends to one client by id: read lock, look up, unlock, `try_send`.
    /// Returns false for an unknown id.
    pub fn send_to(&self, client_id: &str, frame: Frame) -> bool {
        let client = match self.read().clients.get(client_id) {
            Some(c) => c.clone(),
            None => return false,
        };
        client.enqueue(frame);
        true
    }

    /// Joins a presence channel as `member` (see the module doc).
    pub fn subscribe_presence(&self, client: &Arc<ClientB>, channel: &str, member: Member) {
        let (roster_frame, added, members) = {
            let mut state = self.write();
            let state = &mut *state;
            let roster = state.rosters.entry(channel.to_owned()).or_default();
            let existing = match self.mode {
                PresenceMode::PerConnection => None,
                PresenceMode::PerUser => roster.iter().position(|e| e.member.id == member.id),
            };
            let before: Vec<&Member> = roster.iter().map(|e| &e.member).collect();
            let roster_frame = self
                .encoder
                .subscription_succeeded(channel, &before, &member);
            let is_new = match existing {
                Some(at) => {
                    roster[at].conns += 1;
                    false
                }
                None => {
                    roster.push(RosterEntry {
                        member: member.clone(),
                        conns: 1,
                    });
                    true
                }
            };
            let list = state.channels.entry(channel.to_owned()).or_default();
            list.push(client.clone());
            let added = is_new.then(|| self.encoder.member_added(channel, &member));
            (roster_frame, added, list.clone())
        };
        client.enqueue(roster_frame);
        if let Some(frame) = added {
            for m in &members {
                m.enqueue(frame.clone());
            }
        }
    }

    /// Puts `client` in a presence channel's member list and roster as
    /// `member` without building or sending any frame: an O(1) fill for
    /// bench setup (a real join encodes the whole roster).
    pub fn fill_presence(&self, client: &Arc<ClientB>, channel: &str, member: Member) {
        let mut state = self.write();
        let roster = state.rosters.entry(channel.to_owned()).or_default();
        match roster
            .iter_mut()
            .rev()
            .find(|e| self.mode == PresenceMode::PerUser && e.member.id == member.id)
        {
            Some(entry) => entry.conns += 1,
            None => roster.push(RosterEntry { member, conns: 1 }),
        }
        state
            .channels
            .entry(channel.to_owned())
            .or_default()
            .push(client.clone());
    }

    /// Leaves a presence channel joined as `member_id`.
    pub fn unsubscribe_presence(&self, client: &Arc<ClientB>, channel: &str, member_id: &str) {
        let (removed, members) = {
            let mut state = self.write();
            let state = &mut *state;
            let Some(list) = state.channels.get_mut(channel) else {
                return;
            };
            list.retain(|m| !Arc::ptr_eq(m, client));
            let members = list.clone();
            let mut removed = None;
            if let Some(roster) = state.rosters.get_mut(channel) {
                // Per connection: the newest entry with this id (a client
                // rejoining under the same id leaves its own entry).
                if let Some(pos) = roster.iter().rposition(|e| e.member.id == member_id) {
                    roster[pos].conns -= 1;
                    if roster[pos].conns == 0 {
                        let gone = roster.remove(pos);
                        removed = Some(self.encoder.member_removed(channel, &gone.member));
                    }
                }
            }
            (removed, members)
        };
        if let Some(frame) = removed {
            for m in &members {
                m.enqueue(frame.clone());
            }
        }
    }

    /// Subscribers of `channel`.
    pub fn channel_count(&self, channel: &str) -> usize {
        self.read().channels.get(channel).map_or(0, Vec::len)
    }
}
