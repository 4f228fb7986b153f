//! Railyard's placement policy.
//!
//! Starts from FGD's idea — place where the expected fragmentation under
//! the workload's task mix grows least — and changes what the measured
//! replays showed to matter:
//! - the task mix keeps every shape (FGD cuts at 95% of pods, which drops
//!   all 2/4/8-GPU shapes) and carries memory, so a node out of memory
//!   counts its idle GPUs as fragments;
//! - CPU/memory stranding: a node's idle GPU milli that its remaining CPU
//!   (or memory) cannot feed at the mix's mean CPU (memory) per GPU is lost
//!   capacity. The score is the fragmentation growth plus `strand` times
//!   the growth of stranded milli, so GPU-heavy, CPU-light pods are steered
//!   onto CPU-poor nodes and CPU-heavy pods away from them. The rate must
//!   stay below the CPU per GPU of the big nodes: at 1.2× the mix's rate
//!   the empty 8-GPU `G2` nodes (12 cores/GPU) count as stranded, breaking
//!   them is rewarded and `multigpu50` collapses (17% unallocated);
//! - growth is exact, not a truncated sigmoid; differences under `eps`
//!   milli-GPU count as ties;
//! - ties go to nodes already in use, then to the node left with the least
//!   idle GPU, then (shared pods) to the tighter GPU, then to the lowest
//!   index: whole GPUs and whole nodes stay free for multi-GPU pods.
//!
//! - GPU-model constraints ([`crate::packing::constraints`]): once some
//!   tasks of the mix carry a `gpu_spec`, each node is scored against its
//!   class's mix (only the tasks that can use its model, weighted by
//!   arrivals per unit of the model's capacity), and placing GPU on a
//!   model costs `demand` times the GPU milli times the model's pressure
//!   from constrained demand. Without constrained tasks both are off and
//!   placement is what it was before.
//!
//! One pass over the nodes; per node, one scratch placement per distinct
//! candidate GPU. Deterministic. The per-node part is
//! [`Railyard::node_key`] (plus [`Railyard::demand_cost`] with the
//! decision's [`Railyard::pressure`]), which the scheduler extender calls as
//! well, so the bench measures exactly what the extender scores.

use std::sync::Arc;

use super::Policy;
use super::fgd::{FragCache, for_each_option};
use crate::packing::constraints::{ClassMilli, ConstrainedMix, Pressure};
use crate::packing::fragmentation::{DistOptions, TaskDistribution};
use crate::packing::state::{Cluster, GpuMask, MILLI, ModelId, ModelMask, Node, Placement, PodRequest};

#[derive(Debug)]
pub struct Railyard {
    tasks: Arc<TaskDistribution>,
    /// Some GPU task of the mix is constrained to a model set.
    constrained: bool,
    /// The class mixes, built for a capacity by class (`None` without
    /// constrained tasks, or before the first cluster is seen).
    mix: Option<ConstrainedMix>,
    cache: FragCache,
    cfg: RailyardConfig,
    /// CPU (millicores) and memory (MiB) per whole GPU used for stranding:
    /// the mix's means times `cfg.rate_scale`.
    cpu_per_gpu: f64,
    mem_per_gpu: f64,
}

/// Idle GPU milli on `node` that its CPU and memory left cannot feed when
/// every GPU needs `cpu_per_gpu` millicores and `mem_per_gpu` MiB.
pub fn stranded(node: &Node, cpu_per_gpu: f64, mem_per_gpu: f64) -> f64 {
    let idle = node.gpu_idle_milli() as f64;
    if idle == 0.0 {
        return 0.0;
    }
    let by_cpu = node.cpu_left as f64 * MILLI as f64 / cpu_per_gpu.max(1.0);
    let by_mem = node.mem_left as f64 * MILLI as f64 / mem_per_gpu.max(1.0);
    (idle - by_cpu.min(by_mem)).max(0.0)
}

