//! The simulated hardware: one node's GPUs as a machine profile describes
//! them, with MIG state, processes and memory, and the same legality rules as
//! the hardware. [`crate::SimBackend`] runs it behind the async trait; the
//! fake libnvidia-ml (`railyard-fake-nvml`) exports it through NVML's C ABI,
//! so both backends answer from one model and can be compared call for call.
//!
//! Hardware facts modelled here (PROTOCOLS §8, §11):
//! - GPU instance ids follow the placement's slot in the binary tree of
//!   memory slices (7g → 0, 4-slice halves → 1–2, 2-slice quarters → 3–6,
//!   single slices → 7–14), so ids are stable across create/destroy;
//! - a GPU instance gets one full compute instance with id 0;
//! - create: a placement the profile does not allow → `INVALID_ARGUMENT`;
//!   overlap, too many instances or too many compute slices →
//!   `INSUFFICIENT_RESOURCES`; MIG off → `NOT_SUPPORTED`;
//! - destroy a GPU instance that still has a compute instance → `IN_USE`;
//!   destroy a compute instance with processes → `IN_USE`;
//! - MIG mode change with processes on the GPU leaves the change pending and
//!   reports `IN_USE`; disabling MIG while instances exist → `IN_USE`.

use std::collections::BTreeMap;

use railyard_core::catalog::{self, GpuModel};
use railyard_core::machine::{GpuSpec, MachineProfile, parse_cpulist};
use railyard_core::mig::{MigFamily, MigInstance, MigLayout, Placement, ProfileKind};
use railyard_core::resources::mig_devices;

use crate::error::{GpuError, Op};
use railyard_core::topology::{NodeTopology, TopologyLevel};

use crate::types::{
    GpuInfo, GpuProcess, MemoryUsage, MigInfo, MigInstanceInfo, MigMode, Nic, NodeInventory, NvLinkInfo,
};

/// The far end of one NVLink link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEnd {
    /// A peer GPU, by index.
    Gpu(u32),
    NvSwitch,
}

/// The GPU instance id NVML gives a placement (its slot in the binary tree
/// of the 8 memory slices).
pub fn gpu_instance_id(p: Placement) -> u32 {
    let (start, size) = (p.start as u32, p.size as u32);
    match size {
        8 => 0,
        4 => 1 + start / 4,
        2 => 3 + start / 2,
        _ => 7 + start,
    }
}

/// `NVML_COMPUTE_INSTANCE_PROFILE_*` index (and id) of the compute instance
/// that spans a whole GPU instance of `kind`.
pub fn full_compute_profile(kind: ProfileKind) -> u32 {
    match kind.spec().compute_slices {
        1 => 0,
        2 => 1,
        3 => 2,
        4 => 3,
        _ => 4,
    }
}

/// Compute slices of a compute-instance profile index (0–4), if known.
pub fn compute_profile_slices(index: u32) -> Option<u32> {
    Some(match index {
        0 => 1,
        1 => 2,
        2 => 3,
        3 => 4,
        4 => 7,
        _ => return None,
    })
}

/// The catalog model of a profile GPU.
pub fn model_of(g: &GpuSpec) -> Option<&'static GpuModel> {
    catalog::identify(&g.product_name, g.pci_device_id).model()
}

/// PCI device id as NVML reports it: the profile's, else the catalog's.
pub fn pci_device_id(g: &GpuSpec) -> u16 {
    g.pci_device_id
        .or_else(|| model_of(g).and_then(|m| m.pci_device_ids.first().copied()))
        .unwrap_or(0)
}

/// The MIG UUID of a MIG device (derived as the resource model derives it).
pub fn mig_uuid(gpu_uuid: &str, family: MigFamily, inst: MigInstance) -> String {
    let devices = mig_devices(gpu_uuid, &MigLayout::new(family, vec![inst]));
    devices.into_iter().next().map(|d| d.uuid).unwrap_or_default()
}

/// NVLink links of a GPU in link order: all to NVSwitches on an NVSwitch
/// system, else the profile's pairs in order.
pub fn nvlink_table(profile: &MachineProfile, gpu: u32) -> Vec<LinkEnd> {
    let Some(g) = profile.gpu(gpu) else {
        return Vec::new();
    };
    let links = model_of(g).map_or(0, |m| m.nvlink_links);
    if profile.nvlink.nvswitch {
        return vec![LinkEnd::NvSwitch; links as usize];
    }
    let mut out = Vec::new();
    for pair in &profile.nvlink.links {
        let peer = match pair.gpus {
            [a, b] if a == gpu => b,
            [a, b] if b == gpu => a,
            _ => continue,
        };
        out.extend(std::iter::repeat_n(LinkEnd::Gpu(peer), pair.links as usize));
    }
    out
}

