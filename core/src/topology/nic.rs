//! Which NIC a GPU should send inter-node traffic through.

use std::collections::BTreeSet;

use super::level::{TopologyLevel, common_ancestor};
use super::{NodeTopology, TopologyError};

/// The NIC closest to a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearestNic {
    pub name: String,
    /// Rail of a rail-optimized fabric; `None` for front-end NICs.
    pub rail: Option<u32>,
    /// GPU-to-NIC common ancestor (`Single` = same PCIe switch, GPUDirect RDMA's best case).
    pub level: TopologyLevel,
    /// Best-path GPU-to-NIC bandwidth, GB/s one way.
    pub gbps: u32,
}

impl NodeTopology {
    /// The NIC nearest to `gpu` in the PCIe tree, among `free` NICs when
    /// given (all NICs otherwise). Closest level first, then rail NICs before
    /// front-end ones, then by name, so the answer is stable. `None` when no
    /// NIC qualifies.
    pub fn nearest_nic(&self, gpu: u32, free: Option<&BTreeSet<String>>) -> Result<Option<NearestNic>, TopologyError> {
        let g = &self.gpus[self.gpu_pos(gpu)?];
        if let Some(free) = free {
            for name in free {
                self.nic_pos(name)?;
            }
        }
        let best = self
            .nics
            .iter()
            .filter(|n| free.is_none_or(|f| f.contains(&n.name)))
            .min_by_key(|n| (common_ancestor(&g.pos, &n.pos), n.rail.is_none(), n.name.as_str()));
        let Some(n) = best else {
            return Ok(None);
        };
        Ok(Some(NearestNic {
            name: n.name.clone(),
            rail: n.rail,
            level: common_ancestor(&g.pos, &n.pos),
            gbps: self.gpu_nic_bandwidth_gbps(gpu, &n.name)?,
        }))
    }
}
