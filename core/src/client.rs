//! Clients: a registered connection, its outbox, its subscriptions, and its
//! two-phase close.
//!
//! # Ownership
//!
//! A [`Client`] is a cheap handle (`Arc<ClientShared>`). The Hub's client
//! table, every channel slot the client occupies and its transport hold
//! handles; the client holds only a `Weak` back to the Hub, so dropping the
//! last `Hub` handle shuts the Hub down even while clients are alive.
//!
//! # Close, in two phases
//!
//! 1. **Shut** (`shut`): `closed` flips false→true exactly once (a swap);
//!    the winner tells the transport (`Transport::closed`), which stops
//!    draining and closes the socket. From then on every enqueue is refused.
//!    Shutting takes no lock, so it is safe anywhere, even while the Hub
//!    holds a channel's lock during a presence fan-out.
//! 2. **Clean up** (`Hub::cleanup`): under the client's `subs` lock the
//!    subscription table is taken whole, then the client leaves each channel
//!    (presence leave events included) and the Hub's client table.
//!
//! A subscribe checks `closed` while holding `subs`, and shut happens
//! before clean-up takes `subs`; so a subscribe either completes before the
//! clean-up (which then removes it) or sees `closed` and fails: no ghost
//! subscriber, even when a subscribe races a close (R7).

use std::thread::JoinHandle;

use bytes::Bytes;

use crate::channel::Channel;
use crate::conn::Conn;
use crate::error::{Error, Result};
use crate::hub::HubInner;
use crate::message::{Frame, IntoPayload, MessageType};
use crate::mutants;
use crate::outbox::{Outbox, Pushed};
use crate::presence::{Member, RosterKey};
use crate::subs::Subs;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{lock, Arc, Mutex, Weak};

/// What the Hub does when a client's outbox is full (R14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Discard the frame and count it in [`Client::drops`]; the connection
    /// lives. The default.
    #[default]
    DropMessage,
    /// Close the client on its first overflow.
    DisconnectClient,
}

/// The transport side of a client: how the Hub tells whoever drains the
/// outbox that there is work, or that the client is gone.
///
/// Both methods are called from arbitrary threads, possibly while the Hub
/// holds a channel lock: they must not block and must not call back into the
/// Hub. A typical implementation pushes a token on a queue and wakes an event
/// loop.
pub trait Transport: Send + Sync + 'static {
    /// The outbox went from drained to non-empty. Not called again until the
    /// drainer calls [`Client::finish_drain`] (R30: one wake per batch).
    fn wake(&self);
    /// The client was closed (by the application, the Hub, an overflow or a
    /// write error). Called exactly once.
    fn closed(&self);
}

/// One subscription, as the client records it.
pub(crate) struct Sub {
    pub(crate) channel: Arc<Channel>,
    pub(crate) slot: usize,
    /// For presence channels: the roster key and the member it joined as.
    /// Boxed: most subscriptions are not presence ones, and the inline
    /// pair would make every entry of every client's table ~90 bytes
    /// larger (measured: ~350 B per idle subscribed connection).
    pub(crate) presence: Option<Box<(RosterKey, Member)>>,
}

pub(crate) struct ClientShared {
    pub(crate) number: u64,
    pub(crate) id: String,
    /// The outbox, with the `closed` flag on its hot line.
    pub(crate) outbox: Outbox,
    pub(crate) drops: AtomicU64,
    pub(crate) policy: SlowConsumerPolicy,
    pub(crate) auth: Bytes,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) subs: Mutex<Subs>,
    pub(crate) hub: Weak<HubInner>,
    /// The blocking connection, for clients added with `Hub::add`.
    pub(crate) conn: Option<Arc<dyn Conn>>,
    /// The writer thread, for clients added with `Hub::add`.
    pub(crate) writer: Mutex<Option<JoinHandle<()>>>,
    /// Close code and reason for the transport, set by `close_with`.
    pub(crate) reason: std::sync::OnceLock<(u16, String)>,
}

