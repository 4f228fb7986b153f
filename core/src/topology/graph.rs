//! Building the node graph from a machine profile, and the pairwise queries.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use petgraph::graph::{NodeIndex, UnGraph};
use petgraph::visit::EdgeRef;

use super::TopologyError;
use super::bandwidth::{
    INTER_SOCKET_GBPS, INTRA_SOCKET_GBPS, PCIE_GEN4_X16_GBPS, ROOT_TO_NUMA_GBPS, nic_gbps, pcie_gbps_for,
};
use super::level::{PciePos, TopologyLevel, common_ancestor};
use crate::machine::{MachineProfile, NVLINK_GBPS_PER_LINK};

/// A vertex of the node graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vertex {
    Gpu(u32),
    /// The node's NVSwitch fabric, as one vertex: every GPU on it reaches
    /// every other at its full NVLink bandwidth.
    NvSwitch,
    PcieSwitch(String),
    /// A root complex / host bridge, `pci<domain>:<bus>`.
    PcieRoot(String),
    /// A NUMA node (its CPUs and memory).
    Numa(u32),
    /// A CPU socket's on-die fabric: its NUMA nodes meet here.
    Socket(u32),
    /// The links between sockets (UPI / xGMI): every socket meets here.
    SocketFabric,
    Nic(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    NvLink,
    Pcie,
    /// Root complex to its NUMA node.
    HostBridge,
    /// A NUMA node to its socket's fabric.
    IntraSocket,
    /// A socket to the inter-socket links (UPI / xGMI).
    InterSocket,
}

/// An edge: what it is and its bandwidth, GB/s one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Link {
    pub kind: LinkKind,
    pub gbps: u32,
}

pub type TopologyGraph = UnGraph<Vertex, Link>;

#[derive(Debug, Clone)]
pub(crate) struct GpuNode {
    pub index: u32,
    pub pos: PciePos,
    pub socket: u32,
    pub vertex: NodeIndex,
}

#[derive(Debug, Clone)]
pub(crate) struct NicNode {
    pub name: String,
    pub rail: Option<u32>,
    pub speed_gbps: u32,
    pub pos: PciePos,
    pub vertex: NodeIndex,
}

/// One machine's topology. Built by [`NodeTopology::from_profile`].
#[derive(Debug, Clone)]
pub struct NodeTopology {
    name: String,
    /// The profile it was built from, so callers holding a topology need nothing else.
    profile: MachineProfile,
    graph: TopologyGraph,
    vertices: BTreeMap<Vertex, NodeIndex>,
    /// Sorted by GPU index; a GPU's position here is its dense id.
    pub(crate) gpus: Vec<GpuNode>,
    pub(crate) nics: Vec<NicNode>,
    /// NUMA id → socket.
    pub(crate) numa_socket: BTreeMap<u32, u32>,
    /// Pairwise NVLink GB/s by dense id (0 on the diagonal).
    pub(crate) nvlink: Vec<Vec<u32>>,
    /// Pairwise common-ancestor level by dense id.
    pub(crate) levels: Vec<Vec<TopologyLevel>>,
    /// Each GPU's nearest NIC among all NICs, by dense id; computed once
    /// because the fabric asks for it on every cross-node distance.
    pub(crate) nearest: Vec<Option<super::NearestNic>>,
}

/// Switches on one device's path to its root complex.
const MAX_PCIE_SWITCH_DEPTH: usize = 16;

/// The profile's counts against `machine::limits`, so that a profile built
/// in code (no `validate()`) cannot make the build below expensive either.
fn check_sizes(p: &MachineProfile) -> Result<(), TopologyError> {
    use crate::machine::limits;
    for (what, count, max) in [
        ("NUMA nodes", p.numa_nodes.len(), limits::MAX_NUMA_NODES),
        ("GPUs", p.gpus.len(), limits::MAX_GPUS),
        ("NICs", p.nics.len(), limits::MAX_NICS),
        ("PCIe switches", p.pcie_switches.len(), limits::MAX_PCIE_SWITCHES),
        ("NVLink entries", p.nvlink.links.len(), limits::MAX_NVLINK_LINKS),
    ] {
        if count > max {
            return Err(TopologyError::TooLarge { what, count, max });
        }
    }
    Ok(())
}

