//! The estimate itself: ring and tree/NVLS bus bandwidth of a rank list.

use std::collections::BTreeMap;

use super::CommError;
use super::calibration::{
    NET_EFFICIENCY, NVLINK_RING_EFFICIENCY, NVLS_EFFICIENCY, PCIE_RING_EFFICIENCY, TREE_EFFICIENCY, host_contention,
};
use crate::catalog::Architecture;
use crate::fabric::{Fabric, GpuRef, MachineLookup, Node, Route};
use crate::topology::{INTER_SOCKET_GBPS, NearestNic, NodeTopology, TopologyLevel};

/// Which collective algorithm the estimate's `busbw_gbps` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// One GPU: nothing to reduce.
    None,
    Ring,
    /// NCCL's tree across nodes (NVLS inside Hopper NVSwitch nodes).
    Tree,
    /// NVLink SHARP inside one NVSwitch node.
    Nvls,
}

/// The link that limits the ring.
#[derive(Debug, Clone, PartialEq)]
pub enum Bottleneck {
    None,
    /// NVLink between two GPUs of `node` (or of an NVLink domain).
    NvLink {
        node: String,
    },
    /// Host PCIe between two GPUs of `node` that meet at `level`.
    Pcie {
        node: String,
        level: TopologyLevel,
    },
    /// The link between the sockets of `node`, shared by several ring legs.
    CrossSocket {
        node: String,
    },
    /// The network between two nodes, meeting at switch `tier`.
    Network {
        from: String,
        to: String,
        tier: Option<usize>,
    },
}

/// Estimated all-reduce bus bandwidth of a placement, GB/s.
#[derive(Debug, Clone, PartialEq)]
pub struct CommEstimate {
    /// Ring through the ranks in rank order.
    pub ring_gbps: f64,
    /// NCCL tree across nodes, or NVLS inside one node; `None` where neither applies.
    pub tree_gbps: Option<f64>,
    /// The better of the two: what the job should see. Infinite for one GPU.
    pub busbw_gbps: f64,
    pub algorithm: Algorithm,
    pub bottleneck: Bottleneck,
    /// Distinct nodes.
    pub nodes: usize,
    /// Highest switch tier a ring leg between nodes climbs to (`None` on one node).
    pub max_tier: Option<usize>,
    /// Ring legs between nodes that meet above the leaf tier.
    pub spine_crossings: u32,
    /// NIC pairs of ring legs between nodes whose rails differ.
    pub rail_mismatches: u32,
    /// Smallest host-contention factor applied to a node (1 = none).
    pub host_contention: f64,
}

/// One node of the job.
struct JobNode<'f> {
    node: &'f Node,
    topo: &'f NodeTopology,
    gpus: Vec<u32>,
    /// Distinct NICs nearest to the job's GPUs, by rail then name.
    nics: Vec<&'f NearestNic>,
    /// Ring segments on this node (times the ring leaves it).
    exits: u32,
    host: f64,
}

/// Limits collected while walking the ring.
struct Bound {
    gbps: f64,
    what: Bottleneck,
}

impl Bound {
    fn new() -> Self {
        Bound {
            gbps: f64::INFINITY,
            what: Bottleneck::None,
        }
    }
    fn take(&mut self, gbps: f64, what: impl FnOnce() -> Bottleneck) {
        if gbps < self.gbps {
            self.gbps = gbps;
            self.what = what();
        }
    }
}

