//! `railyard-device-plugin`: see README.md for flags and examples.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use prometheus_client::registry::Registry;
use railyard_core::machine::MachineProfile;
use railyard_device_plugin::config::{FlagOrFileLabels, NodeLabels};
use railyard_device_plugin::kubeapi::{self, KubeAnnotator, KubeEventRecorder, KubeNodeLabels};
use railyard_device_plugin::kubepods;
use railyard_device_plugin::metrics::Metrics;
use railyard_device_plugin::options::{Backend, Options};
use railyard_device_plugin::topology::{NodeAnnotator, NoopAnnotator};
use railyard_device_plugin::{PluginConfig, dry_run, http, spawn};
use railyard_gpu::{GpuBackend, NvmlBackend, NvmlConfig, SimBackend};
use railyard_watchdog::events::{EventRecorder, LogEventRecorder};

fn main() -> anyhow::Result<()> {
    let opts = Options::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let labels = FlagOrFileLabels::from_options(&opts);
    if opts.dry_run {
        let (config, resources) = dry_run::resources(&opts, &labels).map_err(anyhow::Error::msg)?;
        print!("{}", dry_run::report(&config, &resources));
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(opts, labels))
}

/// How long the first list of this node may take at start.
const NODE_LIST_TIMEOUT: Duration = Duration::from_secs(60);

async fn run(opts: Options, file_labels: FlagOrFileLabels) -> anyhow::Result<()> {
    let kube = kubeapi::client(&opts).await.map_err(anyhow::Error::msg)?;
    // Node labels: explicit flags/file win; else the watched Node when
    // named configs are used with API access.
    let explicit = opts.node_config_label.is_some() || opts.node_labels_file.is_some();
    let labels: Arc<dyn NodeLabels> = match &kube {
        Some((client, node)) if opts.config_dir.is_some() && !explicit => {
            let l = tokio::time::timeout(NODE_LIST_TIMEOUT, KubeNodeLabels::start(client.clone(), node))
                .await
                .map_err(|_| anyhow::anyhow!("watching Node {node}: no list within {NODE_LIST_TIMEOUT:?}"))?
                .map_err(anyhow::Error::msg)?;
            tracing::info!(%node, "node labels from the Kubernetes API (watching the Node)");
            Arc::new(l)
        }
        _ => Arc::new(file_labels),
    };
    let (annotator, events): (Arc<dyn NodeAnnotator>, Arc<dyn EventRecorder>) = match &kube {
        Some((client, node)) => {
            tracing::info!(%node, "Kubernetes API access on: topology annotation and pod Events are written");
            let (events, _task) = KubeEventRecorder::spawn(client.clone(), node.clone());
            (
                Arc::new(KubeAnnotator::new(client.clone(), node.clone())),
                Arc::new(events),
            )
        }
        None => {
            tracing::info!("no Kubernetes API access (--kube-api): annotation and pod Events are only logged");
            (
                Arc::new(NoopAnnotator {
                    node: opts.node_name.clone(),
                }),
                Arc::new(LogEventRecorder),
            )
        }
    };
    let machine = match &opts.machine {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(MachineProfile::from_yaml(&text).with_context(|| format!("parsing {}", p.display()))?)
        }
        None => None,
    };
    let backend: Arc<dyn GpuBackend> = match opts.backend {
        Backend::Sim => {
            let Some(m) = machine.clone() else {
                bail!("--backend sim needs --machine <profile.yaml>")
            };
            Arc::new(SimBackend::new(m))
        }
        Backend::Nvml => Arc::new(
            NvmlBackend::new(NvmlConfig {
                lib_path: opts.nvml_library.clone(),
                ..NvmlConfig::default()
            })
            .context("initialising NVML")?,
        ),
    };
    let metrics_addr = opts.metrics_addr().map_err(anyhow::Error::msg)?;
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    // The pod watch (and the write-backs) need API access; the watch is
    // started before the servers so the first admissions can use it.
    let decisions = kube
        .as_ref()
        .map(|(client, node)| kubepods::start(client.clone(), node, &opts, metrics.clone()));
    match &decisions {
        Some(d) if d.follower.follows() => {
            tracing::info!("following the extender's device decisions (--follow-decisions)")
        }
        Some(_) => tracing::info!(
            "not following the extender's device decisions (--follow-decisions=false); allocations are still written back"
        ),
        None => {}
    }
    let cfg = PluginConfig {
        decisions: decisions.as_ref().map(|d| d.follower.clone()),
        annotator,
        options: opts,
        backend,
        labels,
        machine,
        metrics,
        events,
    };
    let (handle, task) = spawn(cfg, true).await?;
    if let Some(addr) = metrics_addr {
        let app = http::router(Arc::new(registry), handle.clone());
        tokio::spawn(async move {
            if let Err(e) = http::serve(addr, app).await {
                tracing::error!(%addr, error = %e, "metrics server failed");
            }
        });
    }
    task.await.context("control loop panicked")?;
    drop(decisions);
    tracing::info!("stopped; sockets removed");
    Ok(())
}
