//! Scoring nodes for one pod, 0..=10.
//!
//! - Shared and single whole-GPU pods: the bench's Railyard packing score —
//!   growth of the node's expected fragmentation under the cluster's task
//!   mix plus the growth of CPU/memory-stranded GPU milli, with ties to
//!   nodes in use, to the node left with the least idle GPU and to the
//!   tighter GPU. Each candidate's key comes from the policy's own
//!   [`Railyard::node_key`] (the function the bench replays), as one number
//!   ([`NodeKey::value`](crate::packing::policies::NodeKey::value)), min–max
//!   mapped to 0..=10.
//! - Multi-GPU pods: the topology quality of the best free GPU set
//!   ([`NodeTopology::best_gpus`]: NVLink, NIC alignment, NUMA), then the
//!   tightest fit.
//! - MIG pods: best fit on the profile's free devices, nodes in use first.

use std::collections::{BTreeSet, HashMap};

use super::ask::{GpuAsk, PodAsk};
use super::view::{ClusterView, NodeState};
use crate::packing::policies::{Railyard, RailyardConfig};
use crate::packing::{
    ClassMilli, GpuMask, MAX_GPUS, MILLI, ModelMask, Node, NodeSpec, PodRequest, Pressure, TaskDistribution, TaskType,
};
use crate::topology::{Constraints, Score};

/// Scoring knobs: the packing policy's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreConfig {
    pub railyard: RailyardConfig,
    /// Share of pods (by count) the task mix keeps, most popular shapes
    /// first; fewer shapes make scoring cheaper.
    pub mix_popularity: f64,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        ScoreConfig {
            railyard: RailyardConfig::DEFAULT,
            mix_popularity: 0.95,
        }
    }
}

/// The packing policy over the cluster's task mix.
#[derive(Debug)]
pub(crate) struct Scorer {
    railyard: Railyard,
    default: bool,
    /// Distinguishes scorers in the memo.
    pub id: u64,
}

static SCORER_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Topology answers per (machine, free positions, k, single NUMA).
pub(crate) type TopoCache = HashMap<(u32, u64, u32, bool), Option<(u64, f64)>>;

const TOPO_CACHE_MAX: usize = 100_000;

