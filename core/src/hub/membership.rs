//! Joining and leaving channels under the channel's `state` lock: slots,
//! presence rosters and their frames in one order (R9), the occupancy and
//! presence hooks, the discarding of an emptied channel, and the clean-up
//! of closed clients (the protocol is in the parent module's docs).

use super::delivery::fan_out;
use super::{ChannelEvent, HubInner, CLOSE_GOING_AWAY};
use crate::channel::{classify_channel, Channel, ChannelState, ChannelType};
use crate::client::{Client, Enqueued, Sub};
use crate::error::{Error, Result};
use crate::mutants;
use crate::presence::{Member, PresenceEvent, PresenceMode, RosterKey};
use crate::sync::atomic::Ordering;
use crate::sync::{lock, Arc};
use crate::table::Key;
use std::thread::JoinHandle;

impl HubInner {
    /// Adds `client` to `channel` (authorization already done).
    pub(super) fn join(
        &self,
        client: &Client,
        name: &str,
        member: Option<Member>,
        shut: &mut Vec<Client>,
    ) -> Result<()> {
        // One hash of the name, for the table and the client's
        // subscriptions (`table.rs`).
        let key = self.channels.key(name);
        loop {
            let mut created = false;
            let ch = match self.channels.get(key) {
                Some(ch) => ch,
                // A public or private channel is built with its first
                // member in it (`create`); a presence one is created empty
                // here, then joined below (its roster frame goes first).
                None if classify_channel(name) != ChannelType::Presence => {
                    return self.create(client, key, shut);
                }
                None => {
                    let fresh = Arc::new(Channel::new(Arc::from(name)));
                    match self.channels.insert_new(key.hash, &fresh) {
                        Some(other) => other,
                        None => {
                            created = true;
                            fresh
                        }
                    }
                }
            };
            // Relaxed: a counter; the bound may be passed by one per
            // concurrent creator (documented on the builder).
            if created
                && self.max_channels != usize::MAX
                && self.channel_total.fetch_add(1, Ordering::Relaxed) >= self.max_channels
            {
                self.discard_if_empty(&ch, &mut lock(&ch.state));
                return Err(Error::TooManyChannels(self.max_channels));
            }
            let mut subs = lock(&client.0.subs);
            // Mutant `ghost` (`crate::mutants`): without this re-check
            // under `subs`, a close between the caller's first check and
            // here cleans up before the join and leaves a ghost (the
            // reference's bug, R7).
            if !mutants::ghost() && client.0.is_closed() {
                // Mutant `empty_channel` (`crate::mutants`): without this, a
                // join that created the channel and then found its client
                // closed leaves the channel empty in the table for good.
                if !mutants::empty_channel() {
                    self.discard_if_empty(&ch, &mut lock(&ch.state));
                }
                return Err(Error::Closed);
            }
            let held = subs.len();
            // One hash of the name for the check and the insert; the
            // subscription is found by its channel's name (`subs.rs`).
            let Some(vacant) = subs.vacant(key) else {
                return Ok(());
            };
            if held >= self.max_subscriptions {
                drop(subs);
                self.discard_if_empty(&ch, &mut lock(&ch.state));
                return Err(Error::TooManySubscriptions(self.max_subscriptions));
            }
            let mut state = lock(&ch.state);
            if state.dead {
                continue;
            }
            match (&member, state.roster.is_some()) {
                (Some(member), true) => {
                    let key = match self.mode {
                        PresenceMode::PerConnection => RosterKey::Conn(client.number()),
                        PresenceMode::PerUser => RosterKey::User(member.id.clone()),
                    };
                    let full = state
                        .roster
                        .as_ref()
                        .is_some_and(|r| !r.contains(&key) && r.len() >= self.max_presence);
                    if full {
                        self.discard_if_empty(&ch, &mut state);
                        return Err(Error::PresenceFull(self.max_presence));
                    }
                    // Built by copying the members' cached encodings
                    // (`presence.rs`): nobody is encoded again.
                    let roster_frame = match state.roster.as_ref() {
                        Some(r) => self.encoder.roster_frame(name, r.view(), member),
                        None => self.encoder.subscription_succeeded(name, &[], member),
                    };
                    // Mutant `roster_late` (`crate::mutants`): the newcomer
                    // takes its slot, hence is visible to lock-free
                    // broadcasts, before its roster is queued; a racing
                    // broadcast then reaches it first (R9).
                    let mut early_slot = None;
                    if mutants::roster_late() {
                        early_slot = Some(state.insert(&ch.slots, client.0.clone()));
                    }
                    // The roster goes first, before the newcomer is visible
                    // to any broadcast (R9).
                    if client.0.enqueue(roster_frame, true) != Enqueued::Queued {
                        shut.push(client.clone());
                        self.discard_if_empty(&ch, &mut state);
                        return Err(Error::Closed);
                    }
                    let slot = match early_slot {
                        Some(slot) => slot,
                        None => state.insert(&ch.slots, client.0.clone()),
                    };
                    self.occupancy(&ch.name, state.members, true);
                    let is_new = state
                        .roster
                        .as_mut()
                        .is_some_and(|r| r.join(key.clone(), member, &*self.encoder));
                    ch.count.store(state.members, Ordering::Relaxed);
                    // Mutant `presence_order` (`crate::mutants`): release
                    // the channel lock before the `member_added` fan-out and
                    // the hooks, as the reference did; members can then see
                    // joins in different orders (R9).
                    if mutants::presence_order() {
                        drop(state);
                    }
                    if is_new {
                        let frame = self.encoder.member_added(name, member);
                        let except = (!self.encoder.newcomer_sees_own_join()).then_some(&client.0);
                        fan_out(&ch.slots, &frame, true, except, shut);
                        self.fire(name, true, member, client.id());
                    }
                    vacant.insert(Sub {
                        channel: Arc::clone(&ch),
                        slot,
                        presence: Some(Box::new((key, member.clone()))),
                    });
                    return Ok(());
                }
                _ => {
                    if let Some(frame) = self.encoder.subscribed(name, ch.kind) {
                        if client.0.enqueue(frame, true) != Enqueued::Queued {
                            shut.push(client.clone());
                            self.discard_if_empty(&ch, &mut state);
                            return Err(Error::Closed);
                        }
                    }
                }
            }
            let slot = self.add_member(&ch, &mut state, client);
            // The channel's lock goes before the subscription is recorded,
            // so that `ch` moves into it (no reference-count round trip):
            // `subs` is still held, and every path that reads a client's
            // subscriptions takes `subs` first.
            drop(state);
            vacant.insert(Sub {
                channel: ch,
                slot,
                presence: None,
            });
            return Ok(());
        }
    }