/// Mean CPU (millicores) and memory (MiB) that GPU tasks of `tasks` ask per
/// whole GPU, weighted by popularity; `(1, 1)` without GPU tasks. Memory is
/// 0 (no constraint) when the distribution has no memory.
pub fn rates_per_gpu(tasks: &TaskDistribution) -> (f64, f64) {
    let (mut cpu, mut mem, mut gpu) = (0.0, 0.0, 0.0);
    for t in tasks.types() {
        if t.num_gpu > 0 && t.gpu_milli > 0 {
            cpu += t.weight * t.cpu_milli as f64;
            mem += t.weight * t.memory_mib as f64;
            gpu += t.weight * t.num_gpu as f64 * t.gpu_milli as f64 / MILLI as f64;
        }
    }
    if gpu > 0.0 { (cpu / gpu, mem / gpu) } else { (1.0, 1.0) }
}

fn class_tasks<'a>(
    mix: &'a Option<ConstrainedMix>,
    tasks: &'a TaskDistribution,
    class_mix: bool,
    model: Option<ModelId>,
) -> &'a TaskDistribution {
    match mix {
        Some(m) if class_mix => m.tasks_for(model),
        _ => tasks,
    }
}

/// Tuning knobs; [`RailyardConfig::DEFAULT`] is what the bench measures
/// (`railyard-bench replay --railyard-*` flags override them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RailyardConfig {
    /// Score differences below this (milli-GPU) count as ties.
    pub eps: f64,
    /// Weight of the growth of CPU/memory-stranded GPU milli against the
    /// growth of fragmentation; 0 turns stranding off.
    pub strand: f64,
    /// Multiplier on the mix's mean CPU and memory per GPU for stranding.
    pub rate_scale: f64,
    /// Ties go to nodes already hosting pods.
    pub prefer_in_use: bool,
    /// Then to the node left with the least idle GPU.
    pub prefer_less_idle: bool,
    /// With constrained tasks: score each node against its class's mix
    /// (the tasks that can use its model) instead of the whole mix.
    pub class_mix: bool,
    /// With constrained tasks: weight of the constrained-demand cost
    /// ([`Pressure::cost`]); 0 turns it off.
    pub demand: f64,
}

impl RailyardConfig {
    pub const DEFAULT: RailyardConfig = RailyardConfig {
        eps: 50.0,
        strand: 2.0,
        rate_scale: 1.0,
        prefer_in_use: true,
        prefer_less_idle: true,
        class_mix: true,
        demand: 1.0,
    };
}

impl Default for RailyardConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Railyard {
    /// The distribution options Railyard wants its task mix built with.
    pub const DIST: DistOptions = DistOptions {
        popularity: 1.0,
        include_cpu_only: true,
        weight_by_gpu: false,
        with_memory: true,
    };

    pub fn new(tasks: Arc<TaskDistribution>) -> Self {
        Self::with_config(tasks, RailyardConfig::DEFAULT)
    }

    /// Without node classes yet: [`Policy::place`] takes them from the
    /// cluster it is given; callers that score nodes themselves use
    /// [`Railyard::with_classes`].
    pub fn with_config(tasks: Arc<TaskDistribution>, cfg: RailyardConfig) -> Self {
        let (cpu, mem) = rates_per_gpu(&tasks);
        let constrained = tasks
            .types()
            .iter()
            .any(|t| t.num_gpu > 0 && t.gpu_milli > 0 && t.gpu_spec != ModelMask::ANY);
        Railyard {
            tasks,
            constrained,
            mix: None,
            cache: FragCache::default(),
            cfg,
            cpu_per_gpu: cpu * cfg.rate_scale,
            mem_per_gpu: mem * cfg.rate_scale,
        }
    }

    /// For a cluster whose GPU capacity by class (GPU model) is `capacity`
    /// ([`ClassMilli::capacity`] of its nodes, or the extender's own sums).
    pub fn with_classes(tasks: Arc<TaskDistribution>, capacity: ClassMilli, cfg: RailyardConfig) -> Self {
        let mut r = Self::with_config(tasks, cfg);
        r.set_classes(capacity);
        r
    }

    /// Rebuilds the class mixes for a new capacity by class (nodes or
    /// models added or removed). A no-op without constrained tasks.
    pub fn set_classes(&mut self, capacity: ClassMilli) {
        if !self.constrained || self.mix.as_ref().is_some_and(|m| *m.capacity() == capacity) {
            return;
        }
        self.mix = Some(ConstrainedMix::new(self.tasks.clone(), capacity));
        self.cache.clear();
    }

