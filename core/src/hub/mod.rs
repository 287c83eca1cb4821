//! The Hub: the client and channel tables, subscribe/unsubscribe, delivery,
//! presence and lifecycle.
//!
//! # Concurrency protocol
//!
//! - `clients` (`DashMap<u64, Client>`) and `channels` (`ChannelTable`,
//!   `table.rs`: shards of channels found by name): shard locks are held
//!   only for a single insert, lookup or removal, never across user code,
//!   a fan-out or another lock, except that a channel's removal
//!   (`remove_same`) and a new channel's insert run under the client's
//!   `subs` and, for the removal, the channel's `state` (order: `subs` →
//!   `state` → shard).
//! - **Broadcast** (any thread): looks the channel up (a shard read lock held
//!   for one clone of an `Arc`), then walks its slots lock-free and enqueues
//!   to each member without blocking (`channel.rs`, `outbox.rs`). It takes
//!   no lock a subscribe can hold.
//! - **Subscribe / unsubscribe / leave** (any thread): lock the client's
//!   `subs`, then the channel's `state` (order: `subs` → `state`). Presence
//!   frames and `on_presence` hooks run under `state`, so each channel's
//!   joins and leaves are totally ordered and every member sees that order
//!   (R9). The authorizer runs before any lock is taken (R15).
//! - **Channel life**: created by the first subscriber (`create`, with the
//!   subscriber already in it; a presence channel empty, then joined),
//!   destroyed
//!   by the last leaver, which marks it `dead` under `state` and removes it
//!   from the table; a subscriber that locks a dead channel retries with a
//!   fresh one, so a channel never vanishes under a member (R6).
//! - **Close**: two phases (`client.rs`); phase 2 runs here (`cleanup`) on
//!   whichever thread closed the client, after it released every channel lock.
//!   Overflows found during a fan-out are collected and cleaned up after the
//!   fan-out; a clean-up's leave fan-out can shut more clients, so clean-ups
//!   run from a work list, never recursively.
//! - **Hub close**: `closed` is set first; `add` inserts, then re-checks
//!   `closed`, so a client added concurrently is either seen by close's sweep
//!   or removes itself (R16).

use std::thread::JoinHandle;

use bytes::Bytes;

use crate::auth::{AuthRequest, Authorizer};
use crate::channel::{classify_channel, ChannelType};
use crate::client::{Client, ClientShared, SlowConsumerPolicy, Transport};
use crate::conn::{writer_loop, Conn, WriterTransport};
use crate::error::{Error, Result};
use crate::message::IntoPayload;
use crate::mutants;
use crate::outbox::Outbox;
use crate::presence::{Member, PresenceEncoder, PresenceEvent, PresenceMode};
use crate::subs::Subs;
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{lock, Arc, DashMap, Mutex};
use crate::table::ChannelTable;

mod builder;
mod delivery;
mod membership;

pub use builder::HubBuilder;

/// The default bound on a client's pending output, in bytes (R34): 1 MiB.
///
/// Why 1 MiB: the largest burst the gateway itself produces for one client
/// in one loop turn (1,000 subscription acknowledgements, a 100-member
/// roster, hundreds of presence frames after a restart) is a few hundred
/// KiB, so a client that reads is never near it; a client that stopped
/// reading costs at most this much before the policy applies, which keeps
/// 10,000 stalled clients under 10 GiB in the worst case. Pusher-compatible
/// servers buffer per socket in the same range.
pub const DEFAULT_CLIENT_BUFFER: usize = 1 << 20;

/// Close code recorded (see [`Client::close_reason`]) for clients closed by
/// [`Hub::close`]: WebSocket 1001, "going away".
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Close code recorded for clients disconnected on outbox overflow
/// (`DisconnectClient`, or a presence frame that did not fit): WebSocket
/// 1008, "policy violation", reason "slow consumer".
pub const CLOSE_SLOW_CONSUMER: u16 = 1008;

/// Stack size of a blocking client's writer thread: it only moves frames.
const WRITER_STACK: usize = 128 * 1024;

