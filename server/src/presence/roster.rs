//! The cluster-wide presence roster of one app, mirrored in memory on
//! every node: channel → user → (info, the nodes where the user is
//! present).
//!
//! # Who writes what
//!
//! - This node's own entries are written by the Hub's `on_presence` hook
//!   (a user's first join / last leave on this node), synchronously, under
//!   the channel's lock: a `DashMap` shard lock for one insert or removal,
//!   nothing that blocks.
//! - Other nodes' entries are written by the cluster's bus subscription
//!   (their join/leave events), by the snapshot loaded from Redis when this
//!   node (re)connects, and by the liveness check that drops a dead node.
//!
//! Readers: the cluster presence encoder (rosters for newcomers, and
//! whether a local join or leave is news to the cluster) and the HTTP API
//! (`users`, `user_count`).

use std::collections::BTreeSet;

use bytes::Bytes;
use dashmap::DashMap;
use indexmap::IndexMap;
use realtime::Member;

#[derive(Debug, Clone)]
struct Entry {
    info: Bytes,
    nodes: BTreeSet<String>,
}

/// The cluster roster of one app, as this node knows it.
#[derive(Debug)]
pub struct ClusterRoster {
    node: String,
    channels: DashMap<String, IndexMap<String, Entry>>,
}

impl ClusterRoster {
    /// An empty roster for the node with id `node`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            channels: DashMap::new(),
        }
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Records `user` as present on `node`; true if the user was present on
    /// no node before (news to the cluster, as this node knows it).
    pub fn join(&self, channel: &str, user: &str, info: &Bytes, node: &str) -> bool {
        let mut ch = self.channels.entry(channel.to_owned()).or_default();
        let entry = ch.entry(user.to_owned()).or_insert_with(|| Entry {
            info: info.clone(),
            nodes: BTreeSet::new(),
        });
        let new = entry.nodes.is_empty();
        entry.nodes.insert(node.to_owned());
        new
    }

    /// Records that `user` left `node`; the member if it is now present on
    /// no node.
    pub fn leave(&self, channel: &str, user: &str, node: &str) -> Option<Member> {
        let mut gone = None;
        if let Some(mut ch) = self.channels.get_mut(channel) {
            if let Some(entry) = ch.get_mut(user) {
                entry.nodes.remove(node);
                if entry.nodes.is_empty() {
                    let entry = ch.shift_remove(user)?;
                    gone = Some(Member {
                        id: user.to_owned(),
                        info: entry.info,
                    });
                }
            }
        }
        self.channels.remove_if(channel, |_, ch| ch.is_empty());
        gone
    }

    /// Whether `user` is present on `channel` on some node other than this
    /// one.
    pub fn elsewhere(&self, channel: &str, user: &str) -> bool {
        self.channels
            .get(channel)
            .and_then(|ch| {
                ch.get(user)
                    .map(|e| e.nodes.iter().any(|n| *n != self.node))
            })
            .unwrap_or(false)
    }

    /// The cluster roster of `channel`, in first-seen order.
    pub fn members(&self, channel: &str) -> Vec<Member> {
        self.channels
            .get(channel)
            .map(|ch| {
                ch.iter()
                    .map(|(id, e)| Member {
                        id: id.clone(),
                        info: e.info.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Users present on `channel`, cluster-wide.
    pub fn user_count(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |ch| ch.len())
    }

    /// Every presence channel with at least one user, and its user count.
    pub fn channels(&self) -> Vec<(String, usize)> {
        self.channels
            .iter()
            .filter(|e| !e.value().is_empty())
            .map(|e| (e.key().clone(), e.value().len()))
            .collect()
    }

    /// Every node that has an entry.
    pub fn nodes(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for ch in &self.channels {
            for e in ch.value().values() {
                out.extend(e.nodes.iter().cloned());
            }
        }
        out
    }

    /// The `(channel, user, info)` entries of `node`.
    pub fn entries_of(&self, node: &str) -> Vec<(String, String, Bytes)> {
        let mut out = Vec::new();
        for ch in &self.channels {
            for (user, e) in ch.value() {
                if e.nodes.contains(node) {
                    out.push((ch.key().clone(), user.clone(), e.info.clone()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_user_is_news_on_its_first_node_and_gone_after_its_last() {
        let r = ClusterRoster::new("a");
        let info = Bytes::from_static(b"{}");
        assert!(r.join("presence-x", "u", &info, "a"));
        assert!(!r.elsewhere("presence-x", "u"));
        assert!(!r.join("presence-x", "u", &info, "b"));
        assert!(r.elsewhere("presence-x", "u"));
        assert_eq!(r.user_count("presence-x"), 1);
        assert_eq!(r.leave("presence-x", "u", "a"), None);
        assert_eq!(r.leave("presence-x", "u", "b").unwrap().id, "u");
        assert_eq!(r.user_count("presence-x"), 0);
        assert!(r.channels().is_empty());
    }
}
