//! HTTPS on the extender's listener: a real TLS client trusting a test CA
//! talks to `tls::serve` on 127.0.0.1; plain HTTP is refused without taking
//! the server down; rotated certificates are picked up by new connections and
//! bad ones are not; bad files are reported by name.
//!
//! Fixtures in tests/fixtures/tls/ (regenerate with `bash gen.sh` there): a
//! test CA, `server.crt`/`server.key` (EC, PKCS#8) and
//! `server2.crt`/`server2.key` (RSA, PKCS#1), both for 127.0.0.1 and localhost.
#![cfg(feature = "rustls-tls")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Fixture, PREFIX, node, pod};
use railyard_scheduler::app;
use railyard_scheduler::tls::{self, TlsSource};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
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

fn connector() -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der("ca.crt")).expect("CA");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
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
            let mut tls = connector().connect(server_name, tcp).await.expect("TLS handshake");
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
}

#[test]
fn the_binary_wants_both_flags_and_names_bad_files() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_railyard-scheduler"))
            .args(args)
            .env_remove("TLS_CERT_FILE")
            .env_remove("TLS_PRIVATE_KEY_FILE")
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
}
