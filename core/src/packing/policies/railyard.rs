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
//!   idle GPU, then to the lowest index: whole GPUs and whole nodes stay
//!   free for multi-GPU pods.
//!
//! One pass over the nodes; per node, one scratch placement per distinct
//! candidate GPU. Deterministic.

use std::sync::Arc;

use super::Policy;
use super::fgd::{FragCache, for_each_option};
use crate::packing::fragmentation::{DistOptions, TaskDistribution};
use crate::packing::state::{Cluster, MILLI, Node, Placement, PodRequest};

#[derive(Debug)]
pub struct Railyard {
    tasks: Arc<TaskDistribution>,
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
}

impl RailyardConfig {
    pub const DEFAULT: RailyardConfig = RailyardConfig {
        eps: 50.0,
        strand: 2.0,
        rate_scale: 1.0,
        prefer_in_use: true,
        prefer_less_idle: true,
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

    pub fn with_config(tasks: Arc<TaskDistribution>, cfg: RailyardConfig) -> Self {
        let (cpu, mem) = rates_per_gpu(&tasks);
        Railyard {
            tasks,
            cache: FragCache::default(),
            cfg,
            cpu_per_gpu: cpu * cfg.rate_scale,
            mem_per_gpu: mem * cfg.rate_scale,
        }
    }

    pub fn config(&self) -> &RailyardConfig {
        &self.cfg
    }
}

/// Lexicographic key, larger is better.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
struct Key {
    score: f64,
    in_use: bool,
    idle_after: i64,
}

fn better(cfg: &RailyardConfig, a: &Key, b: &Key) -> bool {
    if (a.score - b.score).abs() > cfg.eps {
        return a.score > b.score;
    }
    if cfg.prefer_in_use && a.in_use != b.in_use {
        return a.in_use;
    }
    cfg.prefer_less_idle && a.idle_after > b.idle_after
}

impl Policy for Railyard {
    fn name(&self) -> &'static str {
        "railyard"
    }

    fn place(&mut self, cluster: &Cluster, pod: &PodRequest) -> Option<Placement> {
        let mut best: Option<(Key, Placement)> = None;
        let (cpg, mpg, w) = (self.cpu_per_gpu, self.mem_per_gpu, self.cfg.strand);
        for (i, node) in cluster.nodes.iter().enumerate() {
            if !node.fits(pod) {
                continue;
            }
            let before = self.cache.get(&self.tasks, cluster, i);
            let idle_after = node.gpu_idle_milli() as i64 - pod.total_gpu_milli() as i64;
            // Empty nodes count too: using a natively CPU-poor node (e.g. 8
            // cores per GPU) with a CPU-light pod is rewarded, which is where
            // most of the gain comes from.
            let strand_before = if w != 0.0 { stranded(node, cpg, mpg) } else { 0.0 };
            for_each_option(&self.tasks, node, pod, |gpus, after| {
                let strand = if w != 0.0 {
                    let mut next = *node;
                    match next.apply(pod, gpus) {
                        Ok(()) => w * (stranded(&next, cpg, mpg) - strand_before),
                        Err(_) => return,
                    }
                } else {
                    0.0
                };
                let key = Key {
                    score: before - after - strand,
                    in_use: node.pods > 0,
                    idle_after: -idle_after,
                };
                if best.as_ref().is_none_or(|(b, _)| better(&self.cfg, &key, b)) {
                    best = Some((key, Placement { node: i as u32, gpus }));
                }
            });
        }
        best.map(|(_, p)| p)
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
