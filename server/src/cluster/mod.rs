//! Cluster mode (R25): N gateway nodes behind one Redis.
//!
//! # Fan-out
//!
//! Nothing here: `server::start` puts a `broadcasting::Redis` driver under
//! the gateway's bus (`bus.rs`) instead of `Memory`. Every publish reaches
//! this node's subscribers at once and every other node through Redis; the
//! driver skips its own echo, so a node never delivers its own publish
//! twice.
//!
//! # Global presence
//!
//! Each node's Hub keeps the node-local roster (per user) and sends the
//! node-local frames; this module makes `member_added` / `member_removed`
//! fire once per user cluster-wide and answers the HTTP API for the whole
//! cluster.
//!
//! - **Mirror.** Each app has a [`ClusterRoster`]: channel → user → (info,
//!   nodes where present). This node's entries are written by the Hub's
//!   `on_presence` hook (first join / last leave on this node); other
//!   nodes' by their join/leave events on the bus (`#presence/{app}/
//!   {channel}`, name `join` or `leave`, payload JSON
//!   `{"node","user","info"}`), by a snapshot read from Redis when this
//!   node (re)connects, and by the liveness check below.
//! - **Frames.** The cluster presence encoder ([`ClusterPresenceEncoder`])
//!   gives a newcomer the cluster roster (local roster + mirror), and turns
//!   the Hub's local `member_added` / `member_removed` into a no-op frame
//!   (`pusher_internal:presence_noop`, ignored by pusher-js) when the user
//!   is also present on another node, where it is not news. A join or
//!   leave event from another node is delivered to this node's presence
//!   subscribers only when it is news here: the user was on no node before
//!   (join), or is on none after (leave).
//! - **Redis state**, per node: `{ns}:node:{id}:members`, a hash
//!   `"{app}\n{channel}\n{user}" → info`; `{ns}:node:{id}:alive`, a key
//!   with a TTL of 2/3 of `--node-ttl`, refreshed every tick (a sixth of
//!   the TTL, at most 1 s); `{ns}:nodes`, the set of node ids.
//! - **A dead node** (its `alive` key expired: it died without a goodbye)
//!   is noticed by every node's tick: each drops it from its mirror and
//!   delivers `member_removed` to its own subscribers for the users who are
//!   now on no node, and deletes the dead node's Redis state (idempotent,
//!   any node may). Bound: 2/3 TTL + one tick ≤ TTL.
//! - **Registration and repair.** A node writes its whole state on its
//!   first tick, after any failed Redis write and after a reconnect, and
//!   then publishes a `join` for each of its entries (a join that is not
//!   news is a no-op for the receiver). It reads the other nodes' entries
//!   (a snapshot that replaces what its mirror holds for them, with frames
//!   for what changed) after registering and whenever the bus's subscriber
//!   connection comes back, since events may have been missed meanwhile.
//! - **Redis restarts** (state lost): a node whose `alive` key vanished
//!   registers again, and for one TTL prunes no other node, which gives
//!   every live node time to register again; it reads the snapshot a few
//!   ticks later. A node that was taken for dead (paused past its TTL)
//!   comes back the same way: its `join`s re-add its members.
//! - **Threads.** The hook (under the Hub's channel lock) only updates the
//!   mirror and queues a job; one worker thread owns the Redis connection,
//!   writes entries, publishes join/leave events, heartbeats and checks
//!   liveness. Bus events are handled on the bus subscription's thread.
//! - **Goodbye.** On shutdown the Hubs close (a leave for every member),
//!   the worker drains its queue (publishing those leaves) and deletes this
//!   node's Redis state.
//!
//! Known gaps: concurrent joins of one user on two nodes at the same
//! instant can each look like news (a duplicate `member_added`); a
//! `member_added`/`member_removed` from another node goes through the
//! normal (droppable) outbox path, not the Hub's forced presence path;
//! `subscription_count` stays node-local; events published while Redis is
//! away are lost for other nodes (the snapshot on reconnect repairs the
//! rosters, with frames for what changed).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use broadcasting::{Broadcaster, BroadcasterExt, Event, Subscription};
use bytes::Bytes;
use crossbeam_channel::Sender;
use realtime::{Member, PresenceEncoder};

use crate::app::{App, Apps};
use crate::bus::{presence_channel, split_presence_channel, PresenceChange, PRESENCE_PREFIX};
use crate::presence::{ClusterRoster, PusherPresenceEncoder};

mod worker;

use worker::Worker;

