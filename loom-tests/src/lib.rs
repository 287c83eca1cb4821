//! Shared fixtures of the loom models (`tests/loom_*.rs`): a test
//! [`realtime::Transport`] that counts what the Hub tells it, a presence encoder that
//! writes frames a model can read without a JSON parser, and small helpers.
//!
//! Compiled only under `--cfg loom` (see `run.sh`); without it this crate is
//! empty. Everything here must run inside `loom::model`: the Hub's atomics
//! and locks are loom's.
#![cfg(loom)]

use std::sync::Arc;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Mutex;
use realtime::{Client, Frame, Hub, Member, PresenceEncoder, PresenceEvent, Transport};

/// The preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set: the
/// suite's bound (see `README.md`). Without any bound `loom_hub_close` does
/// not finish in minutes.
pub const DEFAULT_PREEMPTIONS: usize = 3;

/// Runs `f` under loom like `loom::model`, through a `loom::model::Builder`
/// that reads the `LOOM_*` variables as usual but falls back to
/// [`DEFAULT_PREEMPTIONS`] instead of an unbounded search.
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    // As `loom::model` does: LOOM_LOG filters loom's own log ("Completed in
    // N iterations" at info, every step at trace).
    let subscriber = tracing_subscriber::fmt::Subscriber::builder()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("LOOM_LOG"))
        .with_test_writer()
        .without_time()
        .finish();
    tracing::subscriber::with_default(subscriber, || builder.check(f));
}

/// A [`Transport`] that records the Hub's calls.
///
/// `wake` asserts the outbox protocol's "at most one wake-up pending": a
/// second `wake` before the drainer re-armed (see [`Probe::rearming`]) fails
/// the model.
#[derive(Default)]
pub struct Probe {
    /// `Transport::wake` calls.
    pub wakes: AtomicUsize,
    /// `Transport::closed` calls.
    pub closes: AtomicUsize,
    /// Wakes not yet consumed by a drainer's re-arm.
    pub outstanding: AtomicUsize,
}

impl Probe {
    /// A new probe.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// `Transport::closed` calls so far.
    pub fn closes(&self) -> usize {
        self.closes.load(Ordering::SeqCst)
    }

    /// `Transport::wake` calls so far.
    pub fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }

    /// Called by a drainer right before `Client::finish_drain`: the pending
    /// wake-up, if any, has been consumed.
    pub fn rearming(&self) {
        self.outstanding.store(0, Ordering::SeqCst);
    }
}

impl Transport for Probe {
    fn wake(&self) {
        // Pending first, then visible to a drainer that waits on `wakes`.
        let before = self.outstanding.fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "a second wake-up while one is pending (R30)");
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }

    fn closed(&self) {
        self.closes.fetch_add(1, Ordering::SeqCst);
    }
}

/// Attaches a new client served by a fresh [`Probe`].
///
/// # Panics
///
/// If the Hub is closed.
pub fn attach(hub: &Hub) -> (Client, Arc<Probe>) {
    let probe = Probe::new();
    match hub.attach(probe.clone(), ()) {
        Ok(client) => (client, probe),
        Err(e) => panic!("attach to an open hub: {e}"),
    }
}

/// Pops every queued frame of `client`, as text.
pub fn drain(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(frame) = client.pop_frame() {
        out.push(frame.as_str().unwrap_or("<binary>").to_owned());
    }
    out
}

/// Plays the transport writing one frame: pops it, reports its wire bytes
/// as unsent (the socket refused them at first: `Client::set_unsent`), then
/// 0 (the socket took them). Returns the frame as text, or `None` if nothing
/// was queued (or the client is closed).
pub fn write_one(client: &Client) -> Option<String> {
    let frame = client.pop_frame()?;
    client.set_unsent(frame.wire_len());
    client.set_unsent(0);
    Some(frame.as_str().unwrap_or("<binary>").to_owned())
}

/// Presence frames as short strings: `roster:a,b`, `added:c`,
/// `removed:a`, so that a model reads them without parsing JSON.
pub struct PlainPresence;

impl PresenceEncoder for PlainPresence {
    fn subscription_succeeded(&self, _: &str, roster: &[&Member], _: &Member) -> Frame {
        let ids: Vec<&str> = roster.iter().map(|m| m.id.as_str()).collect();
        Frame::from_string(format!("roster:{}", ids.join(",")))
    }

    fn member_added(&self, _: &str, member: &Member) -> Frame {
        Frame::from_string(format!("added:{}", member.id))
    }

    fn member_removed(&self, _: &str, member: &Member) -> Frame {
        Frame::from_string(format!("removed:{}", member.id))
    }
}

/// One presence change as the models write them: `added:<id>` or
/// `removed:<id>`, the same spelling as [`PlainPresence`]'s frames.
pub fn event_string(e: &PresenceEvent) -> String {
    let what = if e.joined { "added" } else { "removed" };
    format!("{what}:{}", e.member.id)
}

/// Records every `on_presence` event of `hub`, in the order the hooks run.
pub fn presence_log(hub: &Hub) -> Arc<Mutex<Vec<String>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    hub.on_presence(move |e| {
        sink.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event_string(e));
    });
    log
}

/// Reads a presence log.
pub fn read_log(log: &Mutex<Vec<String>>) -> Vec<String> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Applies `added:`/`removed:` events to a roster kept in join order.
pub fn apply(roster: &mut Vec<String>, events: &[String]) {
    for e in events {
        if let Some(id) = e.strip_prefix("added:") {
            roster.push(id.to_owned());
        } else if let Some(id) = e.strip_prefix("removed:") {
            roster.retain(|m| m != id);
        }
    }
}
