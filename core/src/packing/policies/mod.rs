//! Placement policies: each picks a node and GPUs for one pod, or none.
//!
//! Baselines follow their published descriptions as the FGD simulator
//! implements them, including its integer node scores; ties go to the first
//! node in list order (optionally at random), which is what reproduces the
//! paper's numbers.

use std::sync::Arc;

use super::fragmentation::{DistOptions, TaskDistribution};
use super::rng::SplitMix64;
use super::state::{Cluster, GpuMask, Node, Placement, PodRequest};

mod bestfit;
mod clustering;
#[cfg(test)]
mod constrained_tests;
mod dotprod;
mod fgd;
mod kube_default;
mod packing;
mod railyard;
mod random;

pub use bestfit::BestFit;
pub use clustering::GpuClustering;
pub use dotprod::DotProd;
pub use fgd::Fgd;
pub use kube_default::KubeDefault;
pub use packing::GpuPacking;
pub use railyard::{NodeKey, Railyard, RailyardConfig, rates_per_gpu, stranded};
pub use random::RandomFit;

/// Chooses where a pod goes. Policies may keep caches keyed by
/// [`Cluster::versions`]; they never change the cluster themselves.
pub trait Policy: Send {
    fn name(&self) -> &'static str;
    fn place(&mut self, cluster: &Cluster, pod: &PodRequest) -> Option<Placement>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    Random,
    DotProd,
    GpuClustering,
    GpuPacking,
    BestFit,
    KubeDefault,
    Fgd,
    Railyard,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 8] = [
        PolicyKind::Random,
        PolicyKind::DotProd,
        PolicyKind::GpuClustering,
        PolicyKind::GpuPacking,
        PolicyKind::BestFit,
        PolicyKind::KubeDefault,
        PolicyKind::Fgd,
        PolicyKind::Railyard,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Random => "random",
            PolicyKind::DotProd => "dotprod",
            PolicyKind::GpuClustering => "clustering",
            PolicyKind::GpuPacking => "packing",
            PolicyKind::BestFit => "bestfit",
            PolicyKind::KubeDefault => "kube-default",
            PolicyKind::Fgd => "fgd",
            PolicyKind::Railyard => "railyard",
        }
    }

    pub fn from_name(name: &str) -> Option<PolicyKind> {
        let n = name.trim().to_ascii_lowercase();
        PolicyKind::ALL
            .into_iter()
            .find(|k| k.name() == n)
            .or(match n.as_str() {
                "gpuclustering" => Some(PolicyKind::GpuClustering),
                "gpupacking" => Some(PolicyKind::GpuPacking),
                "kube" | "kubedefault" | "default" => Some(PolicyKind::KubeDefault),
                _ => None,
            })
    }

    /// How this policy's task distribution is built.
    pub fn dist_options(self) -> DistOptions {
        match self {
            PolicyKind::Railyard => Railyard::DIST,
            _ => DistOptions::PAPER,
        }
    }

    /// Builds the policy. `seed` drives random choices and tie-breaks;
    /// `tasks` is the workload's typical task distribution (FGD, Railyard).
    pub fn build(self, seed: u64, tasks: Arc<TaskDistribution>) -> Box<dyn Policy> {
        self.build_with(seed, tasks, false)
    }

    /// With `random_ties`, score-based baselines break ties uniformly at
    /// random (kube-scheduler's behaviour) instead of taking the first node.
    /// Railyard's own tie-breaks are deterministic either way.
    pub fn build_with(self, seed: u64, tasks: Arc<TaskDistribution>, random_ties: bool) -> Box<dyn Policy> {
        let r = random_ties;
        match self {
            PolicyKind::Random => Box::new(RandomFit::new(seed)),
            PolicyKind::DotProd => {
                let mut p = DotProd::new(seed);
                p.random_ties = r;
                Box::new(p)
            }
            PolicyKind::GpuClustering => {
                let mut p = GpuClustering::new(seed);
                p.random_ties = r;
                Box::new(p)
            }
            PolicyKind::GpuPacking => {
                let mut p = GpuPacking::new(seed);
                p.random_ties = r;
                Box::new(p)
            }
            PolicyKind::BestFit => {
                let mut p = BestFit::new(seed);
                p.random_ties = r;
                Box::new(p)
            }
            PolicyKind::KubeDefault => {
                let mut p = KubeDefault::new(seed);
                p.random_ties = r;
                Box::new(p)
            }
            PolicyKind::Fgd => {
                let mut p = Fgd::new(seed, tasks);
                p.random_ties = r;
                Box::new(p)
            }
            PolicyKind::Railyard => Box::new(Railyard::new(tasks)),
        }
    }
}

