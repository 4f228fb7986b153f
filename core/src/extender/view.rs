//! The extender's cluster view: nodes with per-GPU state, the pods on them,
//! and filtering against it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::ask::{
    GPU_COUNT_LABEL, GPU_PRODUCT_LABEL, GPU_REPLICAS_LABEL, GPU_RESOURCE, GPU_SHARING_STRATEGY_LABEL, GpuAsk,
    MIG_RESOURCE_PREFIX, PodAsk, SHARED_RESOURCE,
};
use super::gang::{Lapsed, PlanRecord, Reservation};
use super::hot::{Hot, share_milli, verdict};
use super::names::NameIndex;
use super::score::{ScoreConfig, Scorer, TopoCache};
use super::writeback::{Placement, WriteBack};
use crate::machine::MachineProfile;
use crate::packing::{MILLI, ModelId, ModelTable};
use crate::topology::{Constraints, NodeTopology};

/// GPUs per node the view tracks (its per-node GPU masks are 64 bits).
/// Larger nodes are refused for every GPU request with [`TOO_MANY_GPUS`].
pub const MAX_NODE_GPUS: usize = 64;

/// The reason a node of more than [`MAX_NODE_GPUS`] GPUs gives.
pub const TOO_MANY_GPUS: &str = "node has more than 64 GPUs (its topology or nvidia.com/gpu count); the extender places GPU pods only on nodes of \
     at most 64";

/// A node as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInput {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Allocatable extended resources (`nvidia.com/*`), as counts.
    pub allocatable: BTreeMap<String, i64>,
    /// Allocatable CPU (millicores) and memory (MiB).
    pub cpu_milli: u64,
    pub memory_mib: u64,
    /// The device plugin's `railyard.dev/gpu-topology` annotation, parsed.
    pub topology: Option<Arc<MachineProfile>>,
    pub unschedulable: bool,
}

/// A pod as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodObservation {
    pub uid: String,
    /// `spec.nodeName`.
    pub node: Option<String>,
    pub ask: PodAsk,
    /// Succeeded or Failed: holds nothing.
    pub finished: bool,
    /// Railyard's recorded device choice (`railyard.dev/gpus`), GPU indices.
    pub gpus: Option<Vec<u32>>,
    /// Railyard's recorded gang plan and this pod's slot in it.
    pub plan: Option<(PlanRecord, usize)>,
    /// The device plugin's write-back (`railyard.dev/allocated-gpus`): the
    /// GPU indices kubelet actually gave, trusted for positions only.
    pub allocated: Option<Vec<u32>>,
}

/// Tuning of the view.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewConfig {
    /// How long a gang reservation waits for all its members to bind, ms.
    pub reservation_ttl_ms: u64,
    /// How long a bound decision waits for its write-back before the pod's
    /// positions count as unknown (on nodes that write back), ms; 0: never.
    pub writeback_timeout_ms: u64,
    pub score: ScoreConfig,
}

