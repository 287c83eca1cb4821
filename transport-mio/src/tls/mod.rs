//! TLS on the WebSocket port: the server's certificate, reloadable, and
//! the rustls configuration every TLS connection is accepted with.
//!
//! # Design
//!
//! One [`Tls`] per server holds one `rustls::ServerConfig` (TLS 1.2 and
//! 1.3, the `ring` provider, ALPN `http/1.1`) whose certificate resolver
//! reads the current certificate from an `ArcSwap`. [`Tls::reload`] parses
//! the PEM files again and swaps the new certificate in: handshakes that
//! start afterwards use it, sessions already established keep their keys
//! (a certificate is only used during the handshake), so a reload drops
//! no connection. A reload that fails (unreadable file, a key that does not
//! match the certificate) leaves the current certificate in place and
//! returns the error.
//!
//! Each connection's TLS state (`rustls::ServerConnection`) lives in its
//! [`TlsStream`] (`stream.rs`), owned by the connection on its loop like
//! the socket it wraps; the connection's phases see a plain byte stream.
//!
//! # Invariants
//!
//! - The resolver always holds a certificate whose key matches it: one is
//!   stored only after `CertifiedKey::from_der` checked the pair.
//! - Nothing here is touched per frame: the `ArcSwap` is read once per
//!   handshake.

mod stream;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;

pub(crate) use stream::{is_handshake_failure, Socket, TlsStream};

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// rustls refused the certificate or key (unsupported key type, a key
    /// that does not match the certificate).
    #[error("certificate/key refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server's TLS settings: a certificate chain and key read from PEM
/// files, reloadable while the server runs ([`Tls::reload`]).
///
/// Cloning is cheap and shares the certificate: a reload through any clone
/// is seen by every connection accepted afterwards.
///
/// # Examples
///
/// ```no_run
/// use realtime_mio::{Config, Tls};
///
/// let tls = Tls::from_pem_files("cert.pem", "key.pem")?;
/// let config = Config { tls: Some(tls.clone()), ..Config::default() };
/// // Later, on SIGHUP:
/// tls.reload()?;
/// # Ok::<(), realtime_mio::TlsError>(())
/// ```
#[derive(Clone)]
pub struct Tls {
    cert: Arc<Path>,
    key: Arc<Path>,
    resolver: Arc<Resolver>,
    config: Arc<ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads a certificate chain (PEM, leaf first) and its private key
    /// (PEM: PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    ///
    /// [`TlsError::Pem`] if a file cannot be read or parsed,
    /// [`TlsError::Rustls`] if the key is unsupported or does not match.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let cert: Arc<Path> = Arc::from(cert.as_ref());
        let key: Arc<Path> = Arc::from(key.as_ref());
        let certified = load(&cert, &key)?;
        let resolver = Arc::new(Resolver(ArcSwap::from_pointee(certified)));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            cert,
            key,
            resolver,
            config: Arc::new(config),
        })
    }

    /// Reads the PEM files again and uses the new certificate for every
    /// handshake from now on; established sessions are not touched.
    ///
    /// # Errors
    ///
    /// As [`Tls::from_pem_files`]; the current certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certified = load(&self.cert, &self.key)?;
        self.resolver.0.store(Arc::new(certified));
        Ok(())
    }

    /// A new server-side TLS session for an accepted socket.
    pub(crate) fn accept(&self) -> Result<rustls::ServerConnection, rustls::Error> {
        rustls::ServerConnection::new(Arc::clone(&self.config))
    }
}

/// The crypto provider: `ring` (builds with a C compiler alone).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks a certificate chain and key.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let pem = |path: &Path, reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem(cert, "no CERTIFICATE in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, e.to_string()))?;
    Ok(CertifiedKey::from_der(chain, key_der, &provider())?)
}

/// Hands every handshake the current certificate.
#[derive(Debug)]
struct Resolver(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}
