//! The comparison of Hub and model after each `hub_ops` step: every
//! count, roster, subscription, counter and close reason ([`Run::check`]),
//! and every frame each client received, in order groups, with each
//! client's roster as its own presence frames imply it ([`Run::drain`]).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use realtime::{Frame, JsonPresenceEncoder, Member, MessageType, PresenceEncoder, PresenceMode};

use super::model::Ev;
use super::{Run, CHANNELS};
use crate::probe::lock;

/// A member as normalized JSON, from a frame's member object.
fn norm(v: &serde_json::Value) -> String {
    v.to_string()
}

/// A roster member as normalized JSON, through the encoder (whose output
/// `presence_info` checks on its own).
fn norm_member(m: &Member) -> String {
    let f = JsonPresenceEncoder.member_added("x", m);
    match serde_json::from_slice::<serde_json::Value>(f.payload()) {
        Ok(v) => norm(&v["member"]),
        Err(e) => panic!("presence frame is not JSON: {e}: {f:?}"),
    }
}

impl Run<'_> {
    /// Compares the Hub with the model after a step.
    pub(super) fn check(&mut self) {
        let hub = &self.hub;
        let m = &self.model;
        if hub.is_closed() != m.closed {
            self.fail("is_closed differs");
        }
        let live = m.clients.iter().filter(|c| !c.closed).count();
        if hub.count() != live {
            self.fail(&format!("count {} but model {live}", hub.count()));
        }
        let mut occupied = Vec::new();
        for ch in CHANNELS {
            let want = m.channels.get(ch).map_or(0, |c| c.members.len());
            if hub.channel_count(ch) != want {
                self.fail(&format!(
                    "channel_count({ch}) {} but model {want}",
                    hub.channel_count(ch)
                ));
            }
            if want > 0 {
                occupied.push((ch.to_owned(), want));
            }
            // Compared in place: cloning the model's roster at every step
            // was a measurable part of the oracle (issue 18).
            let roster = m.channels.get(ch).map_or(&[][..], |c| &c.roster[..]);
            let got = hub.presence(ch);
            if !got.iter().eq(roster.iter().map(|(_, m, _)| m)) {
                let roster: Vec<&Member> = roster.iter().map(|(_, m, _)| m).collect();
                self.fail(&format!("presence({ch}) {got:?} but model {roster:?}"));
            }
        }
        occupied.sort();
        if hub.channels() != occupied {
            self.fail(&format!(
                "channels() {:?} but model {occupied:?}",
                hub.channels()
            ));
        }
        // No ghosts: the channel table holds the occupied channels only.
        let table = hub.channel_table_len();
        if table != occupied.len() {
            self.fail(&format!(
                "the channel table holds {table} channels, {} occupied",
                occupied.len()
            ));
        }
        for (i, c) in m.clients.iter().enumerate() {
            let h = &c.handle;
            // Formatted only when a check fails: one `format!` per client and
            // step cost more than the checks themselves.
            let who = || format!("c{i} ({})", h.id());
            if h.is_closed() != c.closed {
                self.fail(&format!(
                    "{}: is_closed {} but model {}",
                    who(),
                    h.is_closed(),
                    c.closed
                ));
            }
            if c.probe.closes.load(Ordering::SeqCst) != usize::from(c.closed) {
                self.fail(&format!(
                    "{}: Transport::closed called {} times",
                    who(),
                    c.probe.closes.load(Ordering::SeqCst)
                ));
            }
            if c.probe.wakes.load(Ordering::SeqCst) != c.wakes {
                self.fail(&format!(
                    "{}: {} wakes but model {}",
                    who(),
                    c.probe.wakes.load(Ordering::SeqCst),
                    c.wakes
                ));
            }
            if h.drops() != c.drops {
                self.fail(&format!(
                    "{}: drops {} but model {}",
                    who(),
                    h.drops(),
                    c.drops
                ));
            }
            let reason = h.close_reason().map(|(code, r)| (code, r.to_owned()));
            if reason != c.reason {
                self.fail(&format!(
                    "{}: close reason {reason:?} but model {:?}",
                    who(),
                    c.reason
                ));
            }
            let mut subs = h.channels();
            subs.sort();
            if !subs.iter().map(String::as_str).eq(c.subs.keys().copied()) {
                let want: Vec<&str> = c.subs.keys().copied().collect();
                self.fail(&format!("{}: channels {subs:?} but model {want:?}", who()));
            }
            let found = hub.client(h.id());
            if found.as_ref() != (!c.closed).then_some(h) {
                self.fail(&format!("{}: hub.client() is {found:?}", who()));
            }
            if !c.closed && h.pending() != c.queue.len() {
                self.fail(&format!(
                    "{}: {} pending but model {}",
                    who(),
                    h.pending(),
                    c.queue.len()
                ));
            }
        }
        // Presence hooks, as multisets.
        let mut got: Vec<Ev> = std::mem::take(&mut *lock(&self.rec.events))
            .into_iter()
            .map(|e| {
                let client = match m.mode {
                    PresenceMode::PerConnection => e.client_id,
                    PresenceMode::PerUser => String::new(),
                };
                (
                    e.channel,
                    e.joined,
                    e.member.id,
                    e.member.info.to_vec(),
                    client,
                )
            })
            .collect();
        let mut want = std::mem::take(&mut self.model.events);
        got.sort();
        want.sort();
        if got != want {
            self.fail(&format!("presence hooks {got:?} but model {want:?}"));
        }
        let got = std::mem::take(&mut *lock(&self.rec.auth_calls));
        let want = std::mem::take(&mut self.model.auth_calls);
        if got != want {
            self.fail(&format!("authorizer calls {got:?} but model {want:?}"));
        }
    }

    /// Drains every client's outbox and compares with the model's queue.
    pub(super) fn drain(&mut self) {
        for i in 0..self.model.clients.len() {
            let handle = self.model.clients[i].handle.clone();
            if self.model.clients[i].closed {
                // Nothing is delivered after close (R7). (`finish_drain`
                // is not called: a transport stops on `Transport::closed`.)
                if let Some(f) = handle.pop_frame() {
                    self.fail(&format!("c{i} is closed but delivered {f:?}"));
                }
                continue;
            }
            let mut got = Vec::new();
            loop {
                while let Some(f) = handle.pop_frame() {
                    got.push(f);
                    if got.len() > 64 {
                        self.fail(&format!("c{i} delivered more than its outbox holds"));
                    }
                }
                if !handle.finish_drain() {
                    break;
                }
            }
            let want = std::mem::take(&mut self.model.clients[i].queue);
            self.model.clients[i].scheduled = false;
            if !same_frames(&got, &want) {
                let want: Vec<_> = want.iter().map(|(f, g)| (g, f)).collect();
                self.fail(&format!(
                    "c{i} received {got:?} but model (group, frame) {want:?}"
                ));
            }
            for f in &got {
                if let Err(e) = apply_view(&mut self.model.clients[i].view, f) {
                    self.fail(&format!("c{i}: {e}"));
                }
            }
        }
        // Every live client's view of each presence roster is the Hub's.
        // The Hub's rosters are normalized once per drain, each member
        // once per run (`norms`): normalizing per client and drain was a
        // third of the oracle's time (issue 18).
        let mut rosters: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for c in self.model.clients.iter().filter(|c| !c.closed) {
            for (ch, presence) in &c.subs {
                if presence.is_some() && !rosters.contains_key(ch) {
                    let mut hub: Vec<String> = self
                        .hub
                        .presence(ch)
                        .iter()
                        .map(|m| {
                            self.norms
                                .entry(m.clone())
                                .or_insert_with(|| norm_member(m))
                                .clone()
                        })
                        .collect();
                    hub.sort();
                    rosters.insert(ch, hub);
                }
            }
        }
        for (i, c) in self.model.clients.iter().enumerate() {
            if c.closed {
                continue;
            }
            for (ch, presence) in &c.subs {
                if presence.is_none() {
                    continue;
                }
                let mut view = c.view.get(ch).cloned().unwrap_or_default();
                let hub = rosters.get(ch).map_or(&[][..], Vec::as_slice);
                view.sort();
                if view != hub {
                    self.fail(&format!(
                        "c{i}'s view of {ch} is {view:?}, the Hub's roster {hub:?}"
                    ));
                }
            }
        }
    }
}

