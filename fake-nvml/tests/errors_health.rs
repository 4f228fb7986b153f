#![allow(clippy::unwrap_used)]
//! Each typed error injected through the fake library (and the same failure
//! in the simulator) reaches the caller as the same `GpuError`; health
//! events flow and recover on both backends.

mod common;

use std::time::Duration;

use common::{pair, pair_without_health_poll, profile_path, rt};
use railyard_core::mig::{MigInstance, Placement, ProfileKind};
use railyard_fake_nvml::harness::FakeNvml;
use railyard_gpu::error::TYPED_ERROR_CODES;
use railyard_gpu::{
    GpuBackend, GpuError, GpuHealth, HealthEvent, HealthEventKind, InjectedFailure, NvmlBackend, NvmlConfig, Op,
    UnhealthyReason,
};
use tokio::sync::broadcast;

#[test]
fn every_typed_error_is_injectable_on_both_backends() {
    rt().block_on(async {
        let p = pair_without_health_poll(&profile_path("dgx-h100-mig"));
        for &code in TYPED_ERROR_CODES {
            let expected = GpuError::from_code(Op::Memory, code).unwrap();
            p.fake
                .control(&format!("fail nvmlDeviceGetMemoryInfo_v2 {code} gpu=1 times=1"))
                .unwrap();
            p.sim.inject_failure(InjectedFailure {
                op: Op::Memory,
                gpu: Some(1),
                code,
                times: Some(1),
            });
            assert_eq!(p.nvml.memory(0).await, p.sim.memory(0).await, "other GPU unaffected");
            assert_eq!(p.nvml.memory(1).await, Err(expected.clone()), "code {code}");
            assert_eq!(p.sim.memory(1).await, Err(expected), "code {code}");
            assert!(p.nvml.memory(1).await.is_ok(), "times=1 fires once");
        }
    });
}

#[test]
fn mig_failures_roll_back_and_map_by_step() {
    rt().block_on(async {
        let p = pair_without_health_poll(&profile_path("dgx-h100-mig"));
        let inst = MigInstance {
            kind: ProfileKind::G3,
            placement: Placement { start: 0, size: 4 },
        };
        p.fake
            .control("fail nvmlDeviceCreateGpuInstanceWithPlacement 23 times=1")
            .unwrap();
        assert_eq!(
            p.nvml.create_mig_instance(7, inst).await,
            Err(GpuError::InsufficientResources {
                op: Op::CreateGpuInstance
            })
        );
        // The compute instance fails: the GPU instance is destroyed again.
        p.fake
            .control("fail nvmlGpuInstanceCreateComputeInstance 4 times=1")
            .unwrap();
        p.sim.inject_failure(InjectedFailure {
            op: Op::CreateComputeInstance,
            gpu: Some(7),
            code: 4,
            times: Some(1),
        });
        let expected = Err(GpuError::NoPermission {
            op: Op::CreateComputeInstance,
        });
        assert_eq!(p.nvml.create_mig_instance(7, inst).await, expected);
        assert_eq!(p.sim.create_mig_instance(7, inst).await, expected);
        assert_eq!(p.nvml.mig_instances(7).await.unwrap(), vec![]);
        assert_eq!(p.sim.mig_instances(7).await.unwrap(), vec![]);
        // Return codes the wrapper does not know (23–30) still map.
        p.fake.control("fail nvmlDeviceGetMemoryInfo_v2 29 times=1").unwrap();
        assert_eq!(
            p.nvml.memory(0).await,
            Err(GpuError::Other {
                op: Op::Memory,
                code: 29
            })
        );
        // A panic-free unknown failure on every call of one function.
        p.fake.control("fail nvmlDeviceGetUUID 999").unwrap();
        assert_eq!(
            p.nvml.inventory().await,
            Err(GpuError::Other {
                op: Op::Inventory,
                code: 999
            })
        );
        p.fake.control("clear-failures").unwrap();
        assert!(p.nvml.inventory().await.is_ok());
    });
}