/// Whether a GPU model has NVLink at all (`NOT_SUPPORTED` otherwise).
pub fn has_nvlink(profile: &MachineProfile, gpu: u32) -> bool {
    profile.gpu(gpu).and_then(model_of).is_some_and(|m| m.nvlink_links > 0)
}

/// CPUs of the GPU's NUMA node.
pub fn cpu_affinity(profile: &MachineProfile, g: &GpuSpec) -> Vec<u32> {
    let mut cpus = profile
        .numa_nodes
        .iter()
        .find(|n| n.id == g.numa_node)
        .and_then(|n| parse_cpulist(&n.cpus).ok())
        .unwrap_or_default();
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}

/// The NICs of a profile as sysfs would show them, by name.
pub fn profile_nics(profile: &MachineProfile) -> Vec<Nic> {
    let mut nics: Vec<Nic> = profile
        .nics
        .iter()
        .map(|n| Nic {
            name: n.name.clone(),
            netdev: n.netdev.clone(),
            pci_bus_id: n.pci_bus_id.to_ascii_lowercase(),
            numa_node: Some(n.numa_node),
            speed_gbps: Some(n.speed_gbps),
            link_layer: n.link_layer,
        })
        .collect();
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    nics
}

/// A GPU instance in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimGpuInstance {
    pub id: u32,
    pub kind: ProfileKind,
    pub placement: Placement,
    /// The full compute instance's id, once created.
    pub compute_instance: Option<u32>,
}

/// One GPU's mutable state.
#[derive(Debug, Clone)]
pub struct SimGpu {
    pub index: u32,
    pub family: Option<MigFamily>,
    pub mig: MigMode,
    /// By GPU instance id.
    pub instances: BTreeMap<u32, SimGpuInstance>,
    pub processes: Vec<GpuProcess>,
    /// Memory used besides the processes' (driver, contexts).
    pub base_used_mib: u64,
    /// Every call on the GPU answers `GPU_IS_LOST`.
    pub lost: bool,
    /// `NVML_FI_DEV_GET_GPU_RECOVERY_ACTION`: 0 none, 1 GPU reset, 2 node reboot, …
    pub recovery_action: u32,
    /// The GPU reset that an Ampere MIG mode change needs is refused (as in
    /// some pass-through VMs): the change stays pending until a reboot.
    /// Hopper and later need no reset, so it does not apply to them.
    pub reset_refused: bool,
}

/// The simulated node.
#[derive(Debug, Clone)]
pub struct SimMachine {
    profile: MachineProfile,
    /// `None` if the profile's PCIe tree is inconsistent (no levels then).
    topology: Option<NodeTopology>,
    gpus: Vec<SimGpu>,
}

impl SimMachine {
    /// The node at power-on: MIG modes and instances as the profile says.
    pub fn new(profile: MachineProfile) -> SimMachine {
        let mut gpus: Vec<SimGpu> = profile
            .gpus
            .iter()
            .map(|g| {
                let family = profile.gpu_model(g).mig_family();
                SimGpu {
                    index: g.index,
                    family,
                    mig: MigMode {
                        current: g.mig_enabled && family.is_some(),
                        pending: g.mig_enabled && family.is_some(),
                    },
                    instances: BTreeMap::new(),
                    processes: Vec::new(),
                    base_used_mib: 0,
                    lost: false,
                    reset_refused: false,
                    recovery_action: 0,
                }
            })
            .collect();
        gpus.sort_by_key(|g| g.index);
        let topology = NodeTopology::from_profile(&profile).ok();
        let mut m = SimMachine {
            profile,
            topology,
            gpus,
        };
        let initial: Vec<(u32, MigInstance)> = m
            .profile
            .gpus
            .iter()
            .filter(|g| g.mig_enabled)
            .flat_map(|g| {
                let layout = m.profile.mig_layout(g).ok();
                layout
                    .into_iter()
                    .flat_map(|l| l.canonical().instances)
                    .map(move |i| (g.index, i))
            })
            .collect();
        for (gpu, inst) in initial {
            // The profile was validated, so these succeed.
            let _ = m.create_mig_instance(gpu, inst);
        }
        m
    }

    pub fn profile(&self) -> &MachineProfile {
        &self.profile
    }

