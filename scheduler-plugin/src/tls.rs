//! HTTPS for the extender's listener (kube-scheduler's `enableHTTPS: true`).
//!
//! [`TlsSource`] holds a PEM certificate chain and private key read from
//! files and re-reads them when they change, so a certificate rotated by
//! cert-manager (kubelet swaps the Secret volume's files through a symlink)
//! is served without a restart; new files that do not load are logged and the
//! previous certificate stays in use. [`serve`] runs the router on a TCP
//! listener with TLS and HTTP/1.1, which is what kube-scheduler's extender
//! client speaks. Client certificates are not asked for: kube-scheduler sends
//! none unless configured to, and the extender API carries no credentials.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A client that connects but never completes the handshake is dropped after
/// this, so it holds neither a task nor graceful shutdown forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the certificate or key could not be used; each names the file. The
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
    #[error("TLS certificate file {} with private key file {}: {error}", cert.display(), key.display())]
    Rejected {
        cert: PathBuf,
        key: PathBuf,
        error: rustls::Error,
    },
}

const CERT: &str = "TLS certificate";
const KEY: &str = "TLS private key";

/// Reads `cert` (PEM chain, leaf first) and `key` (PEM PKCS#8, PKCS#1 or
/// SEC1) into a server configuration for HTTP/1.1.
pub fn load_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
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
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
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

/// The certificate and key files, re-read when they change.
#[derive(Debug)]
pub struct TlsSource {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<Current>,
}

struct Current {
    /// The files' stamps at the last load attempt, good or bad, so bad files
    /// are reported once rather than on every connection.
    seen: [Stamp; 2],
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl TlsSource {
    /// Loads the files now; an error here is fatal to the caller (there is
    /// no previous certificate to fall back on).
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<TlsSource, TlsError> {
        let (cert, key) = (cert.into(), key.into());
        let seen = [stamp(&cert), stamp(&key)];
        let acceptor = TlsAcceptor::from(Arc::new(load_config(&cert, &key)?));
        Ok(TlsSource {
            cert,
            key,
            current: Mutex::new(Current { seen, acceptor }),
        })
    }

    /// The acceptor for a new connection, after reloading the files if they
    /// changed since the last look (two `stat`s per connection; kube-scheduler
    /// keeps its connections alive, so this is rare).
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let now = [stamp(&self.cert), stamp(&self.key)];
        if now != cur.seen {
            cur.seen = now;
            match load_config(&self.cert, &self.key) {
                Ok(config) => {
                    cur.acceptor = TlsAcceptor::from(Arc::new(config));
                    tracing::info!(cert = %self.cert.display(), "reloaded the TLS certificate");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "new TLS files do not load; still serving the previous certificate")
                }
            }
        }
        cur.acceptor.clone()
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then
/// stops accepting and waits for open connections to finish their requests.
/// A failed handshake (a plain-HTTP client, an untrusting client) drops only
/// that connection.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: TlsSource,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let tls = Arc::new(tls);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like pass; back off
                    // rather than spin or stop serving (as axum::serve does).
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Requests and replies are small; do not let Nagle delay them.
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = hyper::server::conn::http1::Builder::new()
                // The timer enables hyper's header read timeout (30 s).
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
