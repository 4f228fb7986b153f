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
use railyard_scheduler::binder::KubeBinder;
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
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let config = Config {
        url_prefix: args.url_prefix.clone(),
        view: ViewConfig {
            reservation_ttl_ms: args.reservation_ttl_seconds.saturating_mul(1000),
            ..ViewConfig::default()
        },
    };
    let state = Arc::new(
        AppState::new(config, Arc::new(KubeBinder::new(client.clone())), Registry::default())
            .with_scheduler_names(args.scheduler_name.clone()),
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
            "serving the extender over HTTPS"
        );
        return railyard_scheduler::tls::serve(listener, app(state), tls, shutdown_signal())
            .await
            .context("serving");
    }
    tracing::info!(addr = %args.listen, prefix = %args.url_prefix, "serving the extender");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    Ok(())
}
