//! Scoring nodes for one pod, 0..=10.
//!
//! - Shared and single whole-GPU pods: the bench's Railyard packing score —
//!   growth of the node's expected fragmentation under the cluster's task
//!   mix plus the growth of CPU/memory-stranded GPU milli, with ties to
//!   nodes in use and to the node left with the least idle GPU. The policy
//!   in `packing::policies::railyard` picks one node for a whole cluster;
//!   here the same per-node key is computed for each candidate (same
//!   formulas, same [`RailyardConfig`]) and min–max mapped to 0..=10.
//! - Multi-GPU pods: the topology quality of the best free GPU set
//!   ([`NodeTopology::best_gpus`]: NVLink, NIC alignment, NUMA), then the
//!   tightest fit.
//! - MIG pods: best fit on the profile's free devices, nodes in use first.

use std::collections::{BTreeSet, HashMap};

use super::ask::{GpuAsk, PodAsk};
use super::view::{ClusterView, NodeState};
use crate::packing::policies::{RailyardConfig, rates_per_gpu, stranded};
use crate::packing::{MAX_GPUS, MILLI, Node, NodeSpec, PodRequest, TaskDistribution, TaskType};
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

/// The packing mix and stranding rates.
#[derive(Debug)]
pub(crate) struct Scorer {
    tasks: TaskDistribution,
    cfg: RailyardConfig,
    cpu_per_gpu: f64,
    mem_per_gpu: f64,
    default: bool,
    /// Distinguishes scorers in the memo.
    pub id: u64,
}

static SCORER_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Topology answers per (machine, free positions, k, single NUMA).
pub(crate) type TopoCache = HashMap<(u32, u64, u32, bool), Option<(u64, f64)>>;

const TOPO_CACHE_MAX: usize = 100_000;

impl Scorer {
    pub fn new<'a>(cfg: &ScoreConfig, pods: impl Iterator<Item = &'a PodRequest>) -> Scorer {
        let pods: Vec<PodRequest> = pods.copied().collect();
        let (tasks, default) = if pods.is_empty() {
            (default_mix(), true)
        } else {
            let mut o = crate::packing::policies::Railyard::DIST;
            o.popularity = cfg.mix_popularity;
            (TaskDistribution::with_options(&pods, o), false)
        };
        let (cpu, mem) = rates_per_gpu(&tasks);
        Scorer {
            tasks,
            cfg: cfg.railyard,
            cpu_per_gpu: cpu * cfg.railyard.rate_scale,
            mem_per_gpu: mem * cfg.railyard.rate_scale,
            default,
            id: SCORER_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    pub fn is_default(&self) -> bool {
        self.default
    }

    /// The packing model's request for `ask` on `n`.
    pub fn request(n: &NodeState, ask: &PodAsk) -> Option<PodRequest> {
        let (num_gpu, gpu_milli) = match &ask.gpu {
            GpuAsk::Whole(k) => (u8::try_from(*k).ok()?, MILLI),
            GpuAsk::Shared(r) => (1, n.share_milli(*r)?),
            _ => return None,
        };
        Some(PodRequest::gpus(ask.cpu_milli, ask.memory_mib, num_gpu, gpu_milli))
    }

    /// The packing model's node, when it fits the model (≤ 8 GPUs).
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
            model: None,
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
        Self::node(n).map_or(0.0, |node| self.tasks.node_frag(&node))
    }

    /// The Railyard policy's stranded milli at this view's mix rates.
    fn stranded(&self, node: &Node) -> f64 {
        stranded(node, self.cpu_per_gpu, self.mem_per_gpu)
    }

    /// The Railyard key of the best option on `n` as one number (larger is
    /// better) and the GPUs it uses.
    fn packing(&self, n: &NodeState, pod: &PodRequest) -> Option<(f64, u8)> {
        let node = Self::node(n)?;
        if !node.fits(pod) {
            return None;
        }
        let w = self.cfg.strand;
        let strand_before = if w != 0.0 { self.stranded(&node) } else { 0.0 };
        let in_use = if self.cfg.prefer_in_use && node.pods > 0 {
            0.4 * self.cfg.eps
        } else {
            0.0
        };
        let mut best: Option<(f64, u8)> = None;
        let mut consider = |gpus: u8| {
            let mut next = node;
            if next.apply(pod, gpus).is_err() {
                return;
            }
            let after = self.tasks.node_frag(&next);
            let strand = if w != 0.0 {
                w * (self.stranded(&next) - strand_before)
            } else {
                0.0
            };
            // Ties inside eps: in use first, then the least idle left.
            let idle_after = next.gpu_idle_milli() as f64;
            let tidy = if self.cfg.prefer_less_idle {
                -0.4 * self.cfg.eps * idle_after / (MILLI as f64 * MAX_GPUS as f64)
            } else {
                0.0
            };
            // Last, best fit: the GPU with the least share left.
            let fit = if pod.is_share() {
                -1e-6 * node.gpu_left[gpus.trailing_zeros() as usize] as f64
            } else {
                0.0
            };
            let v = n.frag - after - strand + in_use + tidy + fit;
            if best.is_none_or(|(b, _)| v > b) {
                best = Some((v, gpus));
            }
        };
        if pod.is_share() {
            let mut seen: [u16; MAX_GPUS] = [u16::MAX; MAX_GPUS];
            let mut n_seen = 0;
            for i in 0..node.gpu_count as usize {
                let l = node.gpu_left[i];
                if l < pod.gpu_milli || seen[..n_seen].contains(&l) {
                    continue;
                }
                seen[n_seen] = l;
                n_seen += 1;
                consider(1 << i);
            }
        } else if let Some(g) = node.default_gpus(pod) {
            consider(g);
        }
        best
    }

    /// The position a shared pod should take on `n`.
    pub fn best_share_position(&self, n: &NodeState, ask: &PodAsk, milli: u16) -> Option<usize> {
        let mut pod = Self::request(n, ask)?;
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
        let values: Vec<f64> = match &ask.gpu {
            GpuAsk::None => return vec![0; idx.len()],
            GpuAsk::Shared(_) | GpuAsk::Whole(1) => MEMO.with(|memo| {
                let mut memo = memo.borrow_mut();
                if memo.len() > MEMO_MAX {
                    memo.clear();
                }
                idx.iter()
                    .map(|&i| {
                        let n = &self.nodes[i];
                        let Some(pod) = Scorer::request(n, ask) else {
                            return f64::NEG_INFINITY;
                        };
                        let host = (u64::from(pod.cpu_milli) << 32) | u64::from(pod.memory_mib);
                        let gpus = (u32::from(pod.num_gpu) << 16) | u32::from(pod.gpu_milli);
                        *memo
                            .entry((self.scorer.id, self.hot[i].state, host, gpus))
                            .or_insert_with(|| self.packing_or_fit(n, &pod))
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
                t.iter().zip(&f).map(|(a, b)| 0.8 * a + 0.2 * b).collect()
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
        to_range(&values)
    }

    fn packing_or_fit(&self, n: &NodeState, pod: &PodRequest) -> f64 {
        match self.scorer.packing(n, pod) {
            Some((v, _)) => v,
            // More than 8 GPUs: best fit on idle milli.
            None => -(n.left.iter().map(|&l| l as f64).sum::<f64>()),
        }
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
/// Key: scorer id, the node's state fingerprint (`Hot::state`), the pod's
/// CPU and memory, its GPU count and milli.
type FullKey = (u64, u64, u64, u32);

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