/// The PCIe switch table of a profile, with each switch's chain to the top.
struct Switches {
    ids: Vec<String>,
    by_id: BTreeMap<String, usize>,
    /// Switch → itself and its ancestors, nearest first.
    chains: Vec<Vec<usize>>,
    roots: Vec<String>,
    numa: Vec<u32>,
}

impl Switches {
    fn build(p: &MachineProfile, numa: &BTreeMap<u32, u32>) -> Result<Self, TopologyError> {
        let mut by_id = BTreeMap::new();
        for (i, s) in p.pcie_switches.iter().enumerate() {
            if by_id.insert(s.id.clone(), i).is_some() {
                return Err(TopologyError::DuplicatePcieSwitch { switch: s.id.clone() });
            }
            if !numa.contains_key(&s.numa_node) {
                return Err(TopologyError::UnknownNumaNode {
                    device: format!("PCIe switch {:?}", s.id),
                    numa: s.numa_node,
                });
            }
        }
        let mut chains = Vec::with_capacity(p.pcie_switches.len());
        for (i, s) in p.pcie_switches.iter().enumerate() {
            let mut chain = vec![i];
            let mut cur = s;
            while let Some(parent) = &cur.parent {
                // Real trees are two or three switches deep; the bound keeps
                // a hostile chain from costing its length squared.
                if chain.len() >= MAX_PCIE_SWITCH_DEPTH {
                    return Err(TopologyError::TooLarge {
                        what: "PCIe switches in one parent chain",
                        count: chain.len() + 1,
                        max: MAX_PCIE_SWITCH_DEPTH,
                    });
                }
                let Some(&pi) = by_id.get(parent) else {
                    return Err(TopologyError::UnknownPcieSwitch {
                        device: format!("PCIe switch {:?}", cur.id),
                        switch: parent.clone(),
                    });
                };
                if chain.contains(&pi) {
                    return Err(TopologyError::PcieSwitchCycle { switch: s.id.clone() });
                }
                let ps = &p.pcie_switches[pi];
                // A sub-switch cannot sit under another host bridge than its parent.
                if ps.root != cur.root {
                    return Err(TopologyError::PcieRootMismatch {
                        device: format!("PCIe switch {:?}", cur.id),
                        expected: ps.root.clone(),
                        found: cur.root.clone(),
                    });
                }
                chain.push(pi);
                cur = ps;
            }
            chains.push(chain);
        }
        Ok(Switches {
            ids: p.pcie_switches.iter().map(|s| s.id.clone()).collect(),
            by_id,
            chains,
            roots: p.pcie_switches.iter().map(|s| s.root.clone()).collect(),
            numa: p.pcie_switches.iter().map(|s| s.numa_node).collect(),
        })
    }

    /// Where a device with these profile fields sits.
    fn position(
        &self,
        device: &str,
        numa: u32,
        switch: Option<&str>,
        root: Option<&str>,
    ) -> Result<PciePos, TopologyError> {
        let Some(sw) = switch else {
            return Ok(PciePos {
                switches: Vec::new(),
                root: root.map(str::to_string),
                numa,
            });
        };
        let Some(&i) = self.by_id.get(sw) else {
            return Err(TopologyError::UnknownPcieSwitch {
                device: device.to_string(),
                switch: sw.to_string(),
            });
        };
        if self.numa[i] != numa {
            return Err(TopologyError::SwitchNumaMismatch {
                device: device.to_string(),
                switch: sw.to_string(),
                device_numa: numa,
                switch_numa: self.numa[i],
            });
        }
        if let Some(r) = root
            && r != self.roots[i]
        {
            return Err(TopologyError::PcieRootMismatch {
                device: device.to_string(),
                expected: self.roots[i].clone(),
                found: r.to_string(),
            });
        }
        Ok(PciePos {
            switches: self.chains[i].clone(),
            root: Some(self.roots[i].clone()),
            numa,
        })
    }
}

/// Collects vertices and edges, de-duplicating vertices by value.
#[derive(Default)]
struct Builder {
    graph: TopologyGraph,
    vertices: BTreeMap<Vertex, NodeIndex>,
}