#[test]
fn init_failures_are_typed() {
    // After a failed init the wrapper unloads the library, so the next load
    // starts over (and replays the control file): one fresh machine per case.
    for (code, expected) in [
        (1, GpuError::Uninitialized { op: Op::Init }),
        (18, GpuError::Other { op: Op::Init, code: 18 }),
        (9, GpuError::DriverNotLoaded { op: Op::Init }),
    ] {
        let fake = FakeNvml::from_file(&profile_path("t4-2x")).unwrap();
        fake.control(&format!("fail nvmlInit_v2 {code} times=1")).unwrap();
        assert_eq!(NvmlBackend::new(fake.config()).err(), Some(expected));
    }
    let fake = FakeNvml::from_file(&profile_path("t4-2x")).unwrap();
    assert!(NvmlBackend::new(fake.config()).is_ok());
    // No profile: the "driver" is not loaded.
    std::fs::remove_file(fake.dir.join(railyard_fake_nvml::state::PROFILE_FILE)).unwrap();
    let copy = fake.dir.join("other/libnvidia-ml.so.1");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(&fake.lib, &copy).unwrap();
    if std::env::var_os(railyard_fake_nvml::state::PROFILE_ENV).is_none() {
        let config = NvmlConfig {
            lib_path: Some(copy),
            ..fake.config()
        };
        assert_eq!(
            NvmlBackend::new(config).err(),
            Some(GpuError::DriverNotLoaded { op: Op::Init })
        );
    }
    let missing = NvmlConfig {
        lib_path: Some(fake.dir.join("nonexistent/libnvidia-ml.so.1")),
        ..fake.config()
    };
    assert!(matches!(NvmlBackend::new(missing), Err(GpuError::Library { .. })));
}

async fn next(rx: &mut broadcast::Receiver<HealthEvent>) -> HealthEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a health event within 10 s")
        .unwrap()
}

#[test]
fn health_events_flow_and_recover_on_both_backends() {
    rt().block_on(async {
        let p = pair(&profile_path("dgx-h100-mig"));
        let (mut nrx, mut srx) = (p.nvml.subscribe_health(), p.sim.subscribe_health());

        // XID 13 is an application error and ignored; XID 48 (DBE) in GPU
        // 4's MIG instance 7 is critical and needs a reset.
        p.fake.control("xid 4 13").unwrap();
        p.fake.control("xid 4 48 gi=7 ci=0").unwrap();
        p.sim.inject_xid(4, 13, None, None);
        p.sim.inject_xid(4, 48, Some(7), Some(0));
        let (n, s) = (next(&mut nrx).await, next(&mut srx).await);
        assert_eq!(n, s);
        assert_eq!(
            n.kind,
            HealthEventKind::Unhealthy(UnhealthyReason::Xid {
                xid: 48,
                gpu_instance_id: Some(7),
                compute_instance_id: Some(0)
            })
        );
        assert_eq!(n.uuid, p.fake.profile.gpus[4].uuid);
        assert_eq!(p.nvml.health().await.unwrap(), p.sim.health().await.unwrap());
        // Still needs a reset: no recovery yet.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(nrx.try_recv().is_err());

        p.fake.control("recover 4").unwrap();
        p.sim.recover(4);
        let (n, s) = (next(&mut nrx).await, next(&mut srx).await);
        assert_eq!((n.gpu, &n.kind), (4, &HealthEventKind::Recovered));
        assert_eq!(n, s);

        // A GPU falls off the bus: unhealthy, calls fail typed, then it is back.
        p.fake.control("lost 2").unwrap();
        p.sim.set_lost(2);
        let (n, s) = (next(&mut nrx).await, next(&mut srx).await);
        assert_eq!(n, s);
        assert_eq!(n.kind, HealthEventKind::Unhealthy(UnhealthyReason::GpuLost));
        assert_eq!(p.nvml.inventory().await, Err(GpuError::GpuLost { op: Op::Inventory }));
        assert_eq!(p.sim.inventory().await, Err(GpuError::GpuLost { op: Op::Inventory }));
        assert_eq!(p.nvml.memory(2).await, p.sim.memory(2).await);
        assert!(matches!(
            p.nvml.health().await.unwrap()[&2],
            GpuHealth::Unhealthy(UnhealthyReason::GpuLost)
        ));
        p.fake.control("recover 2").unwrap();
        p.sim.recover(2);
        let (n, s) = (next(&mut nrx).await, next(&mut srx).await);
        assert_eq!(n, s);
        assert_eq!(n.kind, HealthEventKind::Recovered);
        assert_eq!(p.nvml.inventory().await.unwrap(), p.sim.inventory().await.unwrap());
    });
}

#[test]
fn ignored_xids_are_configurable() {
    rt().block_on(async {
        let fake = FakeNvml::from_file(&profile_path("t4-2x")).unwrap();
        let mut config = fake.config();
        config.health.ignored_xids.insert(79);
        let nvml = NvmlBackend::new(config).unwrap();
        let mut rx = nvml.subscribe_health();
        fake.control("xid 0 79").unwrap();
        fake.control("xid 1 13 action=0").unwrap();
        fake.control("xid 1 31").unwrap();
        fake.control("xid 1 94").unwrap();
        let e = next(&mut rx).await;
        assert_eq!(e.gpu, 1);
        assert!(matches!(
            e.kind,
            HealthEventKind::Unhealthy(UnhealthyReason::Xid { xid: 94, .. })
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "XID 79 on GPU 0 was configured away");
    });
}
