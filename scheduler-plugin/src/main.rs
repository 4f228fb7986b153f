//! `railyard-scheduler`: serves the extender verbs and keeps the cluster
//! view current from the API.

use std::net::SocketAddr;
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
    let state = Arc::new(AppState::new(
        config,
        Arc::new(KubeBinder::new(client.clone())),
        Registry::default(),
    ));
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
    tracing::info!(addr = %args.listen, prefix = %args.url_prefix, "serving the extender");
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    Ok(())
}
