#![allow(clippy::unwrap_used)] // test helpers: a failed setup should panic
//! SimBackend against the machine profiles: inventory matches the resource
//! model, MIG rules match the hardware's, failures and health events inject.

use std::collections::BTreeMap;
use std::path::PathBuf;

use railyard_core::machine::MachineProfile;
use railyard_core::mig::{MigInstance, MigLayout, Placement, ProfileKind};
use railyard_core::resources;
use railyard_gpu::{
    GpuBackend, GpuError, GpuHealth, GpuProcess, HealthEventKind, InjectedFailure, MigMode, Op, SimBackend,
    UnhealthyReason,
};

fn profiles() -> Vec<(String, MachineProfile)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/machines");
    let mut out: Vec<(String, MachineProfile)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.display().to_string(), MachineProfile::from_yaml(&text).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 5, "{out:?}");
    out
}

fn profile(name: &str) -> MachineProfile {
    profiles()
        .into_iter()
        .find(|(p, _)| p.ends_with(&format!("/{name}.yaml")))
        .unwrap()
        .1
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn inventory_matches_the_resource_model_for_every_profile() {
    rt().block_on(async {
        for (name, p) in profiles() {
            let sim = SimBackend::new(p.clone());
            let inv = sim.inventory().await.unwrap();
            assert_eq!(
                inv.gpu_inventory(),
                resources::inventory(&p, &BTreeMap::new()),
                "{name}"
            );
            assert_eq!(inv.gpus.len(), p.gpus.len());
            assert_eq!(inv.nics.len(), p.nics.len());
            for g in &inv.gpus {
                assert!(g.model.is_some(), "{name}: {} not in the catalog", g.product_name);
                assert!(!g.cpu_affinity.is_empty());
            }
            let n = p.gpus.len();
            assert_eq!(inv.pcie_levels.len(), n * (n - 1) / 2, "{name}");
        }
    });
}

#[test]
fn nvlink_and_levels_from_the_profile() {
    rt().block_on(async {
        let inv = SimBackend::new(profile("dgx-h100")).inventory().await.unwrap();
        assert!(
            inv.gpus
                .iter()
                .all(|g| g.nvlink.nvswitch_links == 18 && g.nvlink.peer_links.is_empty())
        );
        let inv = SimBackend::new(profile("a100-pcie-4x")).inventory().await.unwrap();
        assert_eq!(inv.gpus[0].nvlink.peer_links, BTreeMap::from([(1, 12)]));
        assert_eq!(inv.gpus[3].nvlink.peer_links, BTreeMap::from([(2, 12)]));
        let inv = SimBackend::new(profile("t4-2x")).inventory().await.unwrap();
        assert_eq!(inv.gpus[0].nvlink.active_links(), 0);
        assert!(inv.gpus[0].mig.is_none());
    });
}

#[test]
fn mig_round_trip_at_every_legal_placement() {
    rt().block_on(async {
        let sim = SimBackend::new(profile("dgx-h100-mig"));
        let gpu = 7; // MIG on, no instances
        for family_profile in railyard_core::mig::MigFamily::H100_80gb.profiles() {
            let kind = family_profile.kind;
            let placements = sim.possible_placements(gpu, kind).await.unwrap();
            assert_eq!(placements, kind.spec().placements);
            for &placement in kind.spec().placements {
                let inst = MigInstance { kind, placement };
                let info = sim.create_mig_instance(gpu, inst).await.unwrap();
                assert_eq!(
                    (info.kind, info.placement, info.compute_instance_id),
                    (kind, placement, Some(0))
                );
                let expected_uuid = resources::mig_devices(
                    &profile("dgx-h100-mig").gpus[7].uuid,
                    &MigLayout::new(railyard_core::mig::MigFamily::H100_80gb, vec![inst]),
                )[0]
                .uuid
                .clone();
                assert_eq!(info.uuid.as_deref(), Some(expected_uuid.as_str()));
                assert_eq!(sim.mig_instances(gpu).await.unwrap(), vec![info.clone()]);
                sim.destroy_mig_instance(gpu, info.gpu_instance_id).await.unwrap();
                assert!(sim.mig_instances(gpu).await.unwrap().is_empty());
            }
        }
    });
}

#[test]
fn illegal_mig_operations_fail_like_the_hardware() {
    rt().block_on(async {
        let sim = SimBackend::new(profile("dgx-h100-mig"));
        let at = |kind, start, size| MigInstance {
            kind,
            placement: Placement { start, size },
        };
        // 3g at 2: not a legal start.
        assert_eq!(
            sim.create_mig_instance(7, at(ProfileKind::G3, 2, 4)).await,
            Err(GpuError::InvalidArgument {
                op: Op::CreateGpuInstance
            })
        );
        // GPU 5 holds 2g@0, 1g@2, 1g@3, 3g@4: everything overlaps.
        assert_eq!(
            sim.create_mig_instance(5, at(ProfileKind::G1, 0, 1)).await,
            Err(GpuError::InsufficientResources {
                op: Op::CreateGpuInstance
            })
        );
        // MIG off on GPU 0; T4 has no MIG at all.
        assert_eq!(
            sim.create_mig_instance(0, at(ProfileKind::G7, 0, 8)).await,
            Err(GpuError::NotSupported {
                op: Op::CreateGpuInstance
            })
        );
        // Destroying an unknown instance; and a busy one.
        assert_eq!(
            sim.destroy_mig_instance(7, 3).await,
            Err(GpuError::NotFound {
                op: Op::DestroyGpuInstance
            })
        );
        let busy = sim.mig_instances(6).await.unwrap()[0].clone();
        sim.add_process(GpuProcess {
            pid: 42,
            gpu: 6,
            used_memory_mib: Some(1000),
            gpu_instance_id: Some(busy.gpu_instance_id),
            compute_instance_id: busy.compute_instance_id,
        })
        .unwrap();
        assert_eq!(
            sim.destroy_mig_instance(6, busy.gpu_instance_id).await,
            Err(GpuError::InUse {
                op: Op::DestroyComputeInstance
            })
        );
        assert_eq!(sim.processes(6).await.unwrap().len(), 1);
        assert_eq!(sim.memory(6).await.unwrap().used_mib, 1000);
        // Disabling MIG with instances present.
        assert_eq!(
            sim.set_mig_mode(6, false).await,
            Err(GpuError::InUse { op: Op::SetMigMode })
        );
    });
}

#[test]
fn mig_mode_change_with_clients_stays_pending() {
    rt().block_on(async {
        let sim = SimBackend::new(profile("dgx-h100"));
        sim.add_process(GpuProcess {
            pid: 7,
            gpu: 0,
            used_memory_mib: None,
            gpu_instance_id: None,
            compute_instance_id: None,
        })
        .unwrap();
        assert_eq!(
            sim.set_mig_mode(0, true).await,
            Err(GpuError::InUse { op: Op::SetMigMode })
        );
        let inv = sim.inventory().await.unwrap();
        assert_eq!(
            inv.gpus[0].mig.as_ref().unwrap().mode,
            MigMode {
                current: false,
                pending: true
            }
        );
        assert!(sim.remove_process(7));
        assert_eq!(
            sim.set_mig_mode(0, true).await,
            Ok(MigMode {
                current: true,
                pending: true
            })
        );
        assert_eq!(
            sim.set_mig_mode(1, true).await,
            Ok(MigMode {
                current: true,
                pending: true
            })
        );
        let t4 = SimBackend::new(profile("t4-2x"));
        assert_eq!(
            t4.set_mig_mode(0, true).await,
            Err(GpuError::NotSupported { op: Op::SetMigMode })
        );
    });
}

#[test]
fn injected_failures_fire_the_given_number_of_times() {
    rt().block_on(async {
        let sim = SimBackend::new(profile("t4-2x"));
        sim.inject_failure(InjectedFailure {
            op: Op::Memory,
            gpu: Some(1),
            code: 15,
            times: Some(2),
        });
        assert!(sim.memory(0).await.is_ok());
        for _ in 0..2 {
            assert_eq!(sim.memory(1).await, Err(GpuError::GpuLost { op: Op::Memory }));
        }
        assert!(sim.memory(1).await.is_ok());
        sim.inject_failure(InjectedFailure {
            op: Op::Inventory,
            gpu: None,
            code: 4,
            times: None,
        });
        assert_eq!(sim.inventory().await, Err(GpuError::NoPermission { op: Op::Inventory }));
        sim.clear_failures();
        assert!(sim.inventory().await.is_ok());
    });
}

#[test]
fn health_events_flow_and_recover() {
    rt().block_on(async {
        let sim = SimBackend::new(profile("dgx-h100-mig"));
        let mut rx = sim.subscribe_health();
        sim.inject_xid(4, 13, None, None); // application error: ignored
        sim.inject_xid(4, 48, Some(7), Some(0));
        let e = rx.recv().await.unwrap();
        assert_eq!(e.gpu, 4);
        assert_eq!(
            e.kind,
            HealthEventKind::Unhealthy(UnhealthyReason::Xid {
                xid: 48,
                gpu_instance_id: Some(7),
                compute_instance_id: Some(0)
            })
        );
        // Attributed to MIG device (7, 0): only it is unhealthy.
        assert_eq!(e.mig_device, Some((7, 0)));
        let h = sim.health().await.unwrap()[&4].clone();
        assert!(matches!(&h, GpuHealth::MigDevicesUnhealthy(m) if m.len() == 1));
        assert!(h.mig_device_unhealthy(7, 0) && !h.mig_device_unhealthy(8, 0));
        sim.recover(4);
        assert_eq!(rx.recv().await.unwrap().kind, HealthEventKind::Recovered);
        sim.set_lost(2);
        assert_eq!(
            rx.recv().await.unwrap().kind,
            HealthEventKind::Unhealthy(UnhealthyReason::GpuLost)
        );
        assert_eq!(sim.inventory().await, Err(GpuError::GpuLost { op: Op::Inventory }));
        sim.recover(2);
        assert_eq!(rx.recv().await.unwrap().kind, HealthEventKind::Recovered);
        assert!(sim.inventory().await.is_ok());
        assert!(rx.try_recv().is_err());
    });
}