impl Builder {
    fn vertex(&mut self, v: Vertex) -> NodeIndex {
        if let Some(&i) = self.vertices.get(&v) {
            return i;
        }
        let i = self.graph.add_node(v.clone());
        self.vertices.insert(v, i);
        i
    }

    fn link(&mut self, a: NodeIndex, b: NodeIndex, kind: LinkKind, gbps: u32) {
        self.graph.add_edge(a, b, Link { kind, gbps });
    }

    /// Attaches a device to its switch, else its root, else its NUMA node.
    fn attach(&mut self, dev: NodeIndex, pos: &PciePos, switches: &Switches, gbps: u32) {
        let up = match (pos.leaf(), &pos.root) {
            (Some(s), _) => Vertex::PcieSwitch(switches.ids[s].clone()),
            (None, Some(r)) => Vertex::PcieRoot(r.clone()),
            (None, None) => Vertex::Numa(pos.numa),
        };
        let up = self.vertex(up);
        self.link(dev, up, LinkKind::Pcie, gbps);
    }
}

impl NodeTopology {
    /// Builds the graph of a machine profile. Checks the cross-references it
    /// relies on itself, so a profile built in code needs no prior
    /// `validate()`; errors name the device and value.
    pub fn from_profile(p: &MachineProfile) -> Result<NodeTopology, TopologyError> {
        check_sizes(p)?;
        let mut numa_socket = BTreeMap::new();
        for n in &p.numa_nodes {
            if numa_socket.insert(n.id, n.socket).is_some() {
                return Err(TopologyError::DuplicateNumaNode { numa: n.id });
            }
        }
        let switches = Switches::build(p, &numa_socket)?;
        let mut b = Builder::default();

        // NUMA nodes meet at their socket's fabric, sockets at the
        // inter-socket links: a star per level, so the graph grows linearly
        // with the NUMA nodes (a full mesh of 6,000 nodes took seconds and
        // hundreds of MB). Paths are compared by their narrowest link, so
        // two hops through a hub carry what one direct link did.
        let sockets: BTreeSet<u32> = numa_socket.values().copied().collect();
        for (&numa, &socket) in &numa_socket {
            let vn = b.vertex(Vertex::Numa(numa));
            let vs = b.vertex(Vertex::Socket(socket));
            b.link(vn, vs, LinkKind::IntraSocket, INTRA_SOCKET_GBPS);
        }
        if sockets.len() > 1 {
            let fabric = b.vertex(Vertex::SocketFabric);
            for &socket in &sockets {
                let vs = b.vertex(Vertex::Socket(socket));
                b.link(vs, fabric, LinkKind::InterSocket, INTER_SOCKET_GBPS);
            }
        }

        let pcie_of = |g: &crate::machine::GpuSpec| pcie_gbps_for(p.gpu_model(g).model());
        // Switch uplinks run at the machine's PCIe generation, taken from its GPUs.
        let uplink = p.gpus.iter().map(pcie_of).max().unwrap_or(PCIE_GEN4_X16_GBPS);

        // Root complexes, each on one NUMA node.
        let mut root_numa: BTreeMap<String, (u32, String)> = BTreeMap::new();
        let mut note_root = |root: &str, numa: u32, device: &str| -> Result<(), TopologyError> {
            match root_numa.get(root) {
                Some((first, _)) if *first != numa => Err(TopologyError::PcieRootNumaConflict {
                    root: root.to_string(),
                    first: *first,
                    second: numa,
                    device: device.to_string(),
                }),
                Some(_) => Ok(()),
                None => {
                    root_numa.insert(root.to_string(), (numa, device.to_string()));
                    Ok(())
                }
            }
        };
        for (i, id) in switches.ids.iter().enumerate() {
            note_root(&switches.roots[i], switches.numa[i], &format!("PCIe switch {id:?}"))?;
        }

        // GPUs.
        let mut gpu_specs: Vec<_> = p.gpus.iter().collect();
        gpu_specs.sort_by_key(|g| g.index);
        let mut gpus: Vec<GpuNode> = Vec::with_capacity(gpu_specs.len());
        for g in &gpu_specs {
            let device = format!("GPU {}", g.index);
            if gpus.last().is_some_and(|last| last.index == g.index) {
                return Err(TopologyError::DuplicateGpu { gpu: g.index });
            }
            let Some(&socket) = numa_socket.get(&g.numa_node) else {
                return Err(TopologyError::UnknownNumaNode {
                    device,
                    numa: g.numa_node,
                });
            };
            let pos = switches.position(&device, g.numa_node, g.pcie_switch.as_deref(), g.pcie_root.as_deref())?;
            if let Some(r) = &pos.root {
                note_root(r, g.numa_node, &device)?;
            }
            let vertex = b.vertex(Vertex::Gpu(g.index));
            gpus.push(GpuNode {
                index: g.index,
                pos,
                socket,
                vertex,
            });
        }

        // NICs.
        let mut nics: Vec<NicNode> = Vec::with_capacity(p.nics.len());
        let mut nic_names = BTreeSet::new();
        for n in &p.nics {
            let device = format!("NIC {:?}", n.name);
            if !nic_names.insert(n.name.as_str()) {
                return Err(TopologyError::DuplicateNic { nic: n.name.clone() });
            }
            if !numa_socket.contains_key(&n.numa_node) {
                return Err(TopologyError::UnknownNumaNode {
                    device,
                    numa: n.numa_node,
                });
            }
            let pos = switches.position(&device, n.numa_node, n.pcie_switch.as_deref(), n.pcie_root.as_deref())?;
            if let Some(r) = &pos.root {
                note_root(r, n.numa_node, &device)?;
            }
            let vertex = b.vertex(Vertex::Nic(n.name.clone()));
            nics.push(NicNode {
                name: n.name.clone(),
                rail: n.rail,
                speed_gbps: n.speed_gbps,
                pos,
                vertex,
            });
        }

        // PCIe tree edges: root → NUMA, switch → parent or root, device → switch/root/NUMA.
        for (root, (numa, _)) in &root_numa {
            let vr = b.vertex(Vertex::PcieRoot(root.clone()));
            let vn = b.vertex(Vertex::Numa(*numa));
            b.link(vr, vn, LinkKind::HostBridge, ROOT_TO_NUMA_GBPS);
        }
        for (i, id) in switches.ids.iter().enumerate() {
            let vs = b.vertex(Vertex::PcieSwitch(id.clone()));
            let up = match switches.chains[i].get(1) {
                Some(&parent) => Vertex::PcieSwitch(switches.ids[parent].clone()),
                None => Vertex::PcieRoot(switches.roots[i].clone()),
            };
            let vu = b.vertex(up);
            b.link(vs, vu, LinkKind::Pcie, uplink);
        }
        for (g, spec) in gpus.iter().zip(&gpu_specs) {
            b.attach(g.vertex, &g.pos, &switches, pcie_of(spec));
        }
        for (n, spec) in nics.iter().zip(&p.nics) {
            b.attach(n.vertex, &n.pos, &switches, nic_gbps(spec.speed_gbps));
        }

        // NVLink: one fabric vertex for NVSwitch systems, else the direct links.
        let known: BTreeSet<u32> = gpus.iter().map(|g| g.index).collect();
        if p.nvlink.nvswitch {
            let sw = b.vertex(Vertex::NvSwitch);
            for (g, spec) in gpus.iter().zip(&gpu_specs) {
                let full = p.gpu_model(spec).model().map_or(0, |m| m.nvlink_gbps());
                if full > 0 {
                    b.link(g.vertex, sw, LinkKind::NvLink, full);
                }
            }
        }
        // One edge per pair, its links summed over repeated entries, in one
        // pass over the entries (asking the profile per pair scans them all).
        let mut pairs: BTreeMap<(u32, u32), u32> = BTreeMap::new();
        for l in &p.nvlink.links {
            for gpu in l.gpus {
                if !known.contains(&gpu) {
                    return Err(TopologyError::UnknownNvLinkGpu { gpu });
                }
            }
            let [x, y] = l.gpus;
            if x != y {
                let e = pairs.entry((x.min(y), x.max(y))).or_default();
                *e = e.saturating_add(l.links);
            }
        }
        let per_link: BTreeMap<u32, u32> = gpu_specs
            .iter()
            .map(|g| {
                let speed = p.gpu_model(g).model().map_or(NVLINK_GBPS_PER_LINK, |m| {
                    m.nvlink_gbps_per_link.max(NVLINK_GBPS_PER_LINK)
                });
                (g.index, speed)
            })
            .collect();
        for ((x, y), links) in pairs {
            let speed = per_link
                .get(&x)
                .copied()
                .unwrap_or(0)
                .min(per_link.get(&y).copied().unwrap_or(0));
            let gbps = links.saturating_mul(speed);
            if gbps > 0 {
                let (vx, vy) = (b.vertex(Vertex::Gpu(x)), b.vertex(Vertex::Gpu(y)));
                b.link(vx, vy, LinkKind::NvLink, gbps);
            }
        }

        let mut topo = NodeTopology {
            name: p.name.clone(),
            profile: p.clone(),
            graph: b.graph,
            vertices: b.vertices,
            gpus,
            nics,
            numa_socket,
            nvlink: Vec::new(),
            levels: Vec::new(),
            nearest: Vec::new(),
        };
        topo.nvlink = topo.nvlink_matrix();
        topo.levels = topo.level_matrix();
        topo.nearest = topo.nearest_nics()?;
        Ok(topo)
    }

