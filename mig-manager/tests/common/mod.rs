//! Shared by the MIG manager's tests: simulated machines, a temp dir, the
//! fake PodResources server and a PodResources client on it.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use railyard_core::config::MigPartedConfig;
use railyard_core::machine::MachineProfile;
use railyard_core::mig::{InstanceRef, MigInstance};
use railyard_gpu::{GpuBackend, SimBackend};
use railyard_kubelet_api::fake::FakePodResources;
use railyard_mig_manager::observe::Observed;
use railyard_watchdog::podresources::PodResourcesClient;

pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

pub fn profile(name: &str) -> MachineProfile {
    let text = std::fs::read_to_string(repo(&format!("configs/machines/{name}.yaml"))).unwrap();
    MachineProfile::from_yaml(&text).unwrap()
}

pub fn sim(name: &str) -> SimBackend {
    SimBackend::new(profile(name))
}

pub fn nvidia_config() -> MigPartedConfig {
    MigPartedConfig::from_yaml(&std::fs::read_to_string(repo("configs/mig-parted/config.yaml")).unwrap()).unwrap()
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "railyard-mig-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fake kubelet PodResources server and a client on it.
pub struct Kubelet {
    pub dir: TempDir,
    pub server: FakePodResources,
    pub client: PodResourcesClient,
}

pub fn kubelet() -> Kubelet {
    let dir = TempDir::new("pr");
    let sock = dir.join("kubelet.sock");
    let server = FakePodResources::start(&sock).unwrap();
    let client = PodResourcesClient::new(&sock, Duration::from_secs(5));
    Kubelet { dir, server, client }
}

pub async fn observed(b: &dyn GpuBackend) -> Observed {
    Observed::read(b).await.unwrap()
}

/// The `MIG-…` UUID of the instance at `start` on `gpu`.
pub async fn mig_uuid(b: &dyn GpuBackend, gpu: u32, start: u8) -> String {
    observed(b)
        .await
        .gpu(gpu)
        .unwrap()
        .instance_at(start)
        .unwrap()
        .uuid
        .clone()
        .unwrap()
}

/// The GPU instance id at `start` on `gpu`.
pub async fn gi_id(b: &dyn GpuBackend, gpu: u32, start: u8) -> u32 {
    observed(b)
        .await
        .gpu(gpu)
        .unwrap()
        .instance_at(start)
        .unwrap()
        .gpu_instance_id
}

/// `(profile, start)` of every instance of a GPU.
pub async fn layout(b: &dyn GpuBackend, gpu: u32) -> Vec<(String, u8)> {
    observed(b)
        .await
        .gpu(gpu)
        .unwrap()
        .instances
        .iter()
        .map(|i| (i.profile.to_string(), i.placement.start))
        .collect()
}

pub fn instance(kind: railyard_core::mig::ProfileKind, gpu: u32, start: u8) -> InstanceRef {
    InstanceRef {
        gpu,
        instance: MigInstance::at(kind, start),
    }
}