/// Frames equal group by group; within a group in any order.
fn same_frames(got: &[Frame], want: &[(Frame, u64)]) -> bool {
    if got.len() != want.len() {
        return false;
    }
    let key = |f: &Frame| (f.kind() == MessageType::Binary, f.payload().clone());
    let mut i = 0;
    while i < want.len() {
        let g = want[i].1;
        let j = i + want[i..].iter().take_while(|(_, h)| *h == g).count();
        let mut a: Vec<_> = got[i..j].iter().map(key).collect();
        let mut b: Vec<_> = want[i..j].iter().map(|(f, _)| key(f)).collect();
        a.sort();
        b.sort();
        if a != b {
            return false;
        }
        i = j;
    }
    true
}

/// Updates a client's roster views with one received frame.
fn apply_view(view: &mut BTreeMap<&'static str, Vec<String>>, f: &Frame) -> Result<(), String> {
    let Some(text) = f.as_str() else {
        return Ok(());
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Ok(());
    };
    let (Some(event), Some(channel)) = (v["event"].as_str(), v["channel"].as_str()) else {
        return Ok(());
    };
    let Some(ch) = CHANNELS.iter().find(|c| **c == channel) else {
        return Err(format!("presence frame for unknown channel {channel}"));
    };
    let roster = view.entry(ch).or_default();
    match event {
        "presence:subscription_succeeded" => {
            let Some(members) = v["members"].as_array() else {
                return Err(format!("roster without members: {text}"));
            };
            *roster = members.iter().map(norm).collect();
        }
        "presence:member_added" => roster.push(norm(&v["member"])),
        "presence:member_removed" => {
            let m = norm(&v["member"]);
            let Some(pos) = roster.iter().position(|x| *x == m) else {
                return Err(format!("member_removed of a member it never saw: {text}"));
            };
            roster.remove(pos);
        }
        _ => return Err(format!("unknown presence event: {text}")),
    }
    Ok(())
}
