//! The debug console's feed: what passes through one app (connections
//! opened and closed, subscriptions, API publishes, client events,
//! webhooks), kept in a fixed-size ring that the dashboard page reads by
//! polling with a cursor.
//!
//! # Algorithm
//!
//! A ring of [`FEED_CAPACITY`] entries behind one `Mutex`, numbered by a
//! sequence that only grows: the entry at index `i` of the ring has the
//! sequence `next - len + i`. A push that finds the ring full overwrites
//! the oldest entry. A reader asks for everything from its cursor on and
//! gets at most [`MAX_READ`] entries, the cursor to ask with next time,
//! and how many entries it *missed*: those overwritten before it came
//! back (its cursor was older than the oldest entry still held). The page
//! shows that count.
//!
//! # Why it never slows the gateway
//!
//! - **Off unless watched.** Every push first loads one flag (`active`,
//!   `Relaxed`) and returns at once when it is false: no clock read, no
//!   allocation, no lock. The flag is set by a read and cleared by the
//!   first push that finds no read within [`IDLE`]: a closed page, an
//!   expired session or a stalled reader turns the feed off by itself.
//! - **Bounded.** The ring never grows past [`FEED_CAPACITY`] and never
//!   waits for its reader: a reader that does not come back only misses
//!   entries. There is no per-reader queue to fill.
//! - **Short critical sections.** Entries are built (the event's data
//!   truncated to [`MAX_DATA`] bytes) before the lock is taken; under it a
//!   push moves one `Arc` into the ring and a read clones at most
//!   [`MAX_READ`] `Arc`s; serialisation happens after it is released.
//!
//! # Who touches what
//!
//! Pushes come from the event loops (open, close, subscribe, client
//! events), the HTTP API's threads (publishes) and, when they exist, the
//! webhook senders; reads come from the dashboard's HTTP handler. All of
//! them only through [`Feed`]'s methods.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Entries one app's feed holds; older ones are overwritten.
pub const FEED_CAPACITY: usize = 1024;
/// Most entries one read returns.
pub const MAX_READ: usize = 500;
/// Longest event data kept in an entry, in bytes (longer is cut).
pub const MAX_DATA: usize = 1024;
/// A feed nobody read for this long stops recording.
pub const IDLE: Duration = Duration::from_secs(30);

/// One thing that passed through an app.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FeedEvent {
    /// Unix time, milliseconds.
    pub time: u64,
    /// `connection_opened`, `connection_closed`, `subscribed`,
    /// `unsubscribed`, `api_event`, `client_event` or `webhook`.
    pub kind: &'static str,
    /// The socket id concerned (the sender of a client event, the
    /// excluded socket of an API event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<String>,
    /// The channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The event name (of a publish, a client event, a webhook).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The event's data, at most [`MAX_DATA`] bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The close code of a closed connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The close reason, or what became of a webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl FeedEvent {
    /// An entry of `kind` stamped now, every other field empty.
    pub fn new(kind: &'static str) -> Self {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            time,
            kind,
            socket_id: None,
            channel: None,
            event: None,
            data: None,
            code: None,
            detail: None,
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// What a read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    /// Entries with their sequence numbers, oldest first.
    pub events: Vec<(u64, Arc<FeedEvent>)>,
    /// The cursor to read with next.
    pub next: u64,
    /// Entries overwritten before this reader came for them.
    pub missed: u64,
}

#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<Arc<FeedEvent>>,
    /// The sequence number the next push gets.
    next: u64,
}

/// One app's feed; see the module docs.
#[derive(Debug)]
pub struct Feed {
    /// Whether a reader came within [`IDLE`]; pushes return at once when
    /// false.
    active: AtomicBool,
    /// When the last read was, in milliseconds since `born`.
    last_read: AtomicU64,
    born: Instant,
    ring: Mutex<Ring>,
    capacity: usize,
}

impl Default for Feed {
    fn default() -> Self {
        Self::with_capacity(FEED_CAPACITY)
    }
}

