//! Claims allocated per second on one node with 8 H100s and every MIG
//! placement published, and one claim evaluated across a 5,000-node view
//! (as kube-scheduler's DRA plugin filters every node).
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use railyard_core::machine::MachineProfile;
use railyard_dra::alloc::{Allocator, Outcome, Taken};
use railyard_dra::cel::SelectorCache;
use railyard_dra::claim::{ClaimSpec, DeviceClass};
use railyard_dra::config::DraConfig;

fn profile(name: &str) -> MachineProfile {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../configs/machines/{name}.yaml"));
    MachineProfile::from_yaml(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn claim(expr: &str, class: &str) -> ClaimSpec {
    let yaml = format!(
        "devices:\n  requests:\n  - name: r\n    exactly:\n      deviceClassName: {class}\n      selectors:\n      - cel: {{expression: {expr:?}}}\n"
    );
    let spec: k8s_openapi::api::resource::v1::ResourceClaimSpec = serde_saphyr::from_str(&yaml).unwrap();
    ClaimSpec::from_api("spec", &spec).unwrap()
}

fn classes() -> BTreeMap<String, DeviceClass> {
    railyard_dra::classes::shipped("gpu.nvidia.com")
        .iter()
        .map(|c| {
            let c = DeviceClass::from_api(c).unwrap();
            (c.name.clone(), c)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let p = profile("dgx-h100");
    let pool = railyard_dra::inventory::build_pool(&p, &DraConfig::default(), "node-0").unwrap();
    let classes = classes();
    let cache = SelectorCache::default();
    let mig = claim(
        "device.attributes['gpu.nvidia.com'].profile == '1g.10gb'",
        "mig.nvidia.com",
    );
    let pools = [pool.clone()];
    let alloc = Allocator::new(&pools, &classes, &cache);
    c.bench_function("allocate one 1g.10gb claim, 8x H100 with every MIG placement", |b| {
        b.iter(|| match alloc.allocate(&mig, &Taken::default()).unwrap() {
            Outcome::Allocated(a) => a,
            other => panic!("{other:?}"),
        })
    });
    let topo = railyard_dra::inventory::pool_topology(&p).unwrap();
    let plain = [railyard_dra::inventory::build_pool(&p, &DraConfig::default(), "node-0").unwrap()];
    let four = Allocator::new(&plain, &classes, &cache).with_topology("node-0", &topo);
    let gpus4: k8s_openapi::api::resource::v1::ResourceClaimSpec = serde_saphyr::from_str(
        "devices:\n  requests:\n  - name: r\n    exactly:\n      deviceClassName: gpu.nvidia.com\n      count: 4\n",
    )
    .unwrap();
    let gpus4 = ClaimSpec::from_api("spec", &gpus4).unwrap();
    c.bench_function("allocate one 4-GPU claim ranked by topology, 8x H100", |b| {
        b.iter(|| match four.allocate(&gpus4, &Taken::default()).unwrap() {
            Outcome::Allocated(a) => a,
            other => panic!("{other:?}"),
        })
    });
    let whole = claim(
        "device.attributes['gpu.nvidia.com'].productName == 'NVIDIA H100 80GB HBM3'",
        "gpu.nvidia.com",
    );
    let mut group = c.benchmark_group("cluster");
    group.sample_size(10);
    // 5,000 nodes, one pool each; the claim is checked on every node as the
    // scheduler's filter would, each node with its own (empty) state.
    let nodes: Vec<_> = (0..5000)
        .map(|i| {
            let mut p = pool.clone();
            p.name = format!("node-{i}");
            p.node_name = p.name.clone();
            [p]
        })
        .collect();
    let fits = |a: &Allocator<'_>| matches!(a.allocate(&whole, &Taken::default()), Ok(Outcome::Allocated(_)));
    // Cold: a fresh allocator per node, so every device's CEL view and the
    // counter index are built for this claim.
    group.bench_function("one whole-GPU claim filtered across 5,000 nodes, cold", |b| {
        b.iter(|| {
            nodes
                .iter()
                .filter(|n| fits(&Allocator::new(&n[..], &classes, &cache)))
                .count()
        })
    });
    // Warm: one allocator per node kept across claims, as a scheduler keeps
    // its node view between cycles.
    let allocators: Vec<_> = nodes.iter().map(|n| Allocator::new(&n[..], &classes, &cache)).collect();
    allocators.iter().for_each(|a| {
        fits(a);
    });
    group.bench_function("one whole-GPU claim filtered across 5,000 nodes, warm", |b| {
        b.iter(|| allocators.iter().filter(|a| fits(a)).count())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
