//! Runs every (trace, policy, seed) job on a pool of threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use railyard_core::packing::fragmentation::DistOptions;
use railyard_core::packing::policies::{Railyard, RailyardConfig};
use railyard_core::packing::{Cluster, NodeSpec, PodRequest, Policy, PolicyKind, TaskDistribution};

use crate::replay::{replay, sample};
use crate::report::Run;

/// A workload to replay: its pods and the cluster they land on.
#[derive(Debug, Clone)]
pub struct Trace {
    pub label: String,
    pub pods: Vec<PodRequest>,
    pub cluster: Cluster,
}

/// Builds the cluster; with `mig_model`, nodes of that model with 8 GPUs are
/// partitioned with MIG (the trace's `G2` nodes stand in for A100-80GB).
pub fn build_cluster(nodes: &[NodeSpec], mig_model: Option<railyard_core::packing::ModelId>) -> Cluster {
    let mut c = Cluster::new(nodes);
    if let Some(m) = mig_model {
        for n in &mut c.nodes {
            if n.model == Some(m) && n.gpu_count == 8 {
                n.enable_mig();
            }
        }
    }
    c
}

#[derive(Debug, Clone)]
pub struct Options {
    pub policies: Vec<PolicyKind>,
    pub seeds: Vec<u64>,
    pub tune: f64,
    pub threads: usize,
    /// Share of pods (by count) that make up the typical task distribution.
    pub popularity: f64,
    /// Baselines break score ties at random instead of by node order.
    pub random_ties: bool,
    /// Railyard's knobs (`--railyard-*` flags; defaults are the tuned values).
    pub railyard: RailyardConfig,
}

fn build_policy(
    kind: PolicyKind,
    seed: u64,
    paper: &Arc<TaskDistribution>,
    ry: &Arc<TaskDistribution>,
    opts: &Options,
) -> Box<dyn Policy> {
    match kind {
        PolicyKind::Railyard => Box::new(Railyard::with_config(ry.clone(), opts.railyard)),
        _ => kind.build_with(seed, paper.clone(), opts.random_ties),
    }
}

/// Replays everything; `progress(pods)` is called from worker threads.
pub fn run_all(traces: &[Trace], opts: &Options, progress: &(dyn Fn(u64) + Sync)) -> Vec<Run> {
    struct Job {
        trace: usize,
        seed_ix: usize,
        policy: PolicyKind,
    }
    let paper = DistOptions {
        popularity: opts.popularity,
        ..DistOptions::PAPER
    };
    let tasks: Vec<Arc<TaskDistribution>> = traces
        .iter()
        .map(|t| Arc::new(TaskDistribution::with_options(&t.pods, paper)))
        .collect();
    let ry_dist = Railyard::DIST;
    let ry_tasks: Vec<Arc<TaskDistribution>> = traces
        .iter()
        .map(|t| Arc::new(TaskDistribution::with_options(&t.pods, ry_dist)))
        .collect();
    let samples: Vec<Vec<Vec<PodRequest>>> = traces
        .iter()
        .map(|t| {
            opts.seeds
                .iter()
                .map(|&s| sample(&t.pods, t.cluster.gpu_capacity_milli, opts.tune, s))
                .collect()
        })
        .collect();
    let mut jobs = Vec::new();
    for (ti, _) in traces.iter().enumerate() {
        for &policy in &opts.policies {
            for si in 0..opts.seeds.len() {
                jobs.push(Job {
                    trace: ti,
                    seed_ix: si,
                    policy,
                });
            }
        }
    }
    // Slow policies first so the pool drains evenly.
    jobs.sort_by_key(|j| std::cmp::Reverse(matches!(j.policy, PolicyKind::Fgd | PolicyKind::Railyard) as u8));
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<(usize, Run)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..opts.threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let t = &traces[job.trace];
                    let seed = opts.seeds[job.seed_ix];
                    // Tie-breaks draw from a stream apart from the sampler's.
                    let mut policy = build_policy(
                        job.policy,
                        seed ^ 0x5EED_F7A1,
                        &tasks[job.trace],
                        &ry_tasks[job.trace],
                        opts,
                    );
                    let result = replay(
                        &t.cluster,
                        &samples[job.trace][job.seed_ix],
                        policy.as_mut(),
                        &tasks[job.trace],
                        130,
                        progress,
                    );
                    let run = Run {
                        trace: t.label.clone(),
                        policy: job.policy.name(),
                        seed,
                        result,
                    };
                    if let Ok(mut o) = out.lock() {
                        o.push((i, run));
                    }
                }
            });
        }
    });
    let mut runs = out.into_inner().unwrap_or_default();
    // Report in trace, policy, seed order whatever order threads finished in.
    runs.sort_by_key(|(_, r)| {
        let ti = traces.iter().position(|t| t.label == r.trace).unwrap_or(0);
        let pi = opts.policies.iter().position(|p| p.name() == r.policy).unwrap_or(0);
        (ti, pi, r.seed)
    });
    runs.into_iter().map(|(_, r)| r).collect()
}

/// Total pods that will be replayed, for the progress bar.
pub fn total_pods(traces: &[Trace], opts: &Options) -> u64 {
    traces
        .iter()
        .map(|t| {
            opts.seeds
                .iter()
                .map(|&s| sample(&t.pods, t.cluster.gpu_capacity_milli, opts.tune, s).len() as u64)
                .sum::<u64>()
        })
        .sum::<u64>()
        * opts.policies.len() as u64
}
