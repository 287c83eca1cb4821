//! `deflate`: what permessage-deflate costs a broadcast, as the number of
//! recipients grows (issue 14).
//!
//! One 2 KB JSON event (a fresh frame per broadcast, as a publish makes
//! one) is encoded for N recipients the way the transport's drain does it
//! (`realtime_mio::encode_for_recipient`: the frame's encode-once slots):
//!
//! - `deflate/plain/N`: no compression negotiated: one encoding, N clones.
//! - `deflate/compressed/N`: every recipient negotiated deflate with the
//!   15-bit window: one compression, N clones of its bytes.
//! - `deflate/per_recipient/N`: the baseline a transport without the shared
//!   slot would pay: a compression per recipient (the path the transport
//!   takes only for the rare client asking for a smaller window).
//!
//! Throughput is N elements per broadcast, so criterion reports the time
//! per recipient; the time per broadcast is that times N. The bytes on the
//! wire are printed once at start-up.
#![allow(
    clippy::expect_used,
    clippy::print_stdout,
    reason = "bench harness: a failed encode is a broken bench; the wire sizes are printed"
)]

use std::hint::black_box;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use realtime::Frame;
use realtime_mio::encode_for_recipient;

const RECIPIENTS: [usize; 4] = [1, 10, 100, 1_000];
const THRESHOLD: u32 = 256;

/// A 2 KB Pusher event: a channel, an event name and a JSON payload of
/// order lines, as an application would trigger.
fn event() -> String {
    let mut lines = Vec::new();
    let mut i = 0;
    loop {
        let line = format!(
            r#"{{"sku":"SKU-{:05}","name":"Widget model {}","qty":{},"price":"{}.{:02}","warehouse":"eu-west-{}"}}"#,
            1000 + i * 37,
            i,
            1 + i % 7,
            10 + i * 3,
            i * 11 % 100,
            i % 3
        );
        lines.push(line);
        let data = format!(
            r#"{{"order_id":48213,"status":"shipped","lines":[{}]}}"#,
            lines.join(",")
        );
        let event = serde_json::json!({
            "event": "order.shipped",
            "channel": "private-orders",
            "data": data,
        })
        .to_string();
        if event.len() >= 2_000 {
            return event;
        }
        i += 1;
    }
}

/// Encodes a fresh frame of `payload` for `n` recipients; the total bytes.
fn broadcast(payload: &bytes::Bytes, n: usize, window: Option<u8>, shared: bool) -> usize {
    let frame = Frame::text(payload.clone()).expect("UTF-8");
    let mut total = 0;
    for _ in 0..n {
        let wire = if shared {
            encode_for_recipient(&frame, window, THRESHOLD)
        } else {
            // A fresh frame per recipient: nothing is shared.
            let own = Frame::text(payload.clone()).expect("UTF-8");
            encode_for_recipient(&own, window, THRESHOLD)
        };
        total += black_box(wire).len();
    }
    total
}

fn bench(c: &mut Criterion) {
    let payload = bytes::Bytes::from(event());
    let plain = broadcast(&payload, 1, None, true);
    let compressed = broadcast(&payload, 1, Some(15), true);
    println!(
        "deflate: event {} B; on the wire per recipient: plain {plain} B, compressed {compressed} B ({:.1}x); 1k recipients: {} KB vs {} KB",
        payload.len(),
        plain as f64 / compressed as f64,
        plain * 1000 / 1000,
        compressed * 1000 / 1000
    );
    let mut g = c.benchmark_group("deflate");
    for n in RECIPIENTS {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("plain", n), &n, |b, &n| {
            b.iter(|| broadcast(&payload, n, None, true));
        });
        g.bench_with_input(BenchmarkId::new("compressed", n), &n, |b, &n| {
            b.iter(|| broadcast(&payload, n, Some(15), true));
        });
        if n <= 100 {
            g.bench_with_input(BenchmarkId::new("per_recipient", n), &n, |b, &n| {
                b.iter(|| broadcast(&payload, n, Some(15), false));
            });
        }
    }
    g.finish();
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
}

criterion_main!(benches);
