//! The node topology for preferred allocation, and publishing it for the
//! scheduler extender.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use railyard_core::machine::{GpuSpec, MachineProfile, NicSpec, NumaNode, NvLinkPair, NvLinkSpec};
use railyard_core::topology::{NodeTopology, TopologyLevel};
use railyard_gpu::NodeInventory;
use tokio::sync::watch;

/// The annotation the extender reads: the machine profile the node topology
/// is built from, as compact JSON (`NodeTopology::from_profile` rebuilds it).
pub const TOPOLOGY_ANNOTATION: &str = "railyard.dev/gpu-topology";

/// A machine profile approximating what the inventory says: GPUs with their
/// NUMA nodes, NVLink (NVSwitch or peer links), GPUs that NVML puts under a
/// common PCIe switch (`PIX`/`PXB`) under one synthetic switch, and NICs on
/// their NUMA nodes. Used when no `--machine` profile is given.
pub fn profile_from_inventory(name: &str, inv: &NodeInventory) -> MachineProfile {
    let mut numa: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for g in &inv.gpus {
        numa.entry(g.numa_node.unwrap_or(0))
            .or_default()
            .extend(g.cpu_affinity.iter().copied());
    }
    for n in &inv.nics {
        numa.entry(n.numa_node.unwrap_or(0)).or_default();
    }
    if numa.is_empty() {
        numa.insert(0, BTreeSet::new());
    }
    // Union GPUs that share a PCIe switch.
    let mut group: BTreeMap<u32, u32> = inv.gpus.iter().map(|g| (g.index, g.index)).collect();
    fn root(group: &BTreeMap<u32, u32>, mut g: u32) -> u32 {
        while let Some(&p) = group.get(&g) {
            if p == g {
                break;
            }
            g = p;
        }
        g
    }
    for (&(a, b), level) in &inv.pcie_levels {
        if matches!(
            level,
            TopologyLevel::Internal | TopologyLevel::Single | TopologyLevel::Multiple
        ) {
            let (ra, rb) = (root(&group, a), root(&group, b));
            if ra != rb {
                group.insert(ra.max(rb), ra.min(rb));
            }
        }
    }
    let gpus = inv
        .gpus
        .iter()
        .map(|g| {
            let r = root(&group, g.index);
            GpuSpec {
                index: g.index,
                product_name: g.product_name.clone(),
                pci_device_id: Some(g.pci_device_id),
                uuid: g.uuid.clone(),
                pci_bus_id: g.pci_bus_id.clone(),
                minor: Some(g.minor),
                numa_node: g.numa_node.unwrap_or(0),
                pcie_switch: None,
                pcie_root: Some(format!("pci-group{r}")),
                memory_mib: Some(g.memory_mib),
                mig_enabled: false,
                mig_instances: Vec::new(),
            }
        })
        .collect();
    let nvswitch = inv.gpus.iter().any(|g| g.nvlink.nvswitch_links > 0);
    let mut links = Vec::new();
    if !nvswitch {
        for g in &inv.gpus {
            for (&peer, &n) in &g.nvlink.peer_links {
                if g.index < peer && n > 0 {
                    links.push(NvLinkPair {
                        gpus: [g.index, peer],
                        links: n,
                    });
                }
            }
        }
    }
    let nics = inv
        .nics
        .iter()
        .map(|n| NicSpec {
            name: n.name.clone(),
            netdev: n.netdev.clone(),
            pci_bus_id: n.pci_bus_id.clone(),
            numa_node: n.numa_node.unwrap_or(0),
            pcie_switch: None,
            pcie_root: Some(format!("pci-nic-{}", n.name)),
            speed_gbps: n.speed_gbps.unwrap_or(0),
            rail: None,
            link_layer: n.link_layer,
        })
        .collect();
    MachineProfile {
        name: name.to_string(),
        description: "derived from the GPU inventory".into(),
        driver_version: inv.driver_version.clone(),
        cuda_driver_version: inv.cuda_driver_version,
        numa_nodes: numa
            .into_iter()
            .map(|(id, cpus)| NumaNode {
                id,
                cpus: cpulist(&cpus),
                socket: id,
            })
            .collect(),
        pcie_switches: Vec::new(),
        gpus,
        nvlink: NvLinkSpec { nvswitch, links },
        nics,
    }
}

fn cpulist(cpus: &BTreeSet<u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let v: Vec<u32> = cpus.iter().copied().collect();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    if out.is_empty() { "0".into() } else { out.join(",") }
}

