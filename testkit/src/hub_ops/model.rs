//! The `hub_ops` reference model: what a Hub holds and what each call
//! must return, deliver, count and close, written as plainly as possible
//! (sorted maps, a vector per outbox, no concurrency). Expected frames
//! carry an order group (see "How the model treats order" in
//! [`super`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use realtime::{
    ChannelType, Client, Error, Frame, JsonPresenceEncoder, Member, PresenceEncoder, PresenceMode,
    SlowConsumerPolicy,
};

use super::decode_auth;
use crate::probe::{reference_class, Probe};

/// The outcome of a Hub call, as the model predicts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Want {
    Ok,
    Closed,
    Unauthorized,
    NotFound(String),
    InvalidUtf8,
}

pub(super) fn outcome(r: &realtime::Result<()>) -> Want {
    match r {
        Ok(()) => Want::Ok,
        Err(Error::Closed) => Want::Closed,
        Err(Error::Unauthorized) => Want::Unauthorized,
        Err(Error::ClientNotFound(id)) => Want::NotFound(id.clone()),
        Err(Error::InvalidUtf8) => Want::InvalidUtf8,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MKey {
    Conn(u64),
    User(String),
}

/// The model's enqueue outcome (mirrors the Hub's `Enqueued`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Put {
    Queued,
    Dropped,
    Shut,
    Closed,
}

pub(super) struct MClient {
    pub(super) handle: Client,
    pub(super) probe: Arc<Probe>,
    pub(super) number: u64,
    pub(super) auth: u8,
    pub(super) closed: bool,
    pub(super) reason: Option<(u16, String)>,
    pub(super) drops: u64,
    /// Frames in the outbox, each with its order group.
    pub(super) queue: Vec<(Frame, u64)>,
    pub(super) scheduled: bool,
    pub(super) wakes: usize,
    pub(super) subs: BTreeMap<&'static str, Option<(MKey, Member)>>,
    /// The rosters this client's received presence frames imply, as
    /// normalized JSON members.
    pub(super) view: BTreeMap<&'static str, Vec<String>>,
}

#[derive(Default)]
pub(super) struct MChannel {
    pub(super) members: BTreeSet<usize>,
    /// Presence channels: key, member, connections, in join order.
    pub(super) roster: Vec<(MKey, Member, usize)>,
}

/// A presence event as compared: (channel, joined, id, info, client id or
/// "" in per-user mode, where the client that triggers a leave depends on
/// clean-up order).
pub(super) type Ev = (String, bool, String, Vec<u8>, String);

pub(super) struct Model {
    pub(super) clients: Vec<MClient>,
    pub(super) channels: BTreeMap<&'static str, MChannel>,
    pub(super) closed: bool,
    pub(super) next_id: u64,
    pub(super) mode: PresenceMode,
    pub(super) policy: SlowConsumerPolicy,
    pub(super) cap: usize,
    pub(super) has_authorizer: bool,
    pub(super) deny_all: bool,
    pub(super) group: u64,
    pub(super) payloads: u64,
    pub(super) events: Vec<Ev>,
    pub(super) auth_calls: Vec<(String, ChannelType, String)>,
}

impl Model {
    pub(super) fn fresh(&mut self) -> u64 {
        self.group += 1;
        self.group
    }

    fn ev(&self, ch: &str, joined: bool, m: &Member, c: usize) -> Ev {
        let client = match self.mode {
            PresenceMode::PerConnection => self.clients[c].handle.id().to_owned(),
            PresenceMode::PerUser => String::new(),
        };
        (ch.to_owned(), joined, m.id.clone(), m.info.to_vec(), client)
    }

    pub(super) fn enqueue(&mut self, c: usize, frame: Frame, force: bool, group: u64) -> Put {
        let cap = self.cap;
        let policy = self.policy;
        let cl = &mut self.clients[c];
        if cl.closed {
            return Put::Closed;
        }
        if cl.queue.len() < cap {
            cl.queue.push((frame, group));
            if !cl.scheduled {
                cl.scheduled = true;
                cl.wakes += 1;
            }
            return Put::Queued;
        }
        if !force && policy == SlowConsumerPolicy::DropMessage {
            cl.drops += 1;
            return Put::Dropped;
        }
        if cl.reason.is_none() {
            cl.reason = Some((realtime::CLOSE_SLOW_CONSUMER, "slow consumer".to_owned()));
        }
        cl.closed = true;
        cl.queue.clear();
        Put::Shut
    }

    /// Enqueues and collects a client this shuts.
    fn put(&mut self, c: usize, frame: Frame, force: bool, group: u64, shut: &mut Vec<usize>) {
        if self.enqueue(c, frame, force, group) == Put::Shut {
            shut.push(c);
        }
    }

    /// Phase 2 of close for a work list: leave every channel.
    pub(super) fn cleanup(&mut self, mut work: Vec<usize>, group: u64) {
        while let Some(x) = work.pop() {
            let subs = std::mem::take(&mut self.clients[x].subs);
            for (ch, presence) in subs {
                self.leave(x, ch, presence, group, &mut work);
            }
        }
    }

    fn leave(
        &mut self,
        x: usize,
        ch: &'static str,
        presence: Option<(MKey, Member)>,
        group: u64,
        shut: &mut Vec<usize>,
    ) {
        let Some(mc) = self.channels.get_mut(ch) else {
            panic!("model: client {x} subscribed to missing channel {ch}");
        };
        mc.members.remove(&x);
        if let Some((key, _)) = presence {
            let Some(pos) = mc.roster.iter().position(|(k, _, _)| *k == key) else {
                panic!("model: roster of {ch} lacks {key:?}");
            };
            mc.roster[pos].2 -= 1;
            if mc.roster[pos].2 == 0 {
                let (_, member, _) = mc.roster.remove(pos);
                if !self.closed {
                    let frame = JsonPresenceEncoder.member_removed(ch, &member);
                    let members: Vec<usize> = mc.members.iter().copied().collect();
                    for m in members {
                        self.put(m, frame.clone(), true, group, shut);
                    }
                }
                let ev = self.ev(ch, false, &member, x);
                self.events.push(ev);
            }
        }
        if self
            .channels
            .get(ch)
            .is_some_and(|mc| mc.members.is_empty())
        {
            self.channels.remove(ch);
        }
    }

    pub(super) fn add(&mut self, handle: Client, probe: Arc<Probe>, auth: u8) {
        let number = self.next_id;
        self.next_id += 1;
        assert_eq!(
            handle.id(),
            format!("client-{number}"),
            "client ids count from 1"
        );
        self.clients.push(MClient {
            handle,
            probe,
            number,
            auth,
            closed: false,
            reason: None,
            drops: 0,
            queue: Vec::new(),
            scheduled: false,
            wakes: 0,
            subs: BTreeMap::new(),
            view: BTreeMap::new(),
        });
    }

    pub(super) fn subscribe(&mut self, c: usize, ch: &'static str) -> Want {
        if self.closed || self.clients[c].closed {
            return Want::Closed;
        }
        if self.clients[c].subs.contains_key(ch) {
            return Want::Ok;
        }
        let kind = reference_class(ch.as_bytes());
        let id = self.clients[c].handle.id().to_owned();
        let member = match kind {
            ChannelType::Public => None,
            ChannelType::Private | ChannelType::Presence => {
                if !self.has_authorizer {
                    return Want::Unauthorized;
                }
                self.auth_calls.push((ch.to_owned(), kind, id.clone()));
                let (user, info, deny_private, deny_presence) = decode_auth(self.clients[c].auth);
                let denied = self.deny_all
                    || (kind == ChannelType::Private && deny_private)
                    || (kind == ChannelType::Presence && deny_presence);
                if denied {
                    return Want::Unauthorized;
                }
                let mut m = Member::new(user, info);
                if m.id.is_empty() {
                    m.id = id;
                }
                Some(m)
            }
        };
        let mut shut = Vec::new();
        let result = match (kind, member) {
            (ChannelType::Presence, Some(member)) => {
                let roster_frame = {
                    let roster: Vec<&Member> = self
                        .channels
                        .get(ch)
                        .map(|mc| mc.roster.iter().map(|(_, m, _)| m).collect())
                        .unwrap_or_default();
                    JsonPresenceEncoder.subscription_succeeded(ch, &roster, &member)
                };
                let g = self.fresh();
                if self.enqueue(c, roster_frame, true, g) != Put::Queued {
                    shut.push(c);
                    let g = self.fresh();
                    self.cleanup(shut, g);
                    return Want::Closed;
                }
                let key = match self.mode {
                    PresenceMode::PerConnection => MKey::Conn(self.clients[c].number),
                    PresenceMode::PerUser => MKey::User(member.id.clone()),
                };
                let mc = self.channels.entry(ch).or_default();
                mc.members.insert(c);
                let is_new = match mc.roster.iter_mut().find(|(k, _, _)| *k == key) {
                    Some(entry) => {
                        entry.2 += 1;
                        false
                    }
                    None => {
                        mc.roster.push((key.clone(), member.clone(), 1));
                        true
                    }
                };
                if is_new {
                    let frame = JsonPresenceEncoder.member_added(ch, &member);
                    let members: Vec<usize> = mc.members.iter().copied().collect();
                    let g = self.fresh();
                    for m in members {
                        self.put(m, frame.clone(), true, g, &mut shut);
                    }
                    let ev = self.ev(ch, true, &member, c);
                    self.events.push(ev);
                }
                self.clients[c].subs.insert(ch, Some((key, member)));
                Want::Ok
            }
            _ => {
                self.channels.entry(ch).or_default().members.insert(c);
                self.clients[c].subs.insert(ch, None);
                Want::Ok
            }
        };
        let g = self.fresh();
        self.cleanup(shut, g);
        result
    }

    pub(super) fn unsubscribe(&mut self, c: usize, ch: &'static str) -> Want {
        if self.closed {
            return Want::Closed;
        }
        let mut shut = Vec::new();
        if let Some(presence) = self.clients[c].subs.remove(ch) {
            let g = self.fresh();
            self.leave(c, ch, presence, g, &mut shut);
        }
        let g = self.fresh();
        self.cleanup(shut, g);
        Want::Ok
    }

    /// One broadcast call: `kind` 0 text, 1 binary, 2 text that is not
    /// UTF-8; `except` excludes one client.
    pub(super) fn broadcast(
        &mut self,
        ch: &'static str,
        frame: &Frame,
        bad: bool,
        except: Option<usize>,
    ) -> Want {
        if self.closed {
            return Want::Closed;
        }
        if bad {
            return Want::InvalidUtf8;
        }
        let Some(mc) = self.channels.get(ch) else {
            return Want::Ok;
        };
        let members: Vec<usize> = mc
            .members
            .iter()
            .copied()
            .filter(|m| Some(*m) != except)
            .collect();
        let g = self.fresh();
        let mut shut = Vec::new();
        for m in members {
            self.put(m, frame.clone(), false, g, &mut shut);
        }
        let g = self.fresh();
        self.cleanup(shut, g);
        Want::Ok
    }

    pub(super) fn close_client(&mut self, c: usize, reason: Option<(u16, String)>) {
        let cl = &mut self.clients[c];
        if cl.reason.is_none() {
            cl.reason = reason;
        }
        cl.closed = true;
        cl.queue.clear();
        let g = self.fresh();
        self.cleanup(vec![c], g);
    }

    pub(super) fn close_hub(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let mut live = Vec::new();
        for (i, cl) in self.clients.iter_mut().enumerate() {
            if !cl.closed {
                if cl.reason.is_none() {
                    cl.reason = Some((realtime::CLOSE_GOING_AWAY, "hub closed".to_owned()));
                }
                cl.closed = true;
                cl.queue.clear();
                live.push(i);
            }
        }
        let g = self.fresh();
        self.cleanup(live, g);
    }

    pub(super) fn next_payload(&mut self) -> u64 {
        self.payloads += 1;
        self.payloads
    }
}
