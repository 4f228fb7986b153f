//! What a [`crate::GpuBackend`] reports: node inventory, MIG state, NICs,
//! processes, memory and health events. Built from `railyard-core` types.

use std::collections::BTreeMap;

use railyard_core::catalog::ModelId;
use railyard_core::machine::LinkLayer;
use railyard_core::mig::{MigFamily, Placement, ProfileKind};
use railyard_core::resources::{GpuInventory, MigDevice};
pub use railyard_core::topology::TopologyLevel;

/// Everything a node agent needs to know about the node's GPUs and NICs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInventory {
    /// As `nvmlSystemGetDriverVersion` reports it.
    pub driver_version: String,
    /// As `nvmlSystemGetCudaDriverVersion_v2` reports it, e.g. 12040.
    pub cuda_driver_version: u32,
    /// By NVML index.
    pub gpus: Vec<GpuInfo>,
    /// PCIe common-ancestor level of every GPU pair `(a, b)` with `a < b`.
    pub pcie_levels: BTreeMap<(u32, u32), TopologyLevel>,
    /// RDMA and PCI network devices, by name.
    pub nics: Vec<Nic>,
}

/// One physical GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    pub index: u32,
    /// `GPU-…`.
    pub uuid: String,
    /// `nvmlDeviceGetName`, e.g. `NVIDIA H100 80GB HBM3`.
    pub product_name: String,
    /// The catalog model, where the name or PCI id is known.
    pub model: Option<ModelId>,
    /// Sysfs form, lower case: `0000:1b:00.0`.
    pub pci_bus_id: String,
    /// PCI device id (upper half of NVML's `pciDeviceId`).
    pub pci_device_id: u16,
    /// `/dev/nvidia<minor>`.
    pub minor: u32,
    pub memory_mib: u64,
    /// NUMA node of the GPU's PCI device (NVML, else sysfs); `None` if unknown.
    pub numa_node: Option<u32>,
    /// CPUs with affinity to the GPU, ascending.
    pub cpu_affinity: Vec<u32>,
    /// `None`: the GPU is not MIG-capable.
    pub mig: Option<MigInfo>,
    pub nvlink: NvLinkInfo,
}

/// MIG mode and instances of a MIG-capable GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigInfo {
    pub family: MigFamily,
    pub mode: MigMode,
    /// GPU instances, sorted by placement.
    pub instances: Vec<MigInstanceInfo>,
}

/// `nvmlDeviceGetMigMode`: the mode in force and the one after the next reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MigMode {
    pub current: bool,
    pub pending: bool,
}

/// A GPU instance and, once created, its full compute instance: a MIG device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigInstanceInfo {
    pub gpu_instance_id: u32,
    /// `None` while the GPU instance has no compute instance.
    pub compute_instance_id: Option<u32>,
    pub kind: ProfileKind,
    /// Profile name, e.g. `3g.40gb`.
    pub profile: &'static str,
    pub placement: Placement,
    /// `MIG-…`, present once the compute instance exists.
    pub uuid: Option<String>,
    pub memory_mib: u64,
}

/// A GPU's NVLink connections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NvLinkInfo {
    /// Active links whose far end is an NVSwitch.
    pub nvswitch_links: u32,
    /// Active links to each peer GPU, by peer index.
    pub peer_links: BTreeMap<u32, u32>,
}

impl NvLinkInfo {
    pub fn active_links(&self) -> u32 {
        self.nvswitch_links + self.peer_links.values().sum::<u32>()
    }
}

/// A network device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// RDMA device (`mlx5_0`), or the netdev name for a NIC without RDMA.
    pub name: String,
    pub netdev: Option<String>,
    /// Sysfs form: `0000:18:00.0`.
    pub pci_bus_id: String,
    pub numa_node: Option<u32>,
    pub speed_gbps: Option<u32>,
    pub link_layer: LinkLayer,
}

/// A process with a compute context on a GPU.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GpuProcess {
    pub pid: u32,
    pub gpu: u32,
    /// `None` where the driver does not report it.
    pub used_memory_mib: Option<u64>,
    /// The MIG instance the process runs in.
    pub gpu_instance_id: Option<u32>,
    pub compute_instance_id: Option<u32>,
}

/// Framebuffer memory of a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUsage {
    pub total_mib: u64,
    pub used_mib: u64,
}

/// Health change of a GPU or of one of its MIG devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    pub gpu: u32,
    /// The GPU's UUID.
    pub uuid: String,
    /// `(GPU instance id, compute instance id)` of the MIG device the change
    /// is about; `None`: the whole GPU and every MIG device on it.
    pub mig_device: Option<(u32, u32)>,
    pub kind: HealthEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthEventKind {
    Unhealthy(UnhealthyReason),
    Recovered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnhealthyReason {
    /// A critical XID; `gpu_instance_id`/`compute_instance_id` name the MIG
    /// instance it happened in, where NVML says.
    Xid {
        xid: u64,
        gpu_instance_id: Option<u32>,
        compute_instance_id: Option<u32>,
    },
    /// NVML answered `GPU_IS_LOST`.
    GpuLost,
}

impl NodeInventory {
    /// The inventory in the form the resource model consumes
    /// ([`railyard_core::resources::advertised_resources`]): MIG devices are
    /// the instances with a compute instance, indexed in placement order.
    pub fn gpu_inventory(&self) -> Vec<GpuInventory> {
        self.gpus
            .iter()
            .map(|g| {
                let mig_enabled = g.mig.as_ref().is_some_and(|m| m.mode.current);
                let mig_devices = g
                    .mig
                    .iter()
                    .filter(|m| m.mode.current)
                    .flat_map(|m| m.instances.iter())
                    .filter_map(|i| Some((i, i.uuid.clone()?)))
                    .enumerate()
                    .map(|(n, (i, uuid))| MigDevice {
                        uuid,
                        index: n as u32,
                        profile: i.profile,
                        memory_mib: i.memory_mib,
                        placement: i.placement,
                    })
                    .collect();
                GpuInventory {
                    index: g.index,
                    uuid: g.uuid.clone(),
                    memory_mib: g.memory_mib,
                    numa_node: g.numa_node,
                    mig_enabled,
                    mig_devices,
                }
            })
            .collect()
    }
}
