//! Node topology: one machine's GPUs, NVLink (direct links or an NVSwitch
//! fabric), PCIe tree (switches and root complexes), NUMA nodes and NICs as a
//! `petgraph` graph with bandwidth on the edges, and the questions placement
//! asks of it: how well two GPUs talk, how far apart they sit in the PCIe tree
//! (NVML's common-ancestor level), which NIC a GPU should use, and which k free
//! GPUs to hand out ([`NodeTopology::best_gpus`]).
//!
//! Built once per machine profile with [`NodeTopology::from_profile`]; every
//! query is a pure function of the built value.

mod bandwidth;
mod best_gpus;
mod graph;
mod level;
mod nic;

#[cfg(test)]
mod machine_profiles;
#[cfg(test)]
mod tests;

pub use bandwidth::{
    INTER_SOCKET_GBPS, INTRA_SOCKET_GBPS, PCIE_GEN3_X16_GBPS, PCIE_GEN4_X16_GBPS, PCIE_GEN5_X16_GBPS, pcie_gbps_for,
};
pub use best_gpus::{Constraints, EXACT_SEARCH_MAX_SUBSETS, Score};
pub use graph::{Link, LinkKind, NodeTopology, TopologyGraph, Vertex};
pub use level::TopologyLevel;
pub use nic::NearestNic;

/// Why a topology could not be built or a query could not be answered. Each
/// variant names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("GPU index {gpu} appears more than once in the machine profile")]
    DuplicateGpu { gpu: u32 },
    #[error("NIC {nic:?} appears more than once in the machine profile")]
    DuplicateNic { nic: String },
    #[error("NUMA node {numa} appears more than once in the machine profile")]
    DuplicateNumaNode { numa: u32 },
    #[error("PCIe switch {switch:?} appears more than once in the machine profile")]
    DuplicatePcieSwitch { switch: String },
    #[error("{device} refers to NUMA node {numa}, which the machine profile does not define")]
    UnknownNumaNode { device: String, numa: u32 },
    #[error("{device} refers to PCIe switch {switch:?}, which the machine profile does not define")]
    UnknownPcieSwitch { device: String, switch: String },
    #[error("PCIe switch {switch:?} is its own ancestor (parent chain loops)")]
    PcieSwitchCycle { switch: String },
    #[error("{device} is under PCIe root {found:?} but its switch is under {expected:?}")]
    PcieRootMismatch {
        device: String,
        expected: String,
        found: String,
    },
    #[error("PCIe root {root:?} is on NUMA node {first} for one device and {second} for {device}")]
    PcieRootNumaConflict {
        root: String,
        first: u32,
        second: u32,
        device: String,
    },
    #[error("{device} is on NUMA node {device_numa} but its PCIe switch {switch:?} is on NUMA node {switch_numa}")]
    SwitchNumaMismatch {
        device: String,
        switch: String,
        device_numa: u32,
        switch_numa: u32,
    },
    #[error("NVLink entry names GPU {gpu}, which the machine profile does not define")]
    UnknownNvLinkGpu { gpu: u32 },
    #[error("no GPU with index {gpu} on this node")]
    UnknownGpu { gpu: u32 },
    #[error("no NIC named {nic:?} on this node")]
    UnknownNic { nic: String },
    #[error("no NUMA node {numa} on this node")]
    NoSuchNumaNode { numa: u32 },
    #[error("asked for {k} GPUs but only {free} are free")]
    NotEnoughFree { k: usize, free: usize },
    #[error("GPU {gpu} must be included but is not free")]
    MustIncludeNotFree { gpu: u32 },
    #[error("{count} GPUs must be included but only {k} were asked for")]
    MustIncludeTooMany { count: usize, k: usize },
    #[error("GPU {gpu} must be included but is on NUMA node {gpu_numa}, not the required node {numa}")]
    MustIncludeOffNuma { gpu: u32, gpu_numa: u32, numa: u32 },
    #[error("NUMA node {numa} has {free} free GPUs (counting the must-include ones), fewer than the {k} asked for")]
    NumaNodeTooSmall { numa: u32, free: usize, k: usize },
    #[error("no single NUMA node has {k} free GPUs that include every must-include GPU")]
    NoSingleNumaFit { k: usize },
    #[error("a GPU set must not name GPU {gpu} twice")]
    RepeatedGpu { gpu: u32 },
    #[error("the machine profile has {count} {what}; at most {max} are supported")]
    TooLarge {
        what: &'static str,
        count: usize,
        max: usize,
    },
}