    /// Closest common PCIe ancestor of two GPUs, as
    /// `nvmlDeviceGetTopologyCommonAncestor` reports it.
    pub fn pcie_level(&self, a: u32, b: u32) -> Option<TopologyLevel> {
        self.topology.as_ref()?.level(a, b).ok()
    }

    pub fn gpu_indices(&self) -> Vec<u32> {
        self.gpus.iter().map(|g| g.index).collect()
    }

    pub fn gpu(&self, index: u32) -> Option<&SimGpu> {
        self.gpus.iter().find(|g| g.index == index)
    }

    /// The GPU's state, or `NotFound`/`GpuLost` for `op`.
    pub fn live_gpu(&self, index: u32, op: Op) -> Result<&SimGpu, GpuError> {
        let g = self.gpu(index).ok_or(GpuError::NotFound { op })?;
        if g.lost {
            return Err(GpuError::GpuLost { op });
        }
        Ok(g)
    }

    fn live_gpu_mut(&mut self, index: u32, op: Op) -> Result<&mut SimGpu, GpuError> {
        self.live_gpu(index, op)?;
        self.gpu_mut(index).ok_or(GpuError::NotFound { op })
    }

    /// Direct access for injection (processes, memory, loss, recovery).
    pub fn gpu_mut(&mut self, index: u32) -> Option<&mut SimGpu> {
        self.gpus.iter_mut().find(|g| g.index == index)
    }

    fn spec(&self, index: u32) -> Option<&GpuSpec> {
        self.profile.gpu(index)
    }

    /// The node's inventory. Fails if any GPU is lost.
    pub fn inventory(&self) -> Result<NodeInventory, GpuError> {
        let op = Op::Inventory;
        let mut gpus = Vec::new();
        for g in &self.gpus {
            gpus.push(self.gpu_info(g.index, op)?);
        }
        let mut pcie_levels = BTreeMap::new();
        for (i, a) in self.gpus.iter().enumerate() {
            for b in &self.gpus[i + 1..] {
                if let Some(l) = self.pcie_level(a.index, b.index) {
                    pcie_levels.insert((a.index, b.index), l);
                }
            }
        }
        Ok(NodeInventory {
            driver_version: self.profile.driver_version.clone(),
            cuda_driver_version: self.profile.cuda_driver_version,
            gpus,
            pcie_levels,
            nics: profile_nics(&self.profile),
        })
    }

    fn gpu_info(&self, index: u32, op: Op) -> Result<GpuInfo, GpuError> {
        let g = self.live_gpu(index, op)?;
        let spec = self.spec(index).ok_or(GpuError::NotFound { op })?;
        let mut nvlink = NvLinkInfo::default();
        for end in nvlink_table(&self.profile, index) {
            match end {
                LinkEnd::NvSwitch => nvlink.nvswitch_links += 1,
                LinkEnd::Gpu(p) => *nvlink.peer_links.entry(p).or_insert(0) += 1,
            }
        }
        Ok(GpuInfo {
            index,
            uuid: spec.uuid.clone(),
            product_name: spec.product_name.clone(),
            model: model_of(spec).map(|m| m.id),
            pci_bus_id: spec.pci_bus_id.to_ascii_lowercase(),
            pci_device_id: pci_device_id(spec),
            minor: spec.minor.unwrap_or(index),
            memory_mib: self.profile.gpu_memory_mib(spec),
            numa_node: Some(spec.numa_node),
            cpu_affinity: cpu_affinity(&self.profile, spec),
            mig: g.family.map(|family| MigInfo {
                family,
                mode: g.mig,
                instances: self.instance_infos(g),
            }),
            nvlink,
        })
    }

    fn instance_infos(&self, g: &SimGpu) -> Vec<MigInstanceInfo> {
        let (Some(family), Some(spec)) = (g.family, self.spec(g.index)) else {
            return Vec::new();
        };
        let mut out: Vec<MigInstanceInfo> = g
            .instances
            .values()
            .map(|i| {
                let profile = family.profile(i.kind);
                MigInstanceInfo {
                    gpu_instance_id: i.id,
                    compute_instance_id: i.compute_instance,
                    kind: i.kind,
                    profile: profile.name,
                    placement: i.placement,
                    uuid: i.compute_instance.map(|_| {
                        mig_uuid(
                            &spec.uuid,
                            family,
                            MigInstance {
                                kind: i.kind,
                                placement: i.placement,
                            },
                        )
                    }),
                    memory_mib: profile.memory_mib,
                }
            })
            .collect();
        out.sort_by_key(|i| i.placement);
        out
    }

