//! The device plugin over the real NVML code path (`NvmlBackend` over
//! `railyard-fake-nvml`), against the fake kubelet.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use railyard_fake_nvml::harness::FakeNvml;
use railyard_gpu::NvmlBackend;
use railyard_kubelet_api::deviceplugin::v1beta1::{HEALTHY, UNHEALTHY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvml_backend_registers_allocates_and_reports_xids() {
    let fake = FakeNvml::from_file(&repo("configs/machines/dgx-h100.yaml")).unwrap();
    let backend = NvmlBackend::new(fake.config()).unwrap();
    // No machine profile: the topology is derived from the NVML inventory.
    let env = start(Arc::new(backend), None, "version: v1\n", |_, _| {}).await;
    let d = env.devices("nvidia.com/gpu", 8).await;
    let uuids: Vec<&str> = fake.profile.gpus.iter().map(|g| g.uuid.as_str()).collect();
    assert_eq!(d.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), uuids);
    assert_eq!(d[7].topology.as_ref().unwrap().nodes[0].id, 1);
    // NUMA alignment from the derived topology.
    env.kubelet.admit("nvidia.com/gpu", 1, &[uuids[0]]).await.unwrap();
    let a = env.kubelet.admit("nvidia.com/gpu", 4, &[]).await.unwrap();
    assert_eq!(a.devices, &uuids[4..8]);

    fake.control("xid 3 79").unwrap();
    env.kubelet
        .wait_devices("nvidia.com/gpu", T, |d| d[3].health == UNHEALTHY)
        .await
        .unwrap();
    fake.control("recover 3").unwrap();
    env.kubelet
        .wait_devices("nvidia.com/gpu", T, |d| d.iter().all(|d| d.health == HEALTHY))
        .await
        .unwrap();
}

/// An XID that NVML attributes to one MIG instance (`nvmlEventData_t`'s
/// `gpuInstanceId`/`computeInstanceId`, carried by the fake's `gi=`/`ci=`)
/// marks only that MIG device; the GPU's recovery heals it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvml_mig_xid_marks_only_its_mig_device() {
    use railyard_gpu::GpuBackend;
    let fake = FakeNvml::from_file(&repo("configs/machines/dgx-h100-mig.yaml")).unwrap();
    let backend = NvmlBackend::new(fake.config()).unwrap();
    let inv = backend.inventory().await.unwrap();
    // GPU 4: seven 1g.10gb devices.
    let inst = inv.gpus[4].mig.as_ref().unwrap().instances[3].clone();
    let target = inst.uuid.clone().unwrap();
    let env = start(
        Arc::new(backend),
        None,
        "version: v1\nflags:\n  migStrategy: mixed\n",
        |_, _| {},
    )
    .await;
    // Seven on GPU 4, two on GPU 5.
    assert!(
        env.devices("nvidia.com/mig-1g.10gb", 9)
            .await
            .iter()
            .any(|d| d.id == target)
    );

    fake.control(&format!(
        "xid 4 79 gi={} ci={}",
        inst.gpu_instance_id,
        inst.compute_instance_id.unwrap()
    ))
    .unwrap();
    let unhealthy = |d: &[railyard_kubelet_api::deviceplugin::v1beta1::Device]| -> Vec<String> {
        d.iter()
            .filter(|d| d.health == UNHEALTHY)
            .map(|d| d.id.clone())
            .collect()
    };
    env.kubelet
        .wait_devices("nvidia.com/mig-1g.10gb", T, |d| unhealthy(d) == [target.clone()])
        .await
        .unwrap();
    fake.control("recover 4").unwrap();
    env.kubelet
        .wait_devices("nvidia.com/mig-1g.10gb", T, |d| d.iter().all(|d| d.health == HEALTHY))
        .await
        .unwrap();
    // Without GI/CI the XID is the whole GPU's: all seven on GPU 4.
    fake.control("xid 4 79").unwrap();
    env.kubelet
        .wait_devices("nvidia.com/mig-1g.10gb", T, |d| unhealthy(d).len() == 7)
        .await
        .unwrap();
}
