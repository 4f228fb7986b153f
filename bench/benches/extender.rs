//! The extender's in-process path: parsing an extender v1 request and
//! answering filter + prioritize over 1,000 / 5,000 nodes in nodeCacheCapable
//! mode (no HTTP, no client). `railyard-bench load` measures over HTTP.

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

criterion_group!(benches, filter_prioritize);
criterion_main!(benches);