/// The outcome of enqueueing to one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    Queued,
    /// Dropped under `DropMessage`.
    Dropped,
    /// The client was shut by this overflow; the caller must clean it up
    /// once it holds no channel lock.
    Shut,
    /// The client was already closed.
    Closed,
}

impl ClientShared {
    /// Enqueues without blocking (R14, R34). `force` marks frames that are
    /// never dropped: presence frames (whose loss would corrupt the
    /// client's roster) and replies to the client's own requests. Over the
    /// byte bound they disconnect the client whatever the policy; other
    /// frames are dropped or disconnect per the policy, and only over the
    /// bound.
    pub(crate) fn enqueue(&self, frame: Frame, force: bool) -> Enqueued {
        // Relaxed: a stale `false` only lets a frame into the outbox of a
        // client that is closing; drainers check `closed` before writing.
        if self.outbox.closed.load(Ordering::Relaxed) {
            return Enqueued::Closed;
        }
        match self.outbox.push(frame) {
            Ok(Pushed::Wake) => {
                self.transport.wake();
                Enqueued::Queued
            }
            Ok(Pushed::Queued) => Enqueued::Queued,
            Err(_frame) => {
                if !force && self.policy == SlowConsumerPolicy::DropMessage {
                    if mutants::lost_drop() {
                        // Mutant (`crate::mutants`): a load and a store
                        // instead of one RMW; concurrent drops are lost.
                        self.drops
                            .store(self.drops.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    } else {
                        // Relaxed: a statistic, read on its own.
                        self.drops.fetch_add(1, Ordering::Relaxed);
                    }
                    return Enqueued::Dropped;
                }
                tracing::info!(
                    client = %self.id,
                    force,
                    pending_bytes = self.outbox.pending_bytes(),
                    limit = self.outbox.limit_bytes(),
                    "client buffer exceeded: disconnecting slow consumer"
                );
                let _ = self
                    .reason
                    .set((crate::hub::CLOSE_SLOW_CONSUMER, "slow consumer".to_owned()));
                if self.shut() {
                    Enqueued::Shut
                } else {
                    Enqueued::Closed
                }
            }
        }
    }

    /// Phase 1 of close; true for the one caller that performed it.
    pub(crate) fn shut(&self) -> bool {
        if mutants::double_close() {
            // Mutant (`crate::mutants`): check, then set, without the swap;
            // two racing closers both win and close the transport twice.
            if self.outbox.closed.load(Ordering::SeqCst) {
                return false;
            }
            self.outbox.closed.store(true, Ordering::SeqCst);
        } else if self.outbox.closed.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.transport.closed();
        true
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.outbox.closed.load(Ordering::SeqCst)
    }
}

/// A connection registered on a Hub (R3): a Hub-assigned id, a bounded
/// outbox, a drop counter and an idempotent, thread-safe close.
///
/// `Client` is a handle: clones refer to the same client.
///
/// # Examples
///
/// ```
/// use realtime::{pipe, Hub};
///
/// let hub = Hub::new();
/// let (server_end, peer) = pipe();
/// let client = hub.add(server_end, ()).unwrap();
/// assert_eq!(client.id(), "client-1");
///
/// hub.subscribe(&client, "orders").unwrap();
/// hub.broadcast("orders", r#"{"id":42}"#).unwrap();
/// assert_eq!(peer.recv_text().unwrap(), r#"{"id":42}"#);
///
/// client.close();
/// assert_eq!(hub.count(), 0);
/// ```
#[derive(Clone)]
pub struct Client(pub(crate) Arc<ClientShared>);

impl Client {
    /// The Hub-assigned id, `client-N` with N counting from 1 per Hub.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The numeric part of the id.
    pub fn number(&self) -> u64 {
        self.0.number
    }

    /// Frames dropped by the `DropMessage` policy.
    pub fn drops(&self) -> u64 {
        // Relaxed: a statistic.
        self.0.drops.load(Ordering::Relaxed)
    }

