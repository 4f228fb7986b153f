//! One simulated GPU node: a machine profile on [`SimBackend`], the real
//! device plugin (config file, topology annotation, pod watch following the
//! extender's decisions) against its own fake kubelet and PodResources, and
//! the kubelet's part toward the API ([`crate::kubelet`]); on a node with
//! MIG-capable GPUs also the real MIG manager agent on the same simulated
//! GPUs, PodResources and device-plugin directory.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use kube::Client;
use prometheus_client::registry::Registry;
use railyard_core::machine::MachineProfile;
use railyard_device_plugin::config::FlagOrFileLabels;
use railyard_device_plugin::kubeapi::KubeAnnotator;
use railyard_device_plugin::kubepods::{self, PodDecisionsApi};
use railyard_device_plugin::metrics::Metrics;
use railyard_device_plugin::{Options, PluginConfig, PluginHandle, spawn};
use railyard_gpu::SimBackend;
use railyard_kubelet_api::fake::{FakeKubelet, FakePodResources, TempDir};
use railyard_test_util::FakeApiServer;
use railyard_watchdog::events::LogEventRecorder;
use railyard_watchdog::policy::Mode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::kubelet::{Admissions, PodAdmitter, sync_allocatable};

/// What a node is.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub machine: MachineProfile,
    /// The device plugin's config file (YAML text).
    pub plugin_config: String,
    /// Labels on the Node (topology tiers, GFD-style product labels).
    pub labels: BTreeMap<String, String>,
}

/// Capacity besides the device plugins' resources.
fn base_resources() -> Value {
    json!({"cpu": "224", "memory": "2Ti", "pods": "110"})
}

/// A running node.
#[derive(Debug)]
pub struct SimNode {
    pub spec: NodeSpec,
    pub backend: SimBackend,
    pub kubelet: Arc<FakeKubelet>,
    pub admissions: Admissions,
    plugin: PluginHandle,
    _pods: PodDecisionsApi,
    _pod_resources: FakePodResources,
    tasks: Vec<JoinHandle<()>>,
    /// Stops the MIG manager agent (dropped with the node).
    _mig_shutdown: Option<tokio::sync::watch::Sender<bool>>,
    dir: TempDir,
}

impl SimNode {
    /// Registers the Node in `api` (as kubelet does at start) and starts
    /// its device plugin and kubelet; returns once the plugin registered.
    pub async fn start(api: &FakeApiServer, client: Client, spec: NodeSpec) -> Result<SimNode> {
        let name = spec.name.clone();
        api.create(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": spec.labels},
            "status": {"capacity": base_resources(), "allocatable": base_resources()},
        }))
        .map_err(|e| anyhow::anyhow!("registering Node {name}: {e:?}"))?;
        let dir = TempDir::new("railyard-cluster-node").context("node temp dir")?;
        let kubelet = Arc::new(
            FakeKubelet::start_in(&dir.path().join("device-plugins"))
                .await
                .with_context(|| format!("{name}: starting the fake kubelet"))?,
        );
        let pr_sock = dir.path().join("pod-resources/kubelet.sock");
        let pod_resources = FakePodResources::start(&pr_sock).with_context(|| format!("{name}: PodResources"))?;
        kubelet.set_pod_resources(pod_resources.handle());
        let cfg_path = dir.path().join("config.yaml");
        std::fs::write(&cfg_path, &spec.plugin_config).with_context(|| format!("writing {}", cfg_path.display()))?;
        let mut o = Options::defaults();
        o.device_plugin_dir = kubelet.dir().to_path_buf();
        o.cdi_dir = dir.path().join("cdi");
        o.config_file = Some(cfg_path);
        o.metrics_addr = None;
        o.publish_topology = true;
        o.node_name = Some(name.clone());
        o.follow_decisions = true;
        o.pod_resources_socket = pr_sock.clone();
        o.cri_socket = None;
        o.proc_root = dir.path().join("proc");
        // No containers run here, so there is no memory to police.
        o.watchdog_mode = Mode::Off;
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let pods = kubepods::start(client.clone(), &name, &o, metrics.clone());
        let backend = SimBackend::new(spec.machine.clone());
        let cfg = PluginConfig {
            decisions: Some(pods.follower.clone()),
            annotator: Arc::new(KubeAnnotator::new(client.clone(), name.clone())),
            labels: Arc::new(FlagOrFileLabels::from_options(&o)),
            options: o,
            backend: Arc::new(backend.clone()),
            machine: Some(spec.machine.clone()),
            metrics,
            events: Arc::new(LogEventRecorder),
        };
        let mig_manager = spec
            .machine
            .gpus
            .iter()
            .any(|g| spec.machine.gpu_model(g).mig_family().is_some())
            .then(|| start_mig_manager(&name, &backend, client.clone(), &pr_sock, kubelet.dir()));
        let (plugin, plugin_task) = spawn(cfg, false)
            .await
            .with_context(|| format!("{name}: starting the device plugin"))?;
        let admitter = PodAdmitter::new(client.clone(), &name, kubelet.clone(), pod_resources.handle());
        let admissions = admitter.admissions.clone();
        let mut tasks = vec![
            plugin_task,
            tokio::spawn(sync_allocatable(
                client,
                name.clone(),
                kubelet.clone(),
                base_resources(),
            )),
            tokio::spawn(admitter.run()),
        ];
        let mig_shutdown = mig_manager.map(|(task, shutdown)| {
            tasks.push(task);
            shutdown
        });
        Ok(SimNode {
            spec,
            backend,
            kubelet,
            admissions,
            plugin,
            _pods: pods,
            _pod_resources: pod_resources,
            tasks,
            _mig_shutdown: mig_shutdown,
            dir,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Where the plugin writes its CDI specs (`--cdi-dir`).
    pub fn cdi_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("cdi")
    }
}

/// The MIG manager agent with the generated config names (no file), short
/// retry intervals, and the device plugin's layout file in its directory.
fn start_mig_manager(
    node: &str,
    backend: &SimBackend,
    client: Client,
    pod_resources: &std::path::Path,
    device_plugin_dir: &std::path::Path,
) -> (JoinHandle<()>, tokio::sync::watch::Sender<bool>) {
    use railyard_mig_manager::agent::{Agent, AgentConfig};
    use std::time::Duration;
    let cfg = AgentConfig {
        node: node.to_string(),
        config_file: None,
        pod_resources_socket: pod_resources.to_path_buf(),
        pod_resources_timeout: Duration::from_secs(5),
        dra_driver: "gpu.nvidia.com".into(),
        layout_file: Some(device_plugin_dir.join(railyard_mig_manager::notify::LAYOUT_FILE_NAME)),
        retry_interval: Duration::from_millis(200),
        resync_interval: Duration::from_secs(5),
        max_backoff: Duration::from_secs(5),
        reboot_command: None,
    };
    let mut registry = Registry::default();
    let metrics = railyard_mig_manager::metrics::Metrics::new(&mut registry);
    let (health, _) = tokio::sync::watch::channel(railyard_mig_manager::http::Health::default());
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let agent = Agent::new(cfg, Arc::new(backend.clone()), client, metrics, health);
    (tokio::spawn(agent.run(rx)), shutdown)
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.plugin.shutdown();
        for t in &self.tasks {
            t.abort();
        }
    }
}