impl Scorer {
    /// Over the mix of `pods` (their `gpu_spec` set from their product
    /// constraints) on a cluster whose GPU capacity by model is `capacity`.
    pub fn new<'a>(cfg: &ScoreConfig, pods: impl Iterator<Item = &'a PodRequest>, capacity: ClassMilli) -> Scorer {
        let pods: Vec<PodRequest> = pods.copied().collect();
        let (tasks, default) = if pods.is_empty() {
            (default_mix(), true)
        } else {
            let mut o = Railyard::DIST;
            o.popularity = cfg.mix_popularity;
            (TaskDistribution::with_options(&pods, o), false)
        };
        Scorer {
            railyard: Railyard::with_classes(std::sync::Arc::new(tasks), capacity, cfg.railyard),
            default,
            id: SCORER_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    pub fn is_default(&self) -> bool {
        self.default
    }

    /// The mix has model-constrained pods and was built for another GPU
    /// capacity by model than `capacity` (nodes or models came or went).
    pub fn classes_stale(&self, capacity: &ClassMilli) -> bool {
        self.railyard
            .constrained_mix()
            .is_some_and(|m| m.capacity() != capacity)
    }

    /// Each model's pressure from constrained demand, given the idle GPU by
    /// model (asked for only when the mix has constrained pods).
    pub fn pressure(&self, idle: impl FnOnce() -> ClassMilli) -> Pressure {
        match self.railyard.constrained_mix() {
            Some(_) => self.railyard.pressure(&idle()),
            None => Pressure::NONE,
        }
    }

    /// What placing `pod` on `n` costs in constrained demand under
    /// `pressure` (subtract from the packing value).
    pub fn demand_cost(&self, n: &NodeState, pod: &PodRequest, pressure: &Pressure) -> f64 {
        self.railyard.demand_cost(n.model, pod, pressure)
    }

    /// The packing model's request for `ask` on `n`; `spec`: the models its
    /// product constraint allows (`GpuProducts::mask`).
    pub fn request(n: &NodeState, ask: &PodAsk, spec: ModelMask) -> Option<PodRequest> {
        let (num_gpu, gpu_milli) = match &ask.gpu {
            GpuAsk::Whole(k) => (u8::try_from(*k).ok()?, MILLI),
            GpuAsk::Shared(r) => (1, n.share_milli(*r)?),
            _ => return None,
        };
        let mut pod = PodRequest::gpus(ask.cpu_milli, ask.memory_mib, num_gpu, gpu_milli);
        pod.gpu_spec = spec;
        Some(pod)
    }

    /// The packing model's node, when it fits the model (≤ `MAX_GPUS`).
    /// Reserved and MIG GPUs count as used.
    pub fn node(n: &NodeState) -> Option<Node> {
        if n.left.len() > MAX_GPUS {
            return None;
        }
        let mut node = Node::new(&NodeSpec {
            name: String::new(),
            cpu_milli: u32::try_from(n.input.cpu_milli).unwrap_or(u32::MAX),
            memory_mib: u32::try_from(n.input.memory_mib).unwrap_or(u32::MAX),
            gpus: n.left.len() as u8,
            model: n.model,
        });
        for (p, &l) in n.left.iter().enumerate() {
            node.gpu_left[p] = if (n.reserved | n.mig_gpus) & (1 << p) != 0 {
                0
            } else {
                l
            };
        }
        node.cpu_left = u32::try_from(n.input.cpu_milli.saturating_sub(n.cpu_used)).unwrap_or(u32::MAX);
        node.mem_left = u32::try_from(n.input.memory_mib.saturating_sub(n.mem_used)).unwrap_or(u32::MAX);
        node.pods = n.pods.len() as u32;
        Some(node)
    }

    pub fn node_frag(&self, n: &NodeState) -> f64 {
        Self::node(n).map_or(0.0, |node| self.railyard.node_frag(&node))
    }

    /// The Railyard key of the best option on `n` as one number (larger is
    /// better) and the GPUs it uses. `n.frag` is the node's fragmentation
    /// under the same mix, kept current by `ClusterView::refresh_frag`.
    fn packing(&self, n: &NodeState, pod: &PodRequest) -> Option<(f64, GpuMask)> {
        let key = self.railyard.node_key(&Self::node(n)?, n.frag, pod)?;
        Some((key.value(self.railyard.config()), key.gpus))
    }

    /// The position a shared pod should take on `n`.
    pub fn best_share_position(&self, n: &NodeState, ask: &PodAsk, spec: ModelMask, milli: u16) -> Option<usize> {
        let mut pod = Self::request(n, ask, spec)?;
        pod.gpu_milli = milli;
        let (_, gpus) = self.packing(n, &pod)?;
        Some(gpus.trailing_zeros() as usize)
    }
}

/// A mix for a cluster with no GPU pods yet: quarter, half and whole GPUs,
/// 2, 4 and 8 GPUs, equally likely, 4 cores and 16 GiB per GPU.
fn default_mix() -> TaskDistribution {
    let t = |num_gpu: u8, gpu_milli: u16| {
        let gpus = num_gpu as u32 * gpu_milli as u32 / MILLI as u32;
        TaskType {
            cpu_milli: 4000 * gpus.max(1),
            memory_mib: 16_384 * gpus.max(1),
            num_gpu,
            gpu_milli,
            gpu_spec: crate::packing::ModelMask::ANY,
            weight: 1.0,
        }
    };
    TaskDistribution::from_types(vec![
        t(1, 250),
        t(1, 500),
        t(1, 1000),
        t(2, 1000),
        t(4, 1000),
        t(8, 1000),
    ])
}

/// A rank-preserving number for the topology score (larger is better).
fn topo_value(s: &Score) -> f64 {
    s.nvlink_gbps as f64 * 1e6 + s.nic_aligned as f64 * 1e4 - s.numa_nodes as f64 * 1e3 - s.sockets as f64 * 1e3
        + s.nic_same_switch as f64 * 10.0
        - s.pcie_distance as f64 * 1e-3
}

/// Min–max to 0..=10, rounding; all equal → 10.
fn to_range(values: &[f64]) -> Vec<i64> {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let hi = finite.clone().fold(f64::NEG_INFINITY, f64::max);
    let lo = finite.fold(f64::INFINITY, f64::min);
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                0
            } else if hi - lo <= 1e-9 {
                super::MAX_SCORE
            } else {
                (((v - lo) / (hi - lo)) * super::MAX_SCORE as f64).round() as i64
            }
        })
        .collect()
}