/// Keeps the highest score seen; ties go to the first node offered, or,
/// with `random_ties`, uniformly at random by reservoir sampling as
/// kube-scheduler's `selectHost` does.
#[derive(Debug)]
pub(crate) struct RandomArgMax {
    best: Option<(i64, Placement)>,
    ties: u64,
    random_ties: bool,
}

impl RandomArgMax {
    pub(crate) fn new(random_ties: bool) -> Self {
        RandomArgMax {
            best: None,
            ties: 0,
            random_ties,
        }
    }

    pub(crate) fn offer(&mut self, rng: &mut SplitMix64, score: i64, p: Placement) {
        match self.best {
            Some((b, _)) if score < b => {}
            // Ties keep the first node in list order. The FGD simulator's
            // published numbers are only reproduced this way (random ties
            // cost DotProd, Packing, Clustering and FGD 1-5 points; see
            // bench/README.md).
            Some((b, _)) if score == b => {
                if self.random_ties {
                    self.ties += 1;
                    if rng.below(self.ties) == 0 {
                        self.best = Some((score, p));
                    }
                }
            }
            _ => {
                self.best = Some((score, p));
                self.ties = 1;
            }
        }
    }

    pub(crate) fn get(&self) -> Option<Placement> {
        self.best.map(|(_, p)| p)
    }
}

/// Nodes that can host the pod, with the default GPU choice on each.
pub(crate) fn feasible<'a>(
    cluster: &'a Cluster,
    pod: &'a PodRequest,
) -> impl Iterator<Item = (usize, &'a Node, GpuMask)> + 'a {
    cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.fits(pod))
        .filter_map(|(i, n)| n.default_gpus(pod).map(|g| (i, n, g)))
}

/// Kube-scheduler's score normalization: min–max to 0..=100 in integers
/// (all equal → 0).
pub(crate) fn normalize(scores: &mut [(i64, Placement)]) {
    let hi = scores.iter().map(|s| s.0).max().unwrap_or(0);
    let lo = scores.iter().map(|s| s.0).min().unwrap_or(0);
    for s in scores.iter_mut() {
        s.0 = if hi == lo { 0 } else { (s.0 - lo) * 100 / (hi - lo) };
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use crate::packing::state::{ModelId, NodeSpec};

    pub fn cluster(nodes: &[(u32, u8)]) -> Cluster {
        let specs: Vec<NodeSpec> = nodes
            .iter()
            .enumerate()
            .map(|(i, &(cpu, gpus))| NodeSpec {
                name: format!("n{i}"),
                cpu_milli: cpu,
                memory_mib: 1 << 20,
                gpus,
                model: Some(ModelId(0)),
            })
            .collect();
        Cluster::new(&specs)
    }

    pub fn put(c: &mut Cluster, node: u32, pod: PodRequest) {
        let gpus = c.nodes[node as usize].default_gpus(&pod).expect("fits");
        c.apply(&pod, Placement { node, gpus }).expect("fits");
    }

    pub fn tasks(pods: &[PodRequest]) -> Arc<TaskDistribution> {
        Arc::new(TaskDistribution::from_requests(pods, 1.0, true))
    }

    /// Runs `policy` `n` times on clones of `c` and returns the nodes chosen.
    pub fn choices(policy: &mut dyn Policy, c: &Cluster, pod: &PodRequest, n: usize) -> Vec<u32> {
        (0..n).filter_map(|_| policy.place(c, pod)).map(|p| p.node).collect()
    }
}
