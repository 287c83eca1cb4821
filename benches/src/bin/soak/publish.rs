//! The publishers: signed `POST /apps/{id}/events` at a steady total rate,
//! one event per request, channels taken in turn, nodes taken in turn. Each
//! publish takes the channel's next sequence number from the ledger before
//! its request is sent and records the answer after (never retried: a
//! request that may have been served is not sent twice).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::{channel_name, Args, Shared};
use realtime_benches::wire::Http;

/// Publishes until the driver quiesces; `w` of `args.publishers` threads.
pub(crate) fn publisher(w: usize, args: &Args, nodes: &[SocketAddr], shared: &Shared) {
    let total = args.public_channels + args.presence_channels;
    let mut http: Vec<Http> = nodes
        .iter()
        .map(|a| Http::new(*a, Duration::from_secs(5)))
        .collect();
    let interval = Duration::from_secs_f64(args.publishers.max(1) as f64 / args.rate.max(1) as f64);
    let path = format!("/apps/{}/events", args.app_id);
    let pad = "x".repeat(args.payload.saturating_sub(48));
    let mut next = Instant::now();
    let mut n = w;
    while !shared.quiesce.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        } else if now - next > Duration::from_secs(1) {
            // Far behind (the machine is busy): keep the rate, drop the burst.
            shared
                .counters
                .publish_skipped
                .fetch_add(1, Ordering::Relaxed);
            next = now;
        }
        next += interval;
        let ch = shared.pick.fetch_add(1, Ordering::Relaxed) as usize % total;
        let node = n % nodes.len();
        n += 1;
        let seq = shared.ledger.begin(ch, shared.now_ms());
        let t = shared.start.elapsed().as_nanos() as u64;
        let data = format!(r#"{{"t":{t},"s":{seq},"c":{ch},"p":"{pad}"}}"#);
        let body = serde_json::json!({
            "name": "soak",
            "channel": channel_name(args, ch),
            "data": data,
        })
        .to_string();
        let res = http[node].post_signed(&args.app_key, &args.app_secret, &path, &body);
        let ok = matches!(res, Ok(200));
        shared.ledger.finish(ch, seq, shared.now_ms(), ok);
        if ok {
            shared.counters.published.fetch_add(1, Ordering::Relaxed);
        } else {
            shared
                .counters
                .publish_failed
                .fetch_add(1, Ordering::Relaxed);
            let why = match res {
                Ok(status) => format!("http_{status}"),
                Err(_) => "http_error".to_owned(),
            };
            shared.count_reason(&format!("publish_{why}"));
        }
    }
}
