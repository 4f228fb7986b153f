//! The FGD paper's replay method: sample pods with replacement until their
//! GPU request reaches a multiple of cluster capacity, shuffle, let them
//! arrive one at a time (never leaving), and record the GPU allocation
//! ratio against the arrived GPU request in 1% steps.

use std::time::{Duration, Instant};

use railyard_core::packing::{
    Cluster, ModelId, ModelMask, Placement, PodRequest, Policy, SplitMix64, TaskDistribution,
};

/// Pods drawn for one seed.
pub fn sample(pods: &[PodRequest], capacity_milli: u64, ratio: f64, seed: u64) -> Vec<PodRequest> {
    let target = (capacity_milli as f64 * ratio).ceil() as u64;
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    let mut total = 0u64;
    // Pods without GPU never move `total`; without any GPU pod, stop.
    if pods.iter().all(|p| p.total_gpu_milli() == 0) {
        return out;
    }
    while total < target {
        let p = pods[rng.below(pods.len() as u64) as usize];
        total += p.total_gpu_milli();
        out.push(p);
    }
    rng.shuffle(&mut out);
    out
}

/// One policy on one sampled workload.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Allocation ratio (%) when the arrived GPU request first reached
    /// `i`% of capacity, for `i` in `0..=max_step`.
    pub alloc: Vec<f64>,
    /// Fragmentation ratio (% of idle GPU) at the same points.
    pub frag: Vec<f64>,
    pub decisions: u64,
    pub decide_time: Duration,
    pub placed: u64,
    pub failed: u64,
    /// Per GPU model at arrived = 100%.
    pub models: Vec<ModelStat>,
    /// Per constraint (`gpu_spec`, `ModelMask::ANY` = none) over the pods
    /// that arrived until arrived = 100%.
    pub specs: Vec<SpecStat>,
}

/// One GPU model's capacity and use at arrived = 100% (milli-GPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelStat {
    pub model: Option<ModelId>,
    pub capacity: u64,
    pub allocated: u64,
    /// Allocated to pods without a model constraint.
    pub unconstrained: u64,
}

/// Pods of one constraint until arrived = 100% (GPU pods only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecStat {
    pub spec: ModelMask,
    pub pods: u64,
    pub milli: u64,
    pub failed_pods: u64,
    pub failed_milli: u64,
}

impl RunResult {
    fn at(curve: &[f64], pct: usize) -> f64 {
        curve.get(pct).or(curve.last()).copied().unwrap_or(0.0)
    }

    pub fn unallocated_at(&self, pct: usize) -> f64 {
        100.0 - Self::at(&self.alloc, pct)
    }

    pub fn alloc_at(&self, pct: usize) -> f64 {
        Self::at(&self.alloc, pct)
    }

    pub fn frag_at(&self, pct: usize) -> f64 {
        Self::at(&self.frag, pct)
    }
}

fn frag_ratio(tasks: &TaskDistribution, cluster: &Cluster) -> f64 {
    let (frag, idle) = tasks.cluster_frag(&cluster.nodes);
    if idle > 0.0 { 100.0 * frag / idle } else { 0.0 }
}

