//! Cluster mode (`--redis`): which node queues `channel_occupied`,
//! `channel_vacated`, `member_added` and `member_removed`, so that each is
//! sent once for the whole cluster.
//!
//! # The decision
//!
//! Every node's Hub reports its own transitions (a channel's first local
//! member in, last local member out; a user's first local connection in a
//! presence channel, last out). The Hub hooks (under the channel's lock)
//! only queue a job; one thread per node (`webhooks-cluster`) owns a Redis
//! connection and runs, per job, one Lua script over a set of node ids:
//!
//! - `{ns}:webhooks:ch:{app}\n{channel}`: the nodes where the channel is
//!   occupied; `{ns}:webhooks:member:{app}\n{channel}\n{user}`: the nodes
//!   where the user is present.
//! - A join `SADD`s this node; the event is queued (by this node) only if
//!   the set went from empty to one node. A leave `SREM`s it; the event is
//!   queued only if the set went from one node to empty. Redis runs
//!   scripts one at a time, so of two nodes racing, exactly one sees each
//!   edge, and the edges of one key alternate: occupied, vacated,
//!   occupied…
//! - Each node also keeps the index of its keys,
//!   `{ns}:webhooks:node:{id}`, and is listed in `{ns}:webhooks:nodes`
//!   from its first Redis connection on (a node with no channel may still
//!   hold batches).
//!
//! # A node that dies
//!
//! Each decider thread checks, every second, the `alive` key that the
//! cluster presence heartbeats for every node (`cluster/`). A node listed
//! in `{ns}:webhooks:nodes` whose `alive` key is missing on two checks in a
//! row (a node that has just started has not written its key yet) is
//! pruned by one script: remove the node from every set of its index,
//! return the sets that became empty, delete the index, delist the node,
//! and move its webhook processing list back to the queue (`queue.rs`).
//! Every node may run it; the first one gets the events and queues them
//! (`member_removed` before `channel_vacated`), a later run finds nothing:
//! once. Bound: the node TTL plus about two seconds.
//!
//! # Gaps
//!
//! - Redis unreachable: decisions cannot be made; those events are
//!   dropped, counted (`reason="redis_unavailable"`) and logged.
//! - A Redis that restarts loses the sets: channels occupied across the
//!   restart get no `channel_vacated` (a leave finds no set), and their
//!   next join sends `channel_occupied` again.
//! - A node taken for dead (paused past its TTL) that comes back: its
//!   channels and members were released; its next leaves send nothing,
//!   its next joins send the `occupied`/`added` again.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::queue::{processing_key, queue_key, RedisQueue};
use super::WebhookEvent;
use crate::app::{App, Apps};
use crate::metrics::{self, Metrics};
use crate::redis_conn;

/// Join or leave on one key: the node's membership of the key's set.
const EDGE: &str = r"
if ARGV[2] == '1' then
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('SADD', KEYS[2], KEYS[1])
  if redis.call('SADD', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 1 then
    return 1
  end
  return 0
end
redis.call('SREM', KEYS[2], KEYS[1])
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 0 then
  return 1
end
return 0
";

/// Releases everything of a dead node; returns the keys now empty.
const PRUNE: &str = r"
local gone = {}
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('SREM', k, ARGV[1]) == 1 and redis.call('SCARD', k) == 0 then
    table.insert(gone, k)
  end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
while redis.call('LMOVE', KEYS[3], KEYS[4], 'RIGHT', 'LEFT') do end
return gone
";

enum Job {
    Edge {
        app: String,
        /// `channel` or `channel\nuser`.
        what: String,
        member: bool,
        joined: bool,
    },
    Stop,
}

/// The cluster decision of a node's webhooks; see the module docs.
pub(crate) struct Decider {
    redis: RedisQueue,
    tx: Sender<Job>,
    metrics: Arc<Metrics>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Decider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decider")
    }
}

impl Decider {
    /// Starts the decision thread of node `node` over Redis at `url`.
    ///
    /// # Errors
    ///
    /// A URL the `redis` crate refuses; a thread that cannot start.
    pub(crate) fn start(
        url: &str,
        ns: &str,
        node: &str,
        apps: &Apps,
        metrics: &Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let client = redis::Client::open(url).map_err(std::io::Error::other)?;
        let redis = RedisQueue {
            client,
            ns: ns.to_owned(),
            node: node.to_owned(),
        };
        let (tx, rx) = crossbeam_channel::unbounded();
        let apps_by_id: HashMap<String, Weak<App>> = apps
            .all()
            .iter()
            .map(|a| (a.id().to_owned(), Arc::downgrade(a)))
            .collect();
        let mut worker = Worker {
            redis: redis.clone(),
            conn: None,
            apps: apps_by_id,
            metrics: Arc::clone(metrics),
            suspects: BTreeSet::new(),
        };
        let thread = std::thread::Builder::new()
            .name("webhooks-cluster".into())
            .spawn(move || {
                let _ = worker.conn(); // lists this node at once
                worker.run(&rx);
            })?;
        Ok(Self {
            redis,
            tx,
            metrics: Arc::clone(metrics),
            thread: Some(thread),
        })
    }

