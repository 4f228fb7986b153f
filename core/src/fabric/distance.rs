//! Path between two GPUs anywhere in the cluster: how it goes, how many
//! switches it crosses and its bottleneck bandwidth.

use std::collections::{BTreeMap, HashMap};

use super::FabricError;
use super::model::{Fabric, Node};
use crate::machine::MachineProfile;
use crate::topology::{NearestNic, NodeTopology, TopologyLevel};

/// Where machine topologies come from, by machine profile name; the fabric
/// only stores the names. Topologies are built once per machine, so the
/// per-GPU answers distance needs (nearest NIC, PCIe level) are lookups.
pub trait MachineLookup {
    fn machine(&self, name: &str) -> Option<&NodeTopology>;
}

impl MachineLookup for BTreeMap<String, NodeTopology> {
    fn machine(&self, name: &str) -> Option<&NodeTopology> {
        self.get(name)
    }
}

impl<S: std::hash::BuildHasher> MachineLookup for HashMap<String, NodeTopology, S> {
    fn machine(&self, name: &str) -> Option<&NodeTopology> {
        self.get(name)
    }
}

/// One GPU of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GpuRef<'a> {
    pub node: &'a str,
    /// NVML index on that node.
    pub gpu: u32,
}

impl<'a> GpuRef<'a> {
    pub fn new(node: &'a str, gpu: u32) -> Self {
        GpuRef { node, gpu }
    }
}

/// How two GPUs of one node talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeLink {
    /// NVLink, through NVSwitch or direct links.
    NvLink { nvswitch: bool },
    /// No NVLink in the profile, but the node is in a multi-node NVLink domain
    /// (e.g. a GB200 tray whose GPUs meet on the rack's NVLink switches).
    NvlDomain,
    /// Host PCIe only; `level` is where the two GPUs meet in the PCIe tree.
    Pcie { level: TopologyLevel },
}

/// The kind of path, ordered from closest to farthest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Route {
    SameGpu,
    SameNode(NodeLink),
    /// Different nodes of one multi-node NVLink domain.
    NvlDomain,
    /// Over the network, meeting at switch tier `tier` (0 = one leaf).
    /// `via_other_rail`: the two NICs' rails never meet (rail-only design), so
    /// the data first crosses to a GPU on a shared rail inside a node (NCCL's
    /// PXN), adding that intra-node leg.
    Network {
        tier: usize,
        via_other_rail: bool,
    },
    Unreachable,
}

/// The path between two GPUs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distance {
    pub route: Route,
    /// Switches crossed: an NVSwitch (in a node or an NVLink domain) or the
    /// PCIe fabric counts one, direct NVLink none, the network `2·tier + 1`.
    pub hops: u32,
    /// Bottleneck bandwidth one way, GB/s. Infinite for the same GPU, 0 when
    /// unreachable.
    pub gbps: f64,
}

/// A GPU with its node and machine, checked to exist.
struct At<'f> {
    node: &'f Node,
    topo: &'f NodeTopology,
    gpu: u32,
}

impl At<'_> {
    fn machine(&self) -> &MachineProfile {
        self.topo.profile()
    }
}