/// Replays `pods` in order; `progress` is called with the number of pods
/// handled since the last call.
pub fn replay(
    start: &Cluster,
    pods: &[PodRequest],
    policy: &mut dyn Policy,
    tasks: &TaskDistribution,
    max_step: usize,
    mut progress: impl FnMut(u64),
) -> RunResult {
    let mut cluster = start.clone();
    let cap = cluster.gpu_capacity_milli.max(1);
    let mut r = RunResult {
        alloc: Vec::with_capacity(max_step + 1),
        frag: Vec::with_capacity(max_step + 1),
        decisions: 0,
        decide_time: Duration::ZERO,
        placed: 0,
        failed: 0,
        models: Vec::new(),
        specs: Vec::new(),
    };
    let mut by_model: Vec<ModelStat> = Vec::new();
    for n in &cluster.nodes {
        if n.gpu_count == 0 {
            continue;
        }
        let cap = n.gpu_count as u64 * railyard_core::packing::MILLI as u64;
        match by_model.iter_mut().find(|m| m.model == n.model) {
            Some(m) => m.capacity += cap,
            None => by_model.push(ModelStat {
                model: n.model,
                capacity: cap,
                allocated: 0,
                unconstrained: 0,
            }),
        }
    }
    by_model.sort_by_key(|m| m.model);
    let mut arrived = 0u64;
    let mut since = 0u64;
    let record = |cluster: &Cluster, arrived: u64, r: &mut RunResult| {
        while r.alloc.len() <= max_step && arrived * 100 >= r.alloc.len() as u64 * cap {
            r.alloc.push(100.0 * cluster.allocation_ratio());
            r.frag.push(frag_ratio(tasks, cluster));
        }
    };
    record(&cluster, arrived, &mut r);
    for pod in pods {
        let t0 = Instant::now();
        let choice: Option<Placement> = policy.place(&cluster, pod);
        r.decide_time += t0.elapsed();
        r.decisions += 1;
        let ok = match choice.map(|p| (p, cluster.apply(pod, p))) {
            Some((p, Ok(()))) => {
                r.placed += 1;
                if pod.wants_gpu() && pod.gpu_spec == ModelMask::ANY {
                    let model = cluster.nodes[p.node as usize].model;
                    if let Some(m) = by_model.iter_mut().find(|m| m.model == model) {
                        m.unconstrained += pod.total_gpu_milli();
                    }
                }
                true
            }
            // A policy proposing an infeasible placement counts as a failure.
            _ => {
                r.failed += 1;
                false
            }
        };
        if pod.wants_gpu() && r.alloc.len() <= 100 {
            let i = match r.specs.iter().position(|s| s.spec == pod.gpu_spec) {
                Some(i) => i,
                None => {
                    r.specs.push(SpecStat {
                        spec: pod.gpu_spec,
                        pods: 0,
                        milli: 0,
                        failed_pods: 0,
                        failed_milli: 0,
                    });
                    r.specs.len() - 1
                }
            };
            let s = &mut r.specs[i];
            s.pods += 1;
            s.milli += pod.total_gpu_milli();
            if !ok {
                s.failed_pods += 1;
                s.failed_milli += pod.total_gpu_milli();
            }
        }
        arrived += pod.total_gpu_milli();
        let before = r.alloc.len();
        record(&cluster, arrived, &mut r);
        if before <= 100 && r.alloc.len() > 100 {
            r.models = snapshot(&cluster, &by_model);
        }
        since += 1;
        if since == 256 {
            progress(since);
            since = 0;
        }
        if r.alloc.len() > max_step {
            break;
        }
    }
    progress(since);
    if r.models.is_empty() {
        r.models = snapshot(&cluster, &by_model);
    }
    r.specs.sort_by_key(|s| s.spec);
    // Workloads that end early keep their last value.
    while r.alloc.len() <= max_step {
        r.alloc.push(100.0 * cluster.allocation_ratio());
        r.frag.push(frag_ratio(tasks, &cluster));
    }
    r
}