impl Default for ViewConfig {
    fn default() -> Self {
        ViewConfig {
            reservation_ttl_ms: 120_000,
            writeback_timeout_ms: 60_000,
            score: ScoreConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Bound by this extender, not yet seen bound in the API.
    Assumed,
    /// Seen with `spec.nodeName` in the API.
    Bound,
}

#[derive(Debug, Clone)]
pub(crate) struct PodRecord {
    pub node: String,
    pub ask: PodAsk,
    /// GPU positions held on the node (whole GPUs or the shared GPU).
    pub mask: u64,
    /// Milli taken on each GPU of `mask`.
    pub milli: u16,
    pub state: PodState,
    /// Counted into the node's usage (false while the node is unknown).
    pub applied: bool,
    /// GPU indices recorded in the API, applied when the node is known.
    pub hint: Option<Vec<u32>>,
    pub gang: Option<(String, usize)>,
    /// How far `mask` is known to match the devices kubelet gave.
    pub placement: Placement,
}

/// One node's live state. GPU positions are the GPUs in ascending index
/// order (the topology's, else `0..n`).
#[derive(Debug, Clone)]
pub(crate) struct NodeState {
    pub input: NodeInput,
    /// GPU index of each position.
    pub ids: Vec<u32>,
    /// NUMA node of each position (0 without topology).
    pub numa: Vec<u32>,
    /// Milli left per position; MIG-enabled GPUs have 0.
    pub left: Vec<u16>,
    /// Positions held by gang reservations.
    pub reserved: u64,
    /// Positions whose GPU is MIG-partitioned (never whole or shared).
    pub mig_gpus: u64,
    /// More than [`MAX_NODE_GPUS`] GPUs: no GPU pod is placed here.
    pub too_many_gpus: bool,
    pub replicas_per_gpu: u32,
    /// `nvidia.com/gpu` counts time-slicing/MPS replicas (sharing without
    /// `renameByDefault`): its units are in `shared_alloc`, none in
    /// `whole_alloc`, and `nvidia.com/gpu: k` asks for k replicas.
    pub gpu_replicated: bool,
    pub whole_alloc: u32,
    /// Replicas: `nvidia.com/gpu.shared`, or `nvidia.com/gpu` when
    /// `gpu_replicated`.
    pub shared_alloc: u32,
    pub whole_used: u32,
    pub shared_used: u32,
    pub mig_used: BTreeMap<String, u32>,
    /// MIG resources offered: (the view's bit for the resource, name,
    /// allocatable). Resources past the view's 64 bits are left out and
    /// checked the slow way.
    pub mig_offer: Vec<(u64, String, u32)>,
    pub cpu_used: u64,
    pub mem_used: u64,
    pub pods: Vec<String>,
    /// Interned machine (topology) id.
    pub machine: Option<u32>,
    /// Packing fragmentation of the current state under the view's mix.
    pub frag: f64,
    /// A valid write-back was seen from a pod here: decisions expect one.
    pub writes_back: bool,
    /// Its GPU product (`nvidia.com/gpu.product`) in the view's model
    /// table; `None` unlabelled, or past the table's 64 models.
    pub model: Option<ModelId>,
    /// Applied pods whose positions are [`Placement::Unknown`].
    pub unknown: u32,
}

impl NodeState {
    fn new(input: NodeInput, machine: Option<(u32, &NodeTopology)>) -> NodeState {
        let count = input.labels.get(GPU_COUNT_LABEL).and_then(|v| v.parse::<u32>().ok());
        let whole = alloc(&input, GPU_RESOURCE);
        let gpu_replicas = gpu_replicas(&input, whole, count);
        let (ids, numa, mig_gpus) = match (&input.topology, machine) {
            (Some(p), Some((_, t))) => {
                let ids = t.gpu_indices();
                let numa = ids.iter().map(|&g| t.gpu_numa(g).unwrap_or(0)).collect();
                let mut mig = 0u64;
                for (pos, &g) in ids.iter().enumerate().take(MAX_NODE_GPUS) {
                    if p.gpu(g).is_some_and(|s| s.mig_enabled) {
                        mig |= 1 << pos;
                    }
                }
                (ids, numa, mig)
            }
            _ => {
                let n = match gpu_replicas {
                    Some(r) => count.unwrap_or_else(|| whole.div_ceil(r)),
                    None => count.unwrap_or(0).max(whole),
                };
                ((0..n.min(MAX_NODE_GPUS as u32 + 1)).collect(), Vec::new(), 0)
            }
        };
        // Positions live in 64-bit masks: a larger node is refused whole
        // (every GPU ask gets a reason), never truncated to its first 64.
        let too_many_gpus = ids.len() > MAX_NODE_GPUS;
        let (ids, numa): (Vec<u32>, Vec<u32>) = if too_many_gpus {
            (Vec::new(), Vec::new())
        } else {
            let numa = if numa.is_empty() { vec![0; ids.len()] } else { numa };
            (ids, numa)
        };
        let n = ids.len() as u32;
        let left = (0..ids.len())
            .map(|p| if mig_gpus & (1 << p) != 0 { 0 } else { MILLI })
            .collect();
        let shared_alloc = if too_many_gpus {
            0
        } else {
            alloc(&input, SHARED_RESOURCE)
        };
        let whole = if too_many_gpus { 0 } else { whole };
        let gpu_replicas = gpu_replicas.filter(|_| !too_many_gpus);
        let mig_gpus = if too_many_gpus { 0 } else { mig_gpus };
        let sharable = n - mig_gpus.count_ones();
        let replicas_per_gpu = if let Some(r) = gpu_replicas {
            r
        } else if shared_alloc == 0 {
            0
        } else {
            input
                .labels
                .get(GPU_REPLICAS_LABEL)
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|&r| r > 0)
                .unwrap_or_else(|| shared_alloc.div_ceil(sharable.max(1)))
        };
        NodeState {
            too_many_gpus,
            gpu_replicated: gpu_replicas.is_some(),
            whole_alloc: if gpu_replicas.is_some() { 0 } else { whole },
            shared_alloc: if gpu_replicas.is_some() { whole } else { shared_alloc },
            input,
            ids,
            numa,
            left,
            reserved: 0,
            mig_gpus,
            replicas_per_gpu,
            whole_used: 0,
            shared_used: 0,
            mig_used: BTreeMap::new(),
            mig_offer: Vec::new(),
            cpu_used: 0,
            mem_used: 0,
            pods: Vec::new(),
            machine: machine.map(|(id, _)| id),
            frag: 0.0,
            writes_back: false,
            unknown: 0,
            model: None,
        }
    }

    /// Positions with a whole GPU free (not reserved, not MIG).
    pub fn free_mask(&self) -> u64 {
        let mut m = 0u64;
        for (p, &l) in self.left.iter().enumerate() {
            if l == MILLI {
                m |= 1 << p;
            }
        }
        m & !self.reserved & !self.mig_gpus
    }

    /// Milli a shared request of `replicas` needs on one GPU.
    pub fn share_milli(&self, replicas: u32) -> Option<u16> {
        share_milli(self.replicas_per_gpu, replicas)
    }

    /// `ask` as this node serves it. Where `nvidia.com/gpu` counts
    /// time-slicing/MPS replicas (`gpu_replicated`), `nvidia.com/gpu: k` is
    /// k replicas, booked on one GPU like `nvidia.com/gpu.shared: k`: the
    /// same total as the device plugin hands out (whose `distributed`
    /// policy may spread them over GPUs; one GPU is the stricter check).
    /// Everything else is unchanged (and borrowed).
    pub fn effective<'a>(&self, ask: &'a PodAsk) -> Cow<'a, PodAsk> {
        match ask.gpu {
            GpuAsk::Whole(k) if self.gpu_replicated => Cow::Owned(PodAsk {
                gpu: GpuAsk::Shared(k),
                single_numa: ask.single_numa,
                cpu_milli: ask.cpu_milli,
                memory_mib: ask.memory_mib,
                products: ask.products.clone(),
            }),
            _ => Cow::Borrowed(ask),
        }
    }

    pub fn mig_alloc(&self, resource: &str) -> u32 {
        alloc(&self.input, resource)
    }

    /// Why `ask` cannot go here now, and whether it never could (even on an
    /// empty node). `None` when it fits.
    pub fn check(&self, ask: &PodAsk) -> Option<Verdict> {
        verdict(&Hot::of(self), ask, None, || self)
    }

    pub(crate) fn single_numa_capacity(&self) -> u32 {
        let mut per: BTreeMap<u32, u32> = BTreeMap::new();
        for (p, &n) in self.numa.iter().enumerate() {
            if self.mig_gpus & (1 << p) == 0 {
                *per.entry(n).or_default() += 1;
            }
        }
        per.values().copied().max().unwrap_or(0)
    }

    pub fn numa_fits(&self, free: u64, k: u32) -> bool {
        let mut per: BTreeMap<u32, u32> = BTreeMap::new();
        for (p, &n) in self.numa.iter().enumerate() {
            if free & (1 << p) != 0 {
                let c = per.entry(n).or_default();
                *c += 1;
                if *c >= k {
                    return true;
                }
            }
        }
        k == 0
    }

    /// The fitting GPU with the least share left (lowest position on ties).
    pub fn best_share_gpu(&self, milli: u16) -> Option<usize> {
        let usable = !self.reserved & !self.mig_gpus;
        (0..self.left.len())
            .filter(|&p| usable & (1 << p) != 0 && self.left[p] >= milli)
            .min_by_key(|&p| (self.left[p], p))
    }

    /// Adds a pod's use: `milli` on each GPU of `mask`, and its counts.
    pub(crate) fn take(&mut self, ask: &PodAsk, mask: u64, milli: u16) {
        for p in 0..self.left.len() {
            if mask & (1 << p) != 0 {
                self.left[p] = self.left[p].saturating_sub(milli);
            }
        }
        match &ask.gpu {
            GpuAsk::None => {}
            GpuAsk::Whole(k) if self.gpu_replicated => self.shared_used += k,
            GpuAsk::Whole(k) => self.whole_used += k,
            GpuAsk::Shared(r) => self.shared_used += r,
            GpuAsk::Mig { resource, count } => *self.mig_used.entry(resource.clone()).or_default() += count,
        }
        self.cpu_used += u64::from(ask.cpu_milli);
        self.mem_used += u64::from(ask.memory_mib);
    }

    pub(crate) fn give_back(&mut self, ask: &PodAsk, mask: u64, milli: u16) {
        for p in 0..self.left.len() {
            if mask & (1 << p) != 0 {
                self.left[p] = (self.left[p] + milli).min(MILLI);
            }
        }
        match &ask.gpu {
            GpuAsk::None => {}
            GpuAsk::Whole(k) if self.gpu_replicated => self.shared_used = self.shared_used.saturating_sub(*k),
            GpuAsk::Whole(k) => self.whole_used = self.whole_used.saturating_sub(*k),
            GpuAsk::Shared(r) => self.shared_used = self.shared_used.saturating_sub(*r),
            GpuAsk::Mig { resource, count } => {
                if let Some(u) = self.mig_used.get_mut(resource) {
                    *u = u.saturating_sub(*count);
                }
            }
        }
        self.cpu_used = self.cpu_used.saturating_sub(u64::from(ask.cpu_milli));
        self.mem_used = self.mem_used.saturating_sub(u64::from(ask.memory_mib));
    }

    pub fn positions(&self, gpus: &[u32]) -> Option<u64> {
        let mut m = 0u64;
        for g in gpus {
            let p = self.ids.iter().position(|x| x == g)?;
            m |= 1 << p;
        }
        Some(m)
    }

    /// Every position of this node's layout.
    pub fn position_mask(&self) -> u64 {
        match self.ids.len() {
            n if n >= 64 => u64::MAX,
            n => (1u64 << n) - 1,
        }
    }

    pub fn indices(&self, mask: u64) -> Vec<u32> {
        self.ids
            .iter()
            .enumerate()
            .filter(|(p, _)| mask & (1 << p) != 0)
            .map(|(_, &g)| g)
            .collect()
    }
}

