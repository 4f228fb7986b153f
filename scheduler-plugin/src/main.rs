//! `railyard-scheduler`: serves the extender verbs and keeps the cluster
//! view current from the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use prometheus_client::registry::Registry;
use railyard_core::extender::ViewConfig;
use railyard_scheduler::app::RequestLimits;
use railyard_scheduler::binder::KubeBinder;
use railyard_scheduler::decision::DecisionKey;
use railyard_scheduler::serve::ServeOptions;
use railyard_scheduler::{AppState, Config, app, watch};

#[derive(Debug, Parser)]
#[command(name = "railyard-scheduler", about = "Railyard's kube-scheduler extender")]
struct Args {
    /// Address to serve the extender, /healthz and /metrics on.
    #[arg(long, env = "LISTEN", default_value = "0.0.0.0:8888")]
    listen: SocketAddr,
    /// URL prefix of the verbs (the scheduler config's urlPrefix path).
    #[arg(long, env = "URL_PREFIX", default_value = "/railyard")]
    url_prefix: String,
    /// Seconds a gang reservation waits for every member to bind before
    /// its unfilled slots are released and re-planned.
    #[arg(long, env = "RESERVATION_TTL_SECONDS", default_value_t = 120)]
    reservation_ttl_seconds: u64,
    /// Seconds a pod bound with a GPU decision waits for the device
    /// plugin's write-back (`railyard.dev/allocated-gpus`) of the GPUs
    /// kubelet gave. Past it, on a node whose plugin writes back, the pod's
    /// GPUs count as unknown and the node scores lowest for GPU asks until
    /// the write-back comes. 0: never wait.
    #[arg(long, env = "WRITEBACK_TIMEOUT_SECONDS", default_value_t = 60)]
    writeback_timeout_seconds: u64,
    /// Upkeep period (reservation expiry, packing mix), ms.
    #[arg(long, env = "TICK_MS", default_value_t = 1000)]
    tick_ms: u64,
    /// `spec.schedulerName`s whose pods this extender places (the
    /// kube-scheduler profiles that call it), comma-separated. Pods of other
    /// schedulers, and pods already bound, are never bound by it.
    #[arg(long, env = "SCHEDULER_NAMES", value_delimiter = ',', default_value = "railyard")]
    scheduler_name: Vec<String>,
    /// PEM certificate chain (leaf first) to serve HTTPS with, for
    /// kube-scheduler's `enableHTTPS: true`. Re-read when it changes. Needs
    /// --tls-private-key-file; without both, plain HTTP.
    #[arg(long, env = "TLS_CERT_FILE", requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC) of --tls-cert-file.
    #[arg(long, env = "TLS_PRIVATE_KEY_FILE", requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// PEM CA bundle: HTTPS clients must present a certificate (with the
    /// client auth usage) that chains to one of these CAs, or the handshake
    /// fails. kube-scheduler sends its extender tlsConfig.certFile/keyFile.
    /// Re-read when it changes. Needs --tls-cert-file and
    /// --tls-private-key-file; without it, any client is served.
    #[arg(long, env = "TLS_CLIENT_CA_FILE", requires_all = ["tls_cert_file", "tls_private_key_file"])]
    tls_client_ca_file: Option<PathBuf>,
    /// File holding the key (at least 32 bytes; a mounted Secret) that signs
    /// the decisions bind records on pods. A gang plan read back from the
    /// API counts only with a valid signature, so every replica and restart
    /// must hold the same key. Without it a random key is made at start,
    /// and gang reservations recorded before a restart are not rebuilt.
    #[arg(long, env = "DECISION_KEY_FILE")]
    decision_key_file: Option<PathBuf>,
    /// Seconds a connection may take to send a request's head, and may sit
    /// idle between requests, before it is closed (HTTP and HTTPS). 0: never.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT_SECONDS", default_value_t = 10)]
    http_header_timeout_seconds: u64,
    /// Seconds a request's body may take to arrive after its head; slower
    /// ones get 408 and the connection is closed. 0: never.
    #[arg(long, env = "HTTP_BODY_TIMEOUT_SECONDS", default_value_t = 10)]
    http_body_timeout_seconds: u64,
    /// Connections served at once (HTTP and HTTPS, TLS handshakes included);
    /// further ones wait to be accepted until one closes.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Largest request body in bytes; larger ones get 413. The default fits
    /// nodeCacheCapable requests (node names and the Pod) for 50,000 nodes;
    /// without nodeCacheCapable allow about 20 KB per node.
    #[arg(long, env = "MAX_REQUEST_BYTES", default_value_t = 16 << 20,
          value_parser = clap::value_parser!(u64).range(1024..=(1 << 32)))]
    max_request_bytes: u64,
    /// Bytes of request bodies held at once by all requests together; a
    /// request over budget waits (within the body timeout). Bounds what
    /// requests cost in memory, whatever the number of connections (at
    /// least --max-request-bytes).
    #[arg(long, env = "MAX_INFLIGHT_REQUEST_BYTES", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(1024..=(1 << 40)))]
    max_inflight_request_bytes: u64,
}

