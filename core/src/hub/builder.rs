//! [`HubBuilder`]: the options of a Hub and their defaults.

use super::{Hub, HubInner, DEFAULT_CLIENT_BUFFER};
use crate::auth::Authorizer;
use crate::client::SlowConsumerPolicy;
use crate::presence::{JsonPresenceEncoder, PresenceEncoder, PresenceMode};
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use crate::sync::{Arc, DashMap, Mutex};
use crate::table::ChannelTable;

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
    /// that would add one more fails with [`crate::Error::PresenceFull`] and
    /// changes nothing; in per-user mode another connection of a present
    /// user is not a new member and is accepted.
    pub fn max_presence_members(mut self, members: usize) -> Self {
        self.max_presence = members;
        self
    }

    /// Most channels the Hub holds at once (default: unbounded). A
    /// subscribe that would create one more fails with
    /// [`crate::Error::TooManyChannels`]; joining an existing channel is always
    /// possible. Concurrent creators may pass it by one each.
    pub fn max_channels(mut self, channels: usize) -> Self {
        self.max_channels = channels;
        self
    }

    /// Most channels one client may be subscribed to (default: unbounded).
    /// A subscribe past it fails with [`crate::Error::TooManySubscriptions`].
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
            clients: DashMap::default(),
            channels: ChannelTable::new(),
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
