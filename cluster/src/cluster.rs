//! The whole system in one process: the fake API, N simulated nodes, the
//! extender and the kube-scheduler loop, started in that order.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use railyard_core::machine::MachineProfile;
use railyard_test_util::FakeApiServer;
use railyard_test_util::fake_api::ResourceType;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::extender::Extender;
use crate::http::ExtenderClient;
use crate::node::{NodeSpec, SimNode};
use crate::scheduler::Scheduler;

/// The key the extender signs its decisions with, the same across its
/// restarts (in a deployment, `--decision-key-file` from a Secret).
const DECISION_KEY: &[u8] = b"railyard-cluster-simulation-decision-key";
/// kube-scheduler retries unschedulable pods at least this often here.
const RETRY: Duration = Duration::from_millis(100);
/// Nodes under one leaf switch (`fabric.topograph.run/tier-0`).
pub const NODES_PER_LEAF: usize = 4;

/// The scheduler-plugins PodGroup CRD, served so gangs can be declared.
pub fn pod_group_type() -> ResourceType {
    ResourceType::custom("scheduling.x-k8s.io", "v1alpha1", "PodGroup", "podgroups", true)
}

/// The device plugin's config for a machine: mixed MIG where the profile
/// lays MIG out, 4 time-sliced replicas per GPU on inference cards (T4,
/// L4, A10; advertised as `nvidia.com/gpu.shared`), whole GPUs elsewhere.
pub fn plugin_config_for(machine: &MachineProfile) -> &'static str {
    let mig = machine.gpus.iter().any(|g| g.mig_enabled);
    // By whole name tokens: "A10" must not match "A100-SXM4-40GB".
    let inference = machine.gpus.iter().all(|g| {
        g.product_name
            .split([' ', '-'])
            .any(|t| ["T4", "L4", "A10", "A10G"].contains(&t))
    });
    if mig {
        "version: v1\nflags:\n  migStrategy: mixed\n  plugin:\n    deviceListStrategy: cdi-cri\n"
    } else if inference {
        "version: v1\nflags:\n  migStrategy: none\n  plugin:\n    deviceListStrategy: cdi-cri\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 4\n"
    } else {
        "version: v1\nflags:\n  plugin:\n    deviceListStrategy: cdi-cri\n"
    }
}

/// GPU Feature Discovery's `nvidia.com/gpu.product` value.
pub fn product_label(product_name: &str) -> String {
    product_name.replace(' ', "-")
}

/// `n` nodes `node-01`.. from the profiles in `dir`, taken round-robin in
/// file-name order, [`NODES_PER_LEAF`] to a leaf switch.
pub fn fleet(dir: &Path, n: usize) -> Result<Vec<NodeSpec>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("--machines {}: cannot read the directory", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut machines = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        machines.push(MachineProfile::from_yaml(&text).with_context(|| format!("parsing {}", f.display()))?);
    }
    if machines.is_empty() {
        bail!("--machines {}: no machine profiles (*.yaml) in it", dir.display());
    }
    Ok((0..n)
        .map(|i| {
            let machine = machines[i % machines.len()].clone();
            let name = format!("node-{:02}", i + 1);
            let mut labels = BTreeMap::new();
            labels.insert("kubernetes.io/hostname".to_string(), name.clone());
            labels.insert(
                "fabric.topograph.run/tier-0".to_string(),
                format!("leaf-{}", i / NODES_PER_LEAF),
            );
            labels.insert("fabric.topograph.run/tier-1".to_string(), "spine-0".to_string());
            if let Some(g) = machine.gpus.first() {
                labels.insert("nvidia.com/gpu.product".to_string(), product_label(&g.product_name));
                labels.insert("nvidia.com/gpu.count".to_string(), machine.gpus.len().to_string());
            }
            NodeSpec {
                plugin_config: plugin_config_for(&machine).to_string(),
                name,
                machine,
                labels,
            }
        })
        .collect())
}

/// A running cluster.
pub struct Cluster {
    // Dropped in this order: the components stop before the API they use.
    pub nodes: Vec<SimNode>,
    pub extender: Extender,
    pub scheduler: Scheduler,
    scheduler_task: Option<JoinHandle<()>>,
    pub client: Client,
    pub api: FakeApiServer,
}

impl Cluster {
    /// Starts everything; returns once every node advertises its GPUs and
    /// the extender has their topology.
    pub async fn start(specs: Vec<NodeSpec>) -> Result<Cluster> {
        Cluster::start_with(specs, true).await
    }

    /// [`Cluster::start`] without the scheduler loop: the caller runs the
    /// passes ([`Scheduler::pass`]).
    pub async fn start_manual(specs: Vec<NodeSpec>) -> Result<Cluster> {
        Cluster::start_with(specs, false).await
    }

    async fn start_with(specs: Vec<NodeSpec>, auto: bool) -> Result<Cluster> {
        let api = FakeApiServer::builder()
            .custom(pod_group_type())
            .start()
            .await
            .context("starting the fake API server")?;
        let client = api.client().context("a client of the fake API")?;
        let mut nodes = Vec::new();
        for spec in specs {
            nodes.push(SimNode::start(&api, client.clone(), spec).await?);
        }
        let extender = Extender::start(client.clone(), DECISION_KEY).await?;
        let scheduler = Scheduler::new(client.clone(), ExtenderClient::new(extender.addr()));
        let scheduler_task = auto.then(|| tokio::spawn(scheduler.clone().run(api.changes(), RETRY)));
        let c = Cluster {
            api,
            client,
            nodes,
            extender,
            scheduler,
            scheduler_task,
        };
        c.wait_until(
            Duration::from_secs(60),
            "every node's GPUs published and seen by the extender",
            |c| c.published(),
        )
        .await?;
        Ok(c)
    }

