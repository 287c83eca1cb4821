//! The Hub: the client and channel tables, subscribe/unsubscribe, delivery,
//! presence and lifecycle.
//!
//! # Concurrency protocol
//!
//! - `clients` (`DashMap<u64, Client>`) and `channels`
//!   (`DashMap<Arc<str>, Arc<Channel>>`): shard locks are held only for a
//!   single insert, lookup or removal, never across user code, a fan-out or
//!   another lock, except `remove_if` on `channels` which runs under the
//!   channel's `state` mutex (order: `state` → shard).
//! - **Broadcast** (any thread): looks the channel up (a shard read lock held
//!   for one clone of an `Arc`), then walks its slots lock-free and enqueues
//!   to each member without blocking (`channel.rs`, `outbox.rs`). It takes
//!   no lock a subscribe can hold.
//! - **Subscribe / unsubscribe / leave** (any thread): lock the client's
//!   `subs`, then the channel's `state` (order: `subs` → `state`). Presence
//!   frames and `on_presence` hooks run under `state`, so each channel's
//!   joins and leaves are totally ordered and every member sees that order
//!   (R9). The authorizer runs before any lock is taken (R15).
//! - **Channel life**: created by the first subscriber (`entry`), destroyed
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

use std::collections::HashMap;
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::auth::{AuthRequest, Authorizer};
use crate::channel::{classify_channel, Channel, ChannelState, ChannelType};
use crate::client::{Client, ClientShared, Enqueued, SlowConsumerPolicy, Sub, Transport};
use crate::conn::{writer_loop, Conn, WriterTransport};
use crate::error::{Error, Result};
use crate::message::{Frame, IntoPayload};
use crate::mutants;
use crate::outbox::Outbox;
use crate::presence::{
    JsonPresenceEncoder, Member, PresenceEncoder, PresenceEvent, PresenceMode, RosterKey,
};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{lock, Arc, DashMap, Mutex};

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
    channels: DashMap<Arc<str>, Arc<Channel>>,
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

/// Options for a [`Hub`].
///
/// # Examples
///
/// ```
/// use realtime::{Hub, PresenceMode, SlowConsumerPolicy};
///
/// let hub = Hub::builder()
///     .client_buffer(256 * 1024)
///     .max_presence_members(100)
///     .slow_consumer_policy(SlowConsumerPolicy::DisconnectClient)
///     .presence_mode(PresenceMode::PerUser)
///     .build();
/// assert_eq!(hub.count(), 0);
/// ```
#[must_use]
pub struct HubBuilder {
    buffer: usize,
    frames: Option<usize>,
    max_presence: usize,
    max_subscriptions: usize,
    max_channels: usize,
    policy: SlowConsumerPolicy,
    authorizer: Option<Arc<dyn Authorizer>>,
    mode: PresenceMode,
    encoder: Arc<dyn PresenceEncoder>,
}

impl Default for HubBuilder {
    fn default() -> Self {
        Self {
            buffer: DEFAULT_CLIENT_BUFFER,
            frames: None,
            max_presence: usize::MAX,
            max_subscriptions: usize::MAX,
            max_channels: usize::MAX,
            policy: SlowConsumerPolicy::default(),
            authorizer: None,
            mode: PresenceMode::default(),
            encoder: Arc::new(JsonPresenceEncoder),
        }
    }
}

impl HubBuilder {
    /// The bound on each client's pending output, in bytes (R34; default
    /// [`DEFAULT_CLIENT_BUFFER`], 1 MiB): the wire length of the frames in
    /// its outbox plus what its transport holds unsent. Past it,
    /// `DropMessage` drops broadcast frames and `DisconnectClient`
    /// disconnects; replies and presence frames are never dropped, so past
    /// it they disconnect. An empty buffer always takes one frame, however
    /// large. Values above 512 GiB are clamped.
    ///
    /// # Panics
    ///
    /// If `bytes` is 0.
    pub fn client_buffer(mut self, bytes: usize) -> Self {
        assert!(bytes > 0, "client buffer must be at least 1 byte");
        self.buffer = bytes;
        self
    }

    /// An optional bound in frames on top of the byte bound (default: none,
    /// the byte bound alone decides). Small values are useful in tests to
    /// provoke the slow-consumer policy with few frames.
    ///
    /// # Panics
    ///
    /// If `frames` is 0.
    pub fn outbox(mut self, frames: usize) -> Self {
        assert!(frames > 0, "outbox capacity must be at least 1");
        self.frames = Some(frames);
        self
    }