/// Per-model allocation now, with the unconstrained counts kept so far.
fn snapshot(cluster: &Cluster, by_model: &[ModelStat]) -> Vec<ModelStat> {
    let mut out = by_model.to_vec();
    for n in &cluster.nodes {
        if let Some(m) = out.iter_mut().find(|m| m.model == n.model && n.gpu_count > 0) {
            m.allocated += n.gpu_count as u64 * railyard_core::packing::MILLI as u64 - n.gpu_idle_milli() as u64;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use railyard_core::packing::{ModelId, NodeSpec, PolicyKind};
    use std::sync::Arc;

    fn cluster() -> Cluster {
        let spec = |gpus| NodeSpec {
            name: "n".into(),
            cpu_milli: 64_000,
            memory_mib: 1 << 20,
            gpus,
            model: Some(ModelId(0)),
        };
        Cluster::new(&[spec(2), spec(2)])
    }

    #[test]
    fn sampling_reaches_the_target_and_is_seeded() {
        let pods = [
            PodRequest::gpus(1000, 1, 1, 500),
            PodRequest::cpu_only(1000, 1),
            PodRequest::gpus(1, 1, 2, 1000),
        ];
        let a = sample(&pods, 4000, 1.3, 42);
        let total: u64 = a.iter().map(|p| p.total_gpu_milli()).sum();
        assert!((5200..7200).contains(&total));
        assert_eq!(a, sample(&pods, 4000, 1.3, 42));
        assert_ne!(a, sample(&pods, 4000, 1.3, 43));
        assert!(sample(&[PodRequest::cpu_only(1, 1)], 4000, 1.3, 1).is_empty());
    }

    /// The first node that fits, first free GPUs.
    struct FirstFit;

    impl Policy for FirstFit {
        fn name(&self) -> &'static str {
            "first-fit"
        }
        fn place(&mut self, c: &Cluster, pod: &PodRequest) -> Option<Placement> {
            c.nodes.iter().enumerate().find_map(|(i, n)| {
                n.fits(pod).then(|| Placement {
                    node: i as u32,
                    gpus: n.default_gpus(pod).unwrap_or(0),
                })
            })
        }
    }

    #[test]
    fn stats_by_model_and_constraint() {
        // Two 2-GPU nodes of model 0, one of model 1. Five unconstrained
        // 1-GPU pods fill in node order (the fifth on model 1), then two
        // that need model 1: the first fits and makes arrived = 100%; the
        // second fails after that point and is not counted.
        let spec = |model| NodeSpec {
            name: "n".into(),
            cpu_milli: 64_000,
            memory_mib: 1 << 20,
            gpus: 2,
            model: Some(ModelId(model)),
        };
        let c = Cluster::new(&[spec(0), spec(0), spec(1)]);
        let any = PodRequest::gpus(1000, 1, 1, 1000);
        let only1 = PodRequest {
            gpu_spec: ModelMask(0b10),
            ..any
        };
        let pods = [any, any, any, any, any, only1, only1];
        let tasks = TaskDistribution::from_requests(&pods, 1.0, true);
        let r = replay(&c, &pods, &mut FirstFit, &tasks, 130, |_| {});
        assert_eq!((r.placed, r.failed), (6, 1));
        let m = |id| *r.models.iter().find(|m| m.model == Some(ModelId(id))).unwrap();
        assert_eq!(
            m(0),
            ModelStat {
                model: Some(ModelId(0)),
                capacity: 4000,
                allocated: 4000,
                unconstrained: 4000
            }
        );
        assert_eq!((m(1).allocated, m(1).unconstrained), (2000, 1000));
        let stat = |spec| *r.specs.iter().find(|s| s.spec == spec).unwrap();
        assert_eq!((stat(ModelMask::ANY).pods, stat(ModelMask::ANY).milli), (5, 5000));
        assert_eq!((stat(ModelMask(0b10)).pods, stat(ModelMask(0b10)).failed_pods), (1, 0));
    }

    #[test]
    fn curve_follows_arrivals() {
        // Four 1-GPU pods fill the cluster; the fifth fails.
        let pods = vec![PodRequest::gpus(1000, 1, 1, 1000); 5];
        let c = cluster();
        let tasks = Arc::new(TaskDistribution::from_requests(&pods, 1.0, true));
        let mut policy = PolicyKind::BestFit.build(1, tasks.clone());
        let r = replay(&c, &pods, policy.as_mut(), &tasks, 130, |_| {});
        assert_eq!(r.alloc.len(), 131);
        assert_eq!(r.alloc[0], 0.0);
        assert_eq!(r.alloc[25], 25.0);
        assert_eq!(r.alloc[100], 100.0);
        assert_eq!(r.alloc[125], 100.0);
        assert_eq!(r.unallocated_at(100), 0.0);
        assert_eq!((r.placed, r.failed), (4, 1));
    }
}
