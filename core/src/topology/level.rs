//! Where a device sits in the PCIe tree, and NVIDIA's common-ancestor levels.

use std::fmt;

/// NVML's `nvmlGpuTopologyLevel_t`: the closest common ancestor of two
/// devices. Lower is closer; the discriminants are NVML's values, so
/// `level as u32` is what `nvmlDeviceGetTopologyCommonAncestor` reports.
/// NVLink is not a level: two NVLink-connected GPUs still report their PCIe
/// ancestor, as `nvidia-smi topo -m` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum TopologyLevel {
    /// Same board (dual-GPU cards), or the same device.
    Internal = 0,
    /// Under one PCIe switch (`PIX`).
    Single = 10,
    /// Under one switch tree, through several switches (`PXB`).
    Multiple = 20,
    /// Under one host bridge / root complex (`PHB`).
    HostBridge = 30,
    /// On one NUMA node, different host bridges (`NODE`).
    Node = 40,
    /// Across NUMA nodes or sockets (`SYS`).
    System = 50,
}

impl TopologyLevel {
    /// NVML's numeric value.
    pub fn nvml_value(self) -> u32 {
        self as u32
    }

    /// The label `nvidia-smi topo -m` prints for the level.
    pub fn smi_label(self) -> &'static str {
        match self {
            TopologyLevel::Internal => "X",
            TopologyLevel::Single => "PIX",
            TopologyLevel::Multiple => "PXB",
            TopologyLevel::HostBridge => "PHB",
            TopologyLevel::Node => "NODE",
            TopologyLevel::System => "SYS",
        }
    }
}

impl fmt::Display for TopologyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.smi_label())
    }
}

/// A device's place in the PCIe tree: its switches from the nearest upwards
/// (indices into the topology's switch table), its root complex and NUMA node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PciePos {
    pub switches: Vec<usize>,
    pub root: Option<String>,
    pub numa: u32,
}

impl PciePos {
    /// The topmost switch: devices sharing it never cross a host bridge.
    pub fn tree(&self) -> Option<usize> {
        self.switches.last().copied()
    }

    /// The switch the device is plugged into.
    pub fn leaf(&self) -> Option<usize> {
        self.switches.first().copied()
    }
}

/// Closest common ancestor of two distinct devices.
pub(crate) fn common_ancestor(a: &PciePos, b: &PciePos) -> TopologyLevel {
    if a.leaf().is_some() && a.leaf() == b.leaf() {
        return TopologyLevel::Single;
    }
    if a.switches.iter().any(|s| b.switches.contains(s)) {
        return TopologyLevel::Multiple;
    }
    if a.root.is_some() && a.root == b.root {
        return TopologyLevel::HostBridge;
    }
    if a.numa == b.numa {
        return TopologyLevel::Node;
    }
    TopologyLevel::System
}