impl ClusterView {
    /// Scores of the nodes at `idx` (all known to fit `ask`), 0..=10.
    pub(crate) fn score_indices(&self, ask: &PodAsk, idx: &[usize]) -> Vec<i64> {
        if idx.is_empty() {
            return Vec::new();
        }
        let mut values: Vec<f64> = match &ask.gpu {
            GpuAsk::None => return vec![0; idx.len()],
            GpuAsk::Shared(_) | GpuAsk::Whole(1) => MEMO.with(|memo| {
                let mut memo = memo.borrow_mut();
                if memo.len() > MEMO_MAX {
                    memo.clear();
                }
                let spec = ask.products.mask(&self.models);
                // Constrained demand: the same for every node of a model,
                // so kept out of the memo.
                let pressure = self.scorer.pressure(|| self.idle_by_model());
                idx.iter()
                    .map(|&i| {
                        let n = &self.nodes[i];
                        // `nvidia.com/gpu: 1` on a time-sliced node is a replica.
                        let Some(pod) = Scorer::request(n, &n.effective(ask), spec) else {
                            return f64::NEG_INFINITY;
                        };
                        let host = (u64::from(pod.cpu_milli) << 32) | u64::from(pod.memory_mib);
                        let gpus = (u32::from(pod.num_gpu) << 16) | u32::from(pod.gpu_milli);
                        let value = *memo
                            .entry((self.scorer.id, self.hot[i].state, host, gpus, spec.0))
                            .or_insert_with(|| self.packing_or_fit(n, &pod));
                        value - self.scorer.demand_cost(n, &pod, &pressure)
                    })
                    .collect()
            }),
            GpuAsk::Whole(k) => {
                let topo: Vec<f64> = idx
                    .iter()
                    .map(|&i| self.topology_value(i, *k, ask.single_numa))
                    .collect();
                let fit: Vec<f64> = idx
                    .iter()
                    .map(|&i| -(self.nodes[i].free_mask().count_ones() as f64))
                    .collect();
                let (t, f) = (unit(&topo), unit(&fit));
                // Time-sliced nodes give k replicas of one GPU, never k
                // GPUs: last, below every node with whole GPUs (0..=1).
                t.iter()
                    .zip(&f)
                    .zip(idx)
                    .map(|((a, b), &i)| {
                        if self.nodes[i].gpu_replicated {
                            -1.0
                        } else {
                            0.8 * a + 0.2 * b
                        }
                    })
                    .collect()
            }
            GpuAsk::Mig { resource, count } => idx
                .iter()
                .map(|&i| {
                    let n = &self.nodes[i];
                    let free = n.mig_alloc(resource) - n.mig_used.get(resource).copied().unwrap_or(0);
                    let left = free.saturating_sub(*count) as f64;
                    let in_use = if n.pods.is_empty() { 0.0 } else { 0.5 };
                    -left + in_use
                })
                .collect(),
        };
        // Unknown positions: the per-GPU answer is a guess; any node whose
        // GPUs are known goes first.
        if matches!(ask.gpu, GpuAsk::Whole(_) | GpuAsk::Shared(_)) {
            for (v, &i) in values.iter_mut().zip(idx) {
                if self.hot[i].uncertain {
                    *v = f64::NEG_INFINITY;
                }
            }
        }
        to_range(&values)
    }

    /// Idle GPU milli by model over the view's nodes (held and MIG GPUs
    /// count as used, as in [`Scorer::node`]).
    pub(crate) fn idle_by_model(&self) -> ClassMilli {
        let mut c = ClassMilli::default();
        for n in &self.nodes {
            let held = n.reserved | n.mig_gpus;
            let idle: u64 = (n.left.iter().enumerate())
                .filter(|(p, _)| held & (1 << p) == 0)
                .map(|(_, &l)| u64::from(l))
                .sum();
            c.add(n.model, idle);
        }
        c
    }

    /// GPU capacity by model over the view's nodes.
    pub(crate) fn capacity_by_model(&self) -> ClassMilli {
        let mut c = ClassMilli::default();
        for n in &self.nodes {
            c.add(n.model, n.left.len() as u64 * u64::from(MILLI));
        }
        c
    }

    fn packing_or_fit(&self, n: &NodeState, pod: &PodRequest) -> f64 {
        if n.left.len() > MAX_GPUS {
            // Past the packing model: best fit on idle milli.
            return -(n.left.iter().map(|&l| l as f64).sum::<f64>());
        }
        // No key: the pod does not fit the model's node (another GPU
        // product than it selects).
        self.scorer.packing(n, pod).map_or(f64::NEG_INFINITY, |(v, _)| v)
    }