    /// Pairwise NVLink bandwidth read off the graph: a direct edge, or two
    /// edges through the NVSwitch vertex (the narrower one).
    fn nvlink_matrix(&self) -> Vec<Vec<u32>> {
        let sw = self.vertices.get(&Vertex::NvSwitch).copied();
        let to_switch: Vec<u32> = self
            .gpus
            .iter()
            .map(|g| sw.map_or(0, |s| self.nvlink_edge(g.vertex, s)))
            .collect();
        let n = self.gpus.len();
        let mut m = vec![vec![0; n]; n];
        for i in 0..n {
            for j in i + 1..n {
                let bw = self.nvlink_edge(self.gpus[i].vertex, self.gpus[j].vertex) + to_switch[i].min(to_switch[j]);
                m[i][j] = bw;
                m[j][i] = bw;
            }
        }
        m
    }

    fn nvlink_edge(&self, a: NodeIndex, b: NodeIndex) -> u32 {
        self.graph
            .edges_connecting(a, b)
            .filter(|e| e.weight().kind == LinkKind::NvLink)
            .map(|e| e.weight().gbps)
            .sum()
    }

    fn level_matrix(&self) -> Vec<Vec<TopologyLevel>> {
        let n = self.gpus.len();
        (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        if i == j {
                            TopologyLevel::Internal
                        } else {
                            common_ancestor(&self.gpus[i].pos, &self.gpus[j].pos)
                        }
                    })
                    .collect()
            })
            .collect()
    }

    pub fn profile(&self) -> &MachineProfile {
        &self.profile
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The graph itself, for callers with questions not answered here.
    pub fn graph(&self) -> &TopologyGraph {
        &self.graph
    }

    /// The graph index of a vertex.
    pub fn vertex(&self, v: &Vertex) -> Option<NodeIndex> {
        self.vertices.get(v).copied()
    }

    /// GPU indices, ascending.
    pub fn gpu_indices(&self) -> Vec<u32> {
        self.gpus.iter().map(|g| g.index).collect()
    }

    /// NIC names in profile order.
    pub fn nic_names(&self) -> Vec<&str> {
        self.nics.iter().map(|n| n.name.as_str()).collect()
    }

    /// Dense id of a GPU.
    pub(crate) fn gpu_pos(&self, gpu: u32) -> Result<usize, TopologyError> {
        self.gpus
            .binary_search_by_key(&gpu, |g| g.index)
            .map_err(|_| TopologyError::UnknownGpu { gpu })
    }

    pub(crate) fn nic_pos(&self, nic: &str) -> Result<usize, TopologyError> {
        self.nics
            .iter()
            .position(|n| n.name == nic)
            .ok_or_else(|| TopologyError::UnknownNic { nic: nic.to_string() })
    }

    /// NUMA node of a GPU.
    pub fn gpu_numa(&self, gpu: u32) -> Result<u32, TopologyError> {
        Ok(self.gpus[self.gpu_pos(gpu)?].pos.numa)
    }

    /// Every NUMA node with its GPUs (ascending; empty for CPU-only nodes).
    pub fn gpus_by_numa(&self) -> BTreeMap<u32, Vec<u32>> {
        let mut m: BTreeMap<u32, Vec<u32>> = self.numa_socket.keys().map(|&n| (n, Vec::new())).collect();
        for g in &self.gpus {
            m.entry(g.pos.numa).or_default().push(g.index);
        }
        m
    }

    /// GPUs on one NUMA node, ascending.
    pub fn gpus_on_numa(&self, numa: u32) -> Result<Vec<u32>, TopologyError> {
        if !self.numa_socket.contains_key(&numa) {
            return Err(TopologyError::NoSuchNumaNode { numa });
        }
        Ok(self
            .gpus
            .iter()
            .filter(|g| g.pos.numa == numa)
            .map(|g| g.index)
            .collect())
    }

    /// NVLink bandwidth between two GPUs, GB/s one way; 0 without NVLink.
    /// NVSwitch systems count every pair as connected at full bandwidth.
    pub fn nvlink_gbps(&self, a: u32, b: u32) -> Result<u32, TopologyError> {
        Ok(self.nvlink[self.gpu_pos(a)?][self.gpu_pos(b)?])
    }

    /// NVML's common-ancestor level of two GPUs (`Internal` for a GPU and itself).
    pub fn level(&self, a: u32, b: u32) -> Result<TopologyLevel, TopologyError> {
        Ok(self.levels[self.gpu_pos(a)?][self.gpu_pos(b)?])
    }

    /// Common-ancestor level of a GPU and a NIC.
    pub fn gpu_nic_level(&self, gpu: u32, nic: &str) -> Result<TopologyLevel, TopologyError> {
        let g = &self.gpus[self.gpu_pos(gpu)?];
        let n = &self.nics[self.nic_pos(nic)?];
        Ok(common_ancestor(&g.pos, &n.pos))
    }

    /// Best-path bandwidth between two GPUs: the widest path's narrowest
    /// link, GB/s one way (NVLink when there is any, else through the PCIe
    /// tree and CPUs). 0 for a GPU and itself.
    pub fn bandwidth_gbps(&self, a: u32, b: u32) -> Result<u32, TopologyError> {
        let (va, vb) = (self.gpus[self.gpu_pos(a)?].vertex, self.gpus[self.gpu_pos(b)?].vertex);
        Ok(if a == b { 0 } else { self.widest(va, vb) })
    }

    /// Best-path bandwidth between a GPU and a NIC, GB/s one way.
    pub fn gpu_nic_bandwidth_gbps(&self, gpu: u32, nic: &str) -> Result<u32, TopologyError> {
        let vg = self.gpus[self.gpu_pos(gpu)?].vertex;
        let vn = self.nics[self.nic_pos(nic)?].vertex;
        Ok(self.widest(vg, vn))
    }

    /// Maximin path (Dijkstra with min instead of +, max instead of min).
    /// GPUs and NICs are endpoints only: they do not forward traffic.
    fn widest(&self, from: NodeIndex, to: NodeIndex) -> u32 {
        let mut best = vec![0u32; self.graph.node_count()];
        let mut heap = BinaryHeap::new();
        best[from.index()] = u32::MAX;
        heap.push(Widest {
            gbps: u32::MAX,
            v: from,
        });
        while let Some(Widest { gbps, v }) = heap.pop() {
            if v == to {
                return gbps;
            }
            if gbps < best[v.index()] {
                continue;
            }
            let endpoint = matches!(self.graph[v], Vertex::Gpu(_) | Vertex::Nic(_));
            if endpoint && v != from {
                continue;
            }
            for e in self.graph.edges(v) {
                let w = gbps.min(e.weight().gbps);
                let t = e.target();
                if w > best[t.index()] {
                    best[t.index()] = w;
                    heap.push(Widest { gbps: w, v: t });
                }
            }
        }
        0
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Widest {
    gbps: u32,
    v: NodeIndex,
}

impl Ord for Widest {
    fn cmp(&self, other: &Self) -> Ordering {
        self.gbps.cmp(&other.gbps).then_with(|| other.v.cmp(&self.v))
    }
}

impl PartialOrd for Widest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