/// Replicas per GPU when the node's `nvidia.com/gpu` counts time-slicing or
/// MPS replicas instead of GPUs (sharing without `renameByDefault`, NVIDIA's
/// default): GFD suffixes the product `-SHARED`, or the node advertises more
/// `nvidia.com/gpu` than it has GPUs. The replicas label alone does not
/// tell: GFD sets it when the replicas are renamed `nvidia.com/gpu.shared`
/// too, and then `nvidia.com/gpu` is whole GPUs. `None` for whole GPUs and
/// when the replicas per GPU cannot be known.
fn gpu_replicas(input: &NodeInput, whole: u32, count: Option<u32>) -> Option<u32> {
    if whole == 0 {
        return None;
    }
    let label = |k: &str| input.labels.get(k).map(String::as_str);
    if label(GPU_SHARING_STRATEGY_LABEL) == Some("none") {
        return None;
    }
    let product_shared = label(GPU_PRODUCT_LABEL).is_some_and(|p| p.ends_with("-SHARED"));
    let count = count.filter(|&c| c > 0);
    let over_count = count.is_some_and(|c| whole > c);
    if !product_shared && !over_count {
        return None;
    }
    label(GPU_REPLICAS_LABEL)
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|&r| r > 1)
        .or_else(|| count.map(|c| whole.div_ceil(c)).filter(|&r| r > 1))
}

fn alloc(input: &NodeInput, resource: &str) -> u32 {
    input
        .allocatable
        .get(resource)
        .map_or(0, |&v| u32::try_from(v.max(0)).unwrap_or(u32::MAX))
}