type Hook = Arc<dyn Fn(&PresenceEvent) + Send + Sync>;
type ChannelHook = Arc<dyn Fn(&ChannelEvent) + Send + Sync>;

/// A channel that got its first member or lost its last, as seen by
/// [`Hub::on_channel`] hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelEvent<'a> {
    /// The channel.
    pub channel: &'a str,
    /// `true` when the first member joined, `false` when the last left.
    pub occupied: bool,
}

pub(crate) struct HubInner {
    clients: DashMap<u64, Client>,
    channels: ChannelTable,
    closed: AtomicBool,
    next_id: AtomicU64,
    buffer: usize,
    frames: Option<usize>,
    max_presence: usize,
    max_subscriptions: usize,
    max_channels: usize,
    /// Channels in the table, counted only when `max_channels` is set.
    channel_total: AtomicUsize,
    policy: SlowConsumerPolicy,
    authorizer: Option<Arc<dyn Authorizer>>,
    mode: PresenceMode,
    encoder: Arc<dyn PresenceEncoder>,
    hooks: Mutex<Arc<Vec<Hook>>>,
    /// The [`Hub::on_channel`] hook, set at most once; read only when a
    /// channel's member count goes 0 → 1 or 1 → 0. Not part of the
    /// protocol loom models (set before use, read-only after), so `std`'s.
    channel_hook: std::sync::OnceLock<ChannelHook>,
    /// Writer threads that ended on their own, joined by `close`.
    orphans: Mutex<Vec<JoinHandle<()>>>,
}

