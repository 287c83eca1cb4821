//! Stress: 4,000 clients on 128 channels (64 presence, 64 public) across
//! two Hubs (DropMessage and DisconnectClient, small outboxes, per-connection
//! and per-user presence), with concurrent subscribe / unsubscribe /
//! broadcast / send / close from several threads and stalled consumers.
//!
//! At the end: no live client, no channel, empty rosters, every
//! `on_presence` join matched by a leave, and the process's thread count
//! back to where it started. Alone in its binary so the thread count is its
//! own. `STRESS_THREADS` (default 8) and `STRESS_OPS` (per thread, default
//! 4000) scale it.

// Tests use the public API from outside the facade; std atomics are fine here.
#![allow(clippy::disallowed_types, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier, Mutex};

use common::*;
use realtime::{
    AuthRequest, AuthResult, Client, Hub, Member, MemoryConn, PresenceMode, SlowConsumerPolicy,
};

const CLIENTS: usize = 4_000;
const CHANNELS: usize = 128;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: a deterministic per-thread op stream.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize
    }
}

fn channel(i: usize) -> String {
    if i < CHANNELS / 2 {
        format!("presence-{i}")
    } else {
        format!("public-{i}")
    }
}

type Balance = Arc<Mutex<HashMap<(String, String), i64>>>;

fn make_hub(policy: SlowConsumerPolicy, mode: PresenceMode, balance: &Balance) -> Hub {
    let hub = Hub::builder()
        .outbox(8)
        .slow_consumer_policy(policy)
        .presence_mode(mode)
        .authorizer(move |r: &AuthRequest| {
            // Per-user mode: 500 users share the connections.
            let n: usize = r.client_id["client-".len()..].parse().unwrap_or(0);
            match mode {
                PresenceMode::PerUser => {
                    AuthResult::allow(Member::new(format!("user-{}", n % 500), "{}"))
                }
                _ => AuthResult::allow_anonymous(),
            }
        })
        .build();
    let sink = balance.clone();
    hub.on_presence(move |e| {
        let key = match mode {
            PresenceMode::PerUser => e.member.id.clone(),
            _ => e.client_id.clone(),
        };
        *sink
            .lock()
            .unwrap()
            .entry((e.channel.clone(), key))
            .or_default() += if e.joined { 1 } else { -1 };
    });
    hub
}

#[test]
fn stress_4000_clients_128_channels_end_clean() {
    let threads_before = thread_count();
    let workers = env("STRESS_THREADS", 8);
    let ops = env("STRESS_OPS", 4_000);
    let balance: Balance = Arc::default();
    let hubs = [
        make_hub(
            SlowConsumerPolicy::DropMessage,
            PresenceMode::PerConnection,
            &balance,
        ),
        make_hub(
            SlowConsumerPolicy::DisconnectClient,
            PresenceMode::PerUser,
            &balance,
        ),
    ];
    // Half the clients are blocking conns whose peers are kept open but
    // never read (the pipe buffers: fast consumers); half are attached with a
    // transport that never drains (stalled consumers).
    let mut clients: Vec<(usize, Client)> = Vec::with_capacity(CLIENTS);
    let mut peers: Vec<MemoryConn> = Vec::new();
    let mut probes = Vec::new();
    for i in 0..CLIENTS {
        let h = i % 2;
        if i % 4 < 2 {
            let (c, p) = connect(&hubs[h]);
            peers.push(p);
            clients.push((h, c));
        } else {
            let (c, probe) = attach(&hubs[h]);
            probes.push(probe);
            clients.push((h, c));
        }
    }
    let clients = Arc::new(clients);
    let barrier = Arc::new(Barrier::new(workers));
    std::thread::scope(|s| {
        for t in 0..workers {
            let (clients, barrier, hubs) = (clients.clone(), barrier.clone(), &hubs);
            s.spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1234_5678));
                barrier.wait();
                for _ in 0..ops {
                    let (h, c) = &clients[rng.next() % CLIENTS];
                    let hub = &hubs[*h];
                    let ch = channel(rng.next() % CHANNELS);
                    match rng.next() % 100 {
                        0..=39 => {
                            let _ = hub.subscribe(c, &ch);
                        }
                        40..=59 => {
                            let _ = hub.unsubscribe(c, &ch);
                        }
                        60..=84 => {
                            let _ = hub.broadcast(&ch, "x");
                        }
                        85..=89 => {
                            let _ = hub.broadcast_except(&ch, "y", c);
                        }
                        90..=94 => {
                            let _ = hub.broadcast_binary(&ch, &[1u8, 2, 3][..]);
                        }
                        95..=97 => {
                            let _ = hub.send_to(c.id(), "direct");
                        }
                        _ => c.close(),
                    }
                }
            });
        }
        // Close everything while the last operations may still run.
    });
    // Closing races: half the clients closed from two threads while the Hubs
    // close.
    std::thread::scope(|s| {
        let (a, b) = clients.split_at(CLIENTS / 2);
        s.spawn(move || a.iter().for_each(|(_, c)| c.close()));
        s.spawn(move || b.iter().rev().for_each(|(_, c)| c.close()));
        for hub in &hubs {
            s.spawn(move || hub.close());
        }
    });
    for hub in &hubs {
        hub.close();
        assert_eq!(hub.count(), 0);
        assert!(hub.channels().is_empty(), "{:?}", hub.channels());
        for i in 0..CHANNELS {
            assert_eq!(hub.channel_count(&channel(i)), 0);
            assert!(hub.presence(&channel(i)).is_empty());
        }
    }
    let unbalanced: Vec<_> = balance
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, v)| **v != 0)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(
        unbalanced.is_empty(),
        "joins without leaves: {unbalanced:?}"
    );
    assert!(
        !balance.lock().unwrap().is_empty(),
        "no presence traffic at all"
    );
    // Every stalled consumer under DisconnectClient was closed exactly once.
    assert!(probes.iter().all(|p| p.closes() == 1));
    for (_, c) in clients.iter() {
        assert!(c.is_closed());
    }
    drop(peers);
    drop(hubs);
    assert_eq!(settled_thread_count(threads_before), threads_before);
}