    /// The opaque credentials given when the client was added.
    pub fn auth(&self) -> &Bytes {
        &self.0.auth
    }

    /// Whether the client is closed.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Frames waiting in the outbox.
    pub fn pending(&self) -> usize {
        self.0.outbox.len()
    }

    /// Bytes owed to the socket (R34): the wire length of the frames in the
    /// outbox plus what the transport reported holding unsent
    /// ([`Client::set_unsent`]).
    pub fn pending_bytes(&self) -> usize {
        self.0.outbox.pending_bytes()
    }

    /// The bound on [`Client::pending_bytes`] past which the slow-consumer
    /// policy applies (see [`crate::HubBuilder::client_buffer`]).
    pub fn buffer_limit(&self) -> usize {
        self.0.outbox.limit_bytes()
    }

    /// The optional bound in frames (see [`crate::HubBuilder::outbox`]).
    pub fn frame_limit(&self) -> Option<usize> {
        self.0.outbox.limit_frames()
    }

    /// Channels this client is subscribed to, counted without copying.
    pub fn subscription_count(&self) -> usize {
        lock(&self.0.subs).len()
    }

    /// Whether this client is subscribed to `channel`: `None` if not,
    /// `Some(None)` for a channel without presence, `Some(Some(id))` for a
    /// presence channel, `id` being the member it joined as (the user id in
    /// [`crate::PresenceMode::PerUser`]). What a protocol layer needs to
    /// check a client event's sender without a table of its own.
    pub fn subscription(&self, channel: &str) -> Option<Option<String>> {
        lock(&self.0.subs)
            .get(channel)
            .map(|sub| sub.presence.as_ref().map(|p| p.1.id.clone()))
    }

    /// The channels this client is subscribed to.
    pub fn channels(&self) -> Vec<String> {
        lock(&self.0.subs).names().map(str::to_owned).collect()
    }

    /// Closes the client: closes its transport, removes it from every
    /// channel (firing presence leaves) and from the Hub, and, for clients
    /// added with [`crate::Hub::add`], waits for the writer thread to stop,
    /// so nothing is written after `close` returns. Idempotent and safe from
    /// any thread (R16).
    pub fn close(&self) {
        self.0.shut();
        if let Some(hub) = self.0.hub.upgrade() {
            hub.cleanup(self);
        }
        self.join_writer();
    }

    /// Closes the client like [`Client::close`], asking the transport to
    /// send this close code and reason (a WebSocket close frame). The first
    /// reason given wins.
    pub fn close_with(&self, code: u16, reason: &str) {
        let _ = self.0.reason.set((code, reason.to_owned()));
        self.close();
    }

    /// The close code and reason given to [`Client::close_with`], if any;
    /// transports read it when [`Transport::closed`] is called.
    pub fn close_reason(&self) -> Option<(u16, &str)> {
        self.0.reason.get().map(|(c, r)| (*c, r.as_str()))
    }

    /// Joins the writer thread unless called from it.
    pub(crate) fn join_writer(&self) {
        let handle = lock(&self.0.writer).take();
        if let Some(handle) = handle {
            if handle.thread().id() == std::thread::current().id() {
                // The writer is closing itself: it exits right after this;
                // the Hub reaps it.
                if let Some(hub) = self.0.hub.upgrade() {
                    hub.reap_later(handle);
                }
            } else if handle.join().is_err() {
                tracing::error!(client = %self.0.id, "writer thread panicked");
            }
        }
    }

    /// Enqueues a text frame to this client alone, under the Hub's
    /// slow-consumer policy.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the client is closed; [`Error::InvalidUtf8`].
    pub fn send_text(&self, payload: impl IntoPayload) -> Result<()> {
        self.send_frame(Frame::text(payload)?)
    }

