//! The device plugin's decisions at pod admission, as pure functions over an
//! [`AdvertisedResource`]: which ids to prefer (`GetPreferredAllocation`)
//! and whether an `Allocate` request is acceptable, plus the per-container
//! views of a granted set (visible devices, memory shares).
//!
//! Preferences follow NVIDIA's device plugin where it has a rule and the
//! node topology where it has none:
//! - whole GPUs: [`NodeTopology::best_gpus`] (NVLink, then NIC alignment,
//!   then one NUMA node), `must_include` respected;
//! - shared replicas: NVIDIA's `distributed` policy (each pick goes to the
//!   physical device with the fewest replicas in use, so pods spread over
//!   GPUs) or `packed` (the device with the most replicas in use that still
//!   has one free, so whole GPUs stay free);
//! - anything else (MIG devices): `must_include` first, then the available
//!   ids in kubelet's order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::resources::{AdvertisedDevice, AdvertisedResource, parse_replica_id};
use crate::topology::{Constraints, NodeTopology};

/// How replicas of shared devices are picked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReplicaPolicy {
    /// NVIDIA's default: spread over physical devices.
    #[default]
    Distributed,
    /// Fill partly used devices first.
    Packed,
}

impl std::str::FromStr for ReplicaPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "distributed" => Ok(ReplicaPolicy::Distributed),
            "packed" => Ok(ReplicaPolicy::Packed),
            _ => Err(format!("unknown replica policy {s:?}; valid: distributed, packed")),
        }
    }
}

impl fmt::Display for ReplicaPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplicaPolicy::Distributed => "distributed",
            ReplicaPolicy::Packed => "packed",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// NVIDIA's message for `failRequestsGreaterThanOne`.
    #[error("request for '{resource}: {requested}' too large: maximum request size for shared resources is 1")]
    TooManySharedReplicas { resource: String, requested: usize },
    #[error("{resource}: unknown device id {id:?}")]
    UnknownDevice { resource: String, id: String },
    #[error("{resource}: device id {id:?} requested twice")]
    Repeated { resource: String, id: String },
    #[error("{resource}: must-include device {id:?} is not among the available devices")]
    MustIncludeUnavailable { resource: String, id: String },
    #[error("{resource}: {size} devices asked for but {must} must be included")]
    MustIncludeTooMany { resource: String, size: usize, must: usize },
    #[error("{resource}: {size} devices asked for but only {available} are available")]
    NotEnoughAvailable {
        resource: String,
        size: usize,
        available: usize,
    },
}

/// Checks an `Allocate` request for one container and returns its devices
/// in request order: every id advertised, none twice, and at most one when
/// the resource is shared with `failRequestsGreaterThanOne`.
pub fn check_allocate<'r>(
    resource: &'r AdvertisedResource,
    ids: &[String],
) -> Result<Vec<&'r AdvertisedDevice>, AllocationError> {
    let shared = resource.devices.iter().any(|d| d.replica.is_some());
    if shared && resource.fail_requests_greater_than_one && ids.len() > 1 {
        return Err(AllocationError::TooManySharedReplicas {
            resource: resource.name.clone(),
            requested: ids.len(),
        });
    }
    let by_id: BTreeMap<&str, &AdvertisedDevice> = resource.devices.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut seen = BTreeSet::new();
    ids.iter()
        .map(|id| {
            if !seen.insert(id.as_str()) {
                return Err(AllocationError::Repeated {
                    resource: resource.name.clone(),
                    id: id.clone(),
                });
            }
            by_id
                .get(id.as_str())
                .copied()
                .ok_or_else(|| AllocationError::UnknownDevice {
                    resource: resource.name.clone(),
                    id: id.clone(),
                })
        })
        .collect()
}

