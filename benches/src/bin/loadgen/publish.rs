//! The publisher: signed HTTP API requests (`batch_events`) at a rate or
//! saturated, over keep-alive connections.

use realtime_benches::wire::Http;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

pub(crate) fn event_data(args: &Args, start: Instant, seq: u64) -> String {
    let t = start.elapsed().as_nanos() as u64;
    let head = format!(r#"{{"t":{t},"s":{seq},"p":""#);
    let pad = args.payload.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// Publishes for `duration`; events published per channel.
pub(crate) fn publish(args: &Args, target: SocketAddr, start: Instant) -> Result<Vec<u64>, String> {
    let k = args.channels.max(1);
    let stop_at = Instant::now() + Duration::from_secs(args.duration);
    let workers = if args.rate == 0 {
        args.publishers.max(1)
    } else {
        1
    };
    let counts: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || -> Result<Vec<u64>, String> {
                    let mut http = Http::new(target, Duration::from_secs(10));
                    http.connect().map_err(|e| format!("publisher {e}"))?;
                    let mut counts = vec![0u64; k];
                    let mut seq = w as u64;
                    let batch = args.batch.clamp(1, 10);
                    let interval = (args.rate > 0)
                        .then(|| Duration::from_secs_f64(batch as f64 / args.rate as f64));
                    let mut next = Instant::now();
                    while Instant::now() < stop_at {
                        if let Some(iv) = interval {
                            let now = Instant::now();
                            if now < next {
                                std::thread::sleep(next - now);
                            }
                            next += iv;
                        }
                        let mut events = Vec::with_capacity(batch);
                        let mut chans = Vec::with_capacity(batch);
                        for _ in 0..batch {
                            let ch = (seq as usize) % k;
                            events.push(serde_json::json!({
                                "name": "bench",
                                "channel": format!("bench-{ch}"),
                                "data": event_data(args, start, seq),
                            }));
                            chans.push(ch);
                            seq += workers as u64;
                        }
                        let body = serde_json::json!({ "batch": events }).to_string();
                        let path = format!("/apps/{}/batch_events", args.app_id);
                        let status = http
                            .post_signed(&args.app_key, &args.app_secret, &path, &body)
                            .map_err(|e| format!("publish: {e}"))?;
                        if status != 200 {
                            return Err(format!("publish answered HTTP {status}"));
                        }
                        for ch in chans {
                            counts[ch] += 1;
                        }
                    }
                    Ok(counts)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("publisher panicked".into()))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let mut total = vec![0u64; k];
    for c in counts {
        for (i, n) in c.into_iter().enumerate() {
            total[i] += n;
        }
    }
    Ok(total)
}
