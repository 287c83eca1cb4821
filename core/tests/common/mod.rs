//! Helpers shared by the Hub's behaviour tests.
#![allow(dead_code, clippy::disallowed_types, clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use realtime::{pipe, Client, Frame, Hub, MemoryConn, MessageType, Transport};

/// A failure guard for reads: tests synchronise on the frame itself; the
/// timeout only turns a hang into a failure.
pub const GUARD: Duration = Duration::from_secs(10);

/// A transport that never drains on its own: the test drains by hand, so
/// outbox occupancy is exact.
#[derive(Default)]
pub struct Probe {
    pub wakes: AtomicUsize,
    pub closes: AtomicUsize,
}

impl Transport for Probe {
    fn wake(&self) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
    fn closed(&self) {
        self.closes.fetch_add(1, Ordering::SeqCst);
    }
}

impl Probe {
    pub fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
    pub fn closes(&self) -> usize {
        self.closes.load(Ordering::SeqCst)
    }
}

pub fn attach(hub: &Hub) -> (Client, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let client = hub.attach(probe.clone(), ()).unwrap();
    (client, probe)
}

/// [`attach`] with these `auth` bytes.
pub fn attach_with(hub: &Hub, auth: &str) -> (Client, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let client = hub.attach(probe.clone(), auth.as_bytes().to_vec()).unwrap();
    (client, probe)
}

/// Drains a probe-attached client's outbox.
pub fn drain(client: &Client) -> Vec<Frame> {
    let mut out = Vec::new();
    loop {
        while let Some(f) = client.pop_frame() {
            out.push(f);
        }
        if !client.finish_drain() {
            return out;
        }
    }
}

pub fn texts(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

pub fn connect(hub: &Hub) -> (Client, MemoryConn) {
    let (conn, peer) = pipe();
    let client = hub.add(conn, ()).unwrap();
    (client, peer)
}

pub fn connect_with(hub: &Hub, auth: &str) -> (Client, MemoryConn) {
    let (conn, peer) = pipe();
    let client = hub.add(conn, auth).unwrap();
    (client, peer)
}

/// The next message, or a test failure after the guard.
pub fn next(peer: &MemoryConn) -> (MessageType, Vec<u8>) {
    match peer.read_timeout(GUARD) {
        Ok(Some((k, b))) => (k, b.to_vec()),
        Ok(None) => panic!("no message within the guard"),
        Err(e) => panic!("stream ended: {e}"),
    }
}

pub fn next_text(peer: &MemoryConn) -> String {
    let (k, b) = next(peer);
    assert_eq!(k, MessageType::Text);
    String::from_utf8(b).unwrap()
}

pub fn next_json(peer: &MemoryConn) -> serde_json::Value {
    serde_json::from_str(&next_text(peer)).unwrap()
}

/// Reads until the stream ends; everything read before.
pub fn until_eof(peer: &MemoryConn) -> Vec<(MessageType, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        match peer.read_timeout(GUARD) {
            Ok(Some((k, b))) => out.push((k, b.to_vec())),
            Ok(None) => panic!("stream did not end within the guard"),
            Err(_) => return out,
        }
    }
}

/// Sends a marker through `channel` and returns every message received on
/// `peer` before it: proves what did *not* arrive without waiting on time.
pub fn before_marker(hub: &Hub, channel: &str, peer: &MemoryConn) -> Vec<String> {
    hub.broadcast(channel, "__marker__").unwrap();
    let mut out = Vec::new();
    loop {
        let t = next_text(peer);
        if t == "__marker__" {
            return out;
        }
        out.push(t);
    }
}

/// The thread count once the kernel has released the threads just joined,
/// if it falls to `expected`: read until it does, for at most 5 s, and
/// returned for the caller to assert on.
///
/// A join returns when the thread's id is cleared, early in the kernel's
/// exit path; `Threads:` drops only when the task is released, a little
/// later. So a count read right after joining 50 threads was one or two
/// high in ~2 % of runs (measured: the next read, ~150 µs later, was
/// right every time). A thread that was never joined and keeps running
/// still fails the caller's assertion.
pub fn settled_thread_count(expected: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let n = thread_count();
        if n == expected || std::time::Instant::now() >= deadline {
            return n;
        }
        std::thread::yield_now();
    }
}

/// Threads of this process (Linux).
pub fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

pub fn allow_all() -> impl Fn(&realtime::AuthRequest) -> realtime::AuthResult {
    |r: &realtime::AuthRequest| {
        realtime::AuthResult::allow(realtime::Member::new(
            String::from_utf8_lossy(&r.auth).into_owned(),
            (),
        ))
    }
}