/// Ctrl-C, or SIGTERM (what Kubernetes sends a pod it stops).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server gracefully");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    // Bad certificate files fail here, before anything else starts.
    #[cfg(feature = "rustls-tls")]
    let tls = {
        use railyard_scheduler::tls::TlsSource;
        match (
            &args.tls_cert_file,
            &args.tls_private_key_file,
            &args.tls_client_ca_file,
        ) {
            (Some(cert), Some(key), None) => Some(TlsSource::load(cert, key)?),
            (Some(cert), Some(key), Some(ca)) => Some(TlsSource::load_with_client_ca(cert, key, ca)?),
            _ => None,
        }
    };
    #[cfg(not(feature = "rustls-tls"))]
    if args.tls_cert_file.is_some() || args.tls_private_key_file.is_some() || args.tls_client_ca_file.is_some() {
        anyhow::bail!("--tls-cert-file: this railyard-scheduler was built without the rustls-tls feature");
    }
    let decision_key = match &args.decision_key_file {
        Some(path) => DecisionKey::from_file(path)?,
        None => {
            tracing::warn!(
                "no --decision-key-file: decisions are signed with a key made for this process only; gang \
                 reservations recorded before a restart will not be rebuilt from the API"
            );
            DecisionKey::random()?
        }
    };
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let config = Config {
        url_prefix: args.url_prefix.clone(),
        view: ViewConfig {
            reservation_ttl_ms: args.reservation_ttl_seconds.saturating_mul(1000),
            writeback_timeout_ms: args.writeback_timeout_seconds.saturating_mul(1000),
            ..ViewConfig::default()
        },
    };
    let limits = RequestLimits {
        max_request_bytes: usize::try_from(args.max_request_bytes).unwrap_or(usize::MAX),
        body_timeout: Duration::from_secs(args.http_body_timeout_seconds),
        max_inflight_bytes: usize::try_from(args.max_inflight_request_bytes).unwrap_or(usize::MAX),
    };
    let serve_options = ServeOptions {
        header_timeout: Duration::from_secs(args.http_header_timeout_seconds),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
    };
    let state = Arc::new(
        AppState::new(config, Arc::new(KubeBinder::new(client.clone())), Registry::default())
            .with_scheduler_names(args.scheduler_name.clone())
            .with_request_limits(limits)
            .with_decision_key(decision_key),
    );
    tokio::spawn(watch::run(client, state.clone()));
    {
        let state = state.clone();
        let period = Duration::from_millis(args.tick_ms.max(10));
        tokio::spawn(async move {
            let mut t = tokio::time::interval(period);
            loop {
                t.tick().await;
                state.tick();
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    #[cfg(feature = "rustls-tls")]
    if let Some(tls) = tls {
        tracing::info!(
            addr = %args.listen,
            prefix = %args.url_prefix,
            client_ca = ?args.tls_client_ca_file,
            client_certificates = if args.tls_client_ca_file.is_some() { "required" } else { "not asked for" },
            ?serve_options,
            ?limits,
            "serving the extender over HTTPS"
        );
        return railyard_scheduler::tls::serve_with_options(
            listener,
            app(state),
            tls,
            serve_options,
            shutdown_signal(),
        )
        .await
        .context("serving");
    }
    tracing::info!(addr = %args.listen, prefix = %args.url_prefix, ?serve_options, ?limits, "serving the extender");
    railyard_scheduler::serve::serve(listener, app(state), serve_options, shutdown_signal())
        .await
        .context("serving")?;
    Ok(())
}
