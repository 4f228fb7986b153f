//! HTTPS for the extender's listener (kube-scheduler's `enableHTTPS: true`).
//!
//! [`TlsSource`] holds a PEM certificate chain and private key read from
//! files, and optionally a CA bundle that client certificates must chain to,
//! and re-reads them when they change, so a certificate rotated by
//! cert-manager (kubelet swaps the Secret volume's files through a symlink)
//! is served without a restart; new files that do not load are logged, the
//! previous configuration stays in use and the files are tried again a little
//! later (a read can fail mid-rotation). [`serve`] runs the router on a TCP
//! listener with TLS and HTTP/1.1, which is what kube-scheduler's extender
//! client speaks, through the accept loop of [`crate::serve`] (header
//! timeout, connection limit).
//!
//! Client certificates: without a client CA none are asked for and anyone who
//! reaches the port may call the verbs, `bind` included (which creates
//! Bindings in any namespace). With one, the handshake fails for a client that
//! sends no certificate or one that does not chain to the bundle (webpki
//! checks, clientAuth usage included); kube-scheduler sends its
//! `tlsConfig.certFile`/`keyFile`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::serve::ServeOptions;

/// A client that connects but never completes the handshake is dropped after
/// this, so it holds neither a task nor graceful shutdown forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long files that failed to load wait before they are read again while
/// they look unchanged (a new connection triggers the attempt).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Why the certificate, key or client CA could not be used; each names the file. The
/// cause is in the message (not a `source`), so it prints once, on one line.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {what} file {}: {error}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("{what} file {}: malformed PEM: {error}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        error: pem::Error,
    },
    #[error("TLS certificate file {}: no PEM CERTIFICATE block in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error(
        "TLS private key file {}: no PEM private key in it (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error(
        "TLS private key file {} does not match the certificate in {} (a rotation half done?)",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS client CA file {}: no PEM CERTIFICATE block in it", path.display())]
    NoClientCa { path: PathBuf },
    #[error("TLS client CA file {}: certificate {index} (counting from 1) is not a usable CA: {error}", path.display())]
    BadClientCa {
        path: PathBuf,
        index: usize,
        error: rustls::Error,
    },
    #[error("TLS certificate file {} with private key file {}: {error}", cert.display(), key.display())]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        error: rustls::Error,
    },
}

const CERT: &str = "TLS certificate";
const KEY: &str = "TLS private key";
const CLIENT_CA: &str = "TLS client CA";

