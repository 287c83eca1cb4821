//! Measurements: resident memory per idle connection and broadcast
//! throughput. Not a test: it prints numbers.
//!
//! ```text
//! # RSS per idle WebSocket connection, server and clients in two processes:
//! cargo run --release -p realtime-mio --example load -- rss 10000
//! # Delivered frames/s: C clients (reader threads in this process) receive
//! # M broadcasts of a 64-byte text frame:
//! cargo run --release -p realtime-mio --example load -- fanout 100 20000
//! # Connection rate (4 connector threads, handshake then close) and spread:
//! cargo run --release -p realtime-mio --example load -- accept reuseport 20000
//! cargo run --release -p realtime-mio --example load -- accept roundrobin 20000
//! ```
//!
//! `rss` starts the server here, then re-runs this binary as a child
//! (`client ADDR N`) that opens N connections and waits; the server's
//! resident set (`/proc/self/status`, Linux) is read before and after.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use realtime::{Client, Hub, MessageType};
use realtime_mio::{AcceptMode, Config, Handler, Request, Server, Upgrade};

struct App(Hub);

impl Handler for App {
    fn on_upgrade(&self, _: &Request) -> Upgrade {
        Upgrade::Accept {
            hub: self.0.clone(),
            auth: Bytes::new(),
        }
    }
    fn on_open(&self, client: &Client) {
        let _ = self.0.subscribe(client, "all");
    }
    fn on_message(&self, _: &Client, _: MessageType, _: Bytes) {}
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn config(max: usize) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        max_connections: max,
        ..Config::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("rss") => rss(args[2].parse().unwrap()),
        Some("client") => client(&args[2], args[3].parse().unwrap()),
        Some("fanout") => fanout(args[2].parse().unwrap(), args[3].parse().unwrap()),
        Some("accept") => accept(&args[2], args[3].parse().unwrap()),
        _ => println!(
            "usage: load rss N | load fanout CLIENTS MESSAGES | load accept reuseport|roundrobin N"
        ),
    }
}

fn rss(n: usize) {
    let hub = Hub::new();
    let server = Server::bind(config(n + 10), App(hub.clone())).unwrap();
    // Warm up: one connection through every code path, then measure.
    {
        let (mut ws, _) = tungstenite::connect(format!("ws://{}/", server.local_addr())).unwrap();
        hub.broadcast("all", "warm").unwrap();
        let _ = ws.read();
    }
    let before = rss_kib();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["client", &server.local_addr().to_string(), &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    assert_eq!(ready, "ready");
    let open = server.connections();
    let after = rss_kib();
    println!(
        "{open} idle connections: server RSS {before} KiB -> {after} KiB = {:.0} bytes/connection (hub clients {}, channel 'all' {})",
        (after.saturating_sub(before) * 1024) as f64 / open.max(1) as f64,
        hub.count(),
        hub.channel_count("all"),
    );
    // One broadcast to all of them, for the record.
    let t = Instant::now();
    hub.broadcast("all", "x".repeat(64)).unwrap();
    let _ = child.stdin.take().unwrap().write_all(b"go\n");
    let done = lines.next().unwrap().unwrap();
    println!("broadcast to {open}: {done} after {:?}", t.elapsed());
    child.wait().unwrap();
    server.shutdown();
}

fn client(addr: &str, n: usize) {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let (ws, _) = tungstenite::client(format!("ws://{addr}/"), stream).unwrap();
        conns.push(ws);
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let mut got = 0;
    for ws in &mut conns {
        if matches!(ws.read(), Ok(tungstenite::Message::Text(_))) {
            got += 1;
        }
    }
    println!("{got} received");
}

fn fanout(clients: usize, messages: usize) {
    let hub = Hub::builder().outbox(messages.max(64)).build();
    let server = Server::bind(config(clients + 10), App(hub.clone())).unwrap();
    let addr = server.local_addr();
    let readers: Vec<_> = (0..clients)
        .map(|_| {
            let stream = TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), stream).unwrap();
            std::thread::spawn(move || {
                for _ in 0..messages {
                    ws.read().unwrap();
                }
            })
        })
        .collect();
    let payload = "x".repeat(64);
    let t = Instant::now();
    for _ in 0..messages {
        hub.broadcast("all", payload.as_str()).unwrap();
    }
    let publish = t.elapsed();
    for r in readers {
        r.join().unwrap();
    }
    let elapsed = t.elapsed();
    let frames = (clients * messages) as f64;
    let stats = server.stats();
    println!(
        "{clients} clients x {messages} broadcasts: {frames} frames in {elapsed:?} (publish loop {publish:?}) = {:.0} frames/s; {} writes, {:.1} frames per write",
        frames / elapsed.as_secs_f64(),
        stats.writes,
        stats.frames_out as f64 / stats.writes.max(1) as f64,
    );
    server.shutdown();
}

fn accept(mode: &str, n: usize) {
    let accept = match mode {
        "roundrobin" => AcceptMode::RoundRobin,
        _ => AcceptMode::ReusePort,
    };
    let server = Server::bind(
        Config {
            accept,
            ..config(n)
        },
        App(Hub::new()),
    )
    .unwrap();
    let addr = server.local_addr();
    let t = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..n / 4 {
                    let stream = TcpStream::connect(addr).unwrap();
                    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), stream).unwrap();
                    let _ = ws.close(None);
                    let _ = ws.flush();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = t.elapsed();
    let spread: Vec<u64> = server.loop_stats().iter().map(|s| s.upgrades).collect();
    println!(
        "{mode}: {n} connect+handshake+close in {elapsed:?} = {:.0} conn/s; upgrades per loop {spread:?}",
        n as f64 / elapsed.as_secs_f64()
    );
    server.shutdown();
}
