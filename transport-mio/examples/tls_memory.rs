//! Measures what a TLS session adds to an idle connection once the
//! handshake is done: the heap bytes rustls's `ServerConnection` still
//! holds (counted by a global allocator that tracks live bytes) plus the
//! struct itself, which the connection keeps boxed.
//!
//! The server side is set up as `realtime_mio::Tls` sets it up (ring, TLS
//! 1.2 and 1.3, ALPN `http/1.1`, the same buffer limit) and driven the way
//! the transport drives it (`read_tls`, `process_new_packets`, `reader`,
//! `write_tls`); the client is rustls's, in the same process, over
//! in-memory pipes. After the handshake each side sends one small message
//! (the WebSocket upgrade and its 101), then the server is idle.
//!
//! Run: `cargo run --release -p realtime-mio --example tls_memory`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::alloc::System;
use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOC: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Heap bytes live now.
fn live() -> isize {
    let s = ALLOC.stats();
    (s.bytes_allocated as isize - s.bytes_deallocated as isize) + s.bytes_reallocated
}

/// Moves what `from` wants to send into `to`, and has `to` process it.
fn pump_to_server(from: &mut ClientConnection, to: &mut ServerConnection) {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).unwrap();
    }
    let mut rd = &wire[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets().unwrap();
    }
}

fn pump_to_client(from: &mut ServerConnection, to: &mut ClientConnection) {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).unwrap();
    }
    let mut rd = &wire[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets().unwrap();
    }
}

fn measure(version: &'static rustls::SupportedProtocolVersion) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server = Arc::new(server);
    let mut roots = RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = Arc::new(client);

    let mut c = ClientConnection::new(client, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = ServerConnection::new(Arc::clone(&server)).unwrap();
    s.set_buffer_limit(Some(64 * 1024));
    while c.is_handshaking() || s.is_handshaking() {
        pump_to_server(&mut c, &mut s);
        pump_to_client(&mut s, &mut c);
    }
    c.writer().write_all(&[b'u'; 200]).unwrap();
    pump_to_server(&mut c, &mut s);
    let mut buf = [0u8; 512];
    let n = s.reader().read(&mut buf).unwrap();
    assert_eq!(n, 200);
    s.writer().write_all(&[b'1'; 129]).unwrap();
    pump_to_client(&mut s, &mut c);
    let size = std::mem::size_of::<ServerConnection>();
    let mut s = Some(s);
    let with = live();
    drop(s.take());
    let heap = with - live();
    println!(
        "{:?}: ServerConnection struct {size} B + heap {heap} B = {} B per idle session",
        version.version,
        size as isize + heap
    );
}

fn main() {
    measure(&rustls::version::TLS13);
    measure(&rustls::version::TLS12);
}