    /// Topology quality of the best `k` free GPUs on node `i` (cached per
    /// machine and free set); nodes without topology get the lowest value.
    fn topology_value(&self, i: usize, k: u32, single_numa: bool) -> f64 {
        let n = &self.nodes[i];
        let Some(m) = n.machine else { return 0.0 };
        let free = n.free_mask();
        let key = (m, free, k, single_numa);
        if let Ok(cache) = self.topo_cache.lock()
            && let Some(v) = cache.get(&key)
        {
            return v.map_or(0.0, |(_, v)| v);
        }
        let v = self.machines.topo(m).and_then(|t| {
            let set: BTreeSet<u32> = n.indices(free).into_iter().collect();
            let c = Constraints {
                single_numa,
                ..Constraints::default()
            };
            let gpus = t.best_gpus(k as usize, &set, &c).ok()?;
            let s = t.score(&gpus, &c).ok()?;
            Some((n.positions(&gpus).unwrap_or(0), topo_value(&s)))
        });
        if let Ok(mut cache) = self.topo_cache.lock() {
            if cache.len() >= TOPO_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, v);
        }
        v.map_or(0.0, |(_, v)| v)
    }
}

/// The packing value is a pure function of the scorer, the node's state and
/// the pod's shape: memoized per thread (no locking), so nodes in the same
/// state, and a node asked about again before it changes, cost a lookup.
/// Key: scorer id, the node's state fingerprint (`Hot::state`, which
/// includes its GPU model), the pod's CPU and memory, its GPU count and
/// milli, the models it may use.
type FullKey = (u64, u64, u64, u32, u64);

const MEMO_MAX: usize = 400_000;

thread_local! {
    static MEMO: std::cell::RefCell<HashMap<FullKey, f64, std::hash::BuildHasherDefault<Fx>>> =
        std::cell::RefCell::new(HashMap::default());
}

