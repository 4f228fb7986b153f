//! HTTPS on the extender's listener: a real TLS client trusting a test CA
//! talks to `tls::serve` on 127.0.0.1; plain HTTP is refused without taking
//! the server down; rotated certificates are picked up by new connections and
//! bad ones are not, and a reload that failed is retried; with a client CA,
//! clients without a certificate from it are refused in the handshake; bad
//! files are reported by name.
//!
//! Fixtures in tests/fixtures/tls/ (regenerate with `bash gen.sh` there): a
//! test CA, `server.crt`/`server.key` (EC, PKCS#8) and
//! `server2.crt`/`server2.key` (RSA, PKCS#1), both for 127.0.0.1 and localhost;
//! `client.crt`/`client.key`, a client certificate from the test CA, and
//! `other-client.crt`/`other-client.key`, one from a second CA, `other-ca.crt`.
#![cfg(feature = "rustls-tls")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{Fixture, PREFIX, node, pod};
use railyard_scheduler::app;
use railyard_scheduler::tls::{self, TlsSource};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// Bound on anything that should happen at once, so a broken server fails
/// the test instead of hanging it. Not a speed assertion.
const PATIENCE: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn der(name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(fixture(name)).expect("fixture certificate")
}

/// A fresh directory for files the test rewrites.
fn scratch(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tls").join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// A client trusting the test CA; with `client`, presenting the fixture
/// certificate `{client}.crt` (and its key) when the server asks for one.
fn connector(client: Option<&str>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der("ca.crt")).expect("CA");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(name) => {
            let key = PrivateKeyDer::from_pem_file(fixture(&format!("{name}.key"))).expect("client key");
            builder
                .with_client_auth_cert(vec![der(&format!("{name}.crt"))], key)
                .expect("client certificate")
        }
    };
    TlsConnector::from(Arc::new(config))
}

struct Server {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// The extender's router (nodes `a` with 4 GPUs, `b` with 1) over TLS.
    async fn start(source: TlsSource) -> Server {
        let f = Fixture::new(60_000);
        f.add_node(&node("a", &[("nvidia.com/gpu", "4")], &[], None));
        f.add_node(&node("b", &[("nvidia.com/gpu", "1")], &[], None));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tls::serve(listener, app(f.state.clone()), source, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// One HTTPS request on a new connection (checking the certificate
    /// against the test CA for `name`): the status, the body and the
    /// certificate the server presented.
    async fn request(
        &self,
        name: &str,
        method: &str,
        path: &str,
        body: &str,
    ) -> (u16, String, CertificateDer<'static>) {
        let exchange = async {
            let tcp = TcpStream::connect(self.addr).await.expect("connect");
            let server_name = ServerName::try_from(name.to_string()).expect("server name");
            let mut tls = connector(None).connect(server_name, tcp).await.expect("TLS handshake");
            let req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {name}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            tls.write_all(req.as_bytes()).await.expect("write");
            let mut resp = Vec::new();
            tls.read_to_end(&mut resp).await.expect("read");
            let cert = tls.get_ref().1.peer_certificates().expect("server certificate")[0].clone();
            (String::from_utf8(resp).expect("utf-8"), cert)
        };
        let (resp, cert) = tokio::time::timeout(PATIENCE, exchange)
            .await
            .expect("HTTPS exchange hung");
        let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        (status, body.to_string(), cert)
    }

    /// `GET path` on a new connection as `client` (see [`connector`]): the
    /// status and body, or why no answer came (the handshake failed, the
    /// server closed or reset the connection).
    async fn attempt(&self, client: Option<&str>, path: &str) -> Result<(u16, String), String> {
        let exchange = async {
            let tcp = TcpStream::connect(self.addr).await.expect("connect");
            let server_name = ServerName::try_from("127.0.0.1").expect("server name");
            // In TLS 1.3 the client finishes its side of the handshake before
            // the server has checked the client's certificate, so a refusal
            // may only show when reading.
            let mut tls = connector(client)
                .connect(server_name, tcp)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            tls.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
            let mut resp = Vec::new();
            tls.read_to_end(&mut resp).await.map_err(|e| format!("read: {e}"))?;
            Ok::<_, String>(String::from_utf8(resp).expect("utf-8"))
        };
        let resp = tokio::time::timeout(PATIENCE, exchange)
            .await
            .expect("HTTPS exchange hung")?;
        let (head, body) = resp
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP response: {resp:?}"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        Ok((status, body.to_string()))
    }

    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        let done = tokio::time::timeout(PATIENCE, self.task).await;
        done.expect("serve returns after shutdown")
            .expect("task")
            .expect("serve");
    }
}

/// Asks over new connections until the server presents `want`.
async fn wait_for_cert(s: &Server, want: &CertificateDer<'static>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, body, cert) = s.request("localhost", "GET", "/healthz", "").await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        if &cert == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn serves_the_extender_over_https() {
    let s = Server::start(TlsSource::load(fixture("server.crt"), fixture("server.key")).expect("load")).await;
    let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu", "2")], &[]);
    let args = json!({"Pod": p, "Nodes": null, "NodeNames": ["a", "b"]}).to_string();
    let (status, body, cert) = s.request("127.0.0.1", "POST", &format!("{PREFIX}/filter"), &args).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(cert, der("server.crt"));
    let r: Value = serde_json::from_str(&body).expect("filter result");
    assert_eq!(r["NodeNames"], json!(["a"]), "{r}");
    assert_eq!(r["Error"], "");
    assert!(r["FailedNodes"]["b"].is_string() || r["FailedAndUnresolvableNodes"]["b"].is_string());
    // /healthz and /metrics on the same listener, by name as well as by IP.
    assert_eq!(s.request("localhost", "GET", "/healthz", "").await.0, 200);
    let (status, metrics, _) = s.request("127.0.0.1", "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("verb=\"filter\""), "{metrics}");
    s.stop().await;
}

