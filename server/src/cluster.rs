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

mod encoder;
mod roster;

pub use encoder::{ClusterPresenceEncoder, NOOP_EVENT};
pub use roster::ClusterRoster;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use broadcasting::{Broadcaster, BroadcasterExt, Event, Subscription};
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use realtime::{Member, PresenceEncoder};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::gateway::Gateway;
use crate::presence_encoder::PusherPresenceEncoder;

/// The bus prefix of presence join/leave events.
pub const PRESENCE_PREFIX: &str = "#presence/";

#[derive(Debug, Serialize, Deserialize)]
struct Change {
    node: String,
    user: String,
    #[serde(default)]
    info: String,
}

enum Job {
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

struct Shared {
    apps: HashMap<String, Arc<App>>,
    bus: Arc<broadcasting::Redis>,
    client: redis::Client,
    ns: String,
    node: String,
    ttl: Duration,
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
    /// Mirrors `gateway`'s presence into Redis at `url` and listens to the
    /// other nodes on `bus`. The apps must have been built in cluster mode
    /// (`Settings::redis` set), so that they carry a [`ClusterRoster`].
    ///
    /// # Errors
    ///
    /// A URL the `redis` crate refuses, a closed bus, or a thread that
    /// cannot start. An unreachable Redis is not an error: the worker keeps
    /// trying.
    pub fn start(
        gateway: &Arc<Gateway>,
        bus: Arc<broadcasting::Redis>,
        url: &str,
        ns: &str,
        ttl: Duration,
    ) -> std::io::Result<Self> {
        let client = redis::Client::open(url).map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            apps: gateway
                .apps()
                .iter()
                .map(|a| (a.id().to_owned(), Arc::clone(a)))
                .collect(),
            bus: Arc::clone(&bus),
            client,
            ns: ns.to_owned(),
            node: gateway.node_id(),
            ttl,
        });
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for app in gateway.apps() {
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

fn members_key(ns: &str, node: &str) -> String {
    format!("{ns}:node:{node}:members")
}

fn alive_key(ns: &str, node: &str) -> String {
    format!("{ns}:node:{node}:alive")
}

fn nodes_key(ns: &str) -> String {
    format!("{ns}:nodes")
}

fn field(app: &str, channel: &str, user: &str) -> String {
    format!("{app}\n{channel}\n{user}")
}

fn split_field(f: &str) -> Option<(&str, &str, &str)> {
    let (app, rest) = f.split_once('\n')?;
    let (channel, user) = rest.split_once('\n')?;
    Some((app, channel, user))
}

fn deliver_added(app: &App, channel: &str, member: &Member) {
    let frame = PusherPresenceEncoder.member_added(channel, member);
    let _ = app.hub().broadcast_frame(channel, frame, None);
}

fn deliver_removed(app: &App, channel: &str, member: &Member) {
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
        let Some((app_id, channel)) = e
            .channel
            .strip_prefix(PRESENCE_PREFIX)
            .and_then(|r| r.split_once('/'))
        else {
            return;
        };
        let Ok(change) = serde_json::from_slice::<Change>(&e.payload) else {
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
            e.name == "join",
        );
    }

    fn apply(
        &self,
        app: &App,
        roster: &ClusterRoster,
        channel: &str,
        user: &str,
        change: &Change,
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
    fn forget_node(&self, node: &str) -> usize {
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

    fn publish_change(&self, app: &str, channel: &str, user: &str, info: &[u8], joined: bool) {
        let change = Change {
            node: self.node.clone(),
            user: user.to_owned(),
            info: String::from_utf8_lossy(info).into_owned(),
        };
        let Ok(payload) = serde_json::to_vec(&change) else {
            return;
        };
        let name = if joined { "join" } else { "leave" };
        // A failure is counted and logged by the driver; the snapshot on
        // reconnect repairs the other nodes' mirrors.
        let _ = self.bus.publish(Event::new(
            format!("{PRESENCE_PREFIX}{app}/{channel}"),
            name,
            payload,
        ));
    }
}

/// The worker: owns the Redis connection.
struct Worker {
    shared: Arc<Shared>,
    conn: Option<redis::Connection>,
    /// This node's entries must be (re)written in full.
    dirty: bool,
    /// No pruning of other nodes before this instant.
    grace_until: Instant,
    /// Whether this node's state was written once.
    registered: bool,
    /// When to read the other nodes' entries again.
    snapshot_due: Option<Instant>,
    /// Whether the bus's subscriber was connected at the last tick: events
    /// of other nodes may have been missed while it was not.
    bus_connected: bool,
    next_connect: Instant,
    backoff: Duration,
    failing: bool,
}

impl Worker {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            conn: None,
            dirty: true,
            grace_until: Instant::now(),
            registered: false,
            snapshot_due: None,
            bus_connected: false,
            next_connect: Instant::now(),
            backoff: Duration::from_millis(50),
            failing: false,
        }
    }

    fn tick(&self) -> Duration {
        (self.shared.ttl / 6).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    fn alive_ms(&self) -> u64 {
        (self.shared.ttl.as_millis() as u64 * 2 / 3).max(100)
    }

    fn run(mut self, jobs: &Receiver<Job>) {
        let mut next_tick = Instant::now();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match jobs.recv_timeout(wait) {
                Ok(Job::Stop) => {
                    while let Ok(job) = jobs.try_recv() {
                        self.job(job);
                    }
                    break;
                }
                Ok(job) => self.job(job),
                Err(RecvTimeoutError::Timeout) => {
                    self.heartbeat();
                    next_tick = Instant::now() + self.tick();
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.goodbye();
    }

    fn connection(&mut self) -> Option<&mut redis::Connection> {
        if self.conn.is_none() {
            if Instant::now() < self.next_connect {
                return None;
            }
            let timeout = Duration::from_secs(1);
            let opened = self
                .shared
                .client
                .get_connection_with_timeout(timeout)
                .and_then(|c| {
                    c.set_read_timeout(Some(timeout))?;
                    c.set_write_timeout(Some(timeout))?;
                    Ok(c)
                });
            match opened {
                Ok(c) => {
                    if self.failing {
                        tracing::info!("cluster presence reconnected to redis");
                    }
                    self.failing = false;
                    self.backoff = Duration::from_millis(50);
                    self.conn = Some(c);
                    self.dirty = true;
                }
                Err(e) => {
                    if !self.failing {
                        tracing::error!(error = %e, "cluster presence cannot reach redis: retrying with backoff; presence is node-local meanwhile");
                    }
                    self.failing = true;
                    self.next_connect = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(1));
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    fn failed(&mut self, e: &redis::RedisError) {
        tracing::warn!(error = %e, "cluster presence: redis command failed");
        self.conn = None;
        self.dirty = true;
    }

    fn job(&mut self, job: Job) {
        let sh = Arc::clone(&self.shared);
        let key = members_key(&sh.ns, &sh.node);
        match job {
            Job::Join {
                app,
                channel,
                user,
                info,
            } => {
                if let Some(conn) = self.connection() {
                    let r = redis::cmd("HSET")
                        .arg(&key)
                        .arg(field(&app, &channel, &user))
                        .arg(&info[..])
                        .query::<i64>(conn);
                    if let Err(e) = r {
                        self.failed(&e);
                    }
                } else {
                    self.dirty = true;
                }
                sh.publish_change(&app, &channel, &user, &info, true);
            }
            Job::Leave { app, channel, user } => {
                if let Some(conn) = self.connection() {
                    let r = redis::cmd("HDEL")
                        .arg(&key)
                        .arg(field(&app, &channel, &user))
                        .query::<i64>(conn);
                    if let Err(e) = r {
                        self.failed(&e);
                    }
                } else {
                    self.dirty = true;
                }
                sh.publish_change(&app, &channel, &user, b"", false);
            }
            Job::Stop => {}
        }
    }

    fn heartbeat(&mut self) {
        if let Err(e) = self.try_heartbeat() {
            self.failed(&e);
        }
    }

    fn try_heartbeat(&mut self) -> redis::RedisResult<()> {
        let sh = Arc::clone(&self.shared);
        let alive_ms = self.alive_ms();
        let ttl = sh.ttl;
        let Some(conn) = self.connection() else {
            return Ok(());
        };
        // Refresh only if it exists: a missing key means Redis lost our
        // state (or we were taken for dead): register everything again.
        let refreshed: Option<String> = redis::cmd("SET")
            .arg(alive_key(&sh.ns, &sh.node))
            .arg(1)
            .arg("PX")
            .arg(alive_ms)
            .arg("XX")
            .query(conn)?;
        // Missing after we registered: Redis lost our state (restarted
        // empty), or the others took us for dead.
        let lost = refreshed.is_none() && self.registered;
        if lost || self.dirty || !self.registered {
            self.register()?;
            // Whoever missed our members (or pruned us) hears of them again;
            // a join that is not news is a no-op for the receiver.
            self.announce();
            if lost {
                tracing::warn!("cluster presence: redis lost this node's state; registered again");
                // Other nodes' state is gone too: give them a TTL to
                // register again before anyone is pruned, and read their
                // entries once they had a chance to.
                self.grace_until = Instant::now() + ttl;
                self.snapshot_due = Some(Instant::now() + self.tick() * 3);
            } else {
                self.snapshot()?;
            }
        }
        let bus_connected = sh.bus.is_connected();
        if bus_connected && !self.bus_connected && self.snapshot_due.is_none() {
            self.snapshot_due = Some(Instant::now());
        }
        self.bus_connected = bus_connected;
        if self.snapshot_due.is_some_and(|t| Instant::now() >= t) {
            self.snapshot()?;
        }
        self.check_liveness()
    }

    /// Writes this node's whole state: its entries, its id, its heartbeat.
    fn register(&mut self) -> redis::RedisResult<()> {
        let sh = Arc::clone(&self.shared);
        let alive_ms = self.alive_ms();
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let key = members_key(&sh.ns, &sh.node);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        for (app_id, app) in &sh.apps {
            let Some(roster) = app.cluster_roster() else {
                continue;
            };
            for (channel, user, info) in roster.entries_of(&sh.node) {
                pipe.hset(&key, field(app_id, &channel, &user), &info[..])
                    .ignore();
            }
        }
        pipe.sadd(nodes_key(&sh.ns), &sh.node).ignore();
        pipe.cmd("SET")
            .arg(alive_key(&sh.ns, &sh.node))
            .arg(1)
            .arg("PX")
            .arg(alive_ms)
            .ignore();
        pipe.query::<()>(conn)?;
        self.dirty = false;
        self.registered = true;
        tracing::info!(node = %sh.node, "cluster presence registered");
        Ok(())
    }

    /// Publishes a join for every entry of this node.
    fn announce(&self) {
        let sh = &self.shared;
        for (app_id, app) in &sh.apps {
            let Some(roster) = app.cluster_roster() else {
                continue;
            };
            for (channel, user, info) in roster.entries_of(&sh.node) {
                sh.publish_change(app_id, &channel, &user, &info, true);
            }
        }
    }

    /// Reads every other node's entries and makes the mirrors match them
    /// (frames for what changed).
    fn snapshot(&mut self) -> redis::RedisResult<()> {
        let sh = Arc::clone(&self.shared);
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let nodes: BTreeSet<String> = redis::cmd("SMEMBERS").arg(nodes_key(&sh.ns)).query(conn)?;
        for node in nodes.iter().filter(|n| **n != sh.node) {
            let entries: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
                .arg(members_key(&sh.ns, node))
                .query(conn)?;
            sh.replace_node(node, &entries);
        }
        self.snapshot_due = None;
        Ok(())
    }

    fn check_liveness(&mut self) -> redis::RedisResult<()> {
        let sh = Arc::clone(&self.shared);
        let in_grace = Instant::now() < self.grace_until;
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let mut nodes: BTreeSet<String> =
            redis::cmd("SMEMBERS").arg(nodes_key(&sh.ns)).query(conn)?;
        for app in sh.apps.values() {
            if let Some(r) = app.cluster_roster() {
                nodes.extend(r.nodes());
            }
        }
        nodes.remove(&sh.node);
        if nodes.is_empty() || in_grace {
            return Ok(());
        }
        let nodes: Vec<String> = nodes.into_iter().collect();
        let keys: Vec<String> = nodes.iter().map(|n| alive_key(&sh.ns, n)).collect();
        let alive: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(conn)?;
        for (node, alive) in nodes.iter().zip(alive) {
            if alive.is_some() {
                continue;
            }
            let removed = sh.forget_node(node);
            tracing::warn!(
                node,
                removed,
                "cluster node silent past its TTL: its members are removed"
            );
            redis::pipe()
                .del(members_key(&sh.ns, node))
                .ignore()
                .srem(nodes_key(&sh.ns), node)
                .ignore()
                .query::<()>(conn)?;
        }
        Ok(())
    }

    fn goodbye(&mut self) {
        let sh = Arc::clone(&self.shared);
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let r = redis::pipe()
            .del(members_key(&sh.ns, &sh.node))
            .ignore()
            .del(alive_key(&sh.ns, &sh.node))
            .ignore()
            .srem(nodes_key(&sh.ns), &sh.node)
            .ignore()
            .query::<()>(conn);
        if let Err(e) = r {
            tracing::warn!(error = %e, "cluster presence: goodbye failed; other nodes will time this one out");
        }
    }
}

/// `(channel, user, info)` of one entry of a snapshot.
type SnapshotEntry<'a> = (&'a str, &'a str, &'a [u8]);

impl Shared {
    /// Makes the mirror's entries of `node` those of the snapshot.
    fn replace_node(&self, node: &str, entries: &[(String, Vec<u8>)]) {
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