impl Fabric {
    fn resolve<'f, M: MachineLookup + ?Sized>(&'f self, machines: &'f M, g: GpuRef<'_>) -> Result<At<'f>, FabricError> {
        let node = self
            .node(g.node)
            .ok_or_else(|| FabricError::UnknownNode { node: g.node.into() })?;
        let topo = machines
            .machine(&node.machine)
            .ok_or_else(|| FabricError::UnknownMachine {
                node: node.name.clone(),
                machine: node.machine.clone(),
            })?;
        if topo.profile().gpu(g.gpu).is_none() {
            return Err(FabricError::UnknownGpu {
                node: node.name.clone(),
                machine: node.machine.clone(),
                gpu: g.gpu,
            });
        }
        Ok(At { node, topo, gpu: g.gpu })
    }

    /// The path between two GPUs. Symmetric in `a` and `b`.
    pub fn distance<M: MachineLookup + ?Sized>(
        &self,
        machines: &M,
        a: GpuRef<'_>,
        b: GpuRef<'_>,
    ) -> Result<Distance, FabricError> {
        let a = self.resolve(machines, a)?;
        let b = self.resolve(machines, b)?;
        if std::ptr::eq(a.node, b.node) {
            if a.gpu == b.gpu {
                return Ok(Distance {
                    route: Route::SameGpu,
                    hops: 0,
                    gbps: f64::INFINITY,
                });
            }
            let (link, hops, gbps) = self.intra_node(a.node, a.topo, a.gpu, b.gpu);
            return Ok(Distance {
                route: Route::SameNode(link),
                hops,
                gbps,
            });
        }
        if let (Some(da), Some(db)) = (a.node.domain, b.node.domain)
            && da == db
        {
            let gbps = self.domain_gbps(&a, b.machine(), b.gpu);
            if gbps > 0.0 {
                return Ok(Distance {
                    route: Route::NvlDomain,
                    hops: 1,
                    gbps,
                });
            }
        }
        if let Some(d) = self.direct_network(&a, &b) {
            return Ok(d);
        }
        Ok(self.via_other_rail(&a, &b).unwrap_or(Distance {
            route: Route::Unreachable,
            hops: 0,
            gbps: 0.0,
        }))
    }

    /// Two different GPUs of one node: NVLink when the profile has it, else the
    /// NVLink domain's switches, else PCIe.
    fn intra_node(&self, node: &Node, topo: &NodeTopology, a: u32, b: u32) -> (NodeLink, u32, f64) {
        let m = topo.profile();
        let nv = m.nvlink_gbps(a, b);
        if nv > 0 {
            let nvswitch = m.nvlink.nvswitch;
            return (NodeLink::NvLink { nvswitch }, u32::from(nvswitch), f64::from(nv));
        }
        if node.domain.is_some() {
            let here = At { node, topo, gpu: a };
            let gbps = self.domain_gbps(&here, m, b);
            if gbps > 0.0 {
                return (NodeLink::NvlDomain, 1, gbps);
            }
        }
        // Both GPUs were resolved against this topology, so the queries hold.
        let level = topo.level(a, b).unwrap_or(TopologyLevel::System);
        let gbps = topo.bandwidth_gbps(a, b).unwrap_or(0);
        (NodeLink::Pcie { level }, 1, f64::from(gbps))
    }

    /// Domain bandwidth for a GPU pair: the domain's own figure, else the
    /// smaller of the two GPUs' NVLink bandwidth (0 if either has none).
    fn domain_gbps(&self, a: &At<'_>, mb: &MachineProfile, gb: u32) -> f64 {
        let Some(d) = a.node.domain else { return 0.0 };
        if let Some(g) = self.domain(d).gbps {
            return f64::from(g);
        }
        let own = |m: &MachineProfile, i: u32| {
            m.gpu(i)
                .and_then(|g| m.gpu_model(g).model())
                .map_or(0, |x| x.nvlink_gbps())
        };
        f64::from(own(a.machine(), a.gpu).min(own(mb, gb)))
    }

    /// Bandwidth over the network for NICs of `nic_a`/`nic_b` Gb/s meeting at
    /// `tier`: the slower NIC, capped by each link speed on the way up, divided
    /// by the oversubscription of every tier climbed to above the leaf.
    pub fn network_gbps(&self, tier: usize, nic_a: u32, nic_b: u32) -> f64 {
        let climbed = self.tiers.get(..=tier).unwrap_or(&self.tiers);
        let gbit = climbed
            .iter()
            .filter_map(|t| t.link_gbps)
            .fold(nic_a.min(nic_b), u32::min);
        let ratio: f64 = climbed.iter().skip(1).map(|t| t.oversubscription).product();
        f64::from(gbit) / 8.0 / ratio
    }

    fn direct_network(&self, a: &At<'_>, b: &At<'_>) -> Option<Distance> {
        let na = a.topo.gpu_nic(a.gpu)?;
        let nb = b.topo.gpu_nic(b.gpu)?;
        let tier = self.meet(a.node.leaf(na.rail)?, b.node.leaf(nb.rail)?)?;
        Some(Distance {
            route: Route::Network {
                tier,
                via_other_rail: false,
            },
            hops: 2 * tier as u32 + 1,
            gbps: self.network_gbps(tier, na.speed_gbps, nb.speed_gbps),
        })
    }

    /// Rail-only fabrics: reach a rail both nodes share through a GPU on that
    /// rail on each side. Lowest meeting tier first, then most bandwidth.
    fn via_other_rail(&self, a: &At<'_>, b: &At<'_>) -> Option<Distance> {
        let rails = |n: &Node| match &n.uplinks {
            super::Uplinks::PerRail(m) => m.keys().copied().collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        let mut best: Option<Distance> = None;
        for rail in rails(a.node) {
            let Some(tier) = a
                .node
                .leaf(Some(rail))
                .zip(b.node.leaf(Some(rail)))
                .and_then(|(x, y)| self.meet(x, y))
            else {
                continue;
            };
            let (Some((ha, ga, nic_a)), Some((hb, gb, nic_b))) = (self.leg_to_rail(a, rail), self.leg_to_rail(b, rail))
            else {
                continue;
            };
            let gbps = self
                .network_gbps(tier, nic_a.speed_gbps, nic_b.speed_gbps)
                .min(ga)
                .min(gb);
            let d = Distance {
                route: Route::Network {
                    tier,
                    via_other_rail: true,
                },
                hops: 2 * tier as u32 + 1 + ha + hb,
                gbps,
            };
            let better = best.is_none_or(|x| (tier, -gbps) < (route_tier(&x), -x.gbps));
            if better {
                best = Some(d);
            }
        }
        best
    }

    /// From a GPU to the NIC on `rail` of its node: hops and bandwidth of the
    /// intra-node leg (none if the GPU's own NIC is on that rail).
    fn leg_to_rail<'m>(&self, at: &At<'m>, rail: u32) -> Option<(u32, f64, &'m NearestNic)> {
        let topo = at.topo;
        let on_rail = |g: u32| topo.gpu_nic(g).filter(|n| n.rail == Some(rail));
        if let Some(nic) = on_rail(at.gpu) {
            return Some((0, f64::INFINITY, nic));
        }
        topo.gpu_indices()
            .into_iter()
            .filter_map(|g| on_rail(g).map(|nic| (g, nic)))
            .map(|(g, nic)| {
                let (_, hops, gbps) = self.intra_node(at.node, topo, at.gpu, g);
                (hops, gbps, nic)
            })
            .max_by(|x, y| x.1.total_cmp(&y.1).then(y.0.cmp(&x.0)))
    }
}

fn route_tier(d: &Distance) -> usize {
    match d.route {
        Route::Network { tier, .. } => tier,
        _ => usize::MAX,
    }
}
