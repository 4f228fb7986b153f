//! The FGD paper's replay method: sample pods with replacement until their
//! GPU request reaches a multiple of cluster capacity, shuffle, let them
//! arrive one at a time (never leaving), and record the GPU allocation
//! ratio against the arrived GPU request in 1% steps.

use std::time::{Duration, Instant};

use railyard_core::packing::{Cluster, Placement, PodRequest, Policy, SplitMix64, TaskDistribution};

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
    };
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
        match choice.map(|p| cluster.apply(pod, p)) {
            Some(Ok(())) => r.placed += 1,
            // A policy proposing an infeasible placement counts as a failure.
            _ => r.failed += 1,
        }
        arrived += pod.total_gpu_milli();
        record(&cluster, arrived, &mut r);
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
    // Workloads that end early keep their last value.
    while r.alloc.len() <= max_step {
        r.alloc.push(100.0 * cluster.allocation_ratio());
        r.frag.push(frag_ratio(tasks, &cluster));
    }
    r
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