    /// MIG instances of one GPU, by placement.
    pub fn mig_instances(&self, gpu: u32) -> Result<Vec<MigInstanceInfo>, GpuError> {
        let op = Op::ListMigInstances;
        let g = self.live_gpu(gpu, op)?;
        if g.family.is_none() {
            return Err(GpuError::NotSupported { op });
        }
        Ok(self.instance_infos(g))
    }

    pub fn memory(&self, gpu: u32) -> Result<MemoryUsage, GpuError> {
        let op = Op::Memory;
        let g = self.live_gpu(gpu, op)?;
        let spec = self.spec(gpu).ok_or(GpuError::NotFound { op })?;
        let used: u64 = g.processes.iter().filter_map(|p| p.used_memory_mib).sum();
        Ok(MemoryUsage {
            total_mib: self.profile.gpu_memory_mib(spec),
            used_mib: g.base_used_mib + used,
        })
    }

    pub fn processes(&self, gpu: u32) -> Result<Vec<GpuProcess>, GpuError> {
        let mut p = self.live_gpu(gpu, Op::Processes)?.processes.clone();
        p.sort();
        Ok(p)
    }

    /// Starts a process; a MIG instance must exist if named.
    pub fn add_process(&mut self, p: GpuProcess) -> Result<(), GpuError> {
        let op = Op::Processes;
        let g = self.live_gpu_mut(p.gpu, op)?;
        if let Some(gi) = p.gpu_instance_id {
            let ok = g
                .instances
                .get(&gi)
                .is_some_and(|i| i.compute_instance.is_some() && i.compute_instance == p.compute_instance_id);
            if !ok {
                return Err(GpuError::NotFound { op });
            }
        }
        g.processes.retain(|q| q.pid != p.pid);
        g.processes.push(p);
        Ok(())
    }

    /// Ends a process wherever it runs; whether it existed.
    pub fn remove_process(&mut self, pid: u32) -> bool {
        let mut found = false;
        for g in &mut self.gpus {
            let before = g.processes.len();
            g.processes.retain(|p| p.pid != pid);
            found |= g.processes.len() != before;
        }
        found
    }

    pub fn mig_mode(&self, gpu: u32) -> Result<MigMode, GpuError> {
        let op = Op::SetMigMode;
        let g = self.live_gpu(gpu, op)?;
        if g.family.is_none() {
            return Err(GpuError::NotSupported { op });
        }
        Ok(g.mig)
    }

    /// Sets the MIG mode. With processes on the GPU the change stays pending
    /// and `InUse` is returned (as NVML's activation status reports).
    pub fn set_mig_mode(&mut self, gpu: u32, enabled: bool) -> Result<MigMode, GpuError> {
        let op = Op::SetMigMode;
        let g = self.live_gpu_mut(gpu, op)?;
        if g.family.is_none() {
            return Err(GpuError::NotSupported { op });
        }
        if !enabled && !g.instances.is_empty() {
            return Err(GpuError::InUse { op });
        }
        g.mig.pending = enabled;
        if g.mig.current != enabled && !g.processes.is_empty() {
            return Err(GpuError::InUse { op });
        }
        let ampere = matches!(g.family, Some(MigFamily::A100_40gb | MigFamily::A100_80gb));
        if g.mig.current != enabled && ampere && g.reset_refused {
            return Ok(g.mig);
        }
        g.mig.current = enabled;
        Ok(g.mig)
    }

    /// Legal placements of a profile on a GPU (all of them, occupied or not,
    /// as `nvidia-smi mig -lgipp` lists them).
    pub fn possible_placements(&self, gpu: u32, kind: ProfileKind) -> Result<Vec<Placement>, GpuError> {
        let op = Op::PossiblePlacements;
        let g = self.live_gpu(gpu, op)?;
        if g.family.is_none() || !g.mig.current {
            return Err(GpuError::NotSupported { op });
        }
        Ok(kind.spec().placements.to_vec())
    }

