//! Every config shipped under `configs/` parses, and the resource facts the
//! docs promise hold for the shipped files, read as a user would.
#![allow(clippy::unwrap_used)] // test helpers: a missing file should fail loudly

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use railyard_core::config::mig_parted::GpuTarget;
use railyard_core::config::{DevicePluginConfig, MigPartedConfig};
use railyard_core::machine::MachineProfile;
use railyard_core::resources::{advertised_resources, inventory, resource_counts};

fn configs_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs").join(sub)
}

fn yaml_files(sub: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(configs_dir(sub))
        .unwrap_or_else(|e| panic!("configs/{sub}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| (p.display().to_string(), fs::read_to_string(&p).unwrap()))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no YAML in configs/{sub}");
    out
}

fn machine(name: &str) -> MachineProfile {
    let text = fs::read_to_string(configs_dir("machines").join(format!("{name}.yaml"))).unwrap();
    MachineProfile::from_yaml(&text).unwrap()
}

fn device_plugin(name: &str) -> DevicePluginConfig {
    let text = fs::read_to_string(configs_dir("device-plugin").join(format!("{name}.yaml"))).unwrap();
    DevicePluginConfig::from_yaml(&text).unwrap()
}

fn mig_parted() -> MigPartedConfig {
    MigPartedConfig::from_yaml(&fs::read_to_string(configs_dir("mig-parted").join("config.yaml")).unwrap()).unwrap()
}

#[test]
fn every_shipped_config_parses() {
    for (path, text) in yaml_files("device-plugin") {
        DevicePluginConfig::from_yaml(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    for (path, text) in yaml_files("mig-parted") {
        MigPartedConfig::from_yaml(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    for (path, text) in yaml_files("machines") {
        MachineProfile::from_yaml(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

#[test]
fn every_mig_parted_config_resolves_on_every_mig_machine() {
    let cfg = mig_parted();
    for (path, text) in yaml_files("machines") {
        let m = MachineProfile::from_yaml(&text).unwrap();
        if !m.gpus.iter().all(|g| m.gpu_model(g).mig_family().is_some()) {
            continue;
        }
        for name in cfg.names() {
            let targets = cfg.targets(name, &m).unwrap_or_else(|e| panic!("{path} / {name}: {e}"));
            for t in targets.values() {
                if let GpuTarget::MigEnabled(l) = t {
                    l.validate().unwrap_or_else(|e| panic!("{path} / {name}: {e}"));
                }
            }
        }
    }
}

/// 4 × A100-40GB, mig-parted `2x2g.10gb-3x1g.5gb`, migStrategy mixed.
#[test]
fn fact_mixed_mig_on_four_a100_40gb() {
    let m = machine("a100-pcie-4x");
    assert_eq!(m.gpus.len(), 4);
    let targets = mig_parted().targets("2x2g.10gb-3x1g.5gb", &m).unwrap();
    let counts = resource_counts(&inventory(&m, &targets), &device_plugin("mig-mixed")).unwrap();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("nvidia.com/mig-1g.5gb".to_string(), 12),
            ("nvidia.com/mig-2g.10gb".to_string(), 8)
        ])
    );
}

/// 4 GPUs, timeSlicing replicas 4, renameByDefault: true.
#[test]
fn fact_time_slicing_on_four_gpus() {
    let m = machine("a100-pcie-4x");
    let cfg = device_plugin("time-slicing-4");
    let counts = resource_counts(&inventory(&m, &BTreeMap::new()), &cfg).unwrap();
    assert_eq!(counts, BTreeMap::from([("nvidia.com/gpu.shared".to_string(), 16)]));
    let res = advertised_resources(&inventory(&m, &BTreeMap::new()), &cfg).unwrap();
    let first = &res[0].devices[0];
    assert_eq!(first.id, format!("{}::0", m.gpus[0].uuid));
    assert_eq!(first.memory_share_mib, 40960 / 4);
}

#[test]
fn mig_machine_profile_advertises_its_instances() {
    let m = machine("dgx-h100-mig");
    let counts = resource_counts(&inventory(&m, &BTreeMap::new()), &device_plugin("mig-mixed")).unwrap();
    assert!(counts.keys().any(|k| k.starts_with("nvidia.com/mig-")), "{counts:?}");
    let half = mig_parted().targets("half-1g.10gb", &machine("dgx-h100")).unwrap();
    let counts = resource_counts(&inventory(&machine("dgx-h100"), &half), &device_plugin("mig-mixed")).unwrap();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("nvidia.com/gpu".to_string(), 4),
            ("nvidia.com/mig-1g.10gb".to_string(), 28)
        ])
    );
}
