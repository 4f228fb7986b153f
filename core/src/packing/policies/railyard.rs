//! Railyard's placement policy.
//!
//! Starts from FGD's idea — place where the expected fragmentation under
//! the workload's task mix grows least — and changes what the measured
//! replays showed to matter:
//! - the task mix keeps every shape (FGD cuts at 95% of pods, which drops
//!   all 2/4/8-GPU shapes) and carries memory, so a node out of memory
//!   counts its idle GPUs as fragments;
//! - growth is exact, not a truncated sigmoid; differences under `eps`
//!   milli-GPU count as ties;
//! - ties go to nodes already in use, then to the node left with the least
//!   idle GPU, then to the lowest index: whole GPUs and whole nodes stay
//!   free for multi-GPU pods.

use std::sync::Arc;

use super::Policy;
use super::fgd::{FragCache, for_each_option};
use crate::packing::fragmentation::{DistOptions, TaskDistribution};
use crate::packing::state::{Cluster, Placement, PodRequest};

#[derive(Debug)]
pub struct Railyard {
    tasks: Arc<TaskDistribution>,
    cache: FragCache,
    cfg: RailyardConfig,
}

/// Tuning knobs; [`RailyardConfig::DEFAULT`] is what the bench measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RailyardConfig {
    /// Growth differences below this (milli-GPU) count as ties.
    pub eps: f64,
    pub prefer_in_use: bool,
    pub prefer_less_idle: bool,
    /// Weight of best-fit tightness (idle GPU milli plus CPU in GPU
    /// equivalents left on the node) against fragmentation growth.
    pub lambda: f64,
}

impl RailyardConfig {
    pub const DEFAULT: RailyardConfig = RailyardConfig {
        eps: 50.0,
        prefer_in_use: true,
        prefer_less_idle: true,
        lambda: 0.0,
    };
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
        Railyard {
            tasks,
            cache: FragCache::default(),
            cfg,
        }
    }
}

/// Lexicographic key, larger is better.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
struct Key {
    growth: f64,
    in_use: bool,
    idle_after: i64,
}

fn better(cfg: &RailyardConfig, a: &Key, b: &Key) -> bool {
    if (a.growth - b.growth).abs() > cfg.eps {
        return a.growth > b.growth;
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
        for (i, node) in cluster.nodes.iter().enumerate() {
            if !node.fits(pod) {
                continue;
            }
            let before = self.cache.get(&self.tasks, cluster, i);
            let idle = node.gpu_idle_milli() as i64;
            for_each_option(&self.tasks, node, pod, |gpus, after| {
                let cpu_after = (node.cpu_left - pod.cpu_milli) as f64 / 16.0;
                let tight = (idle - pod.total_gpu_milli() as i64) as f64 + cpu_after;
                let key = Key {
                    growth: before - after - self.cfg.lambda * tight,
                    in_use: node.pods > 0,
                    idle_after: -(idle - pod.total_gpu_milli() as i64),
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
}