/// Builds the topology, logging (not failing) when the profile is unusable:
/// preferred allocation then falls back to kubelet's order.
pub fn build(profile: &MachineProfile) -> Option<NodeTopology> {
    match NodeTopology::from_profile(profile) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(error = %e, "node topology unavailable; preferred allocation falls back to kubelet's order");
            None
        }
    }
}

/// What [`NodeAnnotator::annotate`] returns.
pub type AnnotateFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Writes node annotations: [`crate::kubeapi::KubeAnnotator`] patches the
/// Node when the plugin has API access; without it the binary uses
/// [`NoopAnnotator`].
pub trait NodeAnnotator: Send + Sync + std::fmt::Debug {
    /// Sets annotation `key` on this node to `value`. Writing a value the
    /// node already has may be skipped.
    fn annotate<'a>(&'a self, key: &'a str, value: &'a str) -> AnnotateFuture<'a>;
}

/// Logs what it would write.
#[derive(Debug, Clone, Default)]
pub struct NoopAnnotator {
    pub node: Option<String>,
}

impl NodeAnnotator for NoopAnnotator {
    fn annotate<'a>(&'a self, key: &'a str, value: &'a str) -> AnnotateFuture<'a> {
        tracing::info!(
            node = self.node.as_deref().unwrap_or("?"),
            key,
            bytes = value.len(),
            "no Kubernetes API access (--kube-api off): node annotation not written"
        );
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Records annotations, for tests.
#[derive(Debug, Clone, Default)]
pub struct RecordingAnnotator {
    pub written: Arc<Mutex<Vec<(String, String)>>>,
}

impl NodeAnnotator for RecordingAnnotator {
    fn annotate<'a>(&'a self, key: &'a str, value: &'a str) -> AnnotateFuture<'a> {
        let r = self
            .written
            .lock()
            .map_err(|e| e.to_string())
            .map(|mut w| w.push((key.to_string(), value.to_string())));
        Box::pin(std::future::ready(r))
    }
}

/// How long one write of the annotation may take.
const ANNOTATE_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait before retrying a failed write; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

async fn write(annotator: &dyn NodeAnnotator, value: &str) -> Result<(), String> {
    match tokio::time::timeout(ANNOTATE_TIMEOUT, annotator.annotate(TOPOLOGY_ANNOTATION, value)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {ANNOTATE_TIMEOUT:?}")),
    }
}

/// Keeps the topology annotation written: the first write happens in
/// [`Publisher::start`]; a failed write is retried in the background with
/// backoff, and [`Publisher::set`] writes a new value. Dropping it stops the
/// background task.
#[derive(Debug)]
pub struct Publisher {
    value: watch::Sender<String>,
}

impl Publisher {
    pub async fn start(annotator: Arc<dyn NodeAnnotator>, value: String) -> Publisher {
        let mut written = match write(annotator.as_ref(), &value).await {
            Ok(()) => Some(value.clone()),
            Err(e) => {
                tracing::warn!(error = %e, "publishing the topology annotation failed; retrying in the background");
                None
            }
        };
        let (tx, mut rx) = watch::channel(value);
        tokio::spawn(async move {
            let mut retry = RETRY_FIRST;
            loop {
                let want = rx.borrow_and_update().clone();
                if written.as_ref() == Some(&want) {
                    retry = RETRY_FIRST;
                    if rx.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                match write(annotator.as_ref(), &want).await {
                    Ok(()) => {
                        tracing::info!(
                            annotation = TOPOLOGY_ANNOTATION,
                            bytes = want.len(),
                            "topology annotation published"
                        );
                        written = Some(want);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?retry, "publishing the topology annotation failed");
                        tokio::select! {
                            _ = tokio::time::sleep(retry) => {}
                            r = rx.changed() => if r.is_err() { return },
                        }
                        retry = (retry * 2).min(RETRY_MAX);
                    }
                }
            }
        });
        Publisher { value: tx }
    }

    /// Publishes `value` if it differs from the last one.
    pub fn set(&self, value: String) {
        self.value.send_if_modified(|v| {
            if *v == value {
                return false;
            }
            *v = value;
            true
        });
    }
}

/// The annotation value: the profile as compact JSON.
pub fn annotation_value(profile: &MachineProfile) -> Result<String, String> {
    serde_json::to_string(profile).map_err(|e| e.to_string())
}