/// Reads `cert` (PEM chain, leaf first) and `key` (PEM PKCS#8, PKCS#1 or
/// SEC1) into a server configuration for HTTP/1.1; with `client_ca` (PEM
/// certificates), every client must present a certificate that chains to one
/// of them.
pub fn load_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<ServerConfig, TlsError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|error| TlsError::Read {
            what,
            path: path.to_path_buf(),
            error,
        })
    };
    let pem_err = |what, path: &Path, error| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        error,
    };
    let chain = CertificateDer::pem_slice_iter(&read(CERT, cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(CERT, cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let private_key = match PrivateKeyDer::from_pem_slice(&read(KEY, key)?) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: key.to_path_buf(),
            });
        }
        Err(e) => return Err(pem_err(KEY, key, e)),
    };
    let rejected = |error| match error {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => TlsError::KeyMismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        },
        error => TlsError::Rejected {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            error,
        },
    };
    // An explicit provider: the process-wide default is ambiguous (and
    // panics) when another crate also enables aws-lc-rs.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(rejected)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for (i, der) in CertificateDer::pem_slice_iter(&read(CLIENT_CA, path)?).enumerate() {
                let der = der.map_err(|e| pem_err(CLIENT_CA, path, e))?;
                roots.add(der).map_err(|error| TlsError::BadClientCa {
                    path: path.to_path_buf(),
                    index: i + 1,
                    error,
                })?;
            }
            // Not `allow_unauthenticated`: a client without a certificate is
            // refused in the handshake, as is one the roots do not sign.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                // The only error without CRLs: an empty root store.
                .map_err(|_| TlsError::NoClientCa {
                    path: path.to_path_buf(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        // Also checks that the key belongs to the leaf certificate.
        .with_single_cert(chain, private_key)
        .map_err(rejected)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What identifies one version of a file: a rewrite changes the mtime or
/// length, a symlink swap (Secret volumes) the inode. `None`: missing.
type Stamp = Option<(Option<SystemTime>, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((m.modified().ok(), m.len(), ino))
}

fn stamps(cert: &Path, key: &Path, client_ca: Option<&Path>) -> [Stamp; 3] {
    [stamp(cert), stamp(key), client_ca.and_then(stamp)]
}

/// The certificate, key and client CA files, re-read when they change.
#[derive(Debug)]
pub struct TlsSource {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    retry_after: Duration,
    current: Mutex<Current>,
}

struct Current {
    /// The files' stamps taken before the load that built `acceptor`. Only a
    /// successful load updates them: files that changed stay "changed" until
    /// they load, so a read that failed mid-rotation is retried even when
    /// nothing touches the files again.
    loaded: [Stamp; 3],
    /// The last failed attempt, so bad files are reported once and re-read
    /// at most every `retry_after` rather than on every connection.
    failed: Option<Failed>,
    acceptor: TlsAcceptor,
}

struct Failed {
    stamps: [Stamp; 3],
    at: Instant,
    error: String,
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current")
            .field("loaded", &self.loaded)
            .field("failed", &self.failed.as_ref().map(|f| &f.error))
            .finish_non_exhaustive()
    }
}

impl TlsSource {
    /// Loads the files now, asking no client certificate; an error here is
    /// fatal to the caller (there is no previous certificate to fall back on).
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<TlsSource, TlsError> {
        Self::new(cert.into(), key.into(), None)
    }

    /// As [`TlsSource::load`], and clients must present a certificate that
    /// chains to a CA in the PEM bundle `client_ca` (re-read on change too).
    pub fn load_with_client_ca(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        client_ca: impl Into<PathBuf>,
    ) -> Result<TlsSource, TlsError> {
        Self::new(cert.into(), key.into(), Some(client_ca.into()))
    }

    fn new(cert: PathBuf, key: PathBuf, client_ca: Option<PathBuf>) -> Result<TlsSource, TlsError> {
        let loaded = stamps(&cert, &key, client_ca.as_deref());
        let acceptor = TlsAcceptor::from(Arc::new(load_config(&cert, &key, client_ca.as_deref())?));
        Ok(TlsSource {
            cert,
            key,
            client_ca,
            retry_after: DEFAULT_RETRY_AFTER,
            current: Mutex::new(Current {
                loaded,
                failed: None,
                acceptor,
            }),
        })
    }

    /// How long files that failed to load and have not changed since wait
    /// before they are read again ([`DEFAULT_RETRY_AFTER`] unless set).
    pub fn retry_after(mut self, wait: Duration) -> TlsSource {
        self.retry_after = wait;
        self
    }

    /// The acceptor for a new connection, after reloading the files if they
    /// changed since the last good load (a few `stat`s per connection;
    /// kube-scheduler keeps its connections alive, so this is rare).
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let now = stamps(&self.cert, &self.key, self.client_ca.as_deref());
        if now == cur.loaded {
            return cur.acceptor.clone();
        }
        if let Some(f) = &cur.failed
            && f.stamps == now
            && f.at.elapsed() < self.retry_after
        {
            return cur.acceptor.clone();
        }
        match load_config(&self.cert, &self.key, self.client_ca.as_deref()) {
            Ok(config) => {
                cur.acceptor = TlsAcceptor::from(Arc::new(config));
                cur.loaded = now;
                cur.failed = None;
                tracing::info!(
                    cert = %self.cert.display(),
                    client_ca = ?self.client_ca.as_deref().map(Path::display),
                    "reloaded the TLS files"
                );
            }
            Err(e) => {
                let error = e.to_string();
                let again = cur.failed.as_ref().is_some_and(|f| f.stamps == now && f.error == error);
                if again {
                    tracing::debug!(%error, "new TLS files still do not load");
                } else {
                    tracing::warn!(%error, retry_after = ?self.retry_after,
                        "new TLS files do not load; still serving the previous configuration");
                }
                cur.failed = Some(Failed {
                    stamps: now,
                    at: Instant::now(),
                    error,
                });
            }
        }
        cur.acceptor.clone()
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then
/// stops accepting and waits for open connections to finish their requests,
/// with the default [`ServeOptions`]. A failed handshake (a plain-HTTP
/// client, an untrusting client) drops only that connection.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: TlsSource,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_with_options(listener, router, tls, ServeOptions::default(), shutdown).await
}

/// As [`serve`], with the header timeout and connection limit of `options`
/// (the accept loop of [`crate::serve`]; a handshake holds a slot too).
pub async fn serve_with_options(
    listener: TcpListener,
    router: Router,
    tls: TlsSource,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let tls = Arc::new(tls);
    crate::serve::serve_with(listener, router, options, shutdown, move |tcp, peer| {
        let tls = tls.clone();
        async move { handshake(&tls, tcp, peer).await }
    })
    .await
}

/// The TLS handshake of one connection, bounded by [`HANDSHAKE_TIMEOUT`];
/// `None` (logged) when it fails.
async fn handshake(tls: &TlsSource, tcp: TcpStream, peer: SocketAddr) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            // A refused client certificate is worth an operator's
            // attention (a misconfigured kube-scheduler, or a caller
            // that should not be there); other failures (probes, port
            // scans, plain HTTP) are noise.
            let refused = e
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .is_some_and(|e| {
                    matches!(
                        e,
                        rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_)
                    )
                });
            if refused {
                tracing::warn!(%peer, error = %e, "refused a TLS client: no or untrusted client certificate");
            } else {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
            }
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}
