//! The built-in defaults of every setting, and the development app.

use std::net::SocketAddr;

/// Development app id, used when no app is configured. Numeric, as Pusher
/// app ids are: the official Python server SDK refuses any other id before
/// it sends a request (issue #12).
pub const DEV_APP_ID: &str = "1";
/// Development app key.
pub const DEV_APP_KEY: &str = "app-key";
/// Development app secret.
pub const DEV_APP_SECRET: &str = "app-secret";
/// Default listen address.
pub const DEFAULT_BIND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 6001);
/// Default `activity_timeout` advertised to clients, in seconds.
pub const DEFAULT_ACTIVITY_TIMEOUT: u64 = 120;
/// Default maximum size of an event's `data`, in bytes (Pusher: 10 KB).
pub const DEFAULT_MAX_EVENT_SIZE: usize = 10 * 1024;
/// Default client events allowed per connection and second (Pusher: 10).
pub const DEFAULT_CLIENT_EVENT_RATE: u32 = 10;
/// Default prefix of the cluster's Redis channels and keys.
pub const DEFAULT_REDIS_NAMESPACE: &str = "realtime";
/// Default seconds after which a silent node's members are removed.
pub const DEFAULT_NODE_TTL: u64 = 15;
/// Default bound on one client's pending output, in bytes (1 MiB; the
/// reasons are on [`realtime::DEFAULT_CLIENT_BUFFER`]).
pub const DEFAULT_CLIENT_BUFFER: usize = realtime::DEFAULT_CLIENT_BUFFER;
/// Default most members of one presence channel (Pusher: 100).
pub const DEFAULT_MAX_PRESENCE_MEMBERS: usize = 100;
/// Default most channels one connection may subscribe to. 1,000: a
/// pusher-js app with 1,000 channels works at the defaults, and one
/// connection cannot make the server hold more than 1,000 subscriptions.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1_000;
/// Default request-body bytes buffered at once across all connections.
pub const DEFAULT_MAX_HTTP_BUFFER: usize = 32 * 1024 * 1024;
/// Default seconds a new socket may stay silent before it is dropped.
pub const DEFAULT_SILENT_TIMEOUT: u64 = 5;

/// Default most channels one app may hold at once. 100,000: far more than
/// the apps this gateway serves use, and a bound on what unauthenticated
/// clients can make it hold (about 80 MB at the measured cost of a
/// one-member channel, 776 B: BENCHMARKS.md).
pub const DEFAULT_MAX_CHANNELS: usize = 100_000;
/// Default longest presence `user_id` (and sign-in `id`), in characters:
/// 128, as Pusher documents.
pub const DEFAULT_MAX_USER_ID_LENGTH: usize = 128;
/// Default largest presence member data (`user_info` in `channel_data`, and
/// in sign-in `user_data`), in bytes of the JSON as sent: 2 KB, as Pusher
/// and Soketi (`maxMemberSizeInKb = 2`). With the default 100 members a
/// presence roster frame stays under about 220 KB.
pub const DEFAULT_MAX_MEMBER_SIZE: usize = 2 * 1024;

/// Default compression threshold: outbound messages under 256 bytes go
/// uncompressed (a `pusher:pong` or a small event gains a few bytes from
/// deflate and would cost a compression each).
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 256;

/// Default seconds a cache channel keeps its last event: 1800 (30 minutes),
/// as Pusher.
pub const DEFAULT_CACHE_TTL: u64 = 1800;
/// Default most cache channels with a last event, per app: 10,000. Each
/// entry is one event frame (at most about twice `max_event_size` when
/// every byte of the data is escaped), so at the default 10 KB events an
/// app's cache stays under about 200 MB in the worst case and a few MB for
/// typical events; past it the oldest entry is evicted (`cache/`).
pub const DEFAULT_MAX_CACHE_CHANNELS: usize = 10_000;