pub(super) enum Job {
    Join {
        app: String,
        channel: String,
        user: String,
        info: Bytes,
    },
    Leave {
        app: String,
        channel: String,
        user: String,
    },
    /// Drain what is queued, say goodbye, end. (The hooks hold senders for
    /// the Hubs' lifetime, so the queue never disconnects by itself.)
    Stop,
}

pub(super) struct Shared {
    pub(super) apps: HashMap<String, Arc<App>>,
    pub(super) bus: Arc<broadcasting::Redis>,
    pub(super) client: redis::Client,
    pub(super) ns: String,
    pub(super) node: String,
    pub(super) ttl: Duration,
}

/// The running cluster presence of a node.
pub struct Cluster {
    jobs: Option<Sender<Job>>,
    worker: Option<JoinHandle<()>>,
    subscription: Option<Subscription>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cluster")
    }
}

impl Cluster {
    /// Mirrors the presence of `apps` into Redis at `url` as `node` and
    /// listens to the other nodes on `bus`. The apps must have been built
    /// in cluster mode (`Settings::redis` set), so that they carry a
    /// [`ClusterRoster`].
    ///
    /// # Errors
    ///
    /// A URL the `redis` crate refuses, a closed bus, or a thread that
    /// cannot start. An unreachable Redis is not an error: the worker keeps
    /// trying.
    pub(crate) fn start(
        apps: &Apps,
        node: &str,
        bus: Arc<broadcasting::Redis>,
        url: &str,
        ns: &str,
        ttl: Duration,
    ) -> std::io::Result<Self> {
        let client = redis::Client::open(url).map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            apps: apps
                .all()
                .iter()
                .map(|a| (a.id().to_owned(), Arc::clone(a)))
                .collect(),
            bus: Arc::clone(&bus),
            client,
            ns: ns.to_owned(),
            node: node.to_owned(),
            ttl,
        });
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for app in apps.all() {
            let Some(roster) = app.cluster_roster().cloned() else {
                continue;
            };
            let jobs = tx.clone();
            let app_id = app.id().to_owned();
            app.hub().on_presence(move |e| {
                // Under the channel's lock: memory only, then a queue push.
                let node = roster.node().to_owned();
                let job = if e.joined {
                    roster.join(&e.channel, &e.member.id, &e.member.info, &node);
                    Job::Join {
                        app: app_id.clone(),
                        channel: e.channel.clone(),
                        user: e.member.id.clone(),
                        info: e.member.info.clone(),
                    }
                } else {
                    roster.leave(&e.channel, &e.member.id, &node);
                    Job::Leave {
                        app: app_id.clone(),
                        channel: e.channel.clone(),
                        user: e.member.id.clone(),
                    }
                };
                let _ = jobs.send(job);
            });
        }
        let on_bus = Arc::clone(&shared);
        let subscription = bus
            .subscribe_prefix(PRESENCE_PREFIX, move |e: &Event| {
                on_bus.on_change(e);
                Ok(())
            })
            .map_err(std::io::Error::other)?;
        let worker_shared = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("cluster-presence".into())
            .spawn(move || Worker::new(worker_shared).run(&rx))?;
        Ok(Self {
            jobs: Some(tx),
            worker: Some(worker),
            subscription: Some(subscription),
        })
    }

    /// Says goodbye: drains the queued presence changes (the Hubs should be
    /// closed first, so their leaves are in it), deletes this node's Redis
    /// state, stops the threads.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(jobs) = self.jobs.take() {
            let _ = jobs.send(Job::Stop); // it drains, says goodbye, ends
        }
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        if let Some(s) = self.subscription.take() {
            s.cancel();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(super) fn members_key(ns: &str, node: &str) -> String {
    format!("{ns}:node:{node}:members")
}

pub(crate) fn alive_key(ns: &str, node: &str) -> String {
    format!("{ns}:node:{node}:alive")
}

pub(super) fn nodes_key(ns: &str) -> String {
    format!("{ns}:nodes")
}

pub(super) fn field(app: &str, channel: &str, user: &str) -> String {
    format!("{app}\n{channel}\n{user}")
}

pub(super) fn split_field(f: &str) -> Option<(&str, &str, &str)> {
    let (app, rest) = f.split_once('\n')?;
    let (channel, user) = rest.split_once('\n')?;
    Some((app, channel, user))
}

pub(super) fn deliver_added(app: &App, channel: &str, member: &Member) {
    let frame = PusherPresenceEncoder.member_added(channel, member);
    let _ = app.hub().broadcast_frame(channel, frame, None);
}

pub(super) fn deliver_removed(app: &App, channel: &str, member: &Member) {
    let frame = PusherPresenceEncoder.member_removed(channel, member);
    let _ = app.hub().broadcast_frame(channel, frame, None);
}

impl Shared {
    fn app(&self, id: &str) -> Option<(&Arc<App>, &Arc<ClusterRoster>)> {
        let app = self.apps.get(id)?;
        Some((app, app.cluster_roster()?))
    }

    /// A join or leave of another node, from the bus.
    fn on_change(&self, e: &Event) {
        let Some((app_id, channel)) = split_presence_channel(&e.channel) else {
            return;
        };
        let Ok(change) = serde_json::from_slice::<PresenceChange>(&e.payload) else {
            tracing::warn!(channel = %e.channel, "malformed presence change: dropped");
            return;
        };
        if change.node == self.node {
            return; // our own, applied by the hook already
        }
        let Some((app, roster)) = self.app(app_id) else {
            return;
        };
        self.apply(
            app,
            roster,
            channel,
            &change.user,
            &change,
            PresenceChange::is_join(&e.name),
        );
    }

    fn apply(
        &self,
        app: &App,
        roster: &ClusterRoster,
        channel: &str,
        user: &str,
        change: &PresenceChange,
        joined: bool,
    ) {
        if joined {
            let info = Bytes::from(change.info.clone().into_bytes());
            if roster.join(channel, user, &info, &change.node) {
                deliver_added(app, channel, &Member::new(user, info));
            }
        } else if let Some(member) = roster.leave(channel, user, &change.node) {
            deliver_removed(app, channel, &member);
        }
    }

    /// Drops every entry of `node` from every mirror, delivering
    /// `member_removed` for users now on no node.
    pub(super) fn forget_node(&self, node: &str) -> usize {
        let mut removed = 0;
        for app in self.apps.values() {
            let Some(roster) = app.cluster_roster() else {
                continue;
            };
            for (channel, user, _) in roster.entries_of(node) {
                if let Some(member) = roster.leave(&channel, &user, node) {
                    deliver_removed(app, &channel, &member);
                    removed += 1;
                }
            }
        }
        removed
    }

    pub(super) fn publish_change(
        &self,
        app: &str,
        channel: &str,
        user: &str,
        info: &[u8],
        joined: bool,
    ) {
        let change = PresenceChange {
            node: self.node.clone(),
            user: user.to_owned(),
            info: String::from_utf8_lossy(info).into_owned(),
        };
        let Ok(payload) = serde_json::to_vec(&change) else {
            return;
        };
        // A failure is counted and logged by the driver; the snapshot on
        // reconnect repairs the other nodes' mirrors.
        let _ = self.bus.publish(Event::new(
            presence_channel(app, channel),
            PresenceChange::name(joined),
            payload,
        ));
    }
}

/// `(channel, user, info)` of one entry of a snapshot.
pub(super) type SnapshotEntry<'a> = (&'a str, &'a str, &'a [u8]);