    /// Creates the public or private channel `name` with `client` as its
    /// one member, or joins the channel that a racing subscriber put in the
    /// table first (authorization already done; `join` found no channel).
    ///
    /// The channel is built with its member in slot 0 before it enters the
    /// table (`Channel::with_first`): no broadcast can reach it before
    /// then, so its first chunk is placed, not published through an
    /// arc-swap store (which scans every thread's debt slots), and its
    /// `state` is not locked (issue 16 item 4, BENCHMARKS.md). So that
    /// this keeps the order `join` keeps:
    /// - every check that can refuse the subscribe (closed, already
    ///   subscribed, the subscription and channel bounds) comes first, so a
    ///   refused subscribe never leaves a channel behind;
    /// - the `subscribed` frame is queued before the member is visible to
    ///   any broadcast (it precedes every frame of the channel);
    /// - the occupancy hook runs after the channel entered the table,
    ///   without its `state`: it still reports the channel occupied before
    ///   anyone can report it vacated, since that takes this member's
    ///   leave, which needs the client's `subs`, held here until the
    ///   subscription is recorded.
    ///
    /// Lock order as elsewhere: the client's `subs`, then a channel's
    /// `state`, then the table's shard.
    fn create(&self, client: &Client, key: Key<'_>, shut: &mut Vec<Client>) -> Result<()> {
        let name = key.name;
        let mut subs = lock(&client.0.subs);
        // Mutant `ghost` (`crate::mutants`): as in `join`.
        if !mutants::ghost() && client.0.is_closed() {
            return Err(Error::Closed);
        }
        let held = subs.len();
        let Some(vacant) = subs.vacant(key) else {
            return Ok(());
        };
        if held >= self.max_subscriptions {
            return Err(Error::TooManySubscriptions(self.max_subscriptions));
        }
        // Counted before the channel exists, and given back below if this
        // subscribe joins another's channel instead. Relaxed: a counter
        // (see `join`).
        if self.max_channels != usize::MAX
            && self.channel_total.fetch_add(1, Ordering::Relaxed) >= self.max_channels
        {
            self.uncount_channel();
            return Err(Error::TooManyChannels(self.max_channels));
        }
        if let Some(frame) = self.encoder.subscribed(name, classify_channel(name)) {
            if client.0.enqueue(frame, true) != Enqueued::Queued {
                shut.push(client.clone());
                self.uncount_channel();
                return Err(Error::Closed);
            }
        }
        loop {
            let ch = Arc::new(Channel::with_first(Arc::from(name), client.0.clone()));
            let Some(other) = self.channels.insert_new(key.hash, &ch) else {
                self.occupancy(name, 1, true);
                vacant.insert(Sub {
                    channel: ch,
                    slot: 0,
                    presence: None,
                });
                return Ok(());
            };
            // A racing subscriber created it first: drop ours (and the
            // reference to the client in its slot) and join that one,
            // unless its last member left meanwhile (then it is out of the
            // table: try again).
            drop(ch);
            let mut state = lock(&other.state);
            // Mutant `create_joins_dead` (`crate::mutants`): without this,
            // a subscriber joins a channel already out of the table.
            if state.dead && !mutants::create_joins_dead() {
                continue;
            }
            self.uncount_channel();
            let slot = self.add_member(&other, &mut state, client);
            drop(state);
            vacant.insert(Sub {
                channel: other,
                slot,
                presence: None,
            });
            return Ok(());
        }
    }