    /// Most members of one presence channel (default: unbounded). A join
    /// that would add one more fails with [`Error::PresenceFull`] and
    /// changes nothing; in per-user mode another connection of a present
    /// user is not a new member and is accepted.
    pub fn max_presence_members(mut self, members: usize) -> Self {
        self.max_presence = members;
        self
    }

    /// Most channels the Hub holds at once (default: unbounded). A
    /// subscribe that would create one more fails with
    /// [`Error::TooManyChannels`]; joining an existing channel is always
    /// possible. Concurrent creators may pass it by one each.
    pub fn max_channels(mut self, channels: usize) -> Self {
        self.max_channels = channels;
        self
    }

    /// Most channels one client may be subscribed to (default: unbounded).
    /// A subscribe past it fails with [`Error::TooManySubscriptions`].
    pub fn max_subscriptions(mut self, channels: usize) -> Self {
        self.max_subscriptions = channels;
        self
    }

    /// What to do when an outbox is full (default `DropMessage`).
    pub fn slow_consumer_policy(mut self, policy: SlowConsumerPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Who may join private and presence channels. Without one, every such
    /// join is denied (R15).
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.authorizer = Some(Arc::new(authorizer));
        self
    }

    /// Per connection (default) or per user presence (R12).
    pub fn presence_mode(mut self, mode: PresenceMode) -> Self {
        self.mode = mode;
        self
    }

    /// The presence frames (default: [`JsonPresenceEncoder`]).
    pub fn presence_encoder(mut self, encoder: impl PresenceEncoder) -> Self {
        self.encoder = Arc::new(encoder);
        self
    }

