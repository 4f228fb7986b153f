//! A DGX H100 node for the decision tests: the plugin with the pod watch
//! on a mocked API (`api`) and the fake kubelet reporting admissions to a
//! fake PodResources.
#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;
use std::time::Duration;

use railyard_core::allocation::{ReplicaPolicy, preferred_allocation};
use railyard_core::config::DevicePluginConfig;
use railyard_core::machine::MachineProfile;
use railyard_core::resources::{AdvertisedResource, advertised_resources, inventory};
use railyard_device_plugin::follow::Follower;
use railyard_gpu::SimBackend;
use railyard_kubelet_api::fake::{Admission, AdmissionError, FakePodResources, PodRef, TempDir};
use railyard_watchdog::policy::Mode;

use super::api::{FakeApi, fake_api};
use super::{Api, Env, T, machine, start_with};

pub const GPU: &str = "nvidia.com/gpu";
pub const SHARED: &str = "nvidia.com/gpu.shared";
pub const HOUR: Duration = Duration::from_secs(3600);

pub struct Node {
    pub env: Env,
    pub api: FakeApi,
    pub pr: FakePodResources,
    pub machine: MachineProfile,
    pub config: String,
    _pr_dir: TempDir,
}

/// A DGX H100 node with `config`, the pod watch on a mocked API and
/// PodResources served; `reconcile`: `--reconcile-interval`.
pub async fn node(config: &str, follow: bool, reconcile: Duration) -> Node {
    node_with(config, follow, reconcile, true).await
}

/// `pod_resources` false: the plugin's PodResources socket does not exist
/// (it matches calls from the pod watch alone and cannot reconcile).
pub async fn node_with(config: &str, follow: bool, reconcile: Duration, pod_resources: bool) -> Node {
    node_full(config, follow, reconcile, pod_resources, None).await
}

/// A following node whose plugin also writes its topology annotation on the
/// `node-a` Node object in the API, as `main` does with API access; the
/// Node carries `allocatable` as kubelet would report it.
pub async fn node_publishing_topology(config: &str, machine_name: &str, allocatable: &[(&str, u32)]) -> Node {
    node_full(config, true, HOUR, true, Some((machine_name, allocatable))).await
}

async fn node_full(
    config: &str,
    follow: bool,
    reconcile: Duration,
    pod_resources: bool,
    kube_node: Option<(&str, &[(&str, u32)])>,
) -> Node {
    let (client, api) = fake_api().await;
    let annotator: Option<Arc<dyn railyard_device_plugin::topology::NodeAnnotator>> =
        kube_node.map(|(_, allocatable)| {
            api.server().create(node_object("node-a", allocatable)).unwrap();
            Arc::new(railyard_device_plugin::kubeapi::KubeAnnotator::new(
                client.clone(),
                "node-a",
            )) as _
        });
    let pr_dir = TempDir::new("railyard-dp-pr").unwrap();
    let pr = FakePodResources::start(&pr_dir.path().join("kubelet.sock")).unwrap();
    let m = machine(kube_node.map_or("dgx-h100", |(name, _)| name));
    let pr_path = if pod_resources {
        pr.path().to_path_buf()
    } else {
        pr_dir.path().join("missing.sock")
    };
    let env = start_with(
        Arc::new(SimBackend::new(m.clone())),
        Some(m.clone()),
        config,
        Api {
            pods: Some(client),
            annotator,
            ..Api::default()
        },
        |o, _| {
            o.pod_resources_socket = pr_path;
            o.follow_decisions = follow;
            o.reconcile_interval = reconcile;
            o.watchdog_mode = Mode::Off;
        },
    )
    .await;
    if pod_resources {
        env.kubelet.set_pod_resources(pr.handle());
    }
    Node {
        env,
        api,
        pr,
        machine: m,
        config: config.to_string(),
        _pr_dir: pr_dir,
    }
}

/// A Node as kubelet registers it, with the device plugin's resources
/// allocatable.
pub fn node_object(name: &str, allocatable: &[(&str, u32)]) -> serde_json::Value {
    let mut resources = serde_json::json!({"cpu": "224", "memory": "2Ti", "pods": "110"});
    for (r, n) in allocatable {
        resources[*r] = serde_json::json!(n.to_string());
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"capacity": resources, "allocatable": resources},
    })
}

impl Node {
    pub fn follower(&self) -> &Follower {
        &self.env.pods.as_ref().unwrap().follower
    }

    /// The extender binds `pod`; returns once the plugin's watch has it.
    pub async fn bind(&self, pod: serde_json::Value) {
        let name = pod["metadata"]["name"].as_str().unwrap().to_string();
        self.api.put_pod(pod);
        assert!(
            self.follower().wait_for(T, |s| s.by_name("ml", &name).is_some()).await,
            "the watch never delivered {name}"
        );
    }

    pub async fn admit(&self, name: &str, resource: &str, n: usize) -> Admission {
        self.env
            .kubelet
            .admit_pod(&PodRef::new("ml", name, "main"), resource, n, &[])
            .await
            .unwrap()
    }

    /// An admission that may fail (the drift runs count failures).
    pub async fn try_admit(&self, name: &str, resource: &str, n: usize) -> Result<Admission, AdmissionError> {
        self.env
            .kubelet
            .admit_pod(&PodRef::new("ml", name, "main"), resource, n, &[])
            .await
    }

    pub fn uuid(&self, i: usize) -> String {
        self.machine.gpus[i].uuid.clone()
    }

    /// GPU indices behind device ids (replicas by their GPU).
    pub fn gpus(&self, ids: &[String]) -> Vec<u32> {
        let mut g: Vec<u32> = ids
            .iter()
            .map(|id| {
                let uuid = id.split("::").next().unwrap();
                self.machine.gpus.iter().find(|g| g.uuid == uuid).unwrap().index
            })
            .collect();
        g.sort_unstable();
        g.dedup();
        g
    }

    pub fn resource(&self, name: &str) -> AdvertisedResource {
        let cfg = DevicePluginConfig::from_yaml(&self.config).unwrap();
        advertised_resources(&inventory(&self.machine, &Default::default()), &cfg)
            .unwrap()
            .into_iter()
            .find(|r| r.name == name)
            .unwrap()
    }

    /// What the plugin's own rule would answer for `n` of `resource` with
    /// every device of it free.
    pub fn own_rule(&self, resource: &str, n: usize) -> Vec<String> {
        let r = self.resource(resource);
        let topo = railyard_device_plugin::topology::build(&self.machine);
        let all: Vec<String> = r.devices.iter().map(|d| d.id.clone()).collect();
        preferred_allocation(&r, topo.as_ref(), &all, &[], n, ReplicaPolicy::Distributed).unwrap()
    }

    pub fn metric(&self, line: &str) -> bool {
        self.env.metrics_text().lines().any(|l| l == line)
    }

    /// Waits for a metric line (counters counted after the API answered).
    pub async fn wait_metric(&self, line: &str) -> bool {
        let poll = async {
            while !self.metric(line) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(T, poll).await.is_ok()
    }

    pub async fn shutdown(self) {
        self.env.plugin.shutdown();
        let Env { task, pods, .. } = self.env;
        task.await.unwrap();
        drop(pods);
        assert!(self.api.unexpected().is_empty(), "{:?}", self.api.unexpected());
    }
}
