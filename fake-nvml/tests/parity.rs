#![allow(clippy::unwrap_used)]
//! NvmlBackend over the fake libnvidia-ml against SimBackend, for every
//! machine profile: identical inventories, MIG create/destroy at every legal
//! placement, identical failures for illegal ones, processes and memory.

mod common;

use common::{pair, profile_path, profile_paths, rt};
use railyard_core::mig::{MigInstance, Placement};
use railyard_gpu::{GpuBackend, GpuError, GpuProcess, MigMode, Op};

#[test]
fn inventories_are_identical_for_every_profile() {
    rt().block_on(async {
        for path in profile_paths() {
            let p = pair(&path);
            let (n, s) = (p.nvml.inventory().await.unwrap(), p.sim.inventory().await.unwrap());
            assert_eq!(n, s, "{}", path.display());
            assert!(!n.nics.is_empty(), "{}: NICs read from the fake sysfs", path.display());
        }
    });
}

/// Every (kind, placement) candidate of a GPU's family, legal or not.
fn candidates(family: railyard_core::mig::MigFamily) -> Vec<MigInstance> {
    let mut out = Vec::new();
    for prof in family.profiles() {
        let size = prof.spec().memory_slices;
        for start in 0..8u8 {
            out.push(MigInstance {
                kind: prof.kind,
                placement: Placement { start, size },
            });
        }
    }
    out
}

#[test]
fn mig_round_trips_and_failures_match() {
    rt().block_on(async {
        for (name, gpu) in [("dgx-h100-mig", 7), ("dgx-a100", 0)] {
            let p = pair(&profile_path(name));
            // dgx-a100 GPU 0 starts with MIG off: creating fails the same way, then enable.
            let family = p.sim.inventory().await.unwrap().gpus[gpu as usize]
                .mig
                .as_ref()
                .unwrap()
                .family;
            let first = candidates(family)[0];
            let created = p.nvml.create_mig_instance(gpu, first).await;
            assert_eq!(created, p.sim.create_mig_instance(gpu, first).await, "{name}");
            if let Ok(i) = created {
                p.nvml.destroy_mig_instance(gpu, i.gpu_instance_id).await.unwrap();
                p.sim.destroy_mig_instance(gpu, i.gpu_instance_id).await.unwrap();
            }
            assert_eq!(
                p.nvml.set_mig_mode(gpu, true).await,
                p.sim.set_mig_mode(gpu, true).await
            );
            for prof in family.profiles() {
                assert_eq!(
                    p.nvml.possible_placements(gpu, prof.kind).await.unwrap(),
                    p.sim.possible_placements(gpu, prof.kind).await.unwrap()
                );
            }
            // Alone on an empty GPU: every legal placement round-trips, every
            // illegal one fails identically.
            for inst in candidates(family) {
                let (n, s) = (
                    p.nvml.create_mig_instance(gpu, inst).await,
                    p.sim.create_mig_instance(gpu, inst).await,
                );
                assert_eq!(n, s, "{name} {inst:?}");
                let legal = inst.kind.spec().placements.contains(&inst.placement);
                assert_eq!(n.is_ok(), legal, "{name} {inst:?}: {n:?}");
                if !legal {
                    assert_eq!(
                        n,
                        Err(GpuError::InvalidArgument {
                            op: Op::CreateGpuInstance
                        })
                    );
                }
                assert_eq!(p.nvml.mig_instances(gpu).await, p.sim.mig_instances(gpu).await);
                if let Ok(info) = n {
                    let id = info.gpu_instance_id;
                    assert_eq!(
                        p.nvml.destroy_mig_instance(gpu, id).await,
                        p.sim.destroy_mig_instance(gpu, id).await
                    );
                    assert_eq!(p.nvml.mig_instances(gpu).await.unwrap(), vec![]);
                }
            }
            // Greedily, every candidate in turn: overlaps, counts and compute
            // limits fail the same way on both, and the layouts stay equal.
            for inst in candidates(family) {
                assert_eq!(
                    p.nvml.create_mig_instance(gpu, inst).await,
                    p.sim.create_mig_instance(gpu, inst).await,
                    "{name} {inst:?}"
                );
            }
            let layout = p.sim.mig_instances(gpu).await.unwrap();
            assert!(layout.len() > 1);
            assert_eq!(p.nvml.inventory().await.unwrap(), p.sim.inventory().await.unwrap());
            // Disabling with instances present, and destroying twice.
            assert_eq!(
                p.nvml.set_mig_mode(gpu, false).await,
                p.sim.set_mig_mode(gpu, false).await
            );
            for i in &layout {
                for _ in 0..2 {
                    assert_eq!(
                        p.nvml.destroy_mig_instance(gpu, i.gpu_instance_id).await,
                        p.sim.destroy_mig_instance(gpu, i.gpu_instance_id).await
                    );
                }
            }
            assert_eq!(
                p.nvml.set_mig_mode(gpu, false).await,
                p.sim.set_mig_mode(gpu, false).await
            );
            assert_eq!(p.nvml.inventory().await.unwrap(), p.sim.inventory().await.unwrap());
        }
    });
}

