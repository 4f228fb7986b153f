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
    /// The NIC's line rate, Gb/s.
    pub speed_gbps: u32,
}

impl NodeTopology {
    /// The NIC `gpu` uses for inter-node traffic when every NIC is free: the
    /// one answer the fabric and placement share. `None` for an unknown GPU or
    /// a node without NICs.
    pub fn gpu_nic(&self, gpu: u32) -> Option<&NearestNic> {
        self.nearest.get(self.gpu_pos(gpu).ok()?)?.as_ref()
    }

    pub(crate) fn nearest_nics(&self) -> Result<Vec<Option<NearestNic>>, TopologyError> {
        self.gpus.iter().map(|g| self.rank_nics(g.index, None)).collect()
    }

    /// The NIC nearest to `gpu` in the PCIe tree, among `free` NICs when
    /// given (all NICs otherwise). Closest level first, then rail NICs before
    /// front-end ones, then by name, so the answer is stable. `None` when no
    /// NIC qualifies.
    pub fn nearest_nic(&self, gpu: u32, free: Option<&BTreeSet<String>>) -> Result<Option<NearestNic>, TopologyError> {
        match free {
            None => {
                self.gpu_pos(gpu)?;
                Ok(self.gpu_nic(gpu).cloned())
            }
            Some(_) => self.rank_nics(gpu, free),
        }
    }

    fn rank_nics(&self, gpu: u32, free: Option<&BTreeSet<String>>) -> Result<Option<NearestNic>, TopologyError> {
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
            speed_gbps: n.speed_gbps,
        }))
    }
}