    /// Creates a GPU instance (no compute instance yet); returns its id.
    pub fn create_gpu_instance(&mut self, gpu: u32, inst: MigInstance) -> Result<u32, GpuError> {
        let op = Op::CreateGpuInstance;
        let g = self.live_gpu_mut(gpu, op)?;
        let Some(family) = g.family else {
            return Err(GpuError::NotSupported { op });
        };
        if !g.mig.current {
            return Err(GpuError::NotSupported { op });
        }
        if !inst.kind.spec().placements.contains(&inst.placement) {
            return Err(GpuError::InvalidArgument { op });
        }
        let layout = MigLayout::new(
            family,
            g.instances
                .values()
                .map(|i| MigInstance {
                    kind: i.kind,
                    placement: i.placement,
                })
                .collect(),
        );
        if !layout.can_add(inst) {
            return Err(GpuError::InsufficientResources { op });
        }
        let id = gpu_instance_id(inst.placement);
        g.instances.insert(
            id,
            SimGpuInstance {
                id,
                kind: inst.kind,
                placement: inst.placement,
                compute_instance: None,
            },
        );
        Ok(id)
    }

    /// Creates the full compute instance of a GPU instance; returns its id.
    pub fn create_compute_instance(&mut self, gpu: u32, gpu_instance: u32) -> Result<u32, GpuError> {
        let op = Op::CreateComputeInstance;
        let g = self.live_gpu_mut(gpu, op)?;
        let gi = g.instances.get_mut(&gpu_instance).ok_or(GpuError::NotFound { op })?;
        if gi.compute_instance.is_some() {
            return Err(GpuError::InsufficientResources { op });
        }
        gi.compute_instance = Some(0);
        Ok(0)
    }

    pub fn destroy_compute_instance(&mut self, gpu: u32, gpu_instance: u32, ci: u32) -> Result<(), GpuError> {
        let op = Op::DestroyComputeInstance;
        let g = self.live_gpu_mut(gpu, op)?;
        let busy = g.processes.iter().any(|p| p.gpu_instance_id == Some(gpu_instance));
        let gi = g.instances.get_mut(&gpu_instance).ok_or(GpuError::NotFound { op })?;
        if gi.compute_instance != Some(ci) {
            return Err(GpuError::NotFound { op });
        }
        if busy {
            return Err(GpuError::InUse { op });
        }
        gi.compute_instance = None;
        Ok(())
    }

    pub fn destroy_gpu_instance(&mut self, gpu: u32, gpu_instance: u32) -> Result<(), GpuError> {
        let op = Op::DestroyGpuInstance;
        let g = self.live_gpu_mut(gpu, op)?;
        let gi = g.instances.get(&gpu_instance).ok_or(GpuError::NotFound { op })?;
        if gi.compute_instance.is_some() {
            return Err(GpuError::InUse { op });
        }
        g.instances.remove(&gpu_instance);
        Ok(())
    }

    /// A GPU instance at a placement plus its full compute instance; the GPU
    /// instance is destroyed again if the compute instance cannot be made.
    pub fn create_mig_instance(&mut self, gpu: u32, inst: MigInstance) -> Result<MigInstanceInfo, GpuError> {
        let gi = self.create_gpu_instance(gpu, inst)?;
        if let Err(e) = self.create_compute_instance(gpu, gi) {
            let _ = self.destroy_gpu_instance(gpu, gi);
            return Err(e);
        }
        self.mig_instances(gpu)?
            .into_iter()
            .find(|i| i.gpu_instance_id == gi)
            .ok_or(GpuError::NotFound {
                op: Op::CreateGpuInstance,
            })
    }

    /// Destroys a GPU instance's compute instance, then the GPU instance.
    pub fn destroy_mig_instance(&mut self, gpu: u32, gpu_instance: u32) -> Result<(), GpuError> {
        let g = self.live_gpu(gpu, Op::DestroyGpuInstance)?;
        if g.family.is_none() {
            return Err(GpuError::NotSupported {
                op: Op::DestroyGpuInstance,
            });
        }
        let ci = g
            .instances
            .get(&gpu_instance)
            .ok_or(GpuError::NotFound {
                op: Op::DestroyGpuInstance,
            })?
            .compute_instance;
        if let Some(ci) = ci {
            self.destroy_compute_instance(gpu, gpu_instance, ci)?;
        }
        self.destroy_gpu_instance(gpu, gpu_instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_instance_ids_are_tree_slots() {
        let p = |start, size| Placement { start, size };
        assert_eq!(gpu_instance_id(p(0, 8)), 0);
        assert_eq!(gpu_instance_id(p(4, 4)), 2);
        assert_eq!(gpu_instance_id(p(2, 2)), 4);
        assert_eq!(gpu_instance_id(p(6, 2)), 6);
        assert_eq!(gpu_instance_id(p(6, 1)), 13);
    }
}
