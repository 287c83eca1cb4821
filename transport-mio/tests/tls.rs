//! TLS on the WebSocket port: sessions over TLS 1.2 and 1.3 with ALPN,
//! certificate reload without dropping sessions, and refused handshakes
//! (a plaintext client, a garbage ClientHello) counted, closing only their
//! socket. Certificates are generated per test with rcgen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use common::{config, start, GUARD};
use realtime::Hub;
use realtime_mio::{Config, Tls};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::{Message, WebSocket};

type TlsWs = WebSocket<StreamOwned<ClientConnection, TcpStream>>;

/// A self-signed certificate for `localhost`, written to PEM files in a
/// directory of the test's own.
struct Cert {
    der: CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
}

fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("realtime-tls-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_cert(dir: &std::path::Path) -> Cert {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    Cert {
        der: cert.der().clone(),
        cert: cert_path,
        key: key_path,
    }
}

fn tls_config(cert: &Cert) -> (Config, Tls) {
    let tls = Tls::from_pem_files(&cert.cert, &cert.key).unwrap();
    let config = Config {
        tls: Some(tls.clone()),
        ..config()
    };
    (config, tls)
}

fn client_config(
    trust: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS connection to `addr` trusting `trust`, handshake done.
fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<StreamOwned<ClientConnection, TcpStream>, std::io::Error> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(GUARD))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

fn wss(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsWs {
    let stream = tls_connect(addr, config).unwrap();
    let url = format!("wss://localhost:{}/ws", addr.port());
    let (ws, _) = tungstenite::client::client(url, stream).unwrap();
    ws
}

fn echo(ws: &mut TlsWs, text: &str) -> String {
    ws.send(Message::text(text)).unwrap();
    match ws.read().unwrap() {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Reads until the server closes the socket; returns what it sent.
fn read_to_end(mut sock: TcpStream) -> Vec<u8> {
    sock.set_read_timeout(Some(GUARD)).unwrap();
    let mut got = Vec::new();
    // A reset after the alert is an end as good as EOF here.
    let _ = sock.read_to_end(&mut got);
    got
}

#[test]
fn a_websocket_session_runs_over_tls_1_3_and_1_2_with_alpn_http_1_1() {
    let cert = write_cert(&dir("versions"));
    let (config, _tls) = tls_config(&cert);
    let fx = start(config, Hub::new());
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let stream = tls_connect(fx.addr(), client_config(&cert.der, &[version])).unwrap();
        assert_eq!(stream.conn.protocol_version(), Some(version.version));
        assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let url = format!("wss://localhost:{}/ws", fx.addr().port());
        let (mut ws, _) = tungstenite::client::client(url, stream).unwrap();
        assert_eq!(echo(&mut ws, "hello over tls"), "hello over tls");
        // A frame larger than a TLS record (16 KiB) crosses several.
        let big = "x".repeat(40_000);
        assert_eq!(echo(&mut ws, &big), big);
    }
}

#[test]
fn plain_http_requests_are_served_over_tls_too() {
    let cert = write_cert(&dir("http"));
    let (config, _tls) = tls_config(&cert);
    let fx = start(config, Hub::new());
    let mut stream = tls_connect(
        fx.addr(),
        client_config(&cert.der, &[&rustls::version::TLS13]),
    )
    .unwrap();
    stream
        .write_all(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200 "), "{got}");
}

#[test]
fn a_plaintext_client_on_a_tls_port_is_refused_and_counted() {
    let cert = write_cert(&dir("plaintext"));
    let (config, _tls) = tls_config(&cert);
    let fx = start(config, Hub::new());
    let mut sock = TcpStream::connect(fx.addr()).unwrap();
    sock.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_to_end(sock);
    assert!(!got.starts_with(b"HTTP/"), "answered in plaintext: {got:?}");
    if !got.is_empty() {
        // A TLS alert record (content type 21).
        assert_eq!(got[0], 21, "{got:?}");
    }
    assert_eq!(fx.server.stats().tls_handshake_failures, 1);
    // The port still serves TLS clients.
    let mut ws = wss(
        fx.addr(),
        client_config(&cert.der, &[&rustls::version::TLS13]),
    );
    assert_eq!(echo(&mut ws, "still here"), "still here");
}

#[test]
fn garbage_client_hellos_are_refused_and_counted_without_touching_other_sessions() {
    let cert = write_cert(&dir("garbage"));
    let (config, _tls) = tls_config(&cert);
    let fx = start(config, Hub::new());
    let mut ws = wss(
        fx.addr(),
        client_config(&cert.der, &[&rustls::version::TLS13]),
    );
    let garbage: [&[u8]; 3] = [
        // A handshake record whose body is not a ClientHello.
        &[0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff],
        // A complete ClientHello message cut short inside its random.
        &[
            0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0x03, 0x03, 0x00, 0x00,
        ],
        // An unknown record type.
        &[0x42; 64],
    ];
    for (i, hello) in garbage.iter().enumerate() {
        let mut sock = TcpStream::connect(fx.addr()).unwrap();
        sock.write_all(hello).unwrap();
        let got = read_to_end(sock);
        if !got.is_empty() {
            assert_eq!(got[0], 21, "case {i}: not an alert: {got:?}");
        }
        assert_eq!(fx.server.stats().tls_handshake_failures, i as u64 + 1);
    }
    assert_eq!(echo(&mut ws, "unaffected"), "unaffected");
    assert_eq!(fx.server.stats().connections, 1);
}

#[test]
fn a_reload_serves_the_new_certificate_and_keeps_open_sessions() {
    let dir = dir("reload");
    let first = write_cert(&dir);
    let (config, tls) = tls_config(&first);
    let fx = start(config, Hub::new());
    let mut old = wss(
        fx.addr(),
        client_config(&first.der, &[&rustls::version::TLS13]),
    );
    assert_eq!(echo(&mut old, "before"), "before");

    let second = write_cert(&dir);
    tls.reload().unwrap();
    // A client trusting only the old certificate is refused now...
    assert!(tls_connect(
        fx.addr(),
        client_config(&first.der, &[&rustls::version::TLS13])
    )
    .is_err());
    // ...one trusting the new one gets in...
    let mut new = wss(
        fx.addr(),
        client_config(&second.der, &[&rustls::version::TLS13]),
    );
    assert_eq!(echo(&mut new, "after"), "after");
    // ...and the session opened before the reload goes on.
    assert_eq!(echo(&mut old, "still open"), "still open");
    fx.hub().broadcast("all", "to both").unwrap();
    for ws in [&mut old, &mut new] {
        match ws.read().unwrap() {
            Message::Text(t) => assert_eq!(t.as_str(), "to both"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_reload_from_a_bad_file_keeps_the_current_certificate() {
    let dir = dir("bad-reload");
    let cert = write_cert(&dir);
    let (config, tls) = tls_config(&cert);
    let fx = start(config, Hub::new());
    std::fs::write(&cert.cert, "not a certificate").unwrap();
    let err = tls.reload().unwrap_err();
    assert!(err.to_string().contains("cert.pem"), "{err}");
    let mut ws = wss(
        fx.addr(),
        client_config(&cert.der, &[&rustls::version::TLS13]),
    );
    assert_eq!(echo(&mut ws, "ok"), "ok");
}

#[test]
fn a_missing_key_file_is_a_clear_error() {
    let dir = dir("missing");
    let cert = write_cert(&dir);
    let err = Tls::from_pem_files(&cert.cert, dir.join("nope.pem")).unwrap_err();
    assert!(err.to_string().contains("nope.pem"), "{err}");
}