#[test]
fn non_mig_gpus_fail_the_same_way() {
    rt().block_on(async {
        let p = pair(&profile_path("t4-2x"));
        let inst = MigInstance {
            kind: railyard_core::mig::ProfileKind::G7,
            placement: Placement { start: 0, size: 8 },
        };
        assert_eq!(
            p.nvml.create_mig_instance(0, inst).await,
            p.sim.create_mig_instance(0, inst).await
        );
        assert_eq!(p.nvml.set_mig_mode(0, true).await, p.sim.set_mig_mode(0, true).await);
        assert_eq!(p.nvml.mig_instances(1).await, p.sim.mig_instances(1).await);
        assert_eq!(
            p.nvml.destroy_mig_instance(1, 0).await,
            p.sim.destroy_mig_instance(1, 0).await
        );
        assert_eq!(
            p.nvml.set_mig_mode(0, true).await,
            Err(GpuError::NotSupported { op: Op::SetMigMode })
        );
    });
}

#[test]
fn processes_memory_and_busy_instances_match() {
    rt().block_on(async {
        let p = pair(&profile_path("dgx-h100-mig"));
        // A whole GPU and a MIG instance (GPU 6 holds one 7g.80gb: GI 0, CI 0).
        p.fake.control("process 0 4242 2048").unwrap();
        p.fake.control("memory 0 512").unwrap();
        p.fake.control("process 6 777 30000 gi=0 ci=0").unwrap();
        let procs = [
            GpuProcess {
                pid: 4242,
                gpu: 0,
                used_memory_mib: Some(2048),
                gpu_instance_id: None,
                compute_instance_id: None,
            },
            GpuProcess {
                pid: 777,
                gpu: 6,
                used_memory_mib: Some(30000),
                gpu_instance_id: Some(0),
                compute_instance_id: Some(0),
            },
        ];
        for pr in &procs {
            p.sim.add_process(pr.clone()).unwrap();
        }
        p.sim.set_base_memory(0, 512);
        for gpu in [0, 6, 7] {
            assert_eq!(p.nvml.processes(gpu).await, p.sim.processes(gpu).await, "GPU {gpu}");
            assert_eq!(p.nvml.memory(gpu).await, p.sim.memory(gpu).await, "GPU {gpu}");
        }
        assert_eq!(p.nvml.processes(6).await.unwrap(), vec![procs[1].clone()]);
        assert_eq!(p.nvml.memory(0).await.unwrap().used_mib, 2560);
        // A busy instance cannot be destroyed; a busy GPU's MIG mode stays pending.
        assert_eq!(
            p.nvml.destroy_mig_instance(6, 0).await,
            Err(GpuError::InUse {
                op: Op::DestroyComputeInstance
            })
        );
        assert_eq!(
            p.sim.destroy_mig_instance(6, 0).await,
            p.nvml.destroy_mig_instance(6, 0).await
        );
        assert_eq!(
            p.nvml.set_mig_mode(0, true).await,
            Err(GpuError::InUse { op: Op::SetMigMode })
        );
        assert_eq!(
            p.sim.set_mig_mode(0, true).await,
            Err(GpuError::InUse { op: Op::SetMigMode })
        );
        let inv = p.nvml.inventory().await.unwrap();
        assert_eq!(
            inv.gpus[0].mig.as_ref().unwrap().mode,
            MigMode {
                current: false,
                pending: true
            }
        );
        assert_eq!(inv, p.sim.inventory().await.unwrap());
        p.fake.control("kill 4242").unwrap();
        p.fake.control("kill 777").unwrap();
        p.sim.remove_process(4242);
        p.sim.remove_process(777);
        assert_eq!(p.nvml.set_mig_mode(0, true).await, p.sim.set_mig_mode(0, true).await);
        assert_eq!(p.nvml.destroy_mig_instance(6, 0).await, Ok(()));
        assert_eq!(p.sim.destroy_mig_instance(6, 0).await, Ok(()));
        assert_eq!(p.nvml.inventory().await.unwrap(), p.sim.inventory().await.unwrap());
    });
}