    /// Enqueues a binary frame to this client alone.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the client is closed.
    pub fn send_binary(&self, payload: impl IntoPayload) -> Result<()> {
        self.send_frame(Frame::binary(payload))
    }

    /// Enqueues a prepared frame to this client alone.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the client is closed (before or by this overflow).
    pub fn send_frame(&self, frame: Frame) -> Result<()> {
        self.send(frame, false)
    }

    /// Enqueues one frame to this client and cleans up after an overflow
    /// that shut it.
    fn send(&self, frame: Frame, force: bool) -> Result<()> {
        match self.0.enqueue(frame, force) {
            Enqueued::Queued | Enqueued::Dropped => Ok(()),
            Enqueued::Shut => {
                self.close_deferred();
                Err(Error::Closed)
            }
            Enqueued::Closed => Err(Error::Closed),
        }
    }

    /// Enqueues a reply to this client's own request (a subscription
    /// acknowledgement, an error, a pong): never dropped, whatever the
    /// policy (R34). If the client's pending output is past its byte bound
    /// (it floods requests and does not read) the client is disconnected
    /// (1008) instead.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the client is closed (before or by this reply).
    pub fn send_reply(&self, frame: Frame) -> Result<()> {
        // A reply is never dropped. (Mutant `reply_dropped`, in
        // `crate::mutants`: it obeys `DropMessage` like a broadcast.)
        let force = !mutants::reply_dropped();
        self.send(frame, force)
    }

    /// For transports: the bytes this transport holds for the client that
    /// the socket has not accepted yet (0 once it caught up). They count
    /// toward the client's byte bound with what is queued (R34). Call it
    /// from the drainer only.
    pub fn set_unsent(&self, bytes: usize) {
        self.0.outbox.set_unsent(bytes);
    }

    /// Clean-up after an overflow shut this client.
    pub(crate) fn close_deferred(&self) {
        if let Some(hub) = self.0.hub.upgrade() {
            hub.cleanup(self);
        }
    }

    /// For transports: takes the next queued frame, if any. Returns `None`
    /// once the client is closed.
    pub fn pop_frame(&self) -> Option<Frame> {
        // Mutant `deliver_after_close` (`crate::mutants`): without this
        // check, a frame queued before a close is delivered after it.
        if !mutants::deliver_after_close() && self.0.is_closed() {
            return None;
        }
        self.0.outbox.pop()
    }

    /// For transports: re-arms the wake-up after draining the outbox (see the
    /// protocol in the crate docs of `outbox`). Returns `true` when frames
    /// arrived meanwhile: the caller must drain again, no wake will come.
    /// Call it only after `pop_frame` returned `None`; while frames remain
    /// (the socket is full), keep the client scheduled and resume on
    /// writable readiness instead.
    pub fn finish_drain(&self) -> bool {
        self.0.outbox.rearm()
    }

    /// Runs the blocking read loop of a client added with
    /// [`crate::Hub::add`]: every inbound message goes to `on_message` on
    /// this thread. Returns when the peer closes or the read fails, and
    /// always closes the client on return.
    ///
    /// # Errors
    ///
    /// [`Error::NotServable`] for clients attached by a non-blocking
    /// transport; [`Error::Io`] when the read failed other than by a clean
    /// end of stream.
    pub fn serve(&self, mut on_message: impl FnMut(&Client, MessageType, Bytes)) -> Result<()> {
        let Some(conn) = self.0.conn.clone() else {
            return Err(Error::NotServable);
        };
        let result = loop {
            match conn.read_message() {
                Ok((kind, data)) => on_message(self, kind, data),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
                Err(e) if self.is_closed() => {
                    tracing::trace!(client = %self.0.id, error = %e, "read ended by close");
                    break Ok(());
                }
                Err(e) => break Err(Error::Io(e)),
            }
        };
        self.close();
        result
    }
}

impl PartialEq for Client {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Client {}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.0.id)
            .field("closed", &self.is_closed())
            .field("drops", &self.drops())
            .finish()
    }
}
