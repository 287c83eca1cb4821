//! Joining and leaving channels under the channel's `state` lock: slots,
//! presence rosters and their frames in one order (R9), the occupancy and
//! presence hooks, the discarding of an emptied channel, and the clean-up
//! of closed clients (the protocol is in the parent module's docs).

use super::delivery::fan_out;
use super::{ChannelEvent, HubInner, CLOSE_GOING_AWAY};
use crate::channel::{Channel, ChannelState};
use crate::client::{Client, Enqueued, Sub};
use crate::error::{Error, Result};
use crate::mutants;
use crate::presence::{Member, PresenceEvent, PresenceMode, RosterKey};
use crate::sync::atomic::Ordering;
use crate::sync::{lock, Arc};
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
        loop {
            let mut created = false;
            // Most subscribes join an existing channel: look it up without
            // allocating a key; allocate one only to create the channel.
            let existing = self.channels.get(name).map(|c| Arc::clone(c.value()));
            let ch = match existing {
                Some(ch) => ch,
                None => {
                    let key: Arc<str> = Arc::from(name);
                    let entry = self.channels.entry(Arc::clone(&key)).or_insert_with(|| {
                        created = true;
                        Arc::new(Channel::new(key))
                    });
                    Arc::clone(entry.value())
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
            let Some(vacant) = subs.vacant(name) else {
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
            let mut presence = None;
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
                    presence = Some(Box::new((key, member.clone())));
                    vacant.insert(Sub {
                        channel: Arc::clone(&ch),
                        slot,
                        presence,
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
            let slot = state.insert(&ch.slots, client.0.clone());
            self.occupancy(&ch.name, state.members, true);
            // Relaxed: a statistic; `state` orders the writers.
            ch.count.store(state.members, Ordering::Relaxed);
            // The channel's lock goes before the subscription is recorded,
            // so that `ch` moves into it (no reference-count round trip):
            // `subs` is still held, and every path that reads a client's
            // subscriptions takes `subs` first.
            drop(state);
            vacant.insert(Sub {
                channel: ch,
                slot,
                presence: presence.take(),
            });
            return Ok(());
        }
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
        let removed = self
            .channels
            .remove_if(&ch.name, |_, current| Arc::ptr_eq(current, ch));
        if removed.is_some() && self.max_channels != usize::MAX {
            // Relaxed: a counter (see `join`).
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
                self.channels.remove(&ch.name);
            } else {
                self.discard_if_empty(ch, &mut state);
            }
        }
    }

    /// Runs the `on_channel` hook if `members` (after a join or a leave)
    /// is a change of occupancy; caller holds the channel's `state`.
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
