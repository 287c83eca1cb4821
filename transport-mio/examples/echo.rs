//! An echo server on `realtime-mio`: every text or binary message comes
//! back to its sender, unchanged, as one frame. It is the server the
//! Autobahn TestSuite cases are run against (`transport-mio/autobahn/run.sh`,
//! R36).
//!
//! ```text
//! cargo run --release -p realtime-mio --example echo -- [ADDR] [--max-message BYTES] [--max-secs SECS] [--compression-threshold BYTES]
//! ```
//!
//! - `ADDR`: where to listen (default `127.0.0.1:9001`; port 0 picks a free
//!   port). The first line on stdout is `listening on HOST:PORT`, so a
//!   script can read the port back.
//! - `--max-message`: the largest inbound message (default 16 MiB, enough
//!   for the 9.* cases, whose largest message is 16 MiB).
//! - `--max-secs`: stop after this long whatever happens (default 900), so a
//!   CI run can never hang on it.
//! - `--compression-threshold`: echoes shorter than this go uncompressed
//!   when permessage-deflate is negotiated (default 256, the transport's).
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default: warnings); the
//! Autobahn script runs it with `realtime_mio=debug`, which logs how every
//! session ended, and keeps that log beside the report.
//!
//! It also stops, gracefully (close 1001 to every client), at the end of
//! its standard input; SIGTERM and SIGINT end it the default way.

#![allow(clippy::print_stdout)]

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use realtime::{Client, Frame, Hub, MessageType};
use realtime_mio::{Config, Handler, Request, Server, Upgrade};

/// Pending output allowed per client: a 16 MiB echo waiting behind a few
/// large ones is not a slow consumer.
const CLIENT_BUFFER: usize = 64 * 1024 * 1024;

struct Echo(Hub);

impl Handler for Echo {
    fn on_upgrade(&self, _req: &Request) -> Upgrade {
        Upgrade::Accept {
            hub: self.0.clone(),
            auth: Bytes::new(),
        }
    }

    fn on_message(&self, client: &Client, kind: MessageType, data: Bytes) {
        let frame = match kind {
            // The transport hands over only valid UTF-8 text.
            MessageType::Text => match Frame::text(data) {
                Ok(frame) => frame,
                Err(_) => return client.close_with(1007, "invalid UTF-8"),
            },
            MessageType::Binary => Frame::binary(data),
        };
        // A reply: never dropped; a client past its buffer is disconnected.
        let _ = client.send_reply(frame);
    }
}

struct Args {
    bind: std::net::SocketAddr,
    max_message: usize,
    max_secs: u64,
    compression_threshold: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bind: ([127, 0, 0, 1], 9001).into(),
        max_message: 16 * 1024 * 1024,
        max_secs: 900,
        compression_threshold: Config::default().compression_threshold,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--max-message" => {
                let v = value("--max-message")?;
                args.max_message = v.parse().map_err(|e| format!("--max-message {v}: {e}"))?;
            }
            "--max-secs" => {
                let v = value("--max-secs")?;
                args.max_secs = v.parse().map_err(|e| format!("--max-secs {v}: {e}"))?;
            }
            "--compression-threshold" => {
                let v = value("--compression-threshold")?;
                args.compression_threshold = v
                    .parse()
                    .map_err(|e| format!("--compression-threshold {v}: {e}"))?;
            }
            addr => {
                args.bind = addr.parse().map_err(|e| format!("address {addr}: {e}"))?;
            }
        }
    }
    Ok(args)
}

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args =
        parse_args().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let config = Config {
        bind: args.bind,
        max_message_size: args.max_message,
        compression_threshold: args.compression_threshold,
        ..Config::default()
    };
    let hub = Hub::builder().client_buffer(CLIENT_BUFFER).build();
    let server = Server::bind(config, Echo(hub))?;
    println!("listening on {}", server.local_addr());
    std::io::stdout().flush()?;

    // Stop at the end of stdin, or after `max_secs`, whichever comes first.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut lines = std::io::stdin().lock().lines();
        while let Some(Ok(_)) = lines.next() {}
        let _ = stop_tx.send(());
    });
    match stop_rx.recv_timeout(Duration::from_secs(args.max_secs)) {
        Err(mpsc::RecvTimeoutError::Timeout) => {
            println!("--max-secs {} reached: stopping", args.max_secs);
        }
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
    }
    server.shutdown();
    Ok(())
}
