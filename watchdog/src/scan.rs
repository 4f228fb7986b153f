//! Builds a [`Snapshot`] from what a scan read — GPU processes from the
//! backend, `/proc`, PodResources — and carries out a report's signals.
//! The sources stay behind plain data and one small trait, so the same code
//! runs against kubelet and NVML in production and against fakes in tests.

use std::collections::BTreeMap;
use std::time::Duration;

use railyard_core::resources::AdvertisedResource;

use crate::attribution::{Attribution, attribute};
use crate::policy::{Action, ContainerKey, Owner, ProcessSample, Report, Snapshot};
use crate::procfs::ProcFs;
use crate::signal::{SignalOutcome, signal_checked};

/// A GPU process as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuProcessInfo {
    /// Host PID.
    pub pid: u32,
    /// Physical GPU or MIG device UUID.
    pub device: String,
    pub used_mib: Option<u64>,
}

/// Maps a cgroup's (pod UID, CRI container id) to the names PodResources
/// uses; backed by CRI container labels or pod status in production.
pub trait ContainerResolver {
    fn resolve(&self, pod_uid: &str, container_id: &str) -> Option<ContainerKey>;
}

/// The device ids one container holds, from PodResources `List`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDevices {
    pub key: ContainerKey,
    pub device_ids: Vec<String>,
}

/// Shared replica id → (GPU or MIG device UUID, memory share MiB), from the
/// resources the device plugin advertises, and the names of the resources
/// those replicas are advertised under. Whole GPUs and MIG devices are not in
/// it: hardware isolates them. A time-sliced MIG device's replicas are, keyed
/// on the MIG device's UUID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareTable {
    replicas: BTreeMap<String, (String, u64)>,
    /// Empty: any resource (tables built from pairs).
    resources: std::collections::BTreeSet<String>,
}

impl ShareTable {
    pub fn from_resources(resources: &[AdvertisedResource]) -> Self {
        let shared = |r: &&AdvertisedResource| r.devices.iter().any(|d| d.replica.is_some());
        ShareTable {
            replicas: resources
                .iter()
                .flat_map(|r| r.devices.iter())
                .filter(|d| d.replica.is_some())
                .map(|d| (d.id.clone(), (d.device.id.clone(), d.memory_share_mib)))
                .collect(),
            resources: resources.iter().filter(shared).map(|r| r.name.clone()).collect(),
        }
    }

    /// From explicit (replica id → (device UUID, share MiB)) pairs, under any resource name.
    pub fn from_pairs(pairs: BTreeMap<String, (String, u64)>) -> Self {
        ShareTable {
            replicas: pairs,
            resources: Default::default(),
        }
    }

    pub fn get(&self, replica_id: &str) -> Option<&(String, u64)> {
        self.replicas.get(replica_id)
    }

    /// No shared replicas: nothing to enforce.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Whether ids under this resource name can be shared replicas.
    pub fn covers_resource(&self, name: &str) -> bool {
        self.resources.is_empty() || self.resources.contains(name)
    }

    /// Share per (container, device): the container's replicas on one device add up.
    pub fn container_shares(&self, pods: &[ContainerDevices]) -> BTreeMap<(ContainerKey, String), u64> {
        let mut out = BTreeMap::new();
        for c in pods {
            for id in &c.device_ids {
                if let Some((device, share)) = self.replicas.get(id) {
                    *out.entry((c.key.clone(), device.clone())).or_insert(0) += share;
                }
            }
        }
        out
    }
}

/// Attribution per PID, kept between scans: a process's cgroup and start
/// time never change, so steady-state scans read no `/proc` files. Entries
/// go when their PID leaves NVML's list. Signals re-read the start time, so
/// a PID reused between scans is still caught before anything is sent.
#[derive(Debug, Default)]
pub struct AttributionCache {
    by_pid: BTreeMap<u32, (u64, Owner)>,
}

impl AttributionCache {
    pub fn len(&self) -> usize {
        self.by_pid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_pid.is_empty()
    }

    /// Drops what is known about `pid`, so the next scan attributes it
    /// afresh (after a signal found the PID reused).
    pub fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }

    fn lookup(&mut self, pid: u32, procfs: &ProcFs, resolver: &dyn ContainerResolver) -> Option<(u64, Owner)> {
        if let Some(hit) = self.by_pid.get(&pid) {
            return Some(hit.clone());
        }
        // A process that exited since NVML listed it has nothing to enforce.
        let start_time = procfs.start_time(pid).ok()?;
        let owner = match procfs.cgroup(pid).map(|c| attribute(&c)) {
            Ok(Attribution::Host) => Owner::Host,
            Ok(Attribution::Container { pod_uid, container_id }) => resolver
                .resolve(&pod_uid, &container_id)
                .map_or(Owner::Unattributed, Owner::Container),
            Ok(Attribution::Unattributed { .. }) | Err(_) => Owner::Unattributed,
        };
        // An unresolved container may resolve later (its pod just started):
        // only settled answers are kept.
        if owner != Owner::Unattributed {
            self.by_pid.insert(pid, (start_time, owner.clone()));
        }
        Some((start_time, owner))
    }
}

/// Assembles one scan's snapshot. `gpu` is `None` when the backend could not
/// be read, `pods` is `None` when PodResources could not be.
pub fn build_snapshot(
    now: Duration,
    gpu: Option<(Duration, Vec<GpuProcessInfo>)>,
    pods: Option<&[ContainerDevices]>,
    shares: &ShareTable,
    procfs: &ProcFs,
    resolver: &dyn ContainerResolver,
    cache: &mut AttributionCache,
) -> Snapshot {
    let (gpu_data_age, processes) = match gpu {
        Some((age, procs)) => (Some(age), procs),
        None => (None, Vec::new()),
    };
    if gpu_data_age.is_some() {
        let listed: std::collections::BTreeSet<u32> = processes.iter().map(|p| p.pid).collect();
        cache.by_pid.retain(|pid, _| listed.contains(pid));
    }
    let samples = processes
        .into_iter()
        .filter_map(|p| {
            let (start_time, owner) = cache.lookup(p.pid, procfs, resolver)?;
            Some(ProcessSample {
                pid: p.pid,
                start_time,
                device: p.device,
                used_mib: p.used_mib,
                owner,
            })
        })
        .collect();
    Snapshot {
        now,
        gpu_data_age,
        shares: pods.map(|p| shares.container_shares(p)),
        processes: samples,
    }
}

/// Sends the report's signals, each checked against PID reuse.
pub fn execute(report: &Report, procfs: &ProcFs) -> Vec<(Action, SignalOutcome)> {
    report
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Signal {
                pid, start_time, sig, ..
            } => Some((a.clone(), signal_checked(procfs, *pid, *start_time, *sig))),
            Action::Violation { .. } => None,
        })
        .collect()
}
