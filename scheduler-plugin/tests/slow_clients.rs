//! Finding 7: slow clients over a real TCP connection on 127.0.0.1. A client
//! that sends half a request head is closed after the header timeout, one
//! that sends half a body gets 408 and is closed, and with a limit of N
//! connections the next one is not served while N are held and is served
//! once one closes; graceful shutdown still returns. Over HTTPS too.
//!
//! Timeouts are configured small (200 ms) and outcomes are awaited with a
//! generous bound ([`PATIENCE`]) that only keeps a broken server from hanging
//! the test: nothing here asserts how fast anything happens.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Fixture, node};
use railyard_scheduler::app::RequestLimits;
use railyard_scheduler::serve::{self, ServeOptions};
use railyard_scheduler::{AppState, app};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const PATIENCE: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(200);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

fn state(body_timeout: Duration) -> Arc<AppState> {
    let f = Fixture::new(60_000);
    f.add_node(&node("a", &[("nvidia.com/gpu", "4")], &[], None));
    let state = Arc::try_unwrap(f.state).expect("sole owner");
    Arc::new(state.with_request_limits(RequestLimits {
        body_timeout,
        ..RequestLimits::default()
    }))
}

impl Server {
    async fn plain(options: ServeOptions, body_timeout: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve::serve(listener, app(state(body_timeout)), options, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        let done = tokio::time::timeout(PATIENCE, self.task).await;
        done.expect("serve returns after shutdown")
            .expect("task")
            .expect("serve");
    }
}

/// Reads until the server closes the connection (EOF or reset): what it
/// sent. Panics if it is still open after [`PATIENCE`].
async fn until_closed(s: &mut (impl AsyncRead + Unpin)) -> String {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the server never closed the connection");
    String::from_utf8_lossy(&got).into_owned()
}

/// One keep-alive `GET /healthz` on an open connection: reads exactly the
/// response (`ok`, two bytes of body).
async fn healthz(s: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> String {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"\r\n\r\nok") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(PATIENCE, read).await.expect("no answer");
    String::from_utf8_lossy(&got).into_owned()
}

const HALF_HEAD: &[u8] = b"POST /railyard/filter HTTP/1.1\r\nHost: x\r\nContent-Ty";

fn half_body() -> Vec<u8> {
    let mut req = b"POST /railyard/filter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                    Content-Length: 100\r\n\r\n"
        .to_vec();
    req.extend_from_slice(&[b' '; 50]);
    req
}

#[tokio::test]
async fn half_a_request_head_is_closed_after_the_header_timeout() {
    let options = ServeOptions {
        header_timeout: SHORT,
        ..ServeOptions::default()
    };
    let s = Server::plain(options, Duration::from_secs(600)).await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(HALF_HEAD).await.expect("write");
    let got = until_closed(&mut c).await;
    assert!(!got.starts_with("HTTP/1.1 200"), "{got}");
    // An idle connection is closed the same way.
    let mut idle = TcpStream::connect(s.addr).await.expect("connect");
    assert!(healthz(&mut idle).await.starts_with("HTTP/1.1 200"));
    until_closed(&mut idle).await;
    s.stop().await;
}

#[tokio::test]
async fn half_a_body_gets_408_and_is_closed() {
    let options = ServeOptions {
        header_timeout: Duration::from_secs(600),
        ..ServeOptions::default()
    };
    let s = Server::plain(options, SHORT).await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(&half_body()).await.expect("write");
    let got = until_closed(&mut c).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("--http-body-timeout-seconds"), "{got}");
    // A whole request on a new connection is served.
    let mut ok = TcpStream::connect(s.addr).await.expect("connect");
    assert!(healthz(&mut ok).await.starts_with("HTTP/1.1 200"));
    drop(ok);
    s.stop().await;
}

#[tokio::test]
async fn the_connection_limit_holds_the_next_connection_until_one_closes() {
    const N: usize = 3;
    let options = ServeOptions {
        header_timeout: Duration::from_secs(600),
        max_connections: N,
    };
    let s = Server::plain(options, Duration::from_secs(600)).await;
    // Each held connection is served once, so it surely holds a slot.
    let mut held = Vec::new();
    for _ in 0..N {
        let mut c = TcpStream::connect(s.addr).await.expect("connect");
        assert!(healthz(&mut c).await.starts_with("HTTP/1.1 200"));
        held.push(c);
    }
    // The kernel completes the handshake (backlog); the server does not
    // serve it. Waiting a little proves nothing by itself, but a server
    // without the limit answers at once and fails here.
    let mut next = TcpStream::connect(s.addr).await.expect("connect");
    next.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), next.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the limit: {early:?}");
    // One held connection closes: the waiting one is served.
    drop(held.remove(0));
    let got = until_closed(&mut next).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    // Shutdown closes the idle held ones and returns.
    s.stop().await;
    for mut c in held {
        until_closed(&mut c).await;
    }
}

#[cfg(feature = "rustls-tls")]
mod https {
    use std::path::{Path, PathBuf};

    use railyard_scheduler::tls::{self, TlsSource};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::TlsConnector;

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    async fn server(options: ServeOptions, body_timeout: Duration) -> Server {
        let source = TlsSource::load(fixture("server.crt"), fixture("server.key")).expect("load");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tls::serve_with_options(
            listener,
            app(state(body_timeout)),
            source,
            options,
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(fixture("ca.crt")).expect("CA"))
            .expect("CA");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("127.0.0.1").expect("name");
        tokio::time::timeout(PATIENCE, TlsConnector::from(Arc::new(config)).connect(name, tcp))
            .await
            .expect("handshake hung")
            .expect("handshake")
    }

    #[tokio::test]
    async fn https_has_the_same_timeouts_and_limit() {
        let options = ServeOptions {
            header_timeout: SHORT,
            max_connections: 2,
        };
        let s = server(options, SHORT).await;
        let mut c = connect(s.addr).await;
        c.write_all(HALF_HEAD).await.expect("write");
        until_closed(&mut c).await;
        let mut c = connect(s.addr).await;
        c.write_all(&half_body()).await.expect("write");
        let got = until_closed(&mut c).await;
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        s.stop().await;
        // The limit: two served and held, the third waits for one to close.
        let options = ServeOptions {
            header_timeout: Duration::from_secs(600),
            max_connections: 2,
        };
        let s = server(options, Duration::from_secs(600)).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = connect(s.addr).await;
            assert!(healthz(&mut c).await.starts_with("HTTP/1.1 200"));
            held.push(c);
        }
        // Not even the handshake is answered while both slots are taken.
        let tcp = TcpStream::connect(s.addr).await.expect("connect");
        let waiting = tokio::spawn(async move {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_file(fixture("ca.crt")).expect("CA"))
                .expect("CA");
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            let name = ServerName::try_from("127.0.0.1").expect("name");
            let mut c = TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .expect("handshake");
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .expect("write");
            until_closed(&mut c).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "served beyond the limit");
        drop(held.remove(0));
        let got = tokio::time::timeout(PATIENCE, waiting)
            .await
            .expect("never served")
            .expect("task");
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        drop(held);
        s.stop().await;
    }
}
