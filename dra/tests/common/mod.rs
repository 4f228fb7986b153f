//! Shared fixtures: the shipped machine profiles and DRA configs.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use railyard_core::machine::MachineProfile;
use railyard_dra::claim::{ClaimSpec, DeviceClass};
use railyard_dra::config::DraConfig;
use railyard_dra::device::Pool;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn profile(name: &str) -> MachineProfile {
    let text = std::fs::read_to_string(repo().join(format!("configs/machines/{name}.yaml"))).unwrap();
    MachineProfile::from_yaml(&text).unwrap()
}

pub fn all_profiles() -> Vec<MachineProfile> {
    let mut names: Vec<_> = std::fs::read_dir(repo().join("configs/machines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| MachineProfile::from_yaml(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

/// The default config and every file under configs/dra/ that is a driver config.
pub fn all_configs() -> Vec<(String, DraConfig)> {
    let mut out = vec![("default".to_owned(), DraConfig::default())];
    let mut paths: Vec<_> = std::fs::read_dir(repo().join("configs/dra"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    for p in paths {
        let cfg = DraConfig::from_yaml(&std::fs::read_to_string(&p).unwrap()).unwrap();
        out.push((p.file_name().unwrap().to_string_lossy().into_owned(), cfg));
    }
    out
}

pub fn pool(profile_name: &str, config: &DraConfig) -> Pool {
    let p = profile(profile_name);
    railyard_dra::inventory::build_pool(&p, config, &p.name).unwrap()
}

/// Only GPU `minor`'s devices and counter set.
pub fn single_gpu(mut pool: Pool, minor: u32) -> Pool {
    let prefix = format!("gpu-{minor}");
    pool.devices
        .retain(|d| d.name == prefix || d.name.starts_with(&format!("{prefix}-")));
    pool.counter_sets.retain(|s| s.name == format!("{prefix}-counter-set"));
    pool
}

pub fn classes(driver: &str) -> BTreeMap<String, DeviceClass> {
    railyard_dra::classes::shipped(driver)
        .iter()
        .map(|c| {
            let c = DeviceClass::from_api(c).unwrap();
            (c.name.clone(), c)
        })
        .collect()
}

/// A claim from the YAML of its `spec`.
pub fn claim(spec_yaml: &str) -> ClaimSpec {
    let spec: k8s_openapi::api::resource::v1::ResourceClaimSpec = serde_saphyr::from_str(spec_yaml).unwrap();
    ClaimSpec::from_api("spec", &spec).unwrap()
}

pub fn claim_file(name: &str) -> ClaimSpec {
    let text = std::fs::read_to_string(repo().join(format!("configs/dra/claims/{name}"))).unwrap();
    let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    match v["kind"].as_str().unwrap() {
        "ResourceClaim" => {
            let c: k8s_openapi::api::resource::v1::ResourceClaim = serde_json::from_value(v).unwrap();
            ClaimSpec::from_api("spec", &c.spec).unwrap()
        }
        _ => {
            let t: k8s_openapi::api::resource::v1::ResourceClaimTemplate = serde_json::from_value(v).unwrap();
            ClaimSpec::from_api("spec.spec", &t.spec.spec).unwrap()
        }
    }
}
