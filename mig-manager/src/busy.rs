//! Which MIG instances (and whole GPUs) are in use, so the plan never
//! destroys them and never changes the MIG mode under them. Two sources,
//! both required:
//!
//! - kubelet's PodResources `List`: device-plugin device ids (`MIG-…` and
//!   `GPU-…` UUIDs, replica ids `<uuid>::<n>` included) and DRA claim
//!   results of the GPU driver for this node's pool (`gpu-<minor>`,
//!   `gpu-<minor>-mig-<profile>-<id>-<start>`, NVIDIA's device names);
//! - the backend's running processes per GPU and instance.
//!
//! When either source cannot be read, or PodResources names a GPU device
//! this node does not have (e.g. an `index` device-id strategy, or a stale
//! instance), the answer is [`Busy::everything`]: nothing destructive
//! happens until both sources are readable and make sense again.

use std::collections::BTreeMap;

use railyard_core::mig::InstanceRef;
use railyard_core::resources::parse_replica_id;
use railyard_gpu::GpuProcess;
use railyard_kubelet_api::podresources::v1::ListPodResourcesResponse;

use crate::observe::Observed;

/// Resource-name prefix of the device plugin's resources (`nvidia.com/gpu`,
/// `nvidia.com/mig-1g.10gb`, `nvidia.com/gpu.shared`, renamed ones).
const DEVICE_PLUGIN_PREFIX: &str = "nvidia.com/";

/// What is in use, with who uses it (`namespace/pod`, `pid 4242`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Busy {
    pub instances: BTreeMap<InstanceRef, String>,
    /// GPUs in use as a whole (MIG off, a DRA whole-GPU claim, a process
    /// outside any instance, or a claimed MIG device not created yet): no
    /// mode change and no destroy on them.
    pub gpus: BTreeMap<u32, String>,
    /// Set when the sources could not be trusted: why everything is busy.
    pub unknown: Option<String>,
}

impl Busy {
    /// Every instance and every GPU, because `why`.
    pub fn everything(observed: &Observed, why: impl Into<String>) -> Busy {
        let why = why.into();
        let mut b = Busy {
            unknown: Some(why.clone()),
            ..Busy::default()
        };
        for g in &observed.gpus {
            b.gpus.insert(g.index, why.clone());
            for i in &g.instances {
                b.instances.insert(g.instance_ref(i), why.clone());
            }
        }
        b
    }

    fn add_instance(&mut self, r: InstanceRef, who: &str) {
        self.instances.entry(r).or_insert_with(|| who.to_string());
    }

    fn add_gpu(&mut self, gpu: u32, who: &str) {
        self.gpus.entry(gpu).or_insert_with(|| who.to_string());
    }

    /// Whether anything on `gpu` is in use.
    pub fn gpu_in_use(&self, gpu: u32) -> bool {
        self.gpus.contains_key(&gpu) || self.instances.keys().any(|r| r.gpu == gpu)
    }
}

/// Where a PodResources device could not be matched; the caller turns it
/// into [`Busy::everything`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PodResources lists {what} for {pod}, which matches no GPU or MIG instance on this node")]
pub struct Unmatched {
    pub what: String,
    pub pod: String,
}

/// Busy instances from kubelet's PodResources `List`. `dra_driver` and
/// `pool` select the DRA claim results that are this node's GPUs.
pub fn from_pod_resources(
    resp: &ListPodResourcesResponse,
    observed: &Observed,
    dra_driver: &str,
    pool: &str,
) -> Result<Busy, Unmatched> {
    let mut busy = Busy::default();
    for pod in &resp.pod_resources {
        let who = format!("{}/{}", pod.namespace, pod.name);
        for c in &pod.containers {
            for d in &c.devices {
                if !d.resource_name.starts_with(DEVICE_PLUGIN_PREFIX) {
                    continue;
                }
                for id in &d.device_ids {
                    let (id, _) = parse_replica_id(id);
                    if let Some(r) = observed.instance_by_uuid(id) {
                        busy.add_instance(r, &who);
                    } else if let Some(g) = observed.gpus.iter().find(|g| g.uuid == id) {
                        busy.add_gpu(g.index, &who);
                    } else {
                        return Err(Unmatched {
                            what: format!("device {id:?} of {}", d.resource_name),
                            pod: who,
                        });
                    }
                }
            }
            for claim in &c.dynamic_resources {
                let claim_who = format!("{who} (claim {}/{})", claim.claim_namespace, claim.claim_name);
                for r in &claim.claim_resources {
                    if r.driver_name != dra_driver || r.pool_name != pool {
                        continue;
                    }
                    match dra_device(&r.device_name, observed) {
                        Some(DraDevice::Instance(i)) => busy.add_instance(i, &claim_who),
                        Some(DraDevice::Gpu(g)) => busy.add_gpu(g, &claim_who),
                        None => {
                            return Err(Unmatched {
                                what: format!("DRA device {:?} of driver {dra_driver}", r.device_name),
                                pod: claim_who,
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(busy)
}

enum DraDevice {
    Instance(InstanceRef),
    Gpu(u32),
}

/// `gpu-<minor>` or `gpu-<minor>-mig-<profile>-<profile id>-<start>`. A MIG
/// device that has no instance yet (dynamic MIG before Prepare) holds its
/// whole GPU: its slices are promised.
fn dra_device(name: &str, observed: &Observed) -> Option<DraDevice> {
    let rest = name.strip_prefix("gpu-")?;
    let (minor, mig) = match rest.split_once("-mig-") {
        Some((m, mig)) => (m, Some(mig)),
        None => (rest, None),
    };
    let minor: u32 = minor.parse().ok()?;
    let gpu = observed.gpus.iter().find(|g| g.minor == minor)?;
    let Some(mig) = mig else {
        return Some(DraDevice::Gpu(gpu.index));
    };
    let start: u8 = mig.rsplit('-').next()?.parse().ok()?;
    Some(match gpu.instance_at(start) {
        Some(i) => DraDevice::Instance(gpu.instance_ref(i)),
        None => DraDevice::Gpu(gpu.index),
    })
}

/// Adds the GPUs' running processes: a process in an instance holds that
/// instance; one outside any instance holds its GPU.
pub fn add_processes(busy: &mut Busy, observed: &Observed, processes: &BTreeMap<u32, Vec<GpuProcess>>) {
    for (&gpu, procs) in processes {
        let Some(g) = observed.gpu(gpu) else { continue };
        for p in procs {
            let who = format!("pid {}", p.pid);
            match p
                .gpu_instance_id
                .and_then(|id| g.instances.iter().find(|i| i.gpu_instance_id == id))
            {
                Some(i) => busy.add_instance(g.instance_ref(i), &who),
                None => busy.add_gpu(gpu, &who),
            }
        }
    }
}