    /// Where the queue lives.
    pub(crate) fn redis(&self) -> &RedisQueue {
        &self.redis
    }

    /// Connects `app`'s Hub hooks to the decision.
    pub(crate) fn install(&self, app: &Arc<App>) {
        let id = app.id().to_owned();
        let tx = self.tx.clone();
        let metrics = Arc::clone(&self.metrics);
        app.hub().on_channel(move |e| {
            let job = Job::Edge {
                app: id.clone(),
                what: e.channel.to_owned(),
                member: false,
                joined: e.occupied,
            };
            if tx.send(job).is_err() {
                metrics::inc(&metrics.webhooks_dropped, "reason", "shutdown");
            }
        });
        let id = app.id().to_owned();
        let tx = self.tx.clone();
        let metrics = Arc::clone(&self.metrics);
        app.hub().on_presence(move |e| {
            let job = Job::Edge {
                app: id.clone(),
                what: format!("{}\n{}", e.channel, e.member.id),
                member: true,
                joined: e.joined,
            };
            if tx.send(job).is_err() {
                metrics::inc(&metrics.webhooks_dropped, "reason", "shutdown");
            }
        });
    }

    /// Runs the decisions still queued (close the Hubs first: their leaves
    /// are among them) and stops the thread.
    pub(crate) fn close(&mut self) {
        let _ = self.tx.send(Job::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Decider {
    fn drop(&mut self) {
        self.close();
    }
}

fn channel_key(ns: &str, app: &str, channel: &str) -> String {
    format!("{ns}:webhooks:ch:{app}\n{channel}")
}

fn member_key(ns: &str, app: &str, channel_user: &str) -> String {
    format!("{ns}:webhooks:member:{app}\n{channel_user}")
}

fn index_key(ns: &str, node: &str) -> String {
    format!("{ns}:webhooks:node:{node}")
}

fn nodes_key(ns: &str) -> String {
    format!("{ns}:webhooks:nodes")
}

/// The event a key's edge means: `(app, event)`.
fn event_of(ns: &str, key: &str, joined: bool) -> Option<(String, WebhookEvent)> {
    if let Some(rest) = key.strip_prefix(&format!("{ns}:webhooks:ch:")) {
        let (app, channel) = rest.split_once('\n')?;
        return Some((app.to_owned(), WebhookEvent::occupancy(channel, joined)));
    }
    let rest = key.strip_prefix(&format!("{ns}:webhooks:member:"))?;
    let (app, rest) = rest.split_once('\n')?;
    let (channel, user) = rest.split_once('\n')?;
    Some((
        app.to_owned(),
        WebhookEvent::membership(channel, user, joined),
    ))
}

struct Worker {
    redis: RedisQueue,
    conn: Option<redis::Connection>,
    apps: HashMap<String, Weak<App>>,
    metrics: Arc<Metrics>,
    /// Nodes whose `alive` key was missing at the last check.
    suspects: BTreeSet<String>,
}

/// How often dead nodes are looked for.
const CHECK: Duration = Duration::from_secs(1);

impl Worker {
    fn run(mut self, rx: &Receiver<Job>) {
        let mut next_check = Instant::now() + CHECK;
        loop {
            match rx.recv_timeout(next_check.saturating_duration_since(Instant::now())) {
                Ok(Job::Edge {
                    app,
                    what,
                    member,
                    joined,
                }) => self.edge(&app, &what, member, joined),
                Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    while let Ok(Job::Edge {
                        app,
                        what,
                        member,
                        joined,
                    }) = rx.try_recv()
                    {
                        self.edge(&app, &what, member, joined);
                    }
                    self.goodbye();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.check() {
                        tracing::warn!(error = %e, "webhooks: dead-node check failed");
                        self.conn = None;
                    }
                    next_check = Instant::now() + CHECK;
                }
            }
        }
    }

    fn conn(&mut self) -> Option<&mut redis::Connection> {
        if self.conn.is_none() {
            let timeout = Duration::from_secs(1);
            match redis_conn::open(&self.redis.client, timeout) {
                Ok(mut c) => {
                    // Listed from the first connection on (not the first
                    // join): a node that never had a channel may still
                    // hold batches in its processing list.
                    let listed = redis::cmd("SADD")
                        .arg(nodes_key(&self.redis.ns))
                        .arg(&self.redis.node)
                        .query::<i64>(&mut c);
                    if let Err(e) = listed {
                        tracing::warn!(error = %e, "webhooks: cannot list this node in redis");
                        return None;
                    }
                    self.conn = Some(c);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: cannot reach redis for cluster decisions");
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    fn queue(&self, app: &str, event: WebhookEvent) {
        if let Some(app) = self.apps.get(app).and_then(Weak::upgrade) {
            app.webhooks().push(event);
        }
    }

    fn edge(&mut self, app: &str, what: &str, member: bool, joined: bool) {
        let ns = self.redis.ns.clone();
        let node = self.redis.node.clone();
        let key = if member {
            member_key(&ns, app, what)
        } else {
            channel_key(&ns, app, what)
        };
        let decided = self.conn().map(|c| {
            redis::cmd("EVAL")
                .arg(EDGE)
                .arg(3)
                .arg(&key)
                .arg(index_key(&ns, &node))
                .arg(nodes_key(&ns))
                .arg(&node)
                .arg(if joined { "1" } else { "0" })
                .query::<i64>(c)
        });
        match decided {
            Some(Ok(1)) => {
                if let Some((app, event)) = event_of(&ns, &key, joined) {
                    self.queue(&app, event);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                self.conn = None;
                self.lost(app, &e.to_string());
            }
            None => self.lost(app, "unreachable"),
        }
    }

    fn lost(&self, app: &str, error: &str) {
        metrics::inc(
            &self.metrics.webhooks_dropped,
            "reason",
            "redis_unavailable",
        );
        tracing::warn!(
            app,
            error,
            "webhooks: no cluster decision (redis): event dropped"
        );
    }

    /// Prunes nodes whose `alive` key is gone (twice in a row).
    fn check(&mut self) -> redis::RedisResult<()> {
        if self.conn().is_none() {
            return Ok(());
        }
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let r = self.check_on(&mut conn);
        self.conn = Some(conn);
        r
    }

    fn check_on(&mut self, conn: &mut redis::Connection) -> redis::RedisResult<()> {
        let ns = self.redis.ns.clone();
        let me = self.redis.node.clone();
        let mut nodes: BTreeSet<String> = redis::cmd("SMEMBERS").arg(nodes_key(&ns)).query(conn)?;
        nodes.remove(&me);
        if nodes.is_empty() {
            self.suspects.clear();
            return Ok(());
        }
        let nodes: Vec<String> = nodes.into_iter().collect();
        let keys: Vec<String> = nodes
            .iter()
            .map(|n| crate::cluster::alive_key(&ns, n))
            .collect();
        let alive: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(conn)?;
        let missing: BTreeSet<String> = nodes
            .into_iter()
            .zip(alive)
            .filter(|(_, a)| a.is_none())
            .map(|(n, _)| n)
            .collect();
        let dead: Vec<String> = missing.intersection(&self.suspects).cloned().collect();
        self.suspects = missing;
        for node in dead {
            let gone: Vec<String> = redis::cmd("EVAL")
                .arg(PRUNE)
                .arg(4)
                .arg(index_key(&ns, &node))
                .arg(nodes_key(&ns))
                .arg(processing_key(&ns, &node))
                .arg(queue_key(&ns))
                .arg(&node)
                .query(conn)?;
            self.suspects.remove(&node);
            let mut events: Vec<(String, WebhookEvent)> = gone
                .iter()
                .filter_map(|k| event_of(&ns, k, false))
                .collect();
            // member_removed before channel_vacated.
            events.sort_by_key(|(_, e)| matches!(e, WebhookEvent::ChannelVacated { .. }));
            tracing::warn!(
                node,
                events = events.len(),
                "webhooks: dead node released (its members removed, its channels vacated where it was the last)"
            );
            for (app, event) in events {
                self.queue(&app, event);
            }
        }
        Ok(())
    }

    fn goodbye(&mut self) {
        let ns = self.redis.ns.clone();
        let me = self.redis.node.clone();
        if let Some(c) = self.conn() {
            let _ = redis::cmd("SREM")
                .arg(nodes_key(&ns))
                .arg(&me)
                .query::<i64>(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_back_to_their_events() {
        let k = channel_key("ns", "1", "presence-x");
        assert_eq!(
            event_of("ns", &k, true),
            Some(("1".into(), WebhookEvent::occupancy("presence-x", true)))
        );
        let k = member_key("ns", "1", "presence-x\nodd\nuser");
        assert_eq!(
            event_of("ns", &k, false),
            Some((
                "1".into(),
                WebhookEvent::membership("presence-x", "odd\nuser", false)
            ))
        );
    }
}
