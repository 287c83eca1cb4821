//! The cluster worker: the one thread that owns this node's Redis
//! connection. It writes this node's presence entries, publishes its joins
//! and leaves, heartbeats, registers (again) after a failure or a Redis
//! restart, reads the other nodes' entries and prunes dead nodes (the
//! protocol is in the parent module's docs).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{alive_key, field, members_key, nodes_key, Job, Shared};
use crate::redis_conn;

/// The worker: owns the Redis connection.
pub(super) struct Worker {
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
    pub(super) fn new(shared: Arc<Shared>) -> Self {
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

    pub(super) fn run(mut self, jobs: &Receiver<Job>) {
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
            let opened = redis_conn::open(&self.shared.client, timeout);
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