    /// Builds the Hub.
    pub fn build(self) -> Hub {
        Hub(Arc::new(HubInner {
            clients: DashMap::new(),
            channels: DashMap::new(),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            buffer: self.buffer,
            frames: self.frames,
            max_presence: self.max_presence,
            max_subscriptions: self.max_subscriptions,
            max_channels: self.max_channels,
            channel_total: AtomicUsize::new(0),
            policy: self.policy,
            authorizer: self.authorizer,
            mode: self.mode,
            encoder: self.encoder,
            hooks: Mutex::new(Arc::new(Vec::new())),
            channel_hook: std::sync::OnceLock::new(),
            orphans: Mutex::new(Vec::new()),
        }))
    }
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
            subs: Mutex::new(HashMap::new()),
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
        if kind != ChannelType::Public && lock(&client.0.subs).contains_key(channel) {
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

    /// Sends a text frame to every subscriber of `channel` (R13). Unknown
    /// channels are a no-op.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close; [`Error::InvalidUtf8`].
    pub fn broadcast(&self, channel: &str, payload: impl IntoPayload) -> Result<()> {
        self.check_open()?;
        self.broadcast_frame(channel, Frame::text(payload)?, None)
    }

    /// Sends a binary frame to every subscriber of `channel`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close.
    pub fn broadcast_binary(&self, channel: &str, payload: impl IntoPayload) -> Result<()> {
        self.broadcast_frame(channel, Frame::binary(payload), None)
    }

    /// Sends a text frame to every subscriber of `channel` but `except`
    /// (Echo's `toOthers`).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close; [`Error::InvalidUtf8`].
    pub fn broadcast_except(
        &self,
        channel: &str,
        payload: impl IntoPayload,
        except: &Client,
    ) -> Result<()> {
        self.check_open()?;
        self.broadcast_frame(channel, Frame::text(payload)?, Some(except))
    }

    /// Sends a binary frame to every subscriber of `channel` but `except`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close.
    pub fn broadcast_binary_except(
        &self,
        channel: &str,
        payload: impl IntoPayload,
        except: &Client,
    ) -> Result<()> {
        self.broadcast_frame(channel, Frame::binary(payload), Some(except))
    }

    /// Sends a prepared frame to every subscriber of `channel`, but
    /// `except` if given. The frame is shared, never copied, per recipient.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close.
    pub fn broadcast_frame(
        &self,
        channel: &str,
        frame: Frame,
        except: Option<&Client>,
    ) -> Result<()> {
        self.check_open()?;
        let Some(ch) = self.0.channels.get(channel).map(|c| Arc::clone(c.value())) else {
            return Ok(());
        };
        let except = except.map(|c| &c.0);
        let mut shut = Vec::new();
        ch.slots.for_each_chunk(|chunk| {
            // Pass 1: a plain load of each member's hot line, no fence
            // between them, so up to 16 cache misses overlap instead of
            // waiting on each other behind the locked read-modify-writes
            // of pass 2.
            let mut open = [false; 16];
            for (slot, member) in open.iter_mut().zip(chunk) {
                *slot = member.as_ref().is_some_and(|m| m.outbox.warm());
            }
            // Pass 2: push.
            for (member, open) in chunk.iter().zip(open) {
                let Some(member) = member.as_ref().filter(|_| open) else {
                    continue;
                };
                if except.is_some_and(|e| Arc::ptr_eq(e, member)) {
                    continue;
                }
                if member.enqueue(frame.clone(), false) == Enqueued::Shut {
                    shut.push(Client(member.clone()));
                }
            }
        });
        self.0.cleanup_all(shut);
        Ok(())
    }

    /// Sends a text frame to one client by id (R13).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after close; [`Error::ClientNotFound`] for an
    /// unknown id; [`Error::InvalidUtf8`].
    pub fn send_to(&self, client_id: &str, payload: impl IntoPayload) -> Result<()> {
        self.check_open()?;
        self.send_frame_to(client_id, Frame::text(payload)?)
    }

    /// Sends a binary frame to one client by id.
    ///
    /// # Errors
    ///
    /// As [`Hub::send_to`].
    pub fn send_binary_to(&self, client_id: &str, payload: impl IntoPayload) -> Result<()> {
        self.send_frame_to(client_id, Frame::binary(payload))
    }

    /// Sends a prepared frame to one client by id.
    ///
    /// # Errors
    ///
    /// As [`Hub::send_to`].
    pub fn send_frame_to(&self, client_id: &str, frame: Frame) -> Result<()> {
        self.check_open()?;
        let client = self
            .client(client_id)
            .ok_or_else(|| Error::ClientNotFound(client_id.to_owned()))?;
        match client.send_frame(frame) {
            // Closed while we looked it up: it is gone.
            Err(Error::Closed) => Err(Error::ClientNotFound(client_id.to_owned())),
            other => other,
        }
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
            .get(channel)
            // Relaxed: a statistic, updated under the channel's state lock.
            .map_or(0, |c| c.count.load(Ordering::Relaxed))
    }

    /// Every occupied channel with its subscriber count, sorted by name.
    pub fn channels(&self) -> Vec<(String, usize)> {
        let mut out: Vec<_> = self
            .0
            .channels
            .iter()
            // Relaxed: a statistic.
            .map(|e| (e.key().to_string(), e.value().count.load(Ordering::Relaxed)))
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
        let Some(ch) = self.0.channels.get(channel).map(|c| Arc::clone(c.value())) else {
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

impl HubInner {
    /// Adds `client` to `channel` (authorization already done).
    fn join(
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
            if subs.contains_key(name) {
                return Ok(());
            }
            if subs.len() >= self.max_subscriptions {
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
                    let roster_frame = {
                        let roster = state
                            .roster
                            .as_ref()
                            .map(|r| r.members().collect::<Vec<_>>());
                        self.encoder.subscription_succeeded(
                            name,
                            roster.as_deref().unwrap_or(&[]),
                            member,
                        )
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
                        .is_some_and(|r| r.join(key.clone(), member));
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
                        let echo = self.encoder.newcomer_sees_own_join();
                        ch.slots.for_each(|m| {
                            if !echo && Arc::ptr_eq(m, &client.0) {
                                return;
                            }
                            if m.enqueue(frame.clone(), true) == Enqueued::Shut {
                                shut.push(Client(m.clone()));
                            }
                        });
                        self.fire(name, true, member, client.id());
                    }
                    presence = Some(Box::new((key, member.clone())));
                    subs.insert(
                        Arc::clone(&ch.name),
                        Sub {
                            channel: Arc::clone(&ch),
                            slot,
                            presence,
                        },
                    );
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
            subs.insert(
                Arc::clone(&ch.name),
                Sub {
                    channel: Arc::clone(&ch),
                    slot,
                    presence: presence.take(),
                },
            );
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
    fn leave(&self, client: &Client, sub: Sub, shut: &mut Vec<Client>) {
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
                    ch.slots.for_each(|m| {
                        if m.enqueue(frame.clone(), true) == Enqueued::Shut {
                            shut.push(Client(m.clone()));
                        }
                    });
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
                for (_, sub) in std::mem::take(&mut *subs) {
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

    fn close(&self) {
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

impl Drop for HubInner {
    fn drop(&mut self) {
        self.close();
    }
}