    /// Every node advertises its GPUs on its Node, and the extender has the
    /// topology each one annotated.
    fn published(&self) -> bool {
        let state = self.extender.state();
        self.extender.ready()
            && self.nodes.iter().all(|n| {
                let node = self.api.get("v1", "Node", "", n.name());
                let advertised = node.as_ref().is_some_and(|o| {
                    o["status"]["allocatable"]
                        .as_object()
                        .is_some_and(|a| a.keys().any(|k| k.starts_with("nvidia.com/")))
                });
                advertised && state.view().free_gpus(n.name()).is_some()
            })
    }

    pub fn node(&self, name: &str) -> Option<&SimNode> {
        self.nodes.iter().find(|n| n.name() == name)
    }

    /// Stops the extender and starts a new process with nothing but the API;
    /// the scheduler talks to the new one.
    pub async fn restart_extender(&mut self) -> Result<()> {
        self.extender.restart().await?;
        self.scheduler.set_extender(ExtenderClient::new(self.extender.addr()));
        Ok(())
    }

    /// Creates an object (a user's `kubectl create`).
    pub fn create(&self, obj: Value) -> Result<Value> {
        self.api
            .create(obj)
            .map_err(|e| anyhow::anyhow!("create: {}", e.status()))
    }

    /// Deletes a pod (its job ended, or the user deleted it).
    pub fn delete_pod(&self, namespace: &str, name: &str) -> Result<()> {
        self.api
            .delete("v1", "Pod", namespace, name)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("delete pod {namespace}/{name}: {}", e.status()))
    }

    /// The pod's containers exit 0: its kubelet writes `Succeeded` (and
    /// gives the devices back when it sees the phase), as when a training
    /// job's workers finish.
    pub async fn finish_pod(&self, namespace: &str, name: &str) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = PatchParams {
            field_manager: Some("kubelet".into()),
            ..PatchParams::default()
        };
        let patch = serde_json::json!({"status": {"phase": "Succeeded", "conditions": [
            {"type": "Ready", "status": "False", "reason": "PodCompleted"},
        ]}});
        api.patch_status(name, &params, &Patch::Merge(&patch))
            .await
            .with_context(|| format!("finishing pod {namespace}/{name}"))?;
        Ok(())
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        self.api.get("v1", "Pod", namespace, name)
    }

    /// The pod's phase, `Pending` when unset.
    pub fn phase(&self, namespace: &str, name: &str) -> Option<String> {
        let p = self.pod(namespace, name)?;
        Some(p["status"]["phase"].as_str().unwrap_or("Pending").to_string())
    }

    /// Waits (at most `timeout`) until `cond` holds, re-checking after each
    /// change in the API, each scheduling pass and each admission.
    pub async fn wait_until(&self, timeout: Duration, what: &str, cond: impl Fn(&Cluster) -> bool) -> Result<()> {
        let mut api = self.api.changes();
        let mut passes = self.scheduler.subscribe();
        let mut admits: Vec<_> = self.nodes.iter().map(|n| n.admissions.subscribe()).collect();
        let poll = async {
            loop {
                if cond(self) {
                    return;
                }
                let any_admit = futures_util::future::select_all(admits.iter_mut().map(|r| Box::pin(r.changed())));
                tokio::select! {
                    _ = api.changed() => {}
                    _ = passes.changed() => {}
                    _ = any_admit, if !self.nodes.is_empty() => {}
                    // The extender's watch has no change signal of its own.
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        };
        tokio::time::timeout(timeout, poll)
            .await
            .map_err(|_| anyhow::anyhow!("timed out after {timeout:?} waiting for: {what}"))
    }

    /// Waits for `n` more scheduling passes to complete.
    pub async fn passes(&self, n: u64) -> Result<()> {
        let mut rx = self.scheduler.subscribe();
        let target = *rx.borrow_and_update() + n;
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|p| *p >= target))
            .await
            .map(|_| ())
            .map_err(|_| anyhow::anyhow!("the scheduler made no {n} passes"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(t) = &self.scheduler_task {
            t.abort();
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("api", &self.api)
            .field("nodes", &self.nodes)
            .field("extender", &self.extender)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> MachineProfile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../configs/machines/{name}.yaml"));
        MachineProfile::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn only_inference_cards_are_time_sliced_and_only_mig_layouts_get_mixed_strategy() {
        assert!(plugin_config_for(&profile("t4-2x")).contains("timeSlicing"));
        for whole in ["dgx-a100", "a100-pcie-4x", "dgx-h100"] {
            let cfg = plugin_config_for(&profile(whole));
            assert!(!cfg.contains("timeSlicing") && !cfg.contains("mixed"), "{whole}: {cfg}");
        }
        assert!(plugin_config_for(&profile("dgx-h100-mig")).contains("migStrategy: mixed"));
    }

    #[test]
    fn the_fleet_takes_profiles_round_robin_four_nodes_to_a_leaf() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/machines");
        let f = fleet(&dir, 6).unwrap();
        let names: Vec<&str> = f.iter().map(|n| n.machine.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "a100-pcie-4x",
                "dgx-a100",
                "dgx-h100-mig",
                "dgx-h100",
                "t4-2x",
                "a100-pcie-4x"
            ]
        );
        assert_eq!(f[3].labels["fabric.topograph.run/tier-0"], "leaf-0");
        assert_eq!(f[4].labels["fabric.topograph.run/tier-0"], "leaf-1");
        assert_eq!(f[3].labels["nvidia.com/gpu.product"], "NVIDIA-H100-80GB-HBM3");
        let err = fleet(&dir.join("missing"), 1).unwrap_err().to_string();
        assert!(err.contains("--machines") && err.contains("missing"), "{err}");
    }
}