impl Shared {
    /// Makes the mirror's entries of `node` those of the snapshot.
    pub(super) fn replace_node(&self, node: &str, entries: &[(String, Vec<u8>)]) {
        let mut wanted: HashMap<&str, Vec<SnapshotEntry<'_>>> = HashMap::new();
        for (f, info) in entries {
            if let Some((app, channel, user)) = split_field(f) {
                wanted.entry(app).or_default().push((channel, user, info));
            }
        }
        for (app_id, app) in &self.apps {
            let Some(roster) = app.cluster_roster() else {
                continue;
            };
            let now = wanted.remove(app_id.as_str()).unwrap_or_default();
            let keep: BTreeSet<(&str, &str)> = now.iter().map(|(c, u, _)| (*c, *u)).collect();
            for (channel, user, _) in roster.entries_of(node) {
                if !keep.contains(&(channel.as_str(), user.as_str())) {
                    if let Some(member) = roster.leave(&channel, &user, node) {
                        deliver_removed(app, &channel, &member);
                    }
                }
            }
            for (channel, user, info) in now {
                let info = Bytes::copy_from_slice(info);
                if roster.join(channel, user, &info, node) {
                    deliver_added(app, channel, &Member::new(user, info));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_fields_split_back_even_with_newlines_in_the_user() {
        let f = field("app", "presence-x", "odd\nuser");
        assert_eq!(split_field(&f), Some(("app", "presence-x", "odd\nuser")));
    }
}
