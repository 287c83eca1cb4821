//! A publish that times out is not sent again (delivery across nodes is at
//! most once): the Redis here is a stand-in that speaks just enough RESP
//! and never answers one `PUBLISH`, since a real `redis-server` cannot be
//! made to take a command and then stay silent on that one connection
//! while it answers the next (`DEBUG SLEEP` blocks every connection, and
//! the driver's reopen then fails for its own reason: the case is never
//! reached). Everything else about the driver runs against a real
//! `redis-server` in `tests/redis.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use broadcasting::{Broadcaster, Event, Redis};

/// Reads one RESP command (an array of bulk strings); `None` at end of
/// stream.
fn command(r: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0; len + 2];
        std::io::Read::read_exact(r, &mut buf).ok()?;
        buf.truncate(len);
        args.push(String::from_utf8_lossy(&buf).into_owned());
    }
    Some(args)
}

/// The stand-in: serves publishing connections one after the other (so
/// everything a closed connection sent has been read before the next one
/// is served), hands a subscribing connection to a thread of its own, and
/// reports the key of every `PUBLISH`. A `PUBLISH` to `t:silent` gets no
/// answer; every other command gets one.
fn stand_in() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut w = conn.try_clone().unwrap();
            let mut r = BufReader::new(conn);
            while let Some(args) = command(&mut r) {
                let verb = args[0].to_ascii_uppercase();
                if verb == "PSUBSCRIBE" {
                    let p = &args[1];
                    let reply = format!("*3\r\n$10\r\npsubscribe\r\n${}\r\n{p}\r\n:1\r\n", p.len());
                    let _ = w.write_all(reply.as_bytes());
                    // Held open, unread, by a thread of its own.
                    std::thread::spawn(move || {
                        let _keep = (r, w);
                        std::thread::park();
                    });
                    break;
                }
                if verb == "PUBLISH" {
                    let key = args[1].clone();
                    let silent = key == "t:silent";
                    let _ = tx.send(key);
                    if silent {
                        continue;
                    }
                    let _ = w.write_all(b":0\r\n");
                } else {
                    let _ = w.write_all(b"+OK\r\n");
                }
            }
        }
    });
    (url, rx)
}

#[test]
fn a_publish_that_timed_out_is_not_sent_again() {
    let (url, published) = stand_in();
    let bus = Redis::builder(url)
        .namespace("t")
        .node_id("a")
        .io_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    // No answer within the timeout: an error, the event reached local
    // subscribers only as far as this node can tell.
    assert!(bus.publish(Event::new("silent", "e", "1")).is_err());
    // The next publish reopens the connection and is answered. The
    // stand-in read the first connection to its end before serving the
    // second, so every PUBLISH sent before this one has been reported.
    bus.publish(Event::new("marker", "e", "2")).unwrap();
    let keys: Vec<String> = published.try_iter().collect();
    assert_eq!(
        keys,
        ["t:silent", "t:marker"],
        "the silent publish was sent again"
    );
    assert_eq!(bus.stats().publish_errors, 1);
}