/// The gateway for one application: clients, channels, presence, delivery.
///
/// `Hub` is a cheap handle; clones share one Hub. Dropping the last handle
/// closes it (R16).
///
/// # Examples
///
/// ```
/// use realtime::{pipe, Hub};
///
/// let hub = Hub::new();
/// let (conn, peer) = pipe();
/// let client = hub.add(conn, ()).unwrap();
///
/// hub.subscribe(&client, "orders").unwrap();
/// hub.broadcast("orders", r#"{"event":"created","id":42}"#).unwrap();
/// assert_eq!(peer.recv_text().unwrap(), r#"{"event":"created","id":42}"#);
///
/// hub.close();
/// assert!(hub.add(pipe().0, ()).is_err());
/// ```
#[derive(Clone)]
pub struct Hub(Arc<HubInner>);

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A Hub with the default options.
    pub fn new() -> Self {
        HubBuilder::default().build()
    }

    /// A builder for the options.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// Registers a blocking connection and starts its writer thread (R4).
    /// `auth` is handed to the authorizer on private and presence joins.
    /// Run [`Client::serve`] on a thread of yours for the inbound side.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`Hub::close`].
    pub fn add(&self, conn: impl Conn, auth: impl IntoPayload) -> Result<Client> {
        self.reap();
        let conn: Arc<dyn Conn> = Arc::new(conn);
        let transport = Arc::new(WriterTransport {
            conn: conn.clone(),
            thread: std::sync::OnceLock::new(),
        });
        let client = self.register(transport.clone(), auth.into_payload(), Some(conn.clone()))?;
        let writer_client = client.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("rt-writer-{}", client.number()))
            .stack_size(WRITER_STACK)
            .spawn(move || writer_loop(&writer_client, &*conn));
        match spawned {
            Ok(handle) => {
                let _ = transport.thread.set(handle.thread().clone());
                *lock(&client.0.writer) = Some(handle);
                // A frame may have been enqueued before the thread was known.
                transport.wake();
                Ok(client)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot spawn writer thread");
                client.close();
                Err(Error::Io(e))
            }
        }
    }

    /// Registers a client served by a non-blocking transport: no thread is
    /// started; the transport drains the outbox with [`Client::pop_frame`]
    /// and [`Client::finish_drain`] when [`Transport::wake`] is called.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`Hub::close`].
    pub fn attach(&self, transport: Arc<dyn Transport>, auth: impl IntoPayload) -> Result<Client> {
        self.register(transport, auth.into_payload(), None)
    }

    fn register(
        &self,
        transport: Arc<dyn Transport>,
        auth: Bytes,
        conn: Option<Arc<dyn Conn>>,
    ) -> Result<Client> {
        let hub = &self.0;
        if hub.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        // Relaxed: only uniqueness matters.
        let number = hub.next_id.fetch_add(1, Ordering::Relaxed);
        let client = Client(Arc::new(ClientShared {
            number,
            id: format!("client-{number}"),
            outbox: Outbox::new(hub.buffer, hub.frames),
            drops: AtomicU64::new(0),
            policy: hub.policy,
            auth,
            transport,
            subs: Mutex::new(Subs::new(hub.channels.hasher().clone())),
            hub: Arc::downgrade(&self.0),
            conn,
            writer: Mutex::new(None),
            reason: std::sync::OnceLock::new(),
        }));
        hub.clients.insert(number, client.clone());
        // SeqCst: pairs with `close`'s store; see the module doc.
        // Mutant `add_no_recheck` (`crate::mutants`): without this
        // re-check, a client inserted after close's sweep stays registered.
        if !mutants::add_no_recheck() && hub.closed.load(Ordering::SeqCst) {
            client.close();
            return Err(Error::Closed);
        }
        Ok(client)
    }

    /// Subscribes `client` to `channel` (R6, R15). Idempotent: subscribing
    /// again succeeds without asking the authorizer.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the Hub or the client is closed;
    /// [`Error::Unauthorized`] if a private or presence join is denied;
    /// [`Error::TooManySubscriptions`] and [`Error::PresenceFull`] past the
    /// limits set on the builder.
    pub fn subscribe(&self, client: &Client, channel: &str) -> Result<()> {
        self.subscribe_with(client, channel, ())
    }

    /// [`Hub::subscribe`] with per-join credentials, passed to the
    /// authorizer as [`AuthRequest::params`].
    ///
    /// # Errors
    ///
    /// As [`Hub::subscribe`].
    pub fn subscribe_with(
        &self,
        client: &Client,
        channel: &str,
        params: impl IntoPayload,
    ) -> Result<()> {
        let hub = &self.0;
        if hub.closed.load(Ordering::SeqCst) || client.is_closed() {
            return Err(Error::Closed);
        }
        let kind = classify_channel(channel);
        // A repeated private or presence subscribe must not ask the
        // authorizer again (R6); a public one needs no check here: `join`
        // re-checks under `subs` (one lock instead of two per subscribe).
        if kind != ChannelType::Public && lock(&client.0.subs).contains(channel) {
            return Ok(());
        }
        let member = match kind {
            ChannelType::Public => None,
            ChannelType::Private | ChannelType::Presence => {
                let Some(authorizer) = &hub.authorizer else {
                    return Err(Error::Unauthorized);
                };
                let result = authorizer.authorize(&AuthRequest {
                    channel: channel.to_owned(),
                    channel_type: kind,
                    client_id: client.id().to_owned(),
                    auth: client.0.auth.clone(),
                    params: params.into_payload(),
                });
                if !result.allowed {
                    return Err(Error::Unauthorized);
                }
                let mut member = result.member;
                if member.id.is_empty() {
                    member.id = client.id().to_owned();
                }
                Some(member)
            }
        };
        let mut shut = Vec::new();
        let result = hub.join(client, channel, member, &mut shut);
        hub.cleanup_all(shut);
        result
    }

    /// Unsubscribes `client` from `channel`; a no-op if it is not subscribed.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`Hub::close`].
    pub fn unsubscribe(&self, client: &Client, channel: &str) -> Result<()> {
        let hub = &self.0;
        if hub.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let mut shut = Vec::new();
        {
            let mut subs = lock(&client.0.subs);
            if let Some(sub) = subs.remove(channel) {
                hub.leave(client, sub, &mut shut);
            }
        }
        hub.cleanup_all(shut);
        Ok(())
    }

    /// The live client with this id.
    pub fn client(&self, client_id: &str) -> Option<Client> {
        let number: u64 = client_id.strip_prefix("client-")?.parse().ok()?;
        self.0.clients.get(&number).map(|c| c.value().clone())
    }

    /// Live clients (R8).
    pub fn count(&self) -> usize {
        self.0.clients.len()
    }

    /// Subscribers of `channel`; 0 for unknown channels (R8).
    pub fn channel_count(&self, channel: &str) -> usize {
        self.0
            .channels
            .find(channel)
            // Relaxed: a statistic, updated under the channel's state lock.
            .map_or(0, |c| c.count.load(Ordering::Relaxed))
    }

    /// Every occupied channel with its subscriber count, sorted by name.
    pub fn channels(&self) -> Vec<(String, usize)> {
        let mut out: Vec<_> = self
            .0
            .channels
            .snapshot()
            .into_iter()
            // Relaxed: a statistic.
            .map(|c| (c.name.to_string(), c.count.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        out.sort();
        out
    }

    /// Channels the Hub's table holds: what [`HubBuilder::max_channels`]
    /// bounds. A channel leaves the table with its last member, so between
    /// calls this equals `channels().len()`; a subscribe or unsubscribe in
    /// progress may briefly hold one that is not occupied. A number that
    /// stays above `channels().len()` is a leaked, empty channel.
    pub fn channel_table_len(&self) -> usize {
        self.0.channels.len()
    }

    /// A copy of a presence channel's roster in join order; empty for
    /// unknown or non-presence channels (R11).
    pub fn presence(&self, channel: &str) -> Vec<Member> {
        let Some(ch) = self.0.channels.find(channel) else {
            return Vec::new();
        };
        let state = lock(&ch.state);
        state
            .roster
            .as_ref()
            .map(|r| r.members().cloned().collect())
            .unwrap_or_default()
    }

    /// Registers a hook run synchronously for every presence join and leave,
    /// in each channel's order, under that channel's lock: it must not block
    /// or call back into the Hub (R11). On [`Hub::close`] it sees a leave for
    /// every member. In per-user mode it fires for a user's first join and
    /// last leave.
    pub fn on_presence(&self, hook: impl Fn(&PresenceEvent) + Send + Sync + 'static) {
        let mut hooks = lock(&self.0.hooks);
        let mut next: Vec<Hook> = hooks.as_ref().clone();
        next.push(Arc::new(hook));
        *hooks = Arc::new(next);
    }

    /// Sets the hook run when a channel gets its first member
    /// (`occupied: true`) or loses its last (`occupied: false`). It runs
    /// synchronously under that channel's lock, so a channel's events
    /// alternate and arrive in order; it must not block or call back into
    /// the Hub. On a presence channel it fires before the first
    /// `on_presence` join and after the last leave. [`Hub::close`] fires it
    /// for every channel that was occupied. Broadcasts never run it.
    ///
    /// There is one such hook per Hub (the subscribe path pays one check
    /// for it, nothing more): the first call sets it and returns `true`; a
    /// later call drops its hook and returns `false`.
    pub fn on_channel(&self, hook: impl Fn(&ChannelEvent<'_>) + Send + Sync + 'static) -> bool {
        self.0.channel_hook.set(Arc::new(hook)).is_ok()
    }

    /// The presence mode.
    pub fn presence_mode(&self) -> PresenceMode {
        self.0.mode
    }

    /// Whether [`Hub::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::SeqCst)
    }

    /// Closes every client and rejects later operations with
    /// [`Error::Closed`]; joins the writer threads. Idempotent, safe from
    /// any thread (R16).
    pub fn close(&self) {
        self.0.close();
    }

    fn check_open(&self) -> Result<()> {
        if self.0.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Joins writer threads that already ended.
    fn reap(&self) {
        let mut orphans = lock(&self.0.orphans);
        if orphans.len() < 32 {
            return;
        }
        let (done, alive): (Vec<_>, Vec<_>) = orphans.drain(..).partition(|h| h.is_finished());
        *orphans = alive;
        drop(orphans);
        for h in done {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("clients", &self.count())
            .field("channels", &self.channel_table_len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for HubInner {
    fn drop(&mut self) {
        self.close();
    }
}
