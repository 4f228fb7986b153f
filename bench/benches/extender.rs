//! The extender's in-process path: parsing an extender v1 request and
//! answering filter + prioritize over 1,000 / 5,000 nodes in nodeCacheCapable
//! mode (no HTTP, no client), and 64 filters with the score memo warm and
//! cold. `railyard-bench load` measures over HTTP.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use railyard_bench::load::{build_state, pod_mix};
use railyard_scheduler::wire::{ExtenderArgs, host_priorities_json};

fn filter_prioritize(c: &mut Criterion) {
    let mut g = c.benchmark_group("extender_filter_prioritize");
    g.sample_size(30);
    for n in [1000usize, 5000] {
        let state = build_state(n, 1);
        let names: Vec<String> = (0..n).map(railyard_bench::load::fixture::node_name).collect();
        let bodies: Vec<Vec<u8>> = pod_mix(1, 16)
            .iter()
            .map(|p| {
                serde_json::to_vec(&serde_json::json!({"Pod": p, "Nodes": null, "NodeNames": names})).expect("json")
            })
            .collect();
        let mut i = 0;
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                let body = &bodies[i % bodies.len()];
                i += 1;
                let args: ExtenderArgs = serde_json::from_slice(body).expect("args");
                let pod = args.pod.clone();
                let f = state.filter(args).expect("filter");
                let out = f.to_json().expect("encode");
                let passed = f.passed.iter().map(|&i| f.names[i].clone()).collect();
                let p = state
                    .prioritize(ExtenderArgs {
                        pod,
                        nodes: None,
                        node_names: Some(passed),
                    })
                    .expect("prioritize");
                let scores = host_priorities_json(p.iter().map(|(n, s)| (n.as_str(), *s)));
                (out.len(), scores.len())
            })
        });
    }
    g.finish();
}

/// Filters for 64 pod shapes at 5,000 nodes with the score memo warm, and on
/// a fresh thread (the memo is per thread, so it starts cold there, as it does
/// for every thread after the packing mix is rebuilt).
fn cold_memo(c: &mut Criterion) {
    let mut g = c.benchmark_group("extender_64_filters");
    g.sample_size(10);
    let n = 5000;
    let state = std::sync::Arc::new(build_state(n, 1));
    let names: Vec<String> = (0..n).map(railyard_bench::load::fixture::node_name).collect();
    let bodies: std::sync::Arc<Vec<Vec<u8>>> = std::sync::Arc::new(
        pod_mix(1, 64)
            .iter()
            .map(|p| {
                serde_json::to_vec(&serde_json::json!({"Pod": p, "Nodes": null, "NodeNames": names})).expect("json")
            })
            .collect(),
    );
    let run = |state: &railyard_scheduler::AppState, bodies: &[Vec<u8>]| {
        for body in bodies {
            let args: ExtenderArgs = serde_json::from_slice(body).expect("args");
            let f = state.filter(args).expect("filter");
            std::hint::black_box(f.to_json().expect("encode"));
        }
    };
    g.bench_function("warm", |b| b.iter(|| run(&state, &bodies)));
    g.bench_function("cold", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                let (state, bodies) = (state.clone(), bodies.clone());
                total += std::thread::spawn(move || {
                    let t = std::time::Instant::now();
                    run(&state, &bodies);
                    t.elapsed()
                })
                .join()
                .expect("bench thread");
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, filter_prioritize, cold_memo);
criterion_main!(benches);
