#![allow(dead_code, clippy::unwrap_used)]
//! Shared by the fake-nvml integration tests.

use std::path::PathBuf;

use railyard_core::machine::MachineProfile;
use railyard_fake_nvml::harness::FakeNvml;
use railyard_gpu::{NvmlBackend, SimBackend};

pub fn profile_paths() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/machines");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    out.sort();
    assert!(out.len() >= 5, "{out:?}");
    out
}

pub fn profile_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../configs/machines/{name}.yaml"))
}

/// The same machine twice: NVML over the fake library, and simulated.
pub struct Pair {
    pub fake: FakeNvml,
    pub nvml: NvmlBackend,
    pub sim: SimBackend,
}

pub fn pair(path: &std::path::Path) -> Pair {
    let fake = FakeNvml::from_file(path).unwrap();
    let nvml = NvmlBackend::new(fake.config()).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let sim = SimBackend::with_health(MachineProfile::from_yaml(&text).unwrap(), fake.config().health);
    Pair { fake, nvml, sim }
}

/// As [`pair`], with NVML's health probe off: its poll calls
/// `nvmlDeviceGetMemoryInfo` on every GPU every 10 ms, so it could consume a
/// one-shot injected failure before the test's own call does.
pub fn pair_without_health_poll(path: &std::path::Path) -> Pair {
    let fake = FakeNvml::from_file(path).unwrap();
    let mut config = fake.config();
    config.health.disabled = true;
    let nvml = NvmlBackend::new(config).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let sim = SimBackend::with_health(MachineProfile::from_yaml(&text).unwrap(), fake.config().health);
    Pair { fake, nvml, sim }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
