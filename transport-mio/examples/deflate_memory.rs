//! Measures what permessage-deflate adds to a connection, in heap bytes
//! (counted by a global allocator that tracks live bytes), for the state
//! the transport keeps (`src/deflate/`):
//!
//! - sending: nothing per connection; one compressor per loop thread and
//!   window size, reset before each message (measured here for the 15-bit
//!   window, the one browsers leave the server);
//! - receiving, client without `client_no_context_takeover` (browsers,
//!   `ws`): an inflate context, created by the connection's first
//!   compressed message and kept while it lives (measured after one 2 KB
//!   message);
//! - receiving with `client_no_context_takeover`: one inflater per loop
//!   thread, none per connection.
//!
//! Run: `cargo run --release -p realtime-mio --example deflate_memory`

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::alloc::System;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOC: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes live now.
fn live() -> isize {
    let s = ALLOC.stats();
    (s.bytes_allocated as isize - s.bytes_deallocated as isize) + s.bytes_reallocated
}

fn message() -> Vec<u8> {
    let mut s = String::from("{\"event\":\"client-typing\",\"data\":[");
    let mut i = 0;
    while s.len() < 2000 {
        s.push_str(&format!(
            "{{\"user\":{i},\"at\":\"2026-11-30T14:{:02}\"}},",
            i % 60
        ));
        i += 1;
    }
    s.push_str("0]}");
    s.into_bytes()
}

fn main() {
    let msg = message();

    // The loop's compressor (15-bit window), after one message.
    let before = live();
    let mut c = Compress::new_with_window_bits(Compression::default(), false, 15);
    let mut deflated = Vec::with_capacity(msg.len() + 64);
    c.compress_vec(&msg, &mut deflated, FlushCompress::Sync)
        .unwrap();
    let compressor = live() - before - deflated.capacity() as isize;
    deflated.truncate(deflated.len() - 4);
    deflated.extend_from_slice(&[0, 0, 0xff, 0xff]);

    // A connection's inflate context (boxed, as the decoder keeps it),
    // after one message.
    let before = live();
    let mut d = Box::new(Decompress::new_with_window_bits(false, 15));
    let mut out = Vec::with_capacity(msg.len() + 1);
    d.decompress_vec(&deflated, &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(out, msg);
    let context = live() - before - out.capacity() as isize;

    println!("permessage-deflate, heap bytes (zlib-rs, 15-bit windows):");
    println!("  per loop thread, compressor (send, shared by all connections): {compressor}");
    println!("  per connection, send state: 0");
    println!("  per connection, inflate context (client with context takeover, after its first compressed message): {context}");
    println!("  per connection, inflate context with client_no_context_takeover or before any compressed message: 0");
    println!("  per connection, inline in the loop's table: 16 (Connection 256 -> 272 bytes)");
    drop((c, d));
}
