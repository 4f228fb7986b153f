//! The extender's accept loop, shared by plain HTTP and HTTPS
//! ([`crate::tls::serve`]): HTTP/1.1 only (what kube-scheduler's extender
//! client speaks), with a header read timeout and a connection limit, and
//! graceful shutdown.
//!
//! - **Header timeout.** A connection that has not sent a whole request head
//!   within [`ServeOptions::header_timeout`] is closed. hyper starts this
//!   clock whenever it waits for a request head, so it is also the idle
//!   timeout of a keep-alive connection (kube-scheduler's Go client simply
//!   reconnects; a request it had not sent yet is retried).
//! - **Body timeout and size** are per request and live in the router
//!   ([`crate::app::RequestLimits`]), so they hold for every transport.
//! - **Connection limit.** At most [`ServeOptions::max_connections`]
//!   connections are served at once (TLS handshakes included). When all are
//!   taken the loop stops accepting until one closes: new connections wait in
//!   the kernel's backlog and are served in turn rather than refused, so a
//!   burst of binds from kube-scheduler is delayed, not failed. Idle ones free
//!   their slot after the header timeout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Default of `--http-header-timeout-seconds`: kube-scheduler writes a whole
/// request at once, and its own `httpTimeout` (30 s upstream default, 5 s in
/// configs/scheduler) gives up well before a slower client would matter.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--max-connections`: kube-scheduler opens one connection per
/// request in flight (filter and prioritize one at a time, binds in
/// parallel); a few dozen is a busy scheduler.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;

/// Transport limits of the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Closes a connection that has not sent a whole request head (or has
    /// sat idle between requests) for this long. Zero: no timeout.
    pub header_timeout: Duration,
    /// Connections served at once; further ones wait to be accepted.
    /// Zero is treated as one.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `router` over plain HTTP on `listener` until `shutdown` completes,
/// then stops accepting and waits for open connections to finish their
/// requests (idle keep-alive connections are closed at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_with(
        listener,
        router,
        options,
        shutdown,
        |tcp, _peer| async move { Some(tcp) },
    )
    .await
}

/// The accept loop: `wrap` turns an accepted TCP connection into the stream
/// HTTP is spoken on (a TLS handshake), or `None` to drop it. It runs in the
/// connection's own task, holding the connection's slot.
pub(crate) async fn serve_with<W, F, S>(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
    wrap: W,
) -> io::Result<()>
where
    W: Fn(TcpStream, SocketAddr) -> F + Send + Sync + 'static,
    F: Future<Output = Option<S>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let header_timeout = (!options.header_timeout.is_zero()).then_some(options.header_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Taken before accepting: while every slot is busy nothing is
        // accepted, and the permit lives as long as the connection's task.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => break,
            },
        };
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
        let router = router.clone();
        let watcher = graceful.watcher();
        let stream = wrap(tcp, peer);
        tokio::spawn(async move {
            let _permit = permit;
            let Some(stream) = stream.await else { return };
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