/// `GetPreferredAllocation` for one container: `size` ids out of
/// `available`, including every `must_include` id. `topology` (when known)
/// ranks whole GPUs; without it they are taken in kubelet's order.
pub fn preferred_allocation(
    resource: &AdvertisedResource,
    topology: Option<&NodeTopology>,
    available: &[String],
    must_include: &[String],
    size: usize,
    policy: ReplicaPolicy,
) -> Result<Vec<String>, AllocationError> {
    let name = || resource.name.clone();
    let by_id: BTreeMap<&str, &AdvertisedDevice> = resource.devices.iter().map(|d| (d.id.as_str(), d)).collect();
    // Ids this resource does not advertise (a stale kubelet view) are dropped.
    let mut avail: Vec<&str> = Vec::new();
    for a in available {
        if by_id.contains_key(a.as_str()) && !avail.contains(&a.as_str()) {
            avail.push(a);
        }
    }
    let mut must: Vec<&str> = Vec::new();
    for m in must_include {
        if !avail.contains(&m.as_str()) {
            return Err(AllocationError::MustIncludeUnavailable {
                resource: name(),
                id: m.clone(),
            });
        }
        if !must.contains(&m.as_str()) {
            must.push(m);
        }
    }
    if must.len() > size {
        return Err(AllocationError::MustIncludeTooMany {
            resource: name(),
            size,
            must: must.len(),
        });
    }
    if avail.len() < size {
        return Err(AllocationError::NotEnoughAvailable {
            resource: name(),
            size,
            available: avail.len(),
        });
    }
    let in_order = || -> Vec<String> {
        let mut out: Vec<String> = must.iter().map(|s| s.to_string()).collect();
        out.extend(
            avail
                .iter()
                .filter(|a| !must.contains(a))
                .take(size - must.len())
                .map(|s| s.to_string()),
        );
        out
    };
    let replicated = resource.devices.iter().any(|d| d.replica.is_some());
    if replicated {
        return Ok(replicas(resource, &avail, &must, size, policy));
    }
    let whole_gpus = resource.devices.iter().all(|d| d.device.mig_profile.is_none());
    match topology {
        Some(topo) if whole_gpus => Ok(best_whole_gpus(topo, &by_id, &avail, &must, size).unwrap_or_else(in_order)),
        _ => Ok(in_order()),
    }
}

fn best_whole_gpus(
    topo: &NodeTopology,
    by_id: &BTreeMap<&str, &AdvertisedDevice>,
    avail: &[&str],
    must: &[&str],
    size: usize,
) -> Option<Vec<String>> {
    let gpu_of = |id: &str| by_id.get(id).map(|d| d.device.gpu);
    let mut id_of: BTreeMap<u32, &str> = BTreeMap::new();
    for &a in avail {
        id_of.insert(gpu_of(a)?, a);
    }
    let free: BTreeSet<u32> = id_of.keys().copied().collect();
    let constraints = Constraints {
        must_include: must.iter().map(|m| gpu_of(m)).collect::<Option<_>>()?,
        ..Constraints::default()
    };
    let picked = topo.best_gpus(size, &free, &constraints).ok()?;
    // Must-include ids first, as kubelet lists them, then the rest by GPU.
    let mut out: Vec<String> = must.iter().map(|s| s.to_string()).collect();
    for g in picked {
        let id = id_of.get(&g)?;
        if !must.contains(id) {
            out.push(id.to_string());
        }
    }
    Some(out)
}

/// NVIDIA's `distributedAlloc` (and its `packed` mirror image): one pick at a
/// time, each from the physical device with the fewest (most) replicas in
/// use; replicas not offered as available, including the must-include ones,
/// count as in use. Ties go to kubelet's order.
fn replicas(
    resource: &AdvertisedResource,
    avail: &[&str],
    must: &[&str],
    size: usize,
    policy: ReplicaPolicy,
) -> Vec<String> {
    let parent = |id: &str| parse_replica_id(id).0.to_string();
    // Per physical device: (total replicas, available replicas).
    let mut count: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for d in &resource.devices {
        count.entry(parent(&d.id)).or_default().0 += 1;
    }
    let mut candidates: Vec<&str> = avail.iter().copied().filter(|a| !must.contains(a)).collect();
    for c in &candidates {
        if let Some(e) = count.get_mut(&parent(c)) {
            e.1 += 1;
        }
    }
    let in_use =
        |count: &BTreeMap<String, (usize, usize)>, id: &str| count.get(&parent(id)).map(|(t, a)| t - a).unwrap_or(0);
    let mut out: Vec<String> = must.iter().map(|s| s.to_string()).collect();
    while out.len() < size && !candidates.is_empty() {
        let pick = match policy {
            ReplicaPolicy::Distributed => (0..candidates.len()).min_by_key(|&i| (in_use(&count, candidates[i]), i)),
            ReplicaPolicy::Packed => {
                (0..candidates.len()).min_by_key(|&i| (std::cmp::Reverse(in_use(&count, candidates[i])), i))
            }
        };
        let Some(i) = pick else { break };
        let id = candidates.remove(i);
        if let Some(e) = count.get_mut(&parent(id)) {
            e.1 -= 1;
        }
        out.push(id.to_string());
    }
    out
}

