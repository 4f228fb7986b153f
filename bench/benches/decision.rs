//! Cost of one placement decision on the 1,213-node openb cluster, half
//! full, for each policy; then FGD and Railyard on the same trace with a
//! fifth of the GPU pods constrained to GPU models (`--gpu-spec-share 0.2`).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use railyard_bench::replay::sample;
use railyard_bench::trace::{parse_nodes, parse_pods};
use railyard_bench::variants::{SpecOptions, constrain};
use railyard_core::packing::{Cluster, PodRequest, PolicyKind, TaskDistribution};

/// The cluster and the default pod list, with `spec_share` of its GPU pods
/// constrained to GPU models (spec seed 1).
fn load(spec_share: f64) -> Option<(Cluster, Vec<PodRequest>)> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let nodes = std::fs::read_to_string(data.join("openb_node_list_gpu_node.csv")).ok()?;
    let pods = std::fs::read_to_string(data.join("openb_pod_list_default.csv")).ok()?;
    let (nodes, models) = parse_nodes(&nodes).ok()?;
    let mut pods = parse_pods(&pods).ok()?;
    constrain(&mut pods, &nodes, &models, &SpecOptions::new(spec_share, 1));
    let pods: Vec<_> = pods.iter().map(|p| p.request(&models)).collect();
    Some((Cluster::new(&nodes), pods))
}

/// The cluster filled to about 60% of GPU capacity by best-fit (so nodes
/// are mixed) and the next 64 pods of the workload as probes.
fn filled(empty: &Cluster, pods: &[PodRequest]) -> (Cluster, Vec<PodRequest>) {
    let tasks = Arc::new(TaskDistribution::from_requests(pods, 0.95, true));
    let workload = sample(pods, empty.gpu_capacity_milli, 1.3, 42);
    // Fill to about 60% of GPU capacity (best-fit) so nodes are mixed.
    let mut cluster = empty.clone();
    let mut filler = PolicyKind::BestFit.build(1, tasks.clone());
    let mut arrived = 0;
    let mut rest = workload.iter();
    for pod in rest.by_ref() {
        if let Some(p) = filler.place(&cluster, pod) {
            let _ = cluster.apply(pod, p);
        }
        arrived += pod.total_gpu_milli();
        if arrived * 10 >= cluster.gpu_capacity_milli * 6 {
            break;
        }
    }
    (cluster, rest.take(64).copied().collect())
}

fn decisions(c: &mut Criterion) {
    group(c, "decision_1213_nodes", 0.0, &PolicyKind::ALL);
    group(
        c,
        "decision_1213_nodes_spec20",
        0.2,
        &[PolicyKind::Fgd, PolicyKind::Railyard],
    );
}

/// One decision per iteration on the filled cluster, for each policy, with
/// `spec_share` of the GPU pods model-constrained.
fn group(c: &mut Criterion, name: &str, spec_share: f64, kinds: &[PolicyKind]) {
    let Some((empty, pods)) = load(spec_share) else { return };
    let (cluster, probe) = filled(&empty, &pods);
    let mut group = c.benchmark_group(name);
    for kind in kinds {
        let dist = Arc::new(TaskDistribution::with_options(&pods, kind.dist_options()));
        let mut policy = kind.build(7, dist);
        let mut i = 0;
        group.bench_function(kind.name(), |b| {
            b.iter(|| {
                i = (i + 1) % probe.len();
                black_box(policy.place(black_box(&cluster), &probe[i]))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
