//! `presence`: one client joining a presence channel whose roster already
//! has R members (R = 10, 1k, 10k), in both presence modes, the Hub beside
//! the reference-style baseline.
//!
//! `presence/{hub,baseline}/{per_connection,per_user}/R`: each iteration
//! joins (timed) as a new user, then leaves (untimed). A join builds the
//! newcomer's roster frame (R members), enqueues it, and fans
//! `member_added` out to R + 1 members; the Hub runs its authorizer too.
//! Untimed: the newcomer is drained after every iteration, the members
//! every 16 iterations (two frames each per iteration; outbox 64).
//!
//! The split of the Hub's join (issue 16), on the same fixture:
//! `presence/hub_roster/{mode}/R` is the part of each join spent building
//! the newcomer's roster frame (timed inside the encoder,
//! `FillEncoder::roster_timer`), and `presence/hub_fanout/{mode}/R` a
//! broadcast of a `member_added`-sized frame to the R members, about what
//! the join's `member_added` fan-out costs (it reaches R + 1).
//!
//! Setup fills the roster without encoding it at every join (O(R²)): the
//! Hub's members join through `fixture::FillEncoder` (stub presence frames
//! until the fill ends, then the default JSON frames), the baseline's are
//! inserted by `BaselineHub::fill_presence`. The Hub's fill still fans a
//! stub `member_added` out to every earlier member (drained every 16
//! joins), about half a second at 10k.
#![allow(
    clippy::expect_used,
    reason = "bench harness: a failed Hub call is a broken bench and aborts it"
)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion};
use realtime::{
    AuthRequest, AuthResult, Client, Hub, JsonPresenceEncoder, Member, PresenceEncoder,
    PresenceMode,
};
use realtime_benches::fixture::{attach, drain, drain_one, drops, FillEncoder};
use realtime_benches::{BaselineHub, ClientB};

const SIZES: [usize; 3] = [10, 1_000, 10_000];
const OUTBOX: usize = 64;
/// Iterations between drains of the members' outboxes.
const DRAIN_EVERY: u64 = 16;
const CHANNEL: &str = "presence-room";
const INFO: &str = r#"{"name":"Ada"}"#;

fn mode_name(mode: PresenceMode) -> &'static str {
    match mode {
        PresenceMode::PerConnection => "per_connection",
        PresenceMode::PerUser => "per_user",
    }
}

/// The member a join announces: the user id travels in the join's params.
fn authorize(r: &AuthRequest) -> AuthResult {
    AuthResult::allow(Member::new(
        String::from_utf8_lossy(&r.params).into_owned(),
        INFO,
    ))
}

struct HubFx {
    hub: Hub,
    members: Vec<Client>,
    x: Client,
    next: u64,
    /// The encoder's roster timer: switch and nanoseconds.
    timer: (Arc<AtomicBool>, Arc<AtomicU64>),
}

fn hub_fx(r: usize, mode: PresenceMode) -> HubFx {
    let (encoder, filling) = FillEncoder::new();
    let timer = encoder.roster_timer();
    let hub = Hub::builder()
        .outbox(OUTBOX)
        .presence_mode(mode)
        .authorizer(authorize)
        .presence_encoder(encoder)
        .build();
    let members = attach(&hub, r);
    for (i, c) in members.iter().enumerate() {
        hub.subscribe_with(c, CHANNEL, format!("u{i}"))
            .expect("presence join");
        if i % 16 == 15 {
            drain(&members[..=i]);
        }
    }
    drain(&members);
    filling.store(false, Ordering::Relaxed);
    let x = attach(&hub, 1).pop().expect("one client");
    HubFx {
        hub,
        members,
        x,
        next: 0,
        timer,
    }
}

/// `iters` joins and leaves of new users, as the `hub` bench runs them;
/// returns the time of the joins.
fn hub_joins(fx: &mut HubFx, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for i in 0..iters {
        let user = format!("new-{}", fx.next);
        fx.next += 1;
        let t0 = Instant::now();
        fx.hub
            .subscribe_with(&fx.x, CHANNEL, user)
            .expect("presence join");
        total += t0.elapsed();
        fx.hub.unsubscribe(&fx.x, CHANNEL).expect("leave");
        drain_one(&fx.x);
        if i % DRAIN_EVERY == DRAIN_EVERY - 1 {
            drain(&fx.members);
        }
    }
    drain(&fx.members);
    total
}