#[tokio::test]
async fn plain_http_is_refused_and_the_server_keeps_serving() {
    let s = Server::start(TlsSource::load(fixture("server.crt"), fixture("server.key")).expect("load")).await;
    for _ in 0..2 {
        let plain = async {
            let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .await
                .expect("write");
            let mut resp = Vec::new();
            // The server closes (after a TLS alert at most); a reset is as good.
            let _ = tcp.read_to_end(&mut resp).await;
            resp
        };
        let resp = tokio::time::timeout(PATIENCE, plain)
            .await
            .expect("the server left a plain client hanging");
        assert!(
            !resp.starts_with(b"HTTP/"),
            "answered plain HTTP: {}",
            String::from_utf8_lossy(&resp)
        );
        let (status, body, _) = s.request("127.0.0.1", "GET", "/healthz", "").await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    s.stop().await;
}

#[tokio::test]
async fn rotation_by_overwriting_the_files() {
    let d = scratch("overwrite");
    let (crt, key) = (d.join("tls.crt"), d.join("tls.key"));
    std::fs::copy(fixture("server.crt"), &crt).expect("copy");
    std::fs::copy(fixture("server.key"), &key).expect("copy");
    let s = Server::start(TlsSource::load(&crt, &key).expect("load")).await;
    assert_eq!(s.request("127.0.0.1", "GET", "/healthz", "").await.2, der("server.crt"));
    std::fs::copy(fixture("server2.crt"), &crt).expect("copy");
    std::fs::copy(fixture("server2.key"), &key).expect("copy");
    wait_for_cert(&s, &der("server2.crt")).await;
    s.stop().await;
}

/// Kubernetes writes a Secret volume as `tls.crt -> ..data/tls.crt` with
/// `..data` a symlink it swaps to a new directory (cert-manager renewals).
#[cfg(unix)]
#[tokio::test]
async fn rotation_by_secret_volume_symlink_swap_keeps_the_old_cert_over_bad_files() {
    let d = scratch("swap");
    let version = |name: &str, crt: &[u8], key: &[u8]| {
        std::fs::create_dir(d.join(name)).expect("dir");
        std::fs::write(d.join(name).join("tls.crt"), crt).expect("write");
        std::fs::write(d.join(name).join("tls.key"), key).expect("write");
        let tmp = d.join("..data_tmp");
        std::os::unix::fs::symlink(name, &tmp).expect("symlink");
        std::fs::rename(&tmp, d.join("..data")).expect("swap");
    };
    let read = |n: &str| std::fs::read(fixture(n)).expect("fixture");
    version("v1", &read("server.crt"), &read("server.key"));
    for f in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(Path::new("..data").join(f), d.join(f)).expect("symlink");
    }
    let s = Server::start(TlsSource::load(d.join("tls.crt"), d.join("tls.key")).expect("load")).await;
    assert_eq!(s.request("127.0.0.1", "GET", "/healthz", "").await.2, der("server.crt"));

    // A bad renewal: garbage certificate, then a key that is not the
    // certificate's. Every new connection still gets the old certificate.
    let bad: [(&str, &[u8], &[u8]); 2] = [
        ("v2", b"not a certificate\n", &read("server.key")),
        ("v3", &read("server.crt"), &read("server2.key")),
    ];
    for (name, crt, key) in bad {
        version(name, crt, key);
        for _ in 0..2 {
            let (status, _, cert) = s.request("127.0.0.1", "GET", "/healthz", "").await;
            assert_eq!((status, cert), (200, der("server.crt")), "after {name}");
        }
    }

    version("v4", &read("server2.crt"), &read("server2.key"));
    wait_for_cert(&s, &der("server2.crt")).await;
    s.stop().await;
}

