//! Link bandwidths, GB/s in one direction. NVLink figures come from the
//! catalog (`machine::NVLINK_GBPS_PER_LINK` × links); these are the rest.
//! They are coarse on purpose: placement compares them, it does not predict
//! throughput to the percent.

use crate::catalog::{Architecture, GpuModel};

/// PCIe 3.0 x16: 8 GT/s × 16 lanes × 128b/130b ≈ 15.75 GB/s (PCI-SIG).
pub const PCIE_GEN3_X16_GBPS: u32 = 16;
/// PCIe 4.0 x16: 16 GT/s ≈ 31.5 GB/s (PCI-SIG); A100, L40S, ConnectX-6.
pub const PCIE_GEN4_X16_GBPS: u32 = 32;
/// PCIe 5.0 x16: 32 GT/s ≈ 63 GB/s (PCI-SIG); H100/H200 SXM and PCIe, ConnectX-7.
pub const PCIE_GEN5_X16_GBPS: u32 = 64;

/// Between sockets: Intel UPI (Sapphire Rapids: up to 4 links × 16 GT/s) or
/// AMD xGMI (Rome/Milan: 3-4 links); usable cross-socket DMA bandwidth sits
/// around 40-60 GB/s per direction in published measurements. One number for
/// all, since only its being below PCIe-switch-local paths matters here.
pub const INTER_SOCKET_GBPS: u32 = 48;

/// Between NUMA nodes of one socket (AMD NPS2/NPS4, Intel SNC): the on-die
/// fabric, well above one x16 link, so never the bottleneck of a GPU path.
pub const INTRA_SOCKET_GBPS: u32 = 128;

/// Host bridge to its NUMA node's memory/fabric: not a bottleneck either.
pub(crate) const ROOT_TO_NUMA_GBPS: u32 = 128;

/// The PCIe x16 bandwidth a GPU model's host link runs at. Unknown models get
/// Gen3, the conservative guess.
pub fn pcie_gbps_for(model: Option<&GpuModel>) -> u32 {
    match model.map(|m| m.architecture) {
        Some(Architecture::Hopper) => PCIE_GEN5_X16_GBPS,
        Some(Architecture::Ampere | Architecture::Ada) => PCIE_GEN4_X16_GBPS,
        Some(Architecture::Pascal | Architecture::Volta | Architecture::Turing) | None => PCIE_GEN3_X16_GBPS,
    }
}

/// A NIC's port speed in GB/s (Gb/s ÷ 8, at least 1), which bounds anything
/// that goes through it.
pub(crate) fn nic_gbps(speed_gbit: u32) -> u32 {
    (speed_gbit / 8).max(1)
}