struct BaseFx {
    hub: BaselineHub,
    members: Vec<Arc<ClientB>>,
    x: Arc<ClientB>,
    next: u64,
}

fn base_fx(r: usize, mode: PresenceMode) -> BaseFx {
    let hub = BaselineHub::with_mode(OUTBOX, mode);
    let members: Vec<_> = (0..r).map(|_| hub.add()).collect();
    for (i, c) in members.iter().enumerate() {
        hub.fill_presence(c, CHANNEL, Member::new(format!("u{i}"), INFO));
    }
    let x = hub.add();
    BaseFx {
        hub,
        members,
        x,
        next: 0,
    }
}

fn presence(c: &mut Criterion) {
    let mut g = c.benchmark_group("presence");
    g.sample_size(10);
    for r in SIZES {
        for mode in [PresenceMode::PerConnection, PresenceMode::PerUser] {
            let mut fx: Option<HubFx> = None;
            g.bench_function(
                BenchmarkId::new(format!("hub/{}", mode_name(mode)), r),
                |b| {
                    let fx = fx.get_or_insert_with(|| hub_fx(r, mode));
                    b.iter_custom(|iters| hub_joins(fx, iters));
                },
            );
            g.bench_function(
                BenchmarkId::new(format!("hub_roster/{}", mode_name(mode)), r),
                |b| {
                    let fx = fx.get_or_insert_with(|| hub_fx(r, mode));
                    b.iter_custom(|iters| {
                        let (on, ns) = fx.timer.clone();
                        ns.store(0, Ordering::Relaxed);
                        on.store(true, Ordering::Relaxed);
                        hub_joins(fx, iters);
                        on.store(false, Ordering::Relaxed);
                        Duration::from_nanos(ns.load(Ordering::Relaxed))
                    });
                },
            );
            g.bench_function(
                BenchmarkId::new(format!("hub_fanout/{}", mode_name(mode)), r),
                |b| {
                    let fx = fx.get_or_insert_with(|| hub_fx(r, mode));
                    let frame =
                        JsonPresenceEncoder.member_added(CHANNEL, &Member::new("new-0", INFO));
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for i in 0..iters {
                            let t0 = Instant::now();
                            fx.hub
                                .broadcast_frame(CHANNEL, frame.clone(), None)
                                .expect("broadcast");
                            total += t0.elapsed();
                            if i % DRAIN_EVERY == DRAIN_EVERY - 1 {
                                drain(&fx.members);
                            }
                        }
                        drain(&fx.members);
                        total
                    });
                },
            );
            if let Some(fx) = fx.take() {
                assert_eq!(drops(&fx.members), 0);
                assert!(
                    fx.members.iter().all(|m| !m.is_closed()),
                    "a member overflowed"
                );
                assert_eq!(fx.hub.presence(CHANNEL).len(), r);
                fx.hub.close();
            }

            let mut fx: Option<BaseFx> = None;
            g.bench_function(
                BenchmarkId::new(format!("baseline/{}", mode_name(mode)), r),
                |b| {
                    let fx = fx.get_or_insert_with(|| base_fx(r, mode));
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for i in 0..iters {
                            let user = format!("new-{}", fx.next);
                            fx.next += 1;
                            let t0 = Instant::now();
                            fx.hub.subscribe_presence(
                                &fx.x,
                                CHANNEL,
                                Member::new(user.clone(), INFO),
                            );
                            total += t0.elapsed();
                            fx.hub.unsubscribe_presence(&fx.x, CHANNEL, &user);
                            fx.x.drain();
                            if i % DRAIN_EVERY == DRAIN_EVERY - 1 {
                                fx.members.iter().for_each(|c| {
                                    c.drain();
                                });
                            }
                        }
                        fx.members.iter().for_each(|c| {
                            c.drain();
                        });
                        total
                    });
                },
            );
            if let Some(fx) = fx.take() {
                let dropped: u64 = fx.members.iter().map(|c| c.drops()).sum();
                assert_eq!(dropped, 0);
            }
        }
    }
    g.finish();
}

/// The group, in a private module so that the generated function needs no
/// doc.
mod group {
    criterion::criterion_group! {
        name = benches;
        config = realtime_benches::fixture::criterion();
        targets = super::presence
    }
}
criterion_main!(group::benches);