/// Why a node was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Does not fit now; might after pods leave (preemption may help).
    Wait(&'static str),
    /// Cannot fit on this node whatever leaves.
    Never(&'static str),
}

/// Filter answer over the nodes asked about, by position in the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterOutcome {
    pub passed: Vec<usize>,
    /// Node → reason; preemption might help.
    pub failed: Vec<(usize, &'static str)>,
    /// Node → reason; preemption cannot help.
    pub unresolvable: Vec<(usize, &'static str)>,
    /// Scores (0..=10) of `passed`, in order, when asked for.
    pub scores: Vec<i64>,
}

/// A bind's device choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assumed {
    /// GPU indices taken (whole GPUs, or the one shared GPU).
    pub gpus: Vec<u32>,
    /// Milli of each GPU taken.
    pub milli: u16,
    /// The gang plan and slot this pod filled, if any.
    pub plan: Option<(PlanRecord, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssumeError {
    #[error("node `{0}` is not in the extender's view")]
    UnknownNode(String),
    #[error("pod is already placed on `{0}`")]
    ElsewhereAlready(String),
    #[error("the pod no longer fits on `{node}`: {reason}")]
    NoLongerFits { node: String, reason: &'static str },
    #[error("node `{node}` is reserved for gang `{gang}` member slot; this pod's slot is on `{slot_node}`")]
    WrongSlot {
        node: String,
        gang: String,
        slot_node: String,
    },
    #[error(
        "the slot of this gang `{gang}` member expired before it bound and the gang was planned again; its free \
         slots are on `{slot_node}`, not `{node}`: the pod must be filtered again"
    )]
    Replanned {
        node: String,
        gang: String,
        slot_node: String,
    },
}

/// Interned machine topologies (the gang planner looks them up by name),
/// each counted by the nodes that use it and dropped with its last user: a
/// node's annotation rewritten many times must not grow the process.
#[derive(Debug, Default)]
pub(crate) struct Machines {
    entries: HashMap<u32, MachineEntry>,
    /// Ids are never reused, so caches keyed by id cannot see a stale entry.
    next: u32,
    pub by_name: HashMap<String, Arc<NodeTopology>>,
}

#[derive(Debug)]
struct MachineEntry {
    profile: Arc<MachineProfile>,
    topo: Arc<NodeTopology>,
    name: String,
    users: usize,
}

impl crate::fabric::MachineLookup for Machines {
    fn machine(&self, name: &str) -> Option<&NodeTopology> {
        self.by_name.get(name).map(|t| &**t)
    }
}

impl Machines {
    /// The id of `p`'s topology, counting one more user; `None` when it
    /// does not build.
    fn intern(&mut self, p: &Arc<MachineProfile>) -> Option<(u32, Arc<NodeTopology>)> {
        if let Some((&id, e)) = self
            .entries
            .iter_mut()
            .find(|(_, e)| Arc::ptr_eq(&e.profile, p) || *e.profile == **p)
        {
            e.users += 1;
            return Some((id, e.topo.clone()));
        }
        let t = Arc::new(NodeTopology::from_profile(p).ok()?);
        let mut id = self.next;
        while self.entries.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next = id.wrapping_add(1);
        let name = format!("m{id}-{}", p.name);
        self.by_name.insert(name.clone(), t.clone());
        self.entries.insert(
            id,
            MachineEntry {
                profile: p.clone(),
                topo: t.clone(),
                name,
                users: 1,
            },
        );
        Some((id, t))
    }

    /// One user fewer; true when that was the last and the topology is gone.
    fn release(&mut self, id: u32) -> bool {
        let Some(e) = self.entries.get_mut(&id) else {
            return false;
        };
        e.users = e.users.saturating_sub(1);
        if e.users > 0 {
            return false;
        }
        if let Some(e) = self.entries.remove(&id) {
            self.by_name.remove(&e.name);
        }
        true
    }

    fn get(&self, id: u32) -> Option<(u32, Arc<NodeTopology>)> {
        self.entries.get(&id).map(|e| (id, e.topo.clone()))
    }

    pub fn name(&self, id: u32) -> Option<&str> {
        self.entries.get(&id).map(|e| e.name.as_str())
    }

    pub fn topo(&self, id: u32) -> Option<&NodeTopology> {
        self.entries.get(&id).map(|e| &*e.topo)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The cluster as the extender sees it.
#[derive(Debug)]
pub struct ClusterView {
    pub(crate) cfg: ViewConfig,
    pub(crate) nodes: Vec<NodeState>,
    pub(crate) by_name: NameIndex,
    /// Per node (same positions as `nodes`): what the filter scans.
    pub(crate) hot: Vec<Hot>,
    /// MIG resource names seen on nodes; a resource's bit is its position.
    pub(crate) mig_kinds: Vec<String>,
    pub(crate) pods: HashMap<String, PodRecord>,
    pub(crate) gangs: BTreeMap<String, Reservation>,
    /// Gang members whose claimed slot was released (the reservation expired
    /// or was dropped) before they bound: a late bind still places them as
    /// members of their gang.
    pub(crate) lapsed: HashMap<String, Lapsed>,
    pub(crate) machines: Machines,
    pub(crate) scorer: Scorer,
    pub(crate) topo_cache: Mutex<TopoCache>,
    /// Bumped on every change; decisions computed at one generation are
    /// valid while it holds.
    pub(crate) generation: u64,
    /// Bumped when labels or topologies change (the fabric is rebuilt).
    pub(crate) fabric_generation: u64,
    pub(crate) fabric: Option<(u64, Arc<crate::fabric::Fabric>)>,
    /// Nodes whose topology labels did not parse (they plan without
    /// topology), or one `*` entry when the labels failed as a whole.
    pub(crate) fabric_problems: Vec<(String, String)>,
    /// Pods changed since the packing mix was built.
    pub(crate) mix_changes: usize,
    /// Write-back deadlines of the pods awaiting one: (deadline ms, UID).
    pub(crate) awaiting: BTreeSet<(u64, String)>,
    /// GPU products seen on nodes (at most 64; never shrinks, as
    /// `mig_kinds`).
    pub(crate) models: ModelTable,
}

impl ClusterView {
    pub fn new(cfg: ViewConfig) -> ClusterView {
        let scorer = Scorer::new(&cfg.score, std::iter::empty(), Default::default());
        ClusterView {
            cfg,
            nodes: Vec::new(),
            by_name: NameIndex::default(),
            hot: Vec::new(),
            mig_kinds: Vec::new(),
            pods: HashMap::new(),
            gangs: BTreeMap::new(),
            lapsed: HashMap::new(),
            machines: Machines::default(),
            scorer,
            topo_cache: Mutex::new(TopoCache::default()),
            generation: 0,
            fabric_generation: 0,
            fabric: None,
            fabric_problems: Vec::new(),
            mix_changes: 0,
            awaiting: BTreeSet::new(),
            models: ModelTable::default(),
        }
    }

    pub fn config(&self) -> &ViewConfig {
        &self.cfg
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn has_node(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// State of a known pod.
    pub fn pod_state(&self, uid: &str) -> Option<(String, PodState, Vec<u32>)> {
        let r = self.pods.get(uid)?;
        let gpus = self
            .by_name
            .get(&r.node)
            .map(|&i| self.nodes[i].indices(r.mask))
            .unwrap_or_default();
        Some((r.node.clone(), r.state, gpus))
    }

    /// Free whole GPUs of a node (not reserved), by index.
    pub fn free_gpus(&self, node: &str) -> Option<Vec<u32>> {
        let n = &self.nodes[*self.by_name.get(node)?];
        Some(n.indices(n.free_mask()))
    }

    /// Milli left per GPU of a node, by index.
    pub fn gpu_left(&self, node: &str) -> Option<Vec<(u32, u16)>> {
        let n = &self.nodes[*self.by_name.get(node)?];
        Some(n.ids.iter().copied().zip(n.left.iter().copied()).collect())
    }

    /// Adds or replaces a node. Pods already known on it are re-applied.
    pub fn upsert_node(&mut self, input: NodeInput) {
        let existing = self.by_name.get(&input.name).copied();
        // Unchanged (the watch's resyncs, status heartbeats): nothing to
        // intern or rebuild.
        if existing.is_some_and(|i| self.nodes[i].input == input) {
            return;
        }
        let kept = existing.filter(|&i| self.nodes[i].input.topology == input.topology);
        let machine = match kept {
            // Same topology (labels or allocatable changed): same machine.
            Some(i) => self.nodes[i].machine.and_then(|id| self.machines.get(id)),
            None => {
                let m = input.topology.as_ref().and_then(|p| self.machines.intern(p));
                if let Some(old) = existing.and_then(|i| self.nodes[i].machine) {
                    self.release_machine(old);
                }
                m
            }
        };
        if let Some(i) = existing {
            let old = &self.nodes[i];
            let fabric_changed = old.input.labels != input.labels || old.input.topology != input.topology;
            self.generation += 1;
            if fabric_changed {
                self.fabric_generation += 1;
            }
            // Positions are per layout; GPU indices are not: pods keep their
            // GPUs by index across a layout change (a GPU gone from the
            // topology must not shift every later pod onto its neighbour).
            for uid in &old.pods {
                if let Some(r) = self.pods.get_mut(uid)
                    && r.applied
                {
                    r.hint = Some(old.indices(r.mask));
                }
            }
            let pods = std::mem::take(&mut self.nodes[i].pods);
            let (reserved, writes_back) = (self.nodes[i].reserved, self.nodes[i].writes_back);
            let layout_same = {
                let mut fresh = NodeState::new(input.clone(), machine.as_ref().map(|(id, t)| (*id, &**t)));
                fresh.mig_offer = self.mig_offer(&input);
                fresh.model = self.model_of(&input);
                let old = &self.nodes[i];
                // Gangs plan over nodes with whole GPUs only: a node that
                // starts or stops time-slicing joins or leaves the fabric.
                if fresh.gpu_replicated != old.gpu_replicated && !fabric_changed {
                    self.fabric_generation += 1;
                }
                let same = fresh.ids == old.ids
                    && fresh.mig_gpus == old.mig_gpus
                    && fresh.gpu_replicated == old.gpu_replicated;
                fresh.writes_back = writes_back;
                self.nodes[i] = fresh;
                same
            };
            // Re-apply pods (their recorded positions stay if still valid).
            if layout_same {
                // Held GPUs stay held: counted as handed out, not as used
                // share (a later release must find them whole).
                self.nodes[i].reserved = reserved;
                self.nodes[i].whole_used += reserved.count_ones();
            } else {
                self.drop_reservations_on(i);
            }
            for uid in pods {
                if let Some(r) = self.pods.get_mut(&uid) {
                    r.applied = false;
                }
                self.apply_record(&uid, i);
            }
            self.refresh_frag(i);
            return;
        }
        self.generation += 1;
        self.fabric_generation += 1;
        let i = self.nodes.len();
        let mut fresh = NodeState::new(input.clone(), machine.as_ref().map(|(id, t)| (*id, &**t)));
        fresh.mig_offer = self.mig_offer(&input);
        fresh.model = self.model_of(&input);
        self.nodes.push(fresh);
        self.hot.push(Hot::default());
        self.by_name.insert(&input.name, i);
        let mut waiting: Vec<(bool, String)> = self
            .pods
            .iter()
            .filter(|(_, r)| !r.applied && r.node == input.name)
            .map(|(u, r)| (r.placement != Placement::Actual, u.clone()))
            .collect();
        // Write-backs first (they are what kubelet gave), then by UID.
        waiting.sort_unstable();
        for (_, uid) in waiting {
            self.apply_record(&uid, i);
        }
        self.refresh_frag(i);
    }

    /// The node's GPU product, interned.
    fn model_of(&mut self, input: &NodeInput) -> Option<ModelId> {
        let product = input.labels.get(GPU_PRODUCT_LABEL)?;
        self.models.intern(product).ok()
    }

    /// The node's MIG resources with their bits, interning new names.
    fn mig_offer(&mut self, input: &NodeInput) -> Vec<(u64, String, u32)> {
        let mut out = Vec::new();
        for (name, &count) in &input.allocatable {
            if !name.starts_with(MIG_RESOURCE_PREFIX) {
                continue;
            }
            let pos = match self.mig_kinds.iter().position(|k| k == name) {
                Some(p) => p,
                None if self.mig_kinds.len() < 64 => {
                    self.mig_kinds.push(name.clone());
                    self.mig_kinds.len() - 1
                }
                None => continue,
            };
            out.push((
                1u64 << pos,
                name.clone(),
                u32::try_from(count.max(0)).unwrap_or(u32::MAX),
            ));
        }
        out
    }

    /// One node fewer uses machine `id`; its cached topology answers go with
    /// it when it was the last.
    fn release_machine(&mut self, id: u32) {
        if self.machines.release(id)
            && let Ok(mut cache) = self.topo_cache.lock()
        {
            cache.retain(|k, _| k.0 != id);
        }
    }

    /// Distinct machine topologies held (one per distinct profile in use).
    pub fn machine_count(&self) -> usize {
        self.machines.len()
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(&i) = self.by_name.get(name) else { return };
        if let Some(m) = self.nodes[i].machine {
            self.release_machine(m);
        }
        self.generation += 1;
        self.fabric_generation += 1;
        self.drop_reservations_on(i);
        self.by_name.remove(name);
        let n = self.nodes.swap_remove(i);
        self.hot.swap_remove(i);
        for uid in &n.pods {
            if let Some(r) = self.pods.get_mut(uid) {
                if r.applied {
                    // By GPU index: the node may come back with another layout.
                    r.hint = Some(n.indices(r.mask));
                }
                r.applied = false;
            }
        }
    }

    fn drop_reservations_on(&mut self, i: usize) {
        let name = self.nodes[i].input.name.clone();
        let hit: Vec<String> = self
            .gangs
            .iter()
            .filter(|(_, r)| r.plan.slots.iter().any(|s| s.node == name))
            .map(|(g, _)| g.clone())
            .collect();
        for g in hit {
            self.release_reservation(&g);
        }
    }

    /// Counts a known pod record into node `i`, choosing positions when it
    /// has none valid.
    pub(crate) fn apply_record(&mut self, uid: &str, i: usize) {
        let Some(r) = self.pods.get_mut(uid) else { return };
        if r.applied {
            return;
        }
        let node = &mut self.nodes[i];
        if let Some(g) = r.hint.as_ref() {
            // A recorded GPU the node no longer has: choose again below.
            r.mask = node.positions(g).unwrap_or(0);
        }
        r.mask &= node.position_mask();
        let (mask, milli, valid) = match &node.effective(&r.ask).gpu {
            GpuAsk::Whole(k) => {
                let free = node.free_mask();
                let valid = r.mask.count_ones() == *k && r.mask & !free == 0;
                let mask = if valid { r.mask } else { first_bits(free, *k) };
                (mask, MILLI, valid)
            }
            GpuAsk::Shared(rep) => {
                let milli = node.share_milli(*rep).unwrap_or(MILLI);
                let usable = !node.reserved & !node.mig_gpus;
                let valid = r.mask.count_ones() == 1
                    && r.mask & usable != 0
                    && node
                        .left
                        .get(r.mask.trailing_zeros() as usize)
                        .is_some_and(|&l| l >= milli);
                let mask = if valid {
                    r.mask
                } else {
                    node.best_share_gpu(milli).map_or(0, |p| 1u64 << p)
                };
                (mask, milli, valid)
            }
            _ => (0, 0, true),
        };
        r.mask = mask;
        r.milli = milli;
        r.applied = true;
        // Kubelet's GPUs that no longer fit here (the layout changed): the
        // pod's positions are a guess from now on.
        match r.placement {
            Placement::Actual if !valid => r.placement = Placement::Unknown,
            Placement::Actual => node.writes_back = true,
            _ => {}
        }
        node.unknown += u32::from(r.placement == Placement::Unknown);
        node.take(&r.ask, mask, milli);
        if !node.pods.iter().any(|u| u == uid) {
            node.pods.push(uid.to_string());
        }
    }

    fn release_record(&mut self, uid: &str) -> Option<PodRecord> {
        self.release_record_with(uid, true)
    }

    /// Removes a pod's record and gives back what it held. A gang member's
    /// slot is freed; with `rehold`, its GPUs are held again for a
    /// replacement (a member deleted or preempted), not when the member
    /// finished (its job is done: the GPUs are free for anyone).
    fn release_record_with(&mut self, uid: &str, rehold: bool) -> Option<PodRecord> {
        let r = self.pods.remove(uid)?;
        let idx = self.by_name.get(&r.node).copied();
        self.forget_placement(idx, uid, &r);
        if let Some(i) = idx {
            let n = &mut self.nodes[i];
            if r.applied {
                n.give_back(&r.ask, r.mask, r.milli);
            }
            n.pods.retain(|u| u != uid);
            self.refresh_frag(i);
        }
        if r.ask.wants_gpu() {
            self.mix_changes += 1;
        }
        if let Some((gang, slot)) = &r.gang {
            self.vacate_slot(gang, *slot, uid, rehold);
        }
        self.generation += 1;
        Some(r)
    }

    /// Applies a pod from the API (add or update), and its write-back if it
    /// carries one (see `writeback`). Idempotent.
    pub fn observe_pod(&mut self, obs: PodObservation, now_ms: u64) -> WriteBack {
        // Bound (by anyone) or finished: no late bind of a lapsed slot.
        if !self.lapsed.is_empty() && (obs.node.is_some() || obs.finished) {
            self.lapsed.remove(&obs.uid);
        }
        let node = match (&obs.node, obs.finished) {
            (Some(n), false) => n.clone(),
            _ => {
                // Pending pods hold nothing, except those this extender just
                // bound; finished pods hold nothing at all.
                let keep = !obs.finished && self.pods.get(&obs.uid).is_some_and(|r| r.state == PodState::Assumed);
                if !keep {
                    self.release_record_with(&obs.uid, !obs.finished);
                }
                return WriteBack::Unchanged;
            }
        };
        let (decided, allocated) = (obs.gpus.as_deref(), obs.allocated.as_deref());
        if let Some(r) = self.pods.get_mut(&obs.uid) {
            if r.node == node {
                if r.state != PodState::Bound {
                    r.state = PodState::Bound;
                    self.generation += 1;
                }
                return self.after_observe(&obs.uid, decided, allocated, now_ms);
            }
            self.release_record(&obs.uid);
        }
        self.generation += 1;
        if obs.ask.wants_gpu() {
            self.mix_changes += 1;
        }
        let idx = self.by_name.get(&node).copied();
        // A recorded gang plan: rebuild the reservation, then fill the slot.
        if let (Some((plan, slot)), Some(i)) = (&obs.plan, idx) {
            self.rebuild_from_plan(plan, now_ms);
            if self.fill_slot(&plan.gang, *slot, &obs.uid, &obs.ask, &node, PodState::Bound) {
                self.refresh_frag(i);
                return self.after_observe(&obs.uid, decided, allocated, now_ms);
            }
        }
        self.pods.insert(
            obs.uid.clone(),
            PodRecord {
                node: node.clone(),
                ask: obs.ask,
                mask: 0,
                milli: 0,
                state: PodState::Bound,
                applied: false,
                hint: obs.gpus.clone(),
                gang: obs.plan.as_ref().map(|(p, s)| (p.gang.clone(), *s)),
                placement: Placement::Fresh,
            },
        );
        if let Some(i) = idx {
            self.apply_record(&obs.uid, i);
            self.refresh_frag(i);
        }
        self.after_observe(&obs.uid, decided, allocated, now_ms)
    }

    /// The pod is gone from the API.
    pub fn remove_pod(&mut self, uid: &str) {
        self.lapsed.remove(uid);
        self.release_record(uid);
    }

    /// Filters `names` for `ask`; with `score`, scores the nodes that pass.
    /// The outcome refers to nodes by their position in `names`.
    pub fn filter<'a>(&self, ask: &PodAsk, names: impl IntoIterator<Item = &'a str>, score: bool) -> FilterOutcome {
        let mut out = FilterOutcome::default();
        let mut passed_idx = Vec::new();
        let mig_bit = match &ask.gpu {
            GpuAsk::Mig { resource, .. } => self.mig_kinds.iter().position(|k| k == resource).map(|b| 1u64 << b),
            _ => None,
        };
        let mut prev = None;
        for (k, name) in names.into_iter().enumerate() {
            prev = self.by_name.get_after(prev, name);
            let Some(i) = prev else {
                out.failed.push((k, "node is not in the extender's view yet"));
                continue;
            };
            debug_assert_eq!(self.hot[i], Hot::of(&self.nodes[i]), "stale hot record of node {name}");
            match verdict(&self.hot[i], ask, mig_bit, || &self.nodes[i]) {
                None => {
                    out.passed.push(k);
                    passed_idx.push(i);
                }
                Some(Verdict::Wait(r)) => out.failed.push((k, r)),
                Some(Verdict::Never(r)) => out.unresolvable.push((k, r)),
            }
        }
        if score {
            out.scores = self.score_indices(ask, &passed_idx);
        }
        out
    }

    /// Scores `names` (0..=10); nodes where the pod does not fit score 0.
    pub fn score<'a>(&self, ask: &PodAsk, names: impl IntoIterator<Item = &'a str>) -> Vec<(String, i64)> {
        let names: Vec<&str> = names.into_iter().collect();
        let idx: Vec<usize> = names
            .iter()
            .filter_map(|n| self.by_name.get(n).copied())
            .filter(|&i| self.nodes[i].check(ask).is_none())
            .collect();
        let scores = self.score_indices(ask, &idx);
        let by: HashMap<usize, i64> = idx.into_iter().zip(scores).collect();
        names
            .into_iter()
            .map(|n| {
                let s = self.by_name.get(n).and_then(|i| by.get(i)).copied().unwrap_or(0);
                (n.to_string(), s)
            })
            .collect()
    }

    /// Whether `ask` would fit on `node` once the `victims` (pod UIDs) are
    /// gone: the preemption check, per GPU as in [`ClusterView::filter`].
    pub fn fits_without(&self, ask: &PodAsk, node: &str, victims: &[&str]) -> bool {
        let Some(&i) = self.by_name.get(node) else { return false };
        let mut n = self.nodes[i].clone();
        for v in victims {
            if let Some(r) = self.pods.get(*v)
                && r.node == node
                && r.applied
            {
                n.give_back(&r.ask, r.mask, r.milli);
            }
        }
        n.check(ask).is_none()
    }

    /// Picks devices for `uid` on `node` and counts them as used until the
    /// API shows the pod (or [`ClusterView::unassume`]).
    pub fn assume(&mut self, uid: &str, ask: &PodAsk, node: &str) -> Result<Assumed, AssumeError> {
        let i = *self
            .by_name
            .get(node)
            .ok_or_else(|| AssumeError::UnknownNode(node.to_string()))?;
        if let Some(r) = self.pods.get(uid) {
            if r.node != node {
                return Err(AssumeError::ElsewhereAlready(r.node.clone()));
            }
            let plan = r
                .gang
                .as_ref()
                .and_then(|(g, s)| self.gangs.get(g).map(|res| (res.plan.clone(), *s)));
            return Ok(Assumed {
                gpus: self.nodes[i].indices(r.mask),
                milli: r.milli,
                plan,
            });
        }
        // A gang member goes to its slot.
        if let Some((gang, slot)) = self.claimed_slot(uid) {
            let slot_node = self.gangs[&gang].plan.slots[slot].node.clone();
            if slot_node != node {
                return Err(AssumeError::WrongSlot {
                    node: node.to_string(),
                    gang,
                    slot_node,
                });
            }
            if self.fill_slot(&gang, slot, uid, ask, node, PodState::Assumed) {
                self.refresh_frag(i);
                let r = &self.pods[uid];
                return Ok(Assumed {
                    gpus: self.nodes[i].indices(r.mask),
                    milli: r.milli,
                    plan: Some((self.gangs[&gang].plan.clone(), slot)),
                });
            }
        }
        // A member whose claim lapsed (its reservation expired) before it
        // bound is still a member of its gang.
        if let Some(l) = self.lapsed.get(uid).cloned() {
            return self.assume_lapsed(uid, ask, node, i, &l);
        }
        self.assume_plain(uid, ask, node, i, None)
    }

    /// Assumes a gang member whose slot was released before it bound. If the
    /// gang has been planned again (without it), it takes a free slot of the
    /// new plan on `node`, or is refused when the free slots are elsewhere
    /// (kube-scheduler retries it and the filter sends it to one); when no
    /// slot is free the gang has its members and this pod is one beyond them
    /// (as [`super::GangFilter::Plain`]). With no reservation it is placed
    /// as the member of its old slot, which the next member's re-plan keeps.
    fn assume_lapsed(
        &mut self,
        uid: &str,
        ask: &PodAsk,
        node: &str,
        i: usize,
        l: &Lapsed,
    ) -> Result<Assumed, AssumeError> {
        let Some(res) = self.gangs.get(&l.gang) else {
            return self.assume_plain(uid, ask, node, i, Some(l));
        };
        let free = |s: usize| res.claimed[s].is_none() && res.held[s];
        let here = |s: usize| {
            let slot = &res.plan.slots[s];
            free(s) && slot.node == node && ask.gpu == GpuAsk::Whole(slot.gpus.len() as u32)
        };
        let n = res.claimed.len();
        let mine = Some(l.slot)
            .filter(|&s| s < n && here(s))
            .or_else(|| (0..n).find(|&s| here(s)));
        let elsewhere = (0..n).find(|&s| free(s)).map(|s| res.plan.slots[s].node.clone());
        if let Some(s) = mine
            && self.fill_slot(&l.gang, s, uid, ask, node, PodState::Assumed)
        {
            self.lapsed.remove(uid);
            self.refresh_frag(i);
            let (mask, milli) = self.pods.get(uid).map_or((0, 0), |r| (r.mask, r.milli));
            return Ok(Assumed {
                gpus: self.nodes[i].indices(mask),
                milli,
                plan: self.gangs.get(&l.gang).map(|g| (g.plan.clone(), s)),
            });
        }
        if let Some(slot_node) = elsewhere {
            return Err(AssumeError::Replanned {
                node: node.to_string(),
                gang: l.gang.clone(),
                slot_node,
            });
        }
        self.lapsed.remove(uid);
        self.assume_plain(uid, ask, node, i, None)
    }

    /// Checks `ask` on node `i`, picks its devices and records the pod as
    /// assumed; `member`: the lapsed gang slot it fills, whose GPUs it takes
    /// where they are still free.
    fn assume_plain(
        &mut self,
        uid: &str,
        ask: &PodAsk,
        node: &str,
        i: usize,
        member: Option<&Lapsed>,
    ) -> Result<Assumed, AssumeError> {
        if let Some(v) = self.nodes[i].check(ask) {
            let reason = match v {
                Verdict::Wait(r) | Verdict::Never(r) => r,
            };
            return Err(AssumeError::NoLongerFits {
                node: node.to_string(),
                reason,
            });
        }
        let (mut mask, milli) = self.choose(i, ask);
        if let Some(l) = member
            && let Some(m) = self.slot_gpus_free(i, ask, l, node)
        {
            mask = m;
        }
        self.generation += 1;
        if ask.wants_gpu() {
            self.mix_changes += 1;
        }
        self.pods.insert(
            uid.to_string(),
            PodRecord {
                node: node.to_string(),
                ask: ask.clone(),
                mask,
                milli,
                state: PodState::Assumed,
                applied: true,
                hint: None,
                gang: member.map(|l| (l.gang.clone(), l.slot)),
                placement: Placement::Fresh,
            },
        );
        if member.is_some() {
            self.lapsed.remove(uid);
        }
        let n = &mut self.nodes[i];
        n.take(ask, mask, milli);
        n.pods.push(uid.to_string());
        self.refresh_frag(i);
        Ok(Assumed {
            gpus: self.nodes[i].indices(mask),
            milli,
            plan: member.map(|l| ((*l.plan).clone(), l.slot)),
        })
    }

    /// The positions of a lapsed slot's GPUs on node `i` when the pod asks
    /// for exactly those whole GPUs and all are free.
    fn slot_gpus_free(&self, i: usize, ask: &PodAsk, l: &Lapsed, node: &str) -> Option<u64> {
        let n = &self.nodes[i];
        let slot = l.plan.slots.get(l.slot).filter(|s| s.node == node)?;
        let GpuAsk::Whole(k) = n.effective(ask).gpu else {
            return None;
        };
        let m = n.positions(&slot.gpus)?;
        let ok = m.count_ones() == k && m & !n.free_mask() == 0 && (!ask.single_numa || n.numa_fits(m, k));
        ok.then_some(m)
    }

    /// Undoes an [`ClusterView::assume`] whose binding failed. A gang
    /// member's GPUs go back to its reservation.
    pub fn unassume(&mut self, uid: &str) {
        let Some(r) = self.pods.get(uid) else { return };
        if r.state != PodState::Assumed {
            return;
        }
        if let Some((g, s)) = r.gang.clone()
            && self.gangs.contains_key(&g)
        {
            self.return_to_slot(&g, s, uid);
            return;
        }
        self.release_record(uid);
    }

    /// Device choice on node `i`: topology-best whole GPUs, the shared GPU
    /// whose packing score is best.
    fn choose(&self, i: usize, ask: &PodAsk) -> (u64, u16) {
        let n = &self.nodes[i];
        let ask = n.effective(ask);
        let ask = ask.as_ref();
        match &ask.gpu {
            GpuAsk::None | GpuAsk::Mig { .. } => (0, 0),
            GpuAsk::Whole(k) => {
                let free = n.free_mask();
                let topo = n.machine.and_then(|m| self.machines.topo(m));
                let best = topo.and_then(|t| {
                    let set = n.indices(free).into_iter().collect();
                    let c = Constraints {
                        single_numa: ask.single_numa,
                        ..Constraints::default()
                    };
                    t.best_gpus(*k as usize, &set, &c).ok()
                });
                let mask = best
                    .and_then(|g| n.positions(&g))
                    .unwrap_or_else(|| numa_first_bits(n, free, *k, ask.single_numa));
                (mask, MILLI)
            }
            GpuAsk::Shared(r) => {
                let milli = n.share_milli(*r).unwrap_or(MILLI);
                let pos = self
                    .scorer
                    .best_share_position(n, ask, ask.products.mask(&self.models), milli)
                    .or_else(|| n.best_share_gpu(milli));
                (pos.map_or(0, |p| 1u64 << p), milli)
            }
        }
    }

    /// Rebuilds the packing mix from the pods placed now if enough changed,
    /// expires gang reservations. Call periodically and after bulk loads.
    pub fn refresh(&mut self, now_ms: u64) {
        self.expire(now_ms);
        self.expire_writebacks(now_ms);
        let threshold = (self.pods.len() / 20).max(1);
        let capacity = self.capacity_by_model();
        if self.mix_changes >= threshold || self.scorer.is_default() || self.scorer.classes_stale(&capacity) {
            self.mix_changes = 0;
            let reqs: Vec<_> = self
                .pods
                .values()
                .filter_map(|r| {
                    let n = &self.nodes[*self.by_name.get(&r.node)?];
                    Scorer::request(n, &n.effective(&r.ask), r.ask.products.mask(&self.models))
                })
                .collect();
            if !reqs.is_empty() {
                self.scorer = Scorer::new(&self.cfg.score, reqs.iter(), capacity);
                for i in 0..self.nodes.len() {
                    self.refresh_frag(i);
                }
                self.generation += 1;
            }
        }
    }

    /// After any change to node `i`: its packing fragmentation and its hot
    /// record.
    pub(crate) fn refresh_frag(&mut self, i: usize) {
        let f = self.scorer.node_frag(&self.nodes[i]);
        self.nodes[i].frag = f;
        self.hot[i] = Hot::of(&self.nodes[i]);
    }
}

/// The `k` lowest set bits of `mask`.
pub(super) fn first_bits(mask: u64, k: u32) -> u64 {
    let mut out = 0u64;
    let mut m = mask;
    for _ in 0..k {
        if m == 0 {
            break;
        }
        let b = m & m.wrapping_neg();
        out |= b;
        m &= !b;
    }
    out
}

fn numa_first_bits(n: &NodeState, free: u64, k: u32, single_numa: bool) -> u64 {
    if !single_numa {
        return first_bits(free, k);
    }
    let mut per: BTreeMap<u32, u64> = BTreeMap::new();
    for (p, &numa) in n.numa.iter().enumerate() {
        if free & (1 << p) != 0 {
            *per.entry(numa).or_default() |= 1 << p;
        }
    }
    per.values()
        .find(|m| m.count_ones() >= k)
        .map_or(0, |&m| first_bits(m, k))
}

impl ClusterView {
    /// Names of the nodes in the view.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.input.name.clone()).collect()
    }

    /// UIDs and states of the pods in the view.
    pub fn pod_uids(&self) -> Vec<(String, PodState)> {
        self.pods.iter().map(|(u, r)| (u.clone(), r.state)).collect()
    }
}