/// Estimates the all-reduce bus bandwidth of `ranks` (rank i on `ranks[i]`).
/// The ring follows rank order, as the collectives of consecutive-rank groups
/// do; the tree does not depend on it. Errors name an unknown node, machine
/// or GPU, or a GPU given twice.
pub fn estimate<M: MachineLookup + ?Sized>(
    fabric: &Fabric,
    machines: &M,
    ranks: &[GpuRef<'_>],
) -> Result<CommEstimate, CommError> {
    if ranks.is_empty() {
        return Err(CommError::NoRanks);
    }
    // Resolve nodes and split the ranks into same-node segments.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut nodes: Vec<JobNode<'_>> = Vec::new();
    let mut segs: Vec<(usize, Vec<u32>)> = Vec::new();
    for r in ranks {
        let i = match index.get(r.node) {
            Some(&i) => i,
            None => {
                let node = fabric
                    .node(r.node)
                    .ok_or_else(|| CommError::UnknownNode { node: r.node.into() })?;
                let topo = machines
                    .machine(&node.machine)
                    .ok_or_else(|| CommError::UnknownMachine {
                        node: node.name.clone(),
                        machine: node.machine.clone(),
                    })?;
                nodes.push(JobNode {
                    node,
                    topo,
                    gpus: Vec::new(),
                    nics: Vec::new(),
                    exits: 0,
                    host: 1.0,
                });
                index.insert(&node.name, nodes.len() - 1);
                nodes.len() - 1
            }
        };
        let n = &mut nodes[i];
        if n.topo.gpu_pos(r.gpu).is_err() {
            return Err(CommError::UnknownGpu {
                node: n.node.name.clone(),
                gpu: r.gpu,
            });
        }
        if n.gpus.contains(&r.gpu) {
            return Err(CommError::DuplicateGpu {
                node: n.node.name.clone(),
                gpu: r.gpu,
            });
        }
        n.gpus.push(r.gpu);
        match segs.last_mut() {
            Some((last, gpus)) if *last == i => gpus.push(r.gpu),
            _ => segs.push((i, vec![r.gpu])),
        }
    }
    // The ring closes: a last segment on the first segment's node joins it.
    if segs.len() > 1
        && segs[0].0 == segs[segs.len() - 1].0
        && let Some((_, mut tail)) = segs.pop()
    {
        tail.append(&mut segs[0].1);
        segs[0].1 = tail;
    }
    if ranks.len() == 1 {
        return Ok(CommEstimate {
            ring_gbps: f64::INFINITY,
            tree_gbps: None,
            busbw_gbps: f64::INFINITY,
            algorithm: Algorithm::None,
            bottleneck: Bottleneck::None,
            nodes: 1,
            max_tier: None,
            spine_crossings: 0,
            rail_mismatches: 0,
            host_contention: 1.0,
        });
    }
    let multi = nodes.len() > 1;
    for n in &mut nodes {
        let mut nics: Vec<&NearestNic> = n.gpus.iter().filter_map(|&g| n.topo.gpu_nic(g)).collect();
        nics.sort_by(|a, b| (a.rail, &a.name).cmp(&(b.rail, &b.name)));
        nics.dedup_by(|a, b| a.name == b.name);
        n.nics = nics;
        if multi && stages_through_host(n.topo, &n.gpus) {
            n.host = host_contention(n.gpus.len() as u32);
        }
    }
    for (i, _) in &segs {
        nodes[*i].exits += 1;
    }

    let mut ring = Bound::new();
    let mut max_tier: Option<usize> = None;
    let mut spine_crossings = 0;
    let mut rail_mismatches = 0;
    if !multi {
        let n = &nodes[0];
        intra_node(fabric, machines, n, &n.gpus, true, &mut ring)?;
        let tree = nvls_gbps(n.topo, &n.gpus);
        return Ok(finish(ring, tree, 1, None, 0, 0, 1.0));
    }
    for (s, (i, gpus)) in segs.iter().enumerate() {
        let a = &nodes[*i];
        intra_node(fabric, machines, a, gpus, false, &mut ring)?;
        let (j, next) = &segs[(s + 1) % segs.len()];
        let b = &nodes[*j];
        let leg = network_leg(fabric, machines, a, gpus, b, next)?;
        max_tier = max_tier.max(leg.tier);
        if leg.tier.is_some_and(|t| t > 0) {
            spine_crossings += 1;
        }
        rail_mismatches += leg.rail_mismatches;
        let share = f64::from(a.exits.max(b.exits));
        let gbps = leg.gbps / share * a.host.min(b.host);
        ring.take(gbps, || Bottleneck::Network {
            from: a.node.name.clone(),
            to: b.node.name.clone(),
            tier: leg.tier,
        });
    }
    let tree = tree_gbps(fabric, machines, &nodes)?;
    let host = nodes.iter().map(|n| n.host).fold(1.0, f64::min);
    Ok(finish(
        ring,
        Some(tree),
        nodes.len(),
        max_tier,
        spine_crossings,
        rail_mismatches,
        host,
    ))
}

fn finish(
    ring: Bound,
    tree: Option<f64>,
    nodes: usize,
    max_tier: Option<usize>,
    spine_crossings: u32,
    rail_mismatches: u32,
    host: f64,
) -> CommEstimate {
    let (busbw, algorithm) = match tree {
        Some(t) if t > ring.gbps => (t, if nodes == 1 { Algorithm::Nvls } else { Algorithm::Tree }),
        _ => (ring.gbps, Algorithm::Ring),
    };
    CommEstimate {
        ring_gbps: ring.gbps,
        tree_gbps: tree,
        busbw_gbps: busbw,
        algorithm,
        bottleneck: ring.what,
        nodes,
        max_tier,
        spine_crossings,
        rail_mismatches,
        host_contention: host,
    }
}

/// True for PCIe-only nodes whose job GPUs cannot reach their NIC under a
/// PCIe switch: NCCL's default `NCCL_NET_GDR_LEVEL` (PXB) then turns
/// GPUDirect RDMA off and stages network traffic through host memory.
pub(crate) fn stages_through_host(topo: &NodeTopology, gpus: &[u32]) -> bool {
    if topo.profile().nvlink.nvswitch {
        return false;
    }
    gpus.iter()
        .any(|&g| topo.gpu_nic(g).is_none_or(|n| n.level > TopologyLevel::Multiple))
}

/// One intra-node ring leg between two GPUs of a node: bandwidth after
/// efficiency, and what it is.
fn leg<M: MachineLookup + ?Sized>(
    fabric: &Fabric,
    machines: &M,
    n: &JobNode<'_>,
    a: u32,
    b: u32,
) -> Result<(f64, Bottleneck), CommError> {
    let nv = n.topo.nvlink_gbps(a, b).map_err(|_| CommError::UnknownGpu {
        node: n.node.name.clone(),
        gpu: a,
    })?;
    let name = || n.node.name.clone();
    if nv > 0 {
        return Ok((
            f64::from(nv) * NVLINK_RING_EFFICIENCY,
            Bottleneck::NvLink { node: name() },
        ));
    }
    let d = fabric.distance(machines, GpuRef::new(&n.node.name, a), GpuRef::new(&n.node.name, b))?;
    Ok(match d.route {
        Route::SameNode(crate::fabric::NodeLink::Pcie { level }) => {
            (d.gbps * PCIE_RING_EFFICIENCY, Bottleneck::Pcie { node: name(), level })
        }
        _ => (d.gbps * NVLINK_RING_EFFICIENCY, Bottleneck::NvLink { node: name() }),
    })
}

/// The ring legs inside one node through `gpus` in order (`closed`: back to
/// the first, for a single-node ring), and the socket link they share.
fn intra_node<M: MachineLookup + ?Sized>(
    fabric: &Fabric,
    machines: &M,
    n: &JobNode<'_>,
    gpus: &[u32],
    closed: bool,
    bound: &mut Bound,
) -> Result<(), CommError> {
    let pairs = gpus.windows(2).map(|w| (w[0], w[1]));
    let wrap = (closed && gpus.len() > 1).then(|| (gpus[gpus.len() - 1], gpus[0]));
    // Legs crossing sockets in one direction share the inter-socket link.
    let mut crossings: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    for (a, b) in pairs.chain(wrap) {
        let (gbps, what) = leg(fabric, machines, n, a, b)?;
        bound.take(gbps * n.host, || what);
        if n.topo.nvlink_gbps(a, b).unwrap_or(0) == 0 {
            let (sa, sb) = (socket(n.topo, a), socket(n.topo, b));
            if sa != sb {
                *crossings.entry((sa, sb)).or_insert(0) += 1;
            }
        }
    }
    if let Some(&most) = crossings.values().max() {
        let gbps = f64::from(INTER_SOCKET_GBPS) * PCIE_RING_EFFICIENCY / f64::from(most) * n.host;
        bound.take(gbps, || Bottleneck::CrossSocket {
            node: n.node.name.clone(),
        });
    }
    Ok(())
}

fn socket(topo: &NodeTopology, gpu: u32) -> u32 {
    topo.gpu_pos(gpu).map_or(0, |p| topo.gpus[p].socket)
}

/// NVLS inside one NVSwitch node of Hopper GPUs, when more than one GPU.
fn nvls_gbps(topo: &NodeTopology, gpus: &[u32]) -> Option<f64> {
    let p = topo.profile();
    if !p.nvlink.nvswitch || gpus.len() < 2 {
        return None;
    }
    let mut per_gpu = u32::MAX;
    for &g in gpus {
        let model = p.gpu(g).and_then(|s| p.gpu_model(s).model())?;
        if model.architecture != Architecture::Hopper {
            return None;
        }
        per_gpu = per_gpu.min(model.nvlink_gbps());
    }
    Some(f64::from(per_gpu) * NVLS_EFFICIENCY)
}

struct Leg {
    gbps: f64,
    tier: Option<usize>,
    rail_mismatches: u32,
}

/// The network (or NVLink-domain) leg from node `a` (ring segment ending at
/// `from.last()`) to node `b` (segment starting at `to[0]`): the job's NICs
/// of both nodes paired in rail order, each pair at the bandwidth of the
/// tier where its two leaves meet (oversubscription included).
fn network_leg<M: MachineLookup + ?Sized>(
    fabric: &Fabric,
    machines: &M,
    a: &JobNode<'_>,
    from: &[u32],
    b: &JobNode<'_>,
    to: &[u32],
) -> Result<Leg, CommError> {
    let (Some(&ga), Some(&gb)) = (from.last(), to.first()) else {
        return Ok(Leg {
            gbps: 0.0,
            tier: None,
            rail_mismatches: 0,
        });
    };
    let fallback = || -> Result<Leg, CommError> {
        let d = fabric.distance(machines, GpuRef::new(&a.node.name, ga), GpuRef::new(&b.node.name, gb))?;
        let (gbps, tier) = match d.route {
            Route::NvlDomain => (d.gbps * NVLINK_RING_EFFICIENCY, None),
            Route::Network { tier, .. } => (d.gbps * NET_EFFICIENCY, Some(tier)),
            _ => (d.gbps, None),
        };
        Ok(Leg {
            gbps,
            tier,
            rail_mismatches: 0,
        })
    };
    if a.node.domain.is_some() && a.node.domain == b.node.domain {
        return fallback();
    }
    let mut gbps = 0.0;
    let mut tier: Option<usize> = None;
    let mut mismatches = 0;
    for (na, nb) in pair_nics(&a.nics, &b.nics) {
        let leaves = a.node.leaf(na.rail).zip(b.node.leaf(nb.rail));
        let Some(t) = leaves.and_then(|(x, y)| fabric.meet(x, y)) else {
            return fallback();
        };
        let path = fabric
            .network_gbps(t, na.speed_gbps, nb.speed_gbps)
            .min(f64::from(na.gbps))
            .min(f64::from(nb.gbps));
        gbps += path;
        tier = tier.max(Some(t));
        if na.rail != nb.rail {
            mismatches += 1;
        }
    }
    if tier.is_none() {
        return fallback();
    }
    Ok(Leg {
        gbps: gbps * NET_EFFICIENCY,
        tier,
        rail_mismatches: mismatches,
    })
}

/// Pairs two nodes' NICs for the channels between them: same rail first
/// (one leaf hop), then the rest in rail order. Symmetric in `a` and `b`.
fn pair_nics<'n>(a: &[&'n NearestNic], b: &[&'n NearestNic]) -> Vec<(&'n NearestNic, &'n NearestNic)> {
    let mut used = vec![false; b.len()];
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let mut rest_a = Vec::new();
    for &na in a {
        let same = (0..b.len()).find(|&j| !used[j] && na.rail.is_some() && b[j].rail == na.rail);
        match same {
            Some(j) => {
                used[j] = true;
                out.push((na, b[j]));
            }
            None => rest_a.push(na),
        }
    }
    let rest_b = b.iter().zip(&used).filter(|(_, u)| !**u).map(|(&nb, _)| nb);
    out.extend(rest_a.into_iter().zip(rest_b));
    out
}