impl Feed {
    /// An inactive feed holding at most `capacity` entries (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            active: AtomicBool::new(false),
            last_read: AtomicU64::new(0),
            born: Instant::now(),
            ring: Mutex::new(Ring::default()),
            capacity: capacity.max(1),
        }
    }

    fn ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether pushes are recorded now; turns the feed off when nobody
    /// read it within [`IDLE`].
    pub fn is_active(&self) -> bool {
        // Relaxed: a push that misses a reader's first store by a moment
        // only loses that entry; nothing else is published through it.
        if !self.active.load(Ordering::Relaxed) {
            return false;
        }
        // Relaxed: a timestamp, read alone.
        let idle = self
            .ms()
            .saturating_sub(self.last_read.load(Ordering::Relaxed));
        if idle > u64::try_from(IDLE.as_millis()).unwrap_or(u64::MAX) {
            // Relaxed: see above; the next read sets it again.
            self.active.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Stops recording until the next read (the last session ended).
    pub fn deactivate(&self) {
        // Relaxed: as in `is_active`.
        self.active.store(false, Ordering::Relaxed);
    }

    /// Records the entry `make` builds, if the feed is active; `make` is
    /// not called otherwise.
    pub fn push(&self, make: impl FnOnce() -> FeedEvent) {
        if !self.is_active() {
            return;
        }
        let entry = Arc::new(make());
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.entries.len() == self.capacity {
            ring.entries.pop_front();
        }
        ring.entries.push_back(entry);
        ring.next += 1;
    }

    /// Entries from `cursor` on (from the oldest held with `None`), at
    /// most [`MAX_READ`]; turns the feed on.
    pub fn read(&self, cursor: Option<u64>) -> FeedPage {
        // Relaxed: timestamps and the on flag (see `is_active`).
        self.last_read.store(self.ms(), Ordering::Relaxed);
        self.active.store(true, Ordering::Relaxed);
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = ring.next - ring.entries.len() as u64;
        let from = cursor.unwrap_or(oldest).min(ring.next);
        let missed = oldest.saturating_sub(from);
        let start = from.max(oldest);
        let skip = usize::try_from(start - oldest).unwrap_or(usize::MAX);
        let events: Vec<(u64, Arc<FeedEvent>)> = ring
            .entries
            .iter()
            .skip(skip)
            .take(MAX_READ)
            .enumerate()
            .map(|(i, e)| (start + i as u64, Arc::clone(e)))
            .collect();
        let next = start + events.len() as u64;
        FeedPage {
            events,
            next,
            missed,
        }
    }

    /// A connection was opened.
    pub fn connection_opened(&self, socket_id: &str) {
        self.push(|| FeedEvent {
            socket_id: Some(socket_id.to_owned()),
            ..FeedEvent::new("connection_opened")
        });
    }

    /// A connection was closed, with this close code and reason if any.
    pub fn connection_closed(&self, socket_id: &str, close: Option<(u16, &str)>) {
        self.push(|| FeedEvent {
            socket_id: Some(socket_id.to_owned()),
            code: close.map(|(c, _)| c),
            detail: close.map(|(_, r)| truncated(r, 200)),
            ..FeedEvent::new("connection_closed")
        });
    }

    /// A connection subscribed to (`subscribed`) or left (`unsubscribed`)
    /// a channel.
    pub fn subscription(&self, kind: &'static str, socket_id: &str, channel: &str) {
        self.push(|| FeedEvent {
            socket_id: Some(socket_id.to_owned()),
            channel: Some(channel.to_owned()),
            ..FeedEvent::new(kind)
        });
    }

    /// An event was published on `channel`: a client event when its name
    /// starts with `client-` (`socket_id`: the sender), an API event
    /// otherwise (`socket_id`: the excluded connection). `frame` is the
    /// encoded Pusher frame; its `data` is kept, cut to [`MAX_DATA`].
    pub fn published(&self, channel: &str, name: &str, frame: &str, socket_id: Option<&str>) {
        self.push(|| {
            let data = serde_json::from_str::<serde_json::Value>(frame)
                .ok()
                .and_then(|v| match v.get("data") {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                    None => None,
                })
                .map(|d| truncated(&d, MAX_DATA));
            let kind = if name.starts_with("client-") {
                "client_event"
            } else {
                "api_event"
            };
            FeedEvent {
                socket_id: socket_id.map(str::to_owned),
                channel: Some(channel.to_owned()),
                event: Some(name.to_owned()),
                data,
                ..FeedEvent::new(kind)
            }
        });
    }

    /// A webhook event was queued for the app's targets (`detail` says
    /// so); called by `Webhooks::push`.
    pub fn webhook(&self, event: &str, channel: Option<&str>, detail: &str) {
        self.push(|| FeedEvent {
            channel: channel.map(str::to_owned),
            event: Some(event.to_owned()),
            detail: Some(truncated(detail, 200)),
            ..FeedEvent::new("webhook")
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(f: &Feed, n: u64) {
        for i in 0..n {
            f.connection_opened(&format!("1.{i}"));
        }
    }

    #[test]
    fn an_unread_feed_records_nothing_and_builds_nothing() {
        let f = Feed::with_capacity(4);
        f.push(|| unreachable!("an inactive feed must not build entries"));
        opened(&f, 3);
        let page = f.read(None);
        assert!(page.events.is_empty());
        assert_eq!((page.next, page.missed), (0, 0));
    }

    #[test]
    fn a_reader_gets_entries_from_its_cursor_in_order() {
        let f = Feed::with_capacity(8);
        let _ = f.read(None);
        opened(&f, 3);
        let page = f.read(Some(0));
        let seqs: Vec<u64> = page.events.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [0, 1, 2]);
        assert_eq!(page.events[2].1.socket_id.as_deref(), Some("1.2"));
        assert_eq!((page.next, page.missed), (3, 0));
        opened(&f, 1);
        let page = f.read(Some(3));
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.next, 4);
    }

    #[test]
    fn a_full_ring_overwrites_the_oldest_and_counts_what_a_reader_missed() {
        let f = Feed::with_capacity(4);
        let _ = f.read(None);
        opened(&f, 10);
        let page = f.read(Some(0));
        assert_eq!(page.missed, 6);
        let seqs: Vec<u64> = page.events.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [6, 7, 8, 9]);
        assert_eq!(page.next, 10);
    }

    #[test]
    fn a_read_returns_at_most_max_read_entries_and_resumes() {
        let f = Feed::with_capacity(MAX_READ * 2);
        let _ = f.read(None);
        opened(&f, MAX_READ as u64 + 5);
        let first = f.read(Some(0));
        assert_eq!(first.events.len(), MAX_READ);
        let rest = f.read(Some(first.next));
        assert_eq!(rest.events.len(), 5);
        assert_eq!(rest.missed, 0);
    }

    #[test]
    fn published_keeps_the_data_cut_and_tells_client_events_apart() {
        let f = Feed::default();
        let _ = f.read(None);
        let long = "x".repeat(MAX_DATA * 2);
        let frame = serde_json::json!({"event":"ev","channel":"c","data":long}).to_string();
        f.published("c", "ev", &frame, None);
        f.published(
            "private-c",
            "client-typing",
            r#"{"data":"{}"}"#,
            Some("1.1"),
        );
        let page = f.read(Some(0));
        let api = &page.events[0].1;
        assert_eq!(api.kind, "api_event");
        assert!(api.data.as_ref().unwrap().len() <= MAX_DATA + '…'.len_utf8());
        assert_eq!(page.events[1].1.kind, "client_event");
        assert_eq!(page.events[1].1.data.as_deref(), Some("{}"));
    }

    #[test]
    fn webhooks_are_recorded_with_their_outcome() {
        let f = Feed::default();
        let _ = f.read(None);
        f.webhook("channel_occupied", Some("c"), "sent: 200");
        let page = f.read(Some(0));
        assert_eq!(page.events[0].1.kind, "webhook");
        assert_eq!(page.events[0].1.detail.as_deref(), Some("sent: 200"));
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncated("ééé", 3), "é…");
        assert_eq!(truncated("abc", 3), "abc");
    }
}