    /// The class mixes and constrained demand, once classes are known.
    pub fn constrained_mix(&self) -> Option<&ConstrainedMix> {
        self.mix.as_ref()
    }

    /// The mix nodes of `model` are scored against.
    pub fn tasks_for(&self, model: Option<ModelId>) -> &TaskDistribution {
        class_tasks(&self.mix, &self.tasks, self.cfg.class_mix, model)
    }

    /// Each class's pressure from constrained demand given the idle GPU by
    /// class now ([`ClassMilli::idle`]); zero without constrained tasks.
    pub fn pressure(&self, idle: &ClassMilli) -> Pressure {
        match &self.mix {
            Some(m) if self.cfg.demand != 0.0 => m.pressure(idle),
            _ => Pressure::NONE,
        }
    }

    /// What placing `pod` on a node of `model` costs under `pressure`, in
    /// the units of [`NodeKey::score`] (subtract it).
    pub fn demand_cost(&self, model: Option<ModelId>, pod: &PodRequest, pressure: &Pressure) -> f64 {
        pressure.cost(model, pod, self.cfg.demand)
    }

    pub fn config(&self) -> &RailyardConfig {
        &self.cfg
    }

    /// The task mix the policy scores against.
    pub fn tasks(&self) -> &Arc<TaskDistribution> {
        &self.tasks
    }
}

/// Railyard's verdict on one node for one pod: the best placement on the
/// node and what ranks it against other nodes. Built by
/// [`Railyard::node_key`]; the policy compares keys with
/// [`NodeKey::better_than`], the scheduler extender, which needs one number
/// per node, with [`NodeKey::value`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeKey {
    /// Fragmentation growth avoided minus `strand` times the growth of
    /// stranded GPU milli (milli-GPU; larger is better).
    pub score: f64,
    /// The node already hosts pods.
    pub in_use: bool,
    /// GPU milli the node would have idle after the pod takes what it asks.
    pub idle_after: u32,
    /// For a shared pod, milli left on the chosen GPU before it lands
    /// (best fit: less is better); 0 for other pods.
    pub fit_left: u16,
    /// The GPUs the pod takes on this node.
    pub gpus: GpuMask,
}

/// Idle GPU milli at which [`NodeKey::value`]'s less-idle bonus bottoms
/// out: 8 GPUs, the largest node the bench's clusters have.
const TIDY_IDLE: u32 = 8 * MILLI as u32;

impl NodeKey {
    /// Whether `self` ranks above `other`: a score more than `cfg.eps`
    /// higher, else a node in use, else less idle GPU left, else the
    /// tighter GPU for a share. Neither ranks above the other when all
    /// tie; callers keep the first (lowest index).
    pub fn better_than(&self, other: &NodeKey, cfg: &RailyardConfig) -> bool {
        if (self.score - other.score).abs() > cfg.eps {
            return self.score > other.score;
        }
        if cfg.prefer_in_use && self.in_use != other.in_use {
            return self.in_use;
        }
        if cfg.prefer_less_idle && self.idle_after != other.idle_after {
            return self.idle_after < other.idle_after;
        }
        self.fit_left < other.fit_left
    }

    /// The key as one number (larger is better) for callers that rank nodes
    /// by value, as kube-scheduler does with extender scores. The tie-breaks
    /// become small bonuses, together under `0.8 · eps`, so a score
    /// difference beyond `eps` still dominates: up to `0.4 · eps` for a node
    /// in use, up to `0.4 · eps` for little idle GPU left (linear up to 8
    /// idle GPUs, the same beyond), and at most 0.001 for best fit. Inside `eps` it can
    /// rank differently from [`NodeKey::better_than`]; replayed as the
    /// policy's order it measured the same on the time-sliced traces and
    /// 0.04-0.2 points worse on the MIG ones, so the policy keeps
    /// `better_than`.
    pub fn value(&self, cfg: &RailyardConfig) -> f64 {
        let in_use = if cfg.prefer_in_use && self.in_use {
            0.4 * cfg.eps
        } else {
            0.0
        };
        let tidy = if cfg.prefer_less_idle {
            -0.4 * cfg.eps * self.idle_after.min(TIDY_IDLE) as f64 / TIDY_IDLE as f64
        } else {
            0.0
        };
        self.score + in_use + tidy - 1e-6 * self.fit_left as f64
    }
}