/// Sets `path`'s modification time, so a rewrite of the same length in place
/// leaves the file looking unchanged to a watcher of (mtime, length, inode).
fn set_mtime(path: &Path, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .expect("set mtime");
}

/// What the reloader compares: modification time, length and inode.
#[cfg(unix)]
fn look(path: &Path) -> (SystemTime, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).expect("metadata");
    (m.modified().expect("mtime"), m.len(), m.ino())
}

/// A rotation whose first read fails (here: the key still garbage when the
/// first connection looks) and whose files then become good without looking
/// any different (same mtime, length and inode) is still picked up: only a
/// successful load marks files as seen.
#[cfg(unix)]
#[tokio::test]
async fn a_reload_that_failed_is_retried_without_the_files_changing_again() {
    let d = scratch("retry");
    let (crt, key) = (d.join("tls.crt"), d.join("tls.key"));
    std::fs::copy(fixture("server.crt"), &crt).expect("copy");
    std::fs::copy(fixture("server.key"), &key).expect("copy");
    let source = TlsSource::load(&crt, &key)
        .expect("load")
        // Short, so the test does not wait out the default.
        .retry_after(Duration::from_millis(20));
    let s = Server::start(source).await;
    assert_eq!(s.request("127.0.0.1", "GET", "/healthz", "").await.2, der("server.crt"));

    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let good_key = std::fs::read(fixture("server2.key")).expect("fixture");
    std::fs::copy(fixture("server2.crt"), &crt).expect("copy");
    std::fs::write(&key, vec![b'x'; good_key.len()]).expect("write");
    set_mtime(&crt, t);
    set_mtime(&key, t);
    let bad = (look(&crt), look(&key));
    // The first connection after the rotation reads the bad key: it fails
    // and the old certificate stays.
    for _ in 0..2 {
        let (status, _, cert) = s.request("127.0.0.1", "GET", "/healthz", "").await;
        assert_eq!((status, cert), (200, der("server.crt")));
    }

    // The key becomes good in place, with the same stamp as the bad one.
    std::fs::write(&key, &good_key).expect("write");
    set_mtime(&key, t);
    assert_eq!((look(&crt), look(&key)), bad, "the files must look unchanged");
    wait_for_cert(&s, &der("server2.crt")).await;
    s.stop().await;
}

fn server_with_client_ca(ca: &Path) -> TlsSource {
    TlsSource::load_with_client_ca(fixture("server.crt"), fixture("server.key"), ca).expect("load")
}