    /// Puts `client` in a slot of `ch`, runs the occupancy hook and updates
    /// the lock-free count; returns the slot. Caller holds `ch`'s `state`.
    fn add_member(&self, ch: &Channel, state: &mut ChannelState, client: &Client) -> usize {
        let slot = state.insert(&ch.slots, client.0.clone());
        self.occupancy(&ch.name, state.members, true);
        // Relaxed: a statistic; `state` orders the writers.
        ch.count.store(state.members, Ordering::Relaxed);
        slot
    }

    /// Destroys an empty channel: marks it dead and removes it from the
    /// table (R6). Called by the last leaver, and by a join that failed
    /// after creating (or finding) the channel, so that it is never left
    /// empty in the table. Caller holds the channel's `state`.
    fn discard_if_empty(&self, ch: &Arc<Channel>, state: &mut ChannelState) {
        if state.members > 0 || state.dead {
            return;
        }
        state.dead = true;
        if self.channels.remove_same(ch).is_some() {
            self.uncount_channel();
        }
    }

    /// Takes one channel off `channel_total`, which is kept only when
    /// `max_channels` is set. Relaxed: a counter (see `join`).
    fn uncount_channel(&self) {
        if self.max_channels != usize::MAX {
            self.channel_total.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Removes one subscription; caller holds the client's `subs` lock.
    pub(super) fn leave(&self, client: &Client, sub: Sub, shut: &mut Vec<Client>) {
        let ch = &sub.channel;
        let mut state = lock(&ch.state);
        state.remove(&ch.slots, sub.slot);
        // Relaxed: a statistic.
        ch.count.store(state.members, Ordering::Relaxed);
        if let Some((key, _)) = sub.presence.as_deref() {
            let gone = state.roster.as_mut().and_then(|r| r.leave(key));
            if let Some(member) = gone {
                if !self.closed.load(Ordering::SeqCst) {
                    let frame = self.encoder.member_removed(&ch.name, &member);
                    fan_out(&ch.slots, &frame, true, None, shut);
                }
                self.fire(&ch.name, false, &member, client.id());
            }
        }
        if state.members == 0 {
            self.occupancy(&ch.name, 0, false);
            if mutants::dead_channel() {
                // Mutant (`crate::mutants`): forget the channel without
                // marking it dead, so a racing subscriber can join a channel
                // no longer in the table.
                drop(state);
                self.channels.remove_named(&ch.name);
            } else {
                self.discard_if_empty(ch, &mut state);
            }
        }
    }

    /// Runs the `on_channel` hook if `members` (after a join or a leave)
    /// is a change of occupancy; caller holds the channel's `state` (or, in
    /// `create`, the subscribing client's `subs`: see there).
    fn occupancy(&self, channel: &str, members: usize, joined: bool) {
        if members != usize::from(joined) {
            return;
        }
        let Some(hook) = self.channel_hook.get() else {
            return;
        };
        let event = ChannelEvent {
            channel,
            occupied: joined,
        };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&event))).is_err() {
            tracing::error!(channel, "on_channel hook panicked");
        }
    }

    fn fire(&self, channel: &str, joined: bool, member: &Member, client_id: &str) {
        let hooks = Arc::clone(&lock(&self.hooks));
        if hooks.is_empty() {
            return;
        }
        let event = PresenceEvent {
            channel: channel.to_owned(),
            joined,
            member: member.clone(),
            client_id: client_id.to_owned(),
        };
        for hook in hooks.iter() {
            // A panicking hook must not poison the channel or skip members.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&event))).is_err() {
                tracing::error!(channel, "on_presence hook panicked");
            }
        }
    }

    /// Phase 2 of close (see `client.rs`): leave every channel, leave the
    /// client table. Call with no channel lock held.
    pub(crate) fn cleanup(&self, client: &Client) {
        self.cleanup_all(vec![client.clone()]);
    }

    /// Cleans up shut clients from a work list: a leave can shut others.
    pub(crate) fn cleanup_all(&self, mut work: Vec<Client>) {
        while let Some(client) = work.pop() {
            // The client's `subs` lock is held until every leave is done, so
            // a concurrent second `close` returns only after the client left
            // every channel.
            {
                let mut subs = lock(&client.0.subs);
                for sub in subs.take() {
                    self.leave(&client, sub, &mut work);
                }
            }
            self.clients
                .remove_if(&client.number(), |_, c| c == &client);
        }
    }

    pub(crate) fn reap_later(&self, handle: JoinHandle<()>) {
        lock(&self.orphans).push(handle);
    }

    pub(super) fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Sweep until empty: an `add` racing this close removes itself, but
        // one that inserted before our sweep is ours to close.
        loop {
            let clients: Vec<Client> = self.clients.iter().map(|e| e.value().clone()).collect();
            if clients.is_empty() {
                break;
            }
            for client in &clients {
                let _ = client
                    .0
                    .reason
                    .set((CLOSE_GOING_AWAY, "hub closed".to_owned()));
                client.0.shut();
            }
            self.cleanup_all(clients.clone());
            for client in &clients {
                client.join_writer();
            }
        }
        let orphans = std::mem::take(&mut *lock(&self.orphans));
        let me = std::thread::current().id();
        for handle in orphans {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}
