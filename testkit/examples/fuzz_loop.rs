//! Runs one fuzz target's function over a directory of inputs, round after
//! round, without libFuzzer or sanitizers, and prints inputs per second:
//! the cost of the target itself, apart from libFuzzer's bookkeeping and
//! ASan (issue 18). Build it in release mode and profile it with `perf`:
//!
//! ```sh
//! cargo run --release -p realtime-testkit --example fuzz_loop -- hub_ops fuzz/seeds/hub_ops 5
//! perf record -g target/release/examples/fuzz_loop hub_ops fuzz/seeds/hub_ops 20
//! ```

#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    reason = "a command-line tool: it reports on stdout, and an unreadable input stops it"
)]

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(target), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: fuzz_loop TARGET DIR [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(1);
    let f: fn(&[u8]) = match target.as_str() {
        "hub_ops" => testkit::fuzz::hub_ops,
        "presence_info" => testkit::fuzz::presence_info,
        "channel_name" => testkit::fuzz::channel_name,
        "pusher_message" => testkit::fuzz::pusher_message,
        "http_api" => testkit::fuzz::http_api,
        "ws_stream" => testkit::fuzz::ws_stream,
        other => {
            eprintln!("unknown target {other}");
            std::process::exit(2);
        }
    };
    let mut inputs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.expect("a directory entry").path();
        inputs.push(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    }
    let bytes: usize = inputs.iter().map(Vec::len).sum();
    let start = Instant::now();
    for _ in 0..rounds {
        for input in &inputs {
            f(input);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let n = inputs.len() * rounds;
    println!(
        "{target}: {n} runs of {} inputs ({bytes} bytes) in {secs:.2} s: {:.0} runs/s",
        inputs.len(),
        n as f64 / secs
    );
}