/// The physical devices behind a granted set, each once, in request order,
/// with the memory the container may use on it: the sum of its replicas'
/// shares (the whole device when unshared, capped at the device's memory).
pub fn granted_devices<'a>(devices: &[&'a AdvertisedDevice]) -> Vec<(&'a AdvertisedDevice, u64)> {
    let mut out: Vec<(&AdvertisedDevice, u64)> = Vec::new();
    for d in devices {
        match out.iter_mut().find(|(o, _)| o.device.id == d.device.id) {
            Some((_, mib)) => *mib = (*mib + d.memory_share_mib).min(d.device.memory_mib),
            None => out.push((d, d.memory_share_mib)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DevicePluginConfig;
    use crate::machine::MachineProfile;
    use crate::resources::{advertised_resources, inventory};

    fn machine(n: u32) -> MachineProfile {
        let gpus: String = (0..n)
            .map(|i| {
                format!(
                    "  - {{index: {i}, product_name: \"Tesla T4\", uuid: GPU-{i}, pci_bus_id: \"0000:{:02x}:00.0\", numa_node: {}}}\n",
                    i + 16,
                    i / 2
                )
            })
            .collect();
        MachineProfile::from_yaml(&format!(
            "name: m\nnuma_nodes: [{{id: 0, cpus: \"0-7\"}}, {{id: 1, cpus: \"8-15\", socket: 1}}]\ngpus:\n{gpus}"
        ))
        .unwrap()
    }

    fn resource(cfg: &str, n: u32) -> AdvertisedResource {
        let m = machine(n);
        let cfg = DevicePluginConfig::from_yaml(cfg).unwrap();
        advertised_resources(&inventory(&m, &Default::default()), &cfg)
            .unwrap()
            .remove(0)
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const SHARED: &str = "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n    - name: gpu\n      replicas: 3\n";

    #[test]
    fn distributed_spreads_and_packed_fills() {
        let r = resource(SHARED, 2);
        // GPU-0 has one replica in use (GPU-0::0 not offered).
        let avail = ids(&["GPU-0::1", "GPU-0::2", "GPU-1::0", "GPU-1::1", "GPU-1::2"]);
        let d = preferred_allocation(&r, None, &avail, &[], 2, ReplicaPolicy::Distributed).unwrap();
        assert_eq!(d, ids(&["GPU-1::0", "GPU-0::1"]));
        let p = preferred_allocation(&r, None, &avail, &[], 2, ReplicaPolicy::Packed).unwrap();
        assert_eq!(p, ids(&["GPU-0::1", "GPU-0::2"]));
        let m = preferred_allocation(&r, None, &avail, &ids(&["GPU-1::2"]), 2, ReplicaPolicy::Distributed).unwrap();
        assert_eq!(m[0], "GPU-1::2");
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn must_include_and_size_are_checked() {
        let r = resource("version: v1\n", 2);
        let e = preferred_allocation(
            &r,
            None,
            &ids(&["GPU-0"]),
            &ids(&["GPU-1"]),
            1,
            ReplicaPolicy::default(),
        );
        assert!(
            matches!(e, Err(AllocationError::MustIncludeUnavailable { .. })),
            "{e:?}"
        );
        let e = preferred_allocation(&r, None, &ids(&["GPU-0"]), &[], 2, ReplicaPolicy::default());
        assert!(matches!(e, Err(AllocationError::NotEnoughAvailable { .. })), "{e:?}");
        let ok = preferred_allocation(
            &r,
            None,
            &ids(&["GPU-0", "GPU-1"]),
            &ids(&["GPU-1"]),
            1,
            ReplicaPolicy::default(),
        );
        assert_eq!(ok.unwrap(), ids(&["GPU-1"]));
    }

    #[test]
    fn whole_gpus_prefer_one_numa_node() {
        let m = machine(4);
        let topo = NodeTopology::from_profile(&m).unwrap();
        let r = resource("version: v1\n", 4);
        // GPU 0 taken: two from NUMA node 1 beat GPU 1 + one from node 1.
        let got = preferred_allocation(
            &r,
            Some(&topo),
            &ids(&["GPU-1", "GPU-2", "GPU-3"]),
            &[],
            2,
            ReplicaPolicy::default(),
        )
        .unwrap();
        assert_eq!(got, ids(&["GPU-2", "GPU-3"]));
    }

    #[test]
    fn fail_requests_greater_than_one_and_unknown_ids() {
        let cfg = "version: v1\nsharing:\n  timeSlicing:\n    failRequestsGreaterThanOne: true\n    resources:\n    - name: gpu\n      replicas: 2\n";
        let r = resource(cfg, 1);
        let e = check_allocate(&r, &ids(&["GPU-0::0", "GPU-0::1"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "request for 'nvidia.com/gpu: 2' too large: maximum request size for shared resources is 1"
        );
        assert_eq!(check_allocate(&r, &ids(&["GPU-0::1"])).unwrap()[0].replica, Some(1));
        let e = check_allocate(&r, &ids(&["GPU-9::0"])).unwrap_err();
        assert!(matches!(e, AllocationError::UnknownDevice { .. }));
        // Without the flag, two replicas of one GPU are one device with twice the share.
        let r = resource(SHARED, 1);
        let got = check_allocate(&r, &ids(&["GPU-0::0", "GPU-0::2"])).unwrap();
        let g = granted_devices(&got);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].1, 2 * (15360 / 3));
    }
}