/// A small multiplicative hasher for the memo's integer keys.
#[derive(Debug, Default)]
pub(crate) struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        let rest = chunks.remainder();
        w[..rest.len()].copy_from_slice(rest);
        self.write_u64(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// Min–max to 0..=1; all equal → 1.
fn unit(v: &[f64]) -> Vec<f64> {
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    v.iter()
        .map(|&x| if hi - lo <= 1e-12 { 1.0 } else { (x - lo) / (hi - lo) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::view::{NodeInput, PodObservation, ViewConfig};
    use super::*;
    use crate::packing::Cluster;
    use crate::packing::policies::NodeKey;
    use crate::packing::policies::Policy;

    fn shared_node(name: &str, cpu_milli: u64) -> NodeInput {
        NodeInput {
            name: name.into(),
            labels: [
                ("nvidia.com/gpu.count".to_string(), "2".to_string()),
                ("nvidia.com/gpu.replicas".to_string(), "10".to_string()),
            ]
            .into(),
            allocatable: [("nvidia.com/gpu.shared".to_string(), 20)].into(),
            cpu_milli,
            memory_mib: 1 << 20,
            topology: None,
            unschedulable: false,
        }
    }

    fn ask(gpu: GpuAsk, cpu_milli: u32) -> PodAsk {
        PodAsk {
            gpu,
            single_numa: false,
            cpu_milli,
            memory_mib: 1024,
            products: crate::extender::GpuProducts::ANY,
        }
    }

    /// A 16-GPU node is scored with the packing key, not the fallback.
    #[test]
    fn sixteen_gpu_nodes_use_the_packing_key() {
        let mut v = ClusterView::new(ViewConfig::default());
        let mut input = shared_node("big", 128_000);
        input.labels.insert("nvidia.com/gpu.count".into(), "16".into());
        input.allocatable.insert("nvidia.com/gpu.shared".into(), 160);
        v.upsert_node(input);
        let obs = PodObservation {
            uid: "p".into(),
            node: Some("big".into()),
            ask: ask(GpuAsk::Shared(6), 1000),
            finished: false,
            gpus: Some(vec![12]),
            plan: None,
            allocated: None,
        };
        v.observe_pod(obs, 0);
        let n = &v.nodes[0];
        let node = Scorer::node(n).expect("16 GPUs fit the model");
        assert_eq!(
            (node.gpu_count, node.gpu_left[12], node.gpu_idle_milli()),
            (16, 400, 15_400)
        );
        // Four replicas fit beside the six on GPU 12: best fit puts them there.
        assert_eq!(
            v.scorer
                .best_share_position(n, &ask(GpuAsk::Shared(4), 1000), ModelMask::ANY, 400),
            Some(12)
        );
        assert_eq!(
            v.scorer
                .best_share_position(n, &ask(GpuAsk::Shared(5), 1000), ModelMask::ANY, 500),
            Some(0)
        );
    }

    /// The extender scores each node with the bench policy's own key over
    /// the same state: same value per node, same GPU for a share, and the
    /// same first choice wherever the policy's pick wins on score alone.
    #[test]
    fn scores_with_the_packing_policys_key() {
        let mut v = ClusterView::new(ViewConfig::default());
        let names = ["a", "b", "c", "d", "e"];
        for (name, cpu) in names.iter().zip([64_000, 64_000, 16_000, 64_000, 8_000]) {
            v.upsert_node(shared_node(name, cpu));
        }
        // (node, GPU, replicas of 10 per GPU, CPU).
        let placed = [
            ("a", 0, 5, 4000),
            ("b", 0, 3, 2000),
            ("b", 1, 7, 2000),
            ("c", 1, 2, 8000),
            ("d", 0, 10, 4000),
            ("d", 1, 4, 4000),
        ];
        for (k, &(node, gpu, r, cpu)) in placed.iter().enumerate() {
            let obs = PodObservation {
                uid: format!("p{k}"),
                node: Some(node.into()),
                ask: ask(GpuAsk::Shared(r), cpu),
                finished: false,
                gpus: Some(vec![gpu]),
                plan: None,
                allocated: None,
            };
            v.observe_pod(obs, 0);
        }
        v.refresh(0);
        assert!(!v.scorer.is_default(), "the mix comes from the placed pods");
        let nodes: Vec<Node> = v.nodes.iter().map(|n| Scorer::node(n).expect("2 GPUs")).collect();
        assert_eq!(nodes[1].gpus(), &[700, 300]);
        let cluster = Cluster {
            versions: vec![0; nodes.len()],
            nodes,
            gpu_capacity_milli: 10_000,
            gpu_allocated_milli: 0,
        };
        let railyard = &v.scorer.railyard;
        let cfg = *railyard.config();
        let mut policy = Railyard::with_config(railyard.tasks().clone(), cfg);
        let mut clear_wins = 0;
        for r in 1..=10 {
            for cpu in [1000, 6000] {
                let a = ask(GpuAsk::Shared(r), cpu);
                let idx: Vec<usize> = (0..v.nodes.len()).filter(|&i| v.nodes[i].check(&a).is_none()).collect();
                let pod = Scorer::request(&v.nodes[0], &a, ModelMask::ANY).expect("shared");
                let want = policy.place(&cluster, &pod).expect("fits somewhere");
                let keys: Vec<NodeKey> = idx
                    .iter()
                    .map(|&i| {
                        let n = &cluster.nodes[i];
                        policy.node_key(n, policy.node_frag(n), &pod).expect("fits")
                    })
                    .collect();
                let values: Vec<f64> = idx.iter().map(|&i| v.packing_or_fit(&v.nodes[i], &pod)).collect();
                for (k, value) in keys.iter().zip(&values) {
                    assert!(
                        (k.value(&cfg) - value).abs() < 1e-9,
                        "r={r} cpu={cpu}: {k:?} vs {value}"
                    );
                }
                let at = idx
                    .iter()
                    .position(|&i| i == want.node as usize)
                    .expect("policy's node passes filter");
                if pod.is_share() {
                    let pos =
                        v.scorer
                            .best_share_position(&v.nodes[want.node as usize], &a, ModelMask::ANY, pod.gpu_milli);
                    assert_eq!(pos.map(|p| 1 << p), Some(want.gpus), "r={r} cpu={cpu}");
                }
                let clear = keys
                    .iter()
                    .enumerate()
                    .all(|(j, k)| j == at || keys[at].score > k.score + cfg.eps);
                if clear {
                    clear_wins += 1;
                    let scores = v.score_indices(&a, &idx);
                    assert_eq!(scores[at], super::super::MAX_SCORE, "r={r} cpu={cpu}: {scores:?}");
                    assert!(values.iter().enumerate().all(|(j, &x)| j == at || x < values[at]));
                }
            }
        }
        assert!(clear_wins >= 5, "only {clear_wins} shapes with a clear winner");
    }
}
