//! Planning a full 8-GPU MIG change on every MIG-capable model (issue 14:
//! "far below a millisecond"). Three changes per model, on all 8 GPUs:
//!
//! - `1g-to-balanced`: seven 1g each, nothing busy, to `all-balanced`
//!   (2 x 1g + 2g + 3g, counts only, as a mig-parted config gives them);
//! - `balanced-to-me-mix`: `all-balanced` with the 3g busy, to 1g+me plus six
//!   1g (the target with the most placements to choose from; blocked, so the
//!   closest-layout search runs too);
//! - `1g-to-7g-blocked`: seven 1g with one busy, to one 7g (blocked).
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use railyard_core::catalog::MODELS;
use railyard_core::mig::{
    GpuGoal, GpuMigState, InstanceRef, MigFamily, MigInstance, MigTarget, ProfileKind, WantedInstance, plan,
};

const GPUS: u32 = 8;

fn inst(kind: ProfileKind, start: u8) -> MigInstance {
    MigInstance::at(kind, start)
}

fn all(family: MigFamily, layout: &[MigInstance]) -> Vec<GpuMigState> {
    (0..GPUS)
        .map(|g| GpuMigState::new(g, Some(family), true, layout.to_vec()))
        .collect()
}

fn target(family: MigFamily, kinds: &[ProfileKind]) -> MigTarget {
    let goal = GpuGoal::Enabled(
        kinds
            .iter()
            .map(|&k| WantedInstance::anywhere(family.profile(k).name))
            .collect(),
    );
    (0..GPUS).fold(MigTarget::default(), |t, g| t.with(g, goal.clone()))
}

fn busy_on_every_gpu(instance: MigInstance) -> Vec<InstanceRef> {
    (0..GPUS).map(|gpu| InstanceRef { gpu, instance }).collect()
}

fn bench(c: &mut Criterion) {
    use ProfileKind::*;
    let seven_1g: Vec<MigInstance> = (0..7).map(|s| inst(G1, s)).collect();
    let balanced = [inst(G2, 0), inst(G1, 2), inst(G1, 3), inst(G3, 4)];
    for model in MODELS.iter().filter(|m| m.is_mig_capable()) {
        let family = model.mig.unwrap();
        let cases = [
            (
                "1g-to-balanced",
                all(family, &seven_1g),
                vec![],
                target(family, &[G1, G1, G2, G3]),
            ),
            (
                "balanced-to-me-mix",
                all(family, &balanced),
                busy_on_every_gpu(inst(G3, 4)),
                target(family, &[G1Me, G1, G1, G1, G1, G1, G1]),
            ),
            (
                "1g-to-7g-blocked",
                all(family, &seven_1g),
                busy_on_every_gpu(inst(G1, 3)),
                target(family, &[G7]),
            ),
        ];
        for (name, current, busy, target) in &cases {
            // The plan must be sound before it is timed.
            let p = plan(current, busy, target).unwrap();
            assert_eq!(p.gpus.len(), GPUS as usize);
            c.bench_function(&format!("mig_plan/{}/{name}", model.name), |b| {
                b.iter(|| plan(black_box(current), black_box(busy), black_box(target)).unwrap())
            });
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
