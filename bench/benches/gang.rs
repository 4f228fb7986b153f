//! Cost of planning one gang with `railyard_core::gang`: a 512-GPU gang
//! (64 × 8) on a 1,024-node rail-optimized DGX H100 cluster (32 scalable
//! units of 32 nodes, 8 rails, spines per unit, a 2:1 core), on an empty
//! cluster and on one where a third of the nodes are partly used.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use railyard_core::fabric::Fabric;
use railyard_core::gang::{FreeState, Gang, GangCluster};
use railyard_core::machine::MachineProfile;
use railyard_core::topology::NodeTopology;

fn cluster_yaml(units: u32) -> String {
    let mut y = String::from(
        "name: dgx-h100-1024\ntiers:\n  - {name: leaf, link_gbps: 400}\n  - {name: spine, link_gbps: 400}\n  - {name: core, link_gbps: 400, oversubscription: 2}\ngroups:\n",
    );
    for u in 0..units {
        y += &format!(
            "  - {{pattern: \"su{u}-{{i:02}}\", count: 32, machine: dgx-h100, rails: 8, switches: [\"su{u}-rail{{rail}}\", \"su{u}-spine\", core]}}\n"
        );
    }
    y
}

fn plans(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/machines/dgx-h100.yaml");
    let Ok(text) = std::fs::read_to_string(dir) else { return };
    let Ok(profile) = MachineProfile::from_yaml(&text) else {
        return;
    };
    let Ok(topo) = NodeTopology::from_profile(&profile) else {
        return;
    };
    let machines: BTreeMap<String, NodeTopology> = [(profile.name.clone(), topo)].into_iter().collect();
    let Ok(fabric) = Fabric::from_yaml(&cluster_yaml(32)) else {
        return;
    };
    let Ok(cluster) = GangCluster::new(&fabric, &machines) else {
        return;
    };
    assert_eq!(cluster.len(), 1024);
    let empty = FreeState::all_free(&cluster);
    // Every third node loses a deterministic 1..=7 of its GPUs.
    let mut busy = empty.clone();
    for n in (0..cluster.len()).step_by(3) {
        let take = 1 + (n * 7919) % 7;
        let gpus: Vec<u32> = busy.free_gpus(&cluster, n).into_iter().take(take).collect();
        let _ = busy.take(&cluster, n, &gpus);
    }
    let gang = Gang::new(64, 8);
    let mut g = c.benchmark_group("gang_plan_1024_nodes");
    g.bench_function("512_gpus_empty", |b| {
        b.iter(|| black_box(cluster.plan(black_box(&gang), &empty)))
    });
    g.bench_function("512_gpus_fragmented", |b| {
        b.iter(|| black_box(cluster.plan(black_box(&gang), &busy)))
    });
    let small = Gang::new(1, 8);
    g.bench_function("8_gpus_fragmented", |b| {
        b.iter(|| black_box(cluster.plan(black_box(&small), &busy)))
    });
    g.finish();
}

criterion_group!(benches, plans);
criterion_main!(benches);