/// NCCL's tree across nodes: each node limited by its intra-node part (NVLS
/// on Hopper NVSwitch nodes, else its ring legs) and by its NICs at the
/// highest tier any two of the job's nodes meet at.
fn tree_gbps<M: MachineLookup + ?Sized>(
    fabric: &Fabric,
    machines: &M,
    nodes: &[JobNode<'_>],
) -> Result<f64, CommError> {
    // Tree-shaped fabrics are ultrametric: the highest meeting tier of any
    // pair is the highest meeting tier with the first node.
    let first = &nodes[0];
    let mut top = 0;
    for n in &nodes[1..] {
        match fabric.node_meet(first.node, n.node) {
            Some(t) => top = top.max(t),
            None if first.node.domain.is_some() && first.node.domain == n.node.domain => {}
            None => return Ok(0.0),
        }
    }
    let mut worst = f64::INFINITY;
    for n in nodes {
        let mut intra = Bound::new();
        match nvls_gbps(n.topo, &n.gpus) {
            Some(g) => intra.take(g, || Bottleneck::None),
            None => intra_node(fabric, machines, n, &n.gpus, false, &mut intra)?,
        }
        let net: f64 = n
            .nics
            .iter()
            .map(|c| {
                fabric
                    .network_gbps(top, c.speed_gbps, c.speed_gbps)
                    .min(f64::from(c.gbps))
            })
            .sum::<f64>()
            * NET_EFFICIENCY
            * TREE_EFFICIENCY
            * n.host;
        worst = worst.min(intra.gbps.min(net));
    }
    Ok(worst)
}

/// What one node with `gpus` (in ring order) allows a ring that spans nodes,
/// when the rest of the ring is not the limit: its NVLink/PCIe legs, its
/// socket link, its NICs and host contention. The planner uses it to decide
/// how many GPUs per node a multi-node gang should take.
pub fn node_share_gbps(topo: &NodeTopology, gpus: &[u32]) -> f64 {
    if gpus.is_empty() {
        return 0.0;
    }
    let host = if stages_through_host(topo, gpus) {
        host_contention(gpus.len() as u32)
    } else {
        1.0
    };
    let mut worst = f64::INFINITY;
    let mut crossings: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    for w in gpus.windows(2) {
        let nv = topo.nvlink_gbps(w[0], w[1]).unwrap_or(0);
        let gbps = if nv > 0 {
            f64::from(nv) * NVLINK_RING_EFFICIENCY
        } else {
            let (sa, sb) = (socket(topo, w[0]), socket(topo, w[1]));
            if sa != sb {
                *crossings.entry((sa, sb)).or_insert(0) += 1;
            }
            f64::from(topo.bandwidth_gbps(w[0], w[1]).unwrap_or(0)) * PCIE_RING_EFFICIENCY
        };
        worst = worst.min(gbps);
    }
    if let Some(&most) = crossings.values().max() {
        worst = worst.min(f64::from(INTER_SOCKET_GBPS) * PCIE_RING_EFFICIENCY / f64::from(most));
    }
    let mut nics: Vec<&NearestNic> = gpus.iter().filter_map(|&g| topo.gpu_nic(g)).collect();
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    nics.dedup_by(|a, b| a.name == b.name);
    let net: f64 = nics
        .iter()
        .map(|c| (f64::from(c.speed_gbps) / 8.0).min(f64::from(c.gbps)))
        .sum::<f64>()
        * NET_EFFICIENCY;
    worst.min(net) * host
}