/// Asserts that `client` gets no answer: the server ends the handshake with
/// the TLS alert `alert`.
async fn assert_refused(s: &Server, client: Option<&str>, alert: &str) {
    match s.attempt(client, &format!("{PREFIX}/bind")).await {
        Err(e) => assert!(e.contains(&format!("fatal alert: {alert}")), "client {client:?}: {e}"),
        Ok(r) => panic!("client {client:?} was answered: {r:?}"),
    }
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_its_certificates_are_served() {
    let s = Server::start(server_with_client_ca(&fixture("ca.crt"))).await;
    for _ in 0..2 {
        // No certificate; one from another CA; the server's own certificate
        // (the right CA, but not for client authentication).
        for (client, alert) in [
            (None, "CertificateRequired"),
            (Some("other-client"), "UnknownCA"),
            (Some("server"), "UnsupportedCertificate"),
        ] {
            assert_refused(&s, client, alert).await;
        }
        // The server kept serving, and serves the right client everything.
        assert_eq!(s.attempt(Some("client"), "/healthz").await, Ok((200, "ok".into())));
    }
    let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu", "2")], &[]);
    let args = json!({"Pod": p, "Nodes": null, "NodeNames": ["a", "b"]}).to_string();
    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    let server_name = ServerName::try_from("127.0.0.1").expect("server name");
    let mut tls = connector(Some("client"))
        .connect(server_name, tcp)
        .await
        .expect("handshake");
    let req = format!(
        "POST {PREFIX}/filter HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{args}",
        args.len()
    );
    let mut resp = String::new();
    let exchange = async {
        tls.write_all(req.as_bytes()).await.expect("write");
        tls.read_to_string(&mut resp).await.expect("read");
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("HTTPS exchange hung");
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{resp}");
    let r: Value = serde_json::from_str(body).expect("filter result");
    assert_eq!(r["NodeNames"], json!(["a"]), "{r}");
    s.stop().await;
}

#[tokio::test]
async fn without_a_client_ca_clients_need_no_certificate() {
    let s = Server::start(TlsSource::load(fixture("server.crt"), fixture("server.key")).expect("load")).await;
    for client in [None, Some("client"), Some("other-client")] {
        assert_eq!(
            s.attempt(client, "/healthz").await,
            Ok((200, "ok".into())),
            "client {client:?}"
        );
    }
    s.stop().await;
}

/// The client CA file is re-read on change like the certificate: replacing
/// it switches which clients get in, without a restart.
#[tokio::test]
async fn a_rotated_client_ca_is_picked_up() {
    let d = scratch("client-ca");
    let ca = d.join("ca.crt");
    std::fs::copy(fixture("ca.crt"), &ca).expect("copy");
    let s = Server::start(server_with_client_ca(&ca)).await;
    assert_eq!(s.attempt(Some("client"), "/healthz").await, Ok((200, "ok".into())));
    assert_refused(&s, Some("other-client"), "UnknownCA").await;

    std::fs::copy(fixture("other-ca.crt"), &ca).expect("copy");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while s.attempt(Some("other-client"), "/healthz").await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new client CA was never used"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        s.attempt(Some("other-client"), "/healthz").await,
        Ok((200, "ok".into()))
    );
    assert_refused(&s, Some("client"), "UnknownCA").await;
    assert_refused(&s, None, "CertificateRequired").await;
    s.stop().await;
}

#[test]
fn bad_files_are_named_in_the_error() {
    let d = scratch("bad");
    let write = |name: &str, text: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let (crt, key) = (fixture("server.crt"), fixture("server.key"));
    let err = |c: &Path, k: &Path| TlsSource::load(c, k).expect_err("must not load").to_string();

    let missing = d.join("missing.crt");
    let e = err(&missing, &key);
    assert!(
        e.contains("TLS certificate file") && e.contains(&*missing.to_string_lossy()),
        "{e}"
    );
    let e = err(&crt, &d.join("missing.key"));
    assert!(e.contains("TLS private key file") && e.contains("missing.key"), "{e}");

    let garbage = write("garbage.crt", b"hello\n");
    let e = err(&garbage, &key);
    assert!(
        e.contains(&*garbage.to_string_lossy()) && e.contains("no PEM CERTIFICATE"),
        "{e}"
    );
    // The key where the certificate should be (and the other way round).
    let e = err(&key, &crt);
    assert!(e.contains("server.key") && e.contains("no PEM CERTIFICATE"), "{e}");
    let e = err(&crt, &crt);
    assert!(
        e.contains("TLS private key file") && e.contains("server.crt") && e.contains("no PEM private key"),
        "{e}"
    );

    let pem = std::fs::read(&crt).expect("read");
    let truncated = write("truncated.crt", &pem[..pem.len() / 2]);
    let e = err(&truncated, &key);
    assert!(e.contains("truncated.crt") && e.contains("malformed PEM"), "{e}");

    let e = err(&crt, &fixture("server2.key"));
    assert!(
        e.contains("server.crt") && e.contains("server2.key") && e.contains("does not match"),
        "{e}"
    );

    // Both key encodings load: PKCS#8 (server.key) and PKCS#1 RSA.
    TlsSource::load(fixture("server2.crt"), fixture("server2.key")).expect("RSA key");

    // The client CA bundle.
    let ca_err = |ca: &Path| {
        TlsSource::load_with_client_ca(&crt, &key, ca)
            .expect_err("must not load")
            .to_string()
    };
    let e = ca_err(&d.join("missing-ca.crt"));
    assert!(e.contains("TLS client CA file") && e.contains("missing-ca.crt"), "{e}");
    let e = ca_err(&key);
    assert!(
        e.contains("TLS client CA file") && e.contains("server.key") && e.contains("no PEM CERTIFICATE"),
        "{e}"
    );
    let e = ca_err(&truncated);
    assert!(
        e.contains("TLS client CA file") && e.contains("truncated.crt") && e.contains("malformed PEM"),
        "{e}"
    );
    // A PEM block that is not a certificate inside, after a good one.
    let mut bundle = std::fs::read(fixture("ca.crt")).expect("read");
    bundle.extend_from_slice(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let broken = write("broken-ca.crt", &bundle);
    let e = ca_err(&broken);
    assert!(
        e.contains("TLS client CA file") && e.contains("broken-ca.crt") && e.contains("certificate 2"),
        "{e}"
    );
    // A bundle of two CAs loads.
    let mut two = std::fs::read(fixture("ca.crt")).expect("read");
    two.extend(std::fs::read(fixture("other-ca.crt")).expect("read"));
    TlsSource::load_with_client_ca(&crt, &key, write("two-ca.crt", &two)).expect("two CAs");
}

#[test]
fn the_binary_wants_both_flags_and_names_bad_files() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_railyard-scheduler"))
            .args(args)
            .env_remove("TLS_CERT_FILE")
            .env_remove("TLS_PRIVATE_KEY_FILE")
            .env_remove("TLS_CLIENT_CA_FILE")
            .output()
            .expect("run railyard-scheduler");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let crt = fixture("server.crt");
    let (ok, err) = run(&["--tls-cert-file", &crt.to_string_lossy()]);
    assert!(!ok && err.contains("--tls-private-key-file"), "{err}");
    let (ok, err) = run(&["--tls-private-key-file", &crt.to_string_lossy()]);
    assert!(!ok && err.contains("--tls-cert-file"), "{err}");
    // Bad files stop it before it reaches for the cluster.
    let (ok, err) = run(&[
        "--tls-cert-file",
        &crt.to_string_lossy(),
        "--tls-private-key-file",
        "/nonexistent/tls.key",
    ]);
    assert!(
        !ok && err.contains("/nonexistent/tls.key") && err.contains("TLS private key file"),
        "{err}"
    );
    // The client CA needs the certificate and key.
    let ca = fixture("ca.crt");
    let (ok, err) = run(&["--tls-client-ca-file", &ca.to_string_lossy()]);
    assert!(
        !ok && err.contains("--tls-cert-file") && err.contains("--tls-private-key-file"),
        "{err}"
    );
    let key = fixture("server.key");
    let (ok, err) = run(&[
        "--tls-client-ca-file",
        &ca.to_string_lossy(),
        "--tls-private-key-file",
        &key.to_string_lossy(),
    ]);
    assert!(!ok && err.contains("--tls-cert-file"), "{err}");
    let (ok, err) = run(&[
        "--tls-cert-file",
        &crt.to_string_lossy(),
        "--tls-private-key-file",
        &key.to_string_lossy(),
        "--tls-client-ca-file",
        "/nonexistent/client-ca.crt",
    ]);
    assert!(
        !ok && err.contains("/nonexistent/client-ca.crt") && err.contains("TLS client CA file"),
        "{err}"
    );
}