impl Railyard {
    /// Node fragmentation under the policy's task mix (the `frag_before`
    /// [`Railyard::node_key`] wants).
    pub fn node_frag(&self, node: &Node) -> f64 {
        self.tasks_for(node.model).node_frag(node)
    }

    /// Idle GPU milli on `node` that its CPU and memory cannot feed at the
    /// policy's rates.
    pub fn stranded(&self, node: &Node) -> f64 {
        stranded(node, self.cpu_per_gpu, self.mem_per_gpu)
    }

    /// Railyard's key for placing `pod` on `node`, whose fragmentation now
    /// is `frag_before` ([`Railyard::node_frag`], passed in so callers can
    /// cache it); `None` when the pod does not fit. Candidates: for a
    /// shared pod each fitting GPU, one per distinct GPU state; otherwise
    /// the node's default GPUs (all free GPUs are alike to the model). The
    /// best candidate is the one with the highest score, then the tightest
    /// GPU, then the lowest index.
    pub fn node_key(&self, node: &Node, frag_before: f64, pod: &PodRequest) -> Option<NodeKey> {
        if !node.fits(pod) {
            return None;
        }
        let w = self.cfg.strand;
        // Empty nodes count too: using a natively CPU-poor node (e.g. 8
        // cores per GPU) with a CPU-light pod is rewarded, which is where
        // most of the gain comes from.
        let strand_before = if w != 0.0 { self.stranded(node) } else { 0.0 };
        let in_use = node.pods > 0;
        let idle_after = node.gpu_idle_milli().saturating_sub(pod.total_gpu_milli() as u32);
        let mut best: Option<NodeKey> = None;
        for_each_option(self.tasks_for(node.model), node, pod, |gpus, next, after| {
            let strand = if w != 0.0 {
                w * (self.stranded(next) - strand_before)
            } else {
                0.0
            };
            let key = NodeKey {
                score: frag_before - after - strand,
                in_use,
                idle_after,
                fit_left: if pod.is_share() {
                    node.gpu_left[gpus.trailing_zeros() as usize]
                } else {
                    0
                },
                gpus,
            };
            // Inside one node only the score and the fit differ.
            if best.is_none_or(|b| (key.score, -i32::from(key.fit_left)) > (b.score, -i32::from(b.fit_left))) {
                best = Some(key);
            }
        });
        best
    }

    /// [`Railyard::node_key`] with the constrained-demand cost of the node's
    /// model under `pressure` taken off the score.
    pub fn node_key_with(
        &self,
        node: &Node,
        frag_before: f64,
        pod: &PodRequest,
        pressure: &Pressure,
    ) -> Option<NodeKey> {
        let mut key = self.node_key(node, frag_before, pod)?;
        key.score -= self.demand_cost(node.model, pod, pressure);
        Some(key)
    }
}

