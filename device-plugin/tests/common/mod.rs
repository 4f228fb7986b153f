//! Test set-up: a fake kubelet in a temp dir, a plugin over a backend, and
//! the shipped machine profiles and configs.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use railyard_core::config::MigPartedConfig;
use railyard_core::config::mig_parted::GpuTarget;
use railyard_core::machine::MachineProfile;
use railyard_device_plugin::config::{FlagOrFileLabels, NodeLabels};
use railyard_device_plugin::metrics::Metrics;
use railyard_device_plugin::topology::{NodeAnnotator, RecordingAnnotator};
use railyard_device_plugin::{Options, PluginConfig, PluginHandle, spawn};
use railyard_gpu::{GpuBackend, SimBackend};
use railyard_kubelet_api::deviceplugin::v1beta1::Device;
use railyard_kubelet_api::fake::{FakeKubelet, TempDir};
use railyard_watchdog::events::RecordingEventRecorder;
use tokio::task::JoinHandle;

pub mod api;
pub mod node;

/// Generous: tests wait for events, never for a fixed time.
pub const T: Duration = Duration::from_secs(20);

pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

pub fn machine(name: &str) -> MachineProfile {
    let text = std::fs::read_to_string(repo(&format!("configs/machines/{name}.yaml"))).unwrap();
    MachineProfile::from_yaml(&text).unwrap()
}

pub fn dp_config(name: &str) -> String {
    std::fs::read_to_string(repo(&format!("configs/device-plugin/{name}.yaml"))).unwrap()
}

/// Lays out MIG on a simulated machine as a mig-parted config says, through
/// the backend (what the MIG manager does before the plugin re-enumerates).
pub async fn apply_mig(backend: &SimBackend, machine: &MachineProfile, name: &str) {
    let text = std::fs::read_to_string(repo("configs/mig-parted/config.yaml")).unwrap();
    let targets = MigPartedConfig::from_yaml(&text)
        .unwrap()
        .targets(name, machine)
        .unwrap();
    for (gpu, t) in targets {
        if let GpuTarget::MigEnabled(layout) = t {
            backend.set_mig_mode(gpu, true).await.unwrap();
            for inst in layout.instances {
                backend.create_mig_instance(gpu, inst).await.unwrap();
            }
        }
    }
}

pub struct Env {
    pub kubelet: FakeKubelet,
    pub tmp: TempDir,
    pub plugin: PluginHandle,
    pub task: JoinHandle<()>,
    pub registry: Registry,
    pub annotator: RecordingAnnotator,
    pub events: RecordingEventRecorder,
    pub pods: Option<railyard_device_plugin::kubepods::PodDecisionsApi>,
}

impl Env {
    pub fn cdi_dir(&self) -> PathBuf {
        self.tmp.path().join("cdi")
    }

    pub async fn devices(&self, resource: &str, n: usize) -> Vec<Device> {
        self.kubelet
            .wait_devices(resource, T, |d| d.len() == n)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{resource}: no list of {n} devices; kubelet has {:?}",
                    self.kubelet.plugin(resource)
                )
            })
    }

    pub fn metrics_text(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry).unwrap();
        s
    }
}

pub fn base_options(kubelet: &FakeKubelet, tmp: &Path) -> Options {
    let mut o = Options::defaults();
    o.device_plugin_dir = kubelet.dir().to_path_buf();
    o.cdi_dir = tmp.join("cdi");
    o.metrics_addr = None;
    o.config_poll_ms = 25;
    o.socket_poll_ms = 20;
    o.publish_topology = true;
    // The watchdog runs, but against sockets and a /proc nobody serves.
    o.pod_resources_socket = tmp.join("pod-resources/kubelet.sock");
    o.cri_socket = Some(tmp.join("containerd/containerd.sock"));
    o.proc_root = tmp.join("proc");
    o
}

/// A kubelet and a plugin with `config` (YAML text, written to a file) over
/// `backend`; `edit` adjusts the options.
pub async fn start(
    backend: Arc<dyn GpuBackend>,
    machine: Option<MachineProfile>,
    config: &str,
    edit: impl FnOnce(&mut Options, &Path),
) -> Env {
    start_with(backend, machine, config, Api::default(), edit).await
}

/// Node labels and annotator in place of the flag/file labels and the
/// recording annotator (the kube-backed ones over a mocked API server).
#[derive(Default)]
pub struct Api {
    pub labels: Option<Arc<dyn NodeLabels>>,
    pub annotator: Option<Arc<dyn NodeAnnotator>>,
    /// A client for the pod watch and write-backs: `kubepods::start` for
    /// node `node-a`, as `main` does with API access.
    pub pods: Option<kube::Client>,
}

pub async fn start_with(
    backend: Arc<dyn GpuBackend>,
    machine: Option<MachineProfile>,
    config: &str,
    api: Api,
    edit: impl FnOnce(&mut Options, &Path),
) -> Env {
    let kubelet = FakeKubelet::start().await.unwrap();
    let tmp = TempDir::new("railyard-dp-test").unwrap();
    let mut o = base_options(&kubelet, tmp.path());
    let cfg_path = tmp.path().join("config.yaml");
    std::fs::write(&cfg_path, config).unwrap();
    o.config_file = Some(cfg_path);
    edit(&mut o, tmp.path());
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let pods = api
        .pods
        .map(|client| railyard_device_plugin::kubepods::start(client, "node-a", &o, metrics.clone()));
    let annotator = RecordingAnnotator::default();
    let events = RecordingEventRecorder::default();
    let cfg = PluginConfig {
        events: Arc::new(events.clone()),
        labels: api
            .labels
            .unwrap_or_else(|| Arc::new(FlagOrFileLabels::from_options(&o))),
        options: o,
        backend,
        annotator: api.annotator.unwrap_or_else(|| Arc::new(annotator.clone())),
        machine,
        metrics,
        decisions: pods.as_ref().map(|p| p.follower.clone()),
    };
    let (plugin, task) = spawn(cfg, false).await.unwrap();
    Env {
        kubelet,
        tmp,
        plugin,
        task,
        registry,
        annotator,
        events,
        pods,
    }
}

pub async fn start_sim(machine_name: &str, config: &str) -> (Env, SimBackend) {
    let m = machine(machine_name);
    let sim = SimBackend::new(m.clone());
    let env = start(Arc::new(sim.clone()), Some(m), config, |_, _| {}).await;
    (env, sim)
}
