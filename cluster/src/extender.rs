//! The real scheduler extender, as `railyard-scheduler` runs it: its watches
//! on the API, its tick, and its verbs served over plain HTTP on a loopback
//! port. [`Extender::restart`] is a new process: nothing survives but the
//! decision key (a mounted Secret in a deployment) and what is in the API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kube::Client;
use prometheus_client::registry::Registry;
use railyard_core::extender::ViewConfig;
use railyard_scheduler::binder::KubeBinder;
use railyard_scheduler::decision::DecisionKey;
use railyard_scheduler::serve::{ServeOptions, serve};
use railyard_scheduler::{AppState, Config, app, watch};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The URL prefix of the verbs, as in the shipped scheduler config.
pub const URL_PREFIX: &str = "/railyard";
/// The scheduler name pods use and the extender serves.
pub const SCHEDULER_NAME: &str = "railyard";
/// `--tick-ms` default of the binary.
const TICK: Duration = Duration::from_millis(1000);

/// One extender process.
pub struct Extender {
    client: Client,
    key: Vec<u8>,
    state: Arc<AppState>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Extender {
    /// Starts an extender on `client`'s API that signs its decisions with
    /// `key`; returns once it listens (its watches may still be listing).
    pub async fn start(client: Client, key: &[u8]) -> Result<Extender> {
        let state = Arc::new(
            AppState::new(
                Config {
                    url_prefix: URL_PREFIX.into(),
                    view: ViewConfig::default(),
                },
                Arc::new(KubeBinder::new(client.clone())),
                Registry::default(),
            )
            .with_scheduler_names(vec![SCHEDULER_NAME.into()])
            .with_decision_key(DecisionKey::from_bytes(key)),
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the extender's loopback port")?;
        let addr = listener.local_addr().context("the extender's address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = app(state.clone());
        let server = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = serve(listener, router, ServeOptions::default(), shutdown).await {
                tracing::error!(error = %e, "extender HTTP server failed");
            }
        });
        let watches = tokio::spawn(watch::run(client.clone(), state.clone()));
        let ticker = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut t = tokio::time::interval(TICK);
                loop {
                    t.tick().await;
                    state.tick();
                }
            })
        };
        Ok(Extender {
            client,
            key: key.to_vec(),
            state,
            addr,
            stop: Some(stop),
            tasks: vec![server, watches, ticker],
        })
    }

    /// Where the verbs are served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process's state (its view), for reports and tests.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Whether its watches have listed nodes and pods (`/healthz` ready).
    pub fn ready(&self) -> bool {
        self.state.ready.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops this process and starts a new one on the same API and key, on
    /// a new port; the new one knows only what the API holds.
    pub async fn restart(&mut self) -> Result<()> {
        self.shutdown();
        *self = Extender::start(self.client.clone(), &self.key).await?;
        Ok(())
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Extender {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Extender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extender")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