impl Policy for Railyard {
    fn name(&self) -> &'static str {
        "railyard"
    }

    fn place(&mut self, cluster: &Cluster, pod: &PodRequest) -> Option<Placement> {
        let pressure = if self.constrained {
            self.set_classes(ClassMilli::capacity(&cluster.nodes));
            self.pressure(&ClassMilli::idle(&cluster.nodes))
        } else {
            Pressure::NONE
        };
        let mut best: Option<(NodeKey, u32)> = None;
        for (i, node) in cluster.nodes.iter().enumerate() {
            if !node.fits(pod) {
                continue;
            }
            let (mix, tasks, on) = (&self.mix, &self.tasks, self.cfg.class_mix);
            let before = self
                .cache
                .get(cluster, i, |n| class_tasks(mix, tasks, on, n.model).node_frag(n));
            let Some(key) = self.node_key_with(node, before, pod, &pressure) else {
                continue;
            };
            if best.as_ref().is_none_or(|(b, _)| key.better_than(b, &self.cfg)) {
                best = Some((key, i as u32));
            }
        }
        best.map(|(k, node)| Placement { node, gpus: k.gpus })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn fills_a_partly_used_gpu_exactly() {
        let mut c = cluster(&[(64_000, 2), (64_000, 2), (64_000, 2)]);
        put(&mut c, 1, PodRequest::gpus(0, 0, 1, 500));
        let t = tasks(&[PodRequest::gpus(0, 0, 1, 500), PodRequest::gpus(0, 0, 1, 1000)]);
        let mut p = Railyard::new(t);
        let pod = PodRequest::gpus(0, 0, 1, 500);
        assert_eq!(p.place(&c, &pod), Some(Placement { node: 1, gpus: 0b01 }));
    }

    #[test]
    fn keeps_empty_nodes_for_multi_gpu_pods() {
        // Whole-GPU pod, equal growth everywhere: it goes to the node in use.
        let mut c = cluster(&[(64_000, 4), (64_000, 4)]);
        put(&mut c, 1, PodRequest::gpus(0, 0, 1, 1000));
        let t = tasks(&[PodRequest::gpus(0, 0, 1, 1000)]);
        let mut p = Railyard::new(t);
        let pod = PodRequest::gpus(0, 0, 1, 1000);
        assert_eq!(p.place(&c, &pod).map(|p| p.node), Some(1));
    }

    #[test]
    fn keeps_an_empty_8_gpu_node_free_for_a_fractional_pod() {
        // Node 0: empty 8-GPU node. Node 1: 2 GPUs, one taken. Half the mix
        // wants 8 GPUs: the 0.3 pod goes to node 1's free GPU.
        let mut c = cluster(&[(128_000, 8), (64_000, 2)]);
        put(&mut c, 1, PodRequest::gpus(1000, 0, 1, 1000));
        let t = tasks(&[PodRequest::gpus(1000, 0, 8, 1000), PodRequest::gpus(1000, 0, 1, 300)]);
        let mut p = Railyard::new(t);
        let pod = PodRequest::gpus(1000, 0, 1, 300);
        assert_eq!(p.place(&c, &pod), Some(Placement { node: 1, gpus: 0b10 }));
        // An 8-GPU pod still finds the whole node.
        let big = PodRequest::gpus(1000, 0, 8, 1000);
        assert_eq!(p.place(&c, &big), Some(Placement { node: 0, gpus: 0xff }));
    }

    #[test]
    fn stranded_counts_gpus_the_cpu_cannot_feed() {
        let mut c = cluster(&[(8000, 4)]);
        // 4 idle GPUs, 8 cores, 4 cores per GPU: 2 GPUs can be fed.
        assert_eq!(stranded(&c.nodes[0], 4000.0, 1.0), 2000.0);
        assert_eq!(stranded(&c.nodes[0], 2000.0, 1.0), 0.0);
        put(&mut c, 0, PodRequest::gpus(2000, 0, 1, 500));
        // 3500 idle milli, 6 cores: 1.5 GPUs fed.
        assert_eq!(stranded(&c.nodes[0], 4000.0, 1.0), 2000.0);
        let t = tasks(&[PodRequest::gpus(3000, 0, 1, 1000), PodRequest::gpus(1000, 0, 1, 500)]);
        // (0.5·3000 + 0.5·1000) cores over (0.5·1 + 0.5·0.5) GPUs.
        let (cpu, _) = rates_per_gpu(&t);
        assert!((cpu - 2000.0 / 0.75).abs() < 1e-9);
    }

    #[test]
    fn cpu_heavy_pod_avoids_stranding_gpus() {
        // Two nodes in use with 2 idle GPUs each; node 0 has 64 cores, node 1
        // 100. The mix wants 2 cores per GPU, which fits everywhere either
        // way, so fragmentation is equal. A 61-core CPU-only pod would leave
        // node 0 with 2 cores for 2 GPUs (one stranded): it goes to node 1.
        let mut c = cluster(&[(64_000, 4), (100_000, 2)]);
        put(&mut c, 0, PodRequest::gpus(1000, 0, 2, 1000));
        put(&mut c, 1, PodRequest::cpu_only(1000, 0));
        let t = tasks(&[PodRequest::gpus(2000, 0, 1, 1000)]);
        let pod = PodRequest::cpu_only(61_000, 0);
        let mut plain = Railyard::with_config(
            t.clone(),
            RailyardConfig {
                strand: 0.0,
                ..RailyardConfig::DEFAULT
            },
        );
        assert_eq!(plain.place(&c, &pod).map(|p| p.node), Some(0));
        let mut p = Railyard::new(t);
        assert_eq!(p.place(&c, &pod).map(|p| p.node), Some(1));
    }

    fn put_on(c: &mut Cluster, node: u32, gpus: GpuMask, milli: u16) {
        c.apply(&PodRequest::gpus(0, 0, 1, milli), Placement { node, gpus })
            .expect("fits");
    }

    #[test]
    fn node_key_takes_the_tightest_gpu_among_equal_scores() {
        // A CPU-only mix makes every GPU choice score the same (all idle GPU
        // is a fragment either way): the 300 pod goes to the GPU with the
        // least left that fits, 400, not the first one.
        let mut c = cluster(&[(64_000, 3)]);
        put_on(&mut c, 0, 0b001, 600);
        put_on(&mut c, 0, 0b010, 300);
        assert_eq!(c.nodes[0].gpus(), &[400, 700, 1000]);
        let p = Railyard::new(tasks(&[PodRequest::cpu_only(1000, 0)]));
        let node = &c.nodes[0];
        let pod = PodRequest::gpus(0, 0, 1, 300);
        let key = p.node_key(node, p.node_frag(node), &pod).expect("fits");
        assert_eq!(
            (key.gpus, key.fit_left, key.idle_after, key.in_use),
            (0b001, 400, 1800, true)
        );
        assert_eq!(
            p.node_key(node, 0.0, &PodRequest::gpus(0, 0, 1, 1000)).map(|k| k.gpus),
            Some(0b100)
        );
        assert_eq!(p.node_key(node, 0.0, &PodRequest::gpus(0, 0, 2, 1000)), None);
    }

    #[test]
    fn ties_between_nodes_go_to_the_tighter_gpu() {
        // Identical scores (CPU-only mix), both nodes in use with 1300 idle
        // GPU milli: the 450 pod goes to node 1, whose GPU has 500 left,
        // not to node 0's only fitting GPU, with 900.
        let mut c = cluster(&[(64_000, 2), (64_000, 2)]);
        put_on(&mut c, 0, 0b01, 100);
        put_on(&mut c, 0, 0b10, 600);
        put_on(&mut c, 1, 0b01, 500);
        put_on(&mut c, 1, 0b10, 200);
        assert_eq!(
            (c.nodes[0].gpus(), c.nodes[1].gpus()),
            (&[900, 400][..], &[500, 800][..])
        );
        let mut p = Railyard::new(tasks(&[PodRequest::cpu_only(1000, 0)]));
        let pod = PodRequest::gpus(0, 0, 1, 450);
        assert_eq!(p.place(&c, &pod), Some(Placement { node: 1, gpus: 0b01 }));
    }

    #[test]
    fn value_ranks_like_better_than() {
        let cfg = RailyardConfig::DEFAULT;
        let key = |score, in_use, idle_after, fit_left| NodeKey {
            score,
            in_use,
            idle_after,
            fit_left,
            gpus: 1,
        };
        // (better, worse): score beyond eps; in use; less idle; tighter GPU.
        for (a, b) in [
            (key(200.0, false, 8000, 1000), key(100.0, true, 0, 0)),
            (key(100.0, true, 4000, 0), key(110.0, false, 4000, 0)),
            (key(100.0, false, 1000, 0), key(105.0, false, 7000, 0)),
            (key(100.0, true, 1000, 300), key(100.0, true, 1000, 700)),
        ] {
            assert!(a.better_than(&b, &cfg) && !b.better_than(&a, &cfg), "{a:?} vs {b:?}");
            assert!(a.value(&cfg) > b.value(&cfg), "{a:?} vs {b:?}");
        }
        let a = key(100.0, true, 1000, 300);
        assert!(!a.better_than(&a, &cfg));
    }

    #[test]
    fn deterministic() {
        let mut c = cluster(&[(64_000, 8), (32_000, 4), (16_000, 2)]);
        put(&mut c, 1, PodRequest::gpus(4000, 0, 1, 470));
        let t = tasks(&[PodRequest::gpus(4000, 0, 1, 470), PodRequest::gpus(8000, 0, 1, 1000)]);
        let pod = PodRequest::gpus(4000, 0, 1, 470);
        let a = Railyard::new(t.clone()).place(&c, &pod);
        assert_eq!(a, Railyard::new(t).place(&c, &pod));
        assert!(a.is_some());
    }
}
