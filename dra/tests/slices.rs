//! The published slices for every machine profile, driver config and
//! server version parse as `resource.k8s.io/v1` ResourceSlices and stay
//! within the API's limits.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::resource::v1::ResourceSlice;
use railyard_dra::api::{pool_to_slices, pools_from_slices};
use railyard_dra::names::{is_dns_label, limits};
use railyard_dra::slices::ServerVersion;

const VERSIONS: [ServerVersion; 3] = [ServerVersion::V1_34, ServerVersion::V1_35, ServerVersion::V1_36];

#[test]
fn every_profile_config_and_version_publishes_valid_slices() {
    let mut checked = 0;
    for profile in common::all_profiles() {
        for (cfg_name, cfg) in common::all_configs() {
            let pool = railyard_dra::inventory::build_pool(&profile, &cfg, &profile.name).unwrap();
            for version in VERSIONS {
                let what = format!("{} / {cfg_name} / {version}", profile.name);
                let slices = pool_to_slices(&pool, version, 3).unwrap();
                // Through JSON into the k8s-openapi type and back: nothing is lost.
                for s in &slices {
                    let json = serde_json::to_value(s).unwrap();
                    let parsed: ResourceSlice = serde_json::from_value(json.clone()).unwrap();
                    assert_eq!(serde_json::to_value(&parsed).unwrap(), json, "{what}");
                    assert_eq!(s.spec.pool.resource_slice_count, slices.len() as i64, "{what}");
                    assert_eq!(s.spec.pool.generation, 3);
                    assert_eq!(s.spec.node_name.as_deref(), Some(profile.name.as_str()));
                    check_limits(s, version, &what);
                }
                if version >= ServerVersion::V1_35 && !pool.counter_sets.is_empty() {
                    // Counters alone, and first.
                    assert!(slices[0].spec.shared_counters.is_some(), "{what}");
                    for s in &slices {
                        assert!(
                            s.spec.shared_counters.is_none() || s.spec.devices.is_none(),
                            "{what}: mixed slice"
                        );
                    }
                }
                if version == ServerVersion::V1_34 {
                    for s in &slices {
                        let sets: BTreeSet<_> = s
                            .spec
                            .shared_counters
                            .iter()
                            .flatten()
                            .map(|c| c.name.clone())
                            .collect();
                        for d in s.spec.devices.iter().flatten() {
                            for c in d.consumes_counters.iter().flatten() {
                                assert!(
                                    sets.contains(&c.counter_set),
                                    "{what}: {} far from its counters",
                                    d.name
                                );
                            }
                        }
                    }
                }
                // Reassembled, the pool is what was built.
                let back = pools_from_slices(&slices).unwrap();
                assert_eq!(back.len(), 1);
                let by_name = |v: &[railyard_dra::device::Device]| {
                    v.iter()
                        .map(|d| (d.name.clone(), d.clone()))
                        .collect::<BTreeMap<_, _>>()
                };
                assert_eq!(by_name(&back[0].devices), by_name(&pool.devices), "{what}");
                assert_eq!(back[0].devices.len(), pool.devices.len(), "{what}");
                assert_eq!(back[0].counter_sets, pool.counter_sets, "{what}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 5 * 3 * 3, "{checked}");
}

fn check_limits(s: &ResourceSlice, version: ServerVersion, what: &str) {
    let devices = s.spec.devices.as_deref().unwrap_or_default();
    let limited = devices
        .iter()
        .any(|d| d.consumes_counters.is_some() || d.taints.is_some());
    let cap = if limited {
        limits::DEVICES_PER_SLICE_WITH_COUNTERS
    } else {
        limits::DEVICES_PER_SLICE
    };
    assert!(devices.len() <= cap, "{what}: {} devices", devices.len());
    let sets = s.spec.shared_counters.as_deref().unwrap_or_default();
    assert!(sets.len() <= limits::COUNTER_SETS_PER_SLICE, "{what}");
    for set in sets {
        assert!(set.counters.len() <= limits::COUNTERS_PER_SET, "{what}");
    }
    if version == ServerVersion::V1_34 {
        let total: usize = sets.iter().map(|c| c.counters.len()).sum();
        assert!(total <= limits::COUNTERS_PER_SLICE_1_34, "{what}: {total} counters");
    }
    let mut names = BTreeSet::new();
    for d in devices {
        assert!(is_dns_label(&d.name), "{what}: {}", d.name);
        assert!(names.insert(d.name.clone()), "{what}: duplicate {}", d.name);
        let n = d.attributes.as_ref().map_or(0, BTreeMap::len) + d.capacity.as_ref().map_or(0, BTreeMap::len);
        assert!(
            n <= limits::ATTRIBUTES_AND_CAPACITIES_PER_DEVICE,
            "{what}: {} has {n}",
            d.name
        );
        assert!(d.consumes_counters.as_ref().map_or(0, Vec::len) <= limits::CONSUMES_COUNTERS_PER_DEVICE);
        for a in d.attributes.iter().flatten().map(|(_, a)| a) {
            assert!(
                a.string
                    .as_ref()
                    .is_none_or(|s| s.len() <= limits::STRING_ATTRIBUTE_LEN)
            );
        }
    }
}

#[test]
fn device_names_and_attributes_follow_nvidia() {
    let pool = common::pool("dgx-h100-mig", &railyard_dra::config::DraConfig::default());
    let gpu0 = pool.devices.iter().find(|d| d.name == "gpu-0").unwrap();
    use railyard_dra::device::AttrValue::*;
    assert_eq!(gpu0.attributes["type"], String("gpu".into()));
    assert_eq!(gpu0.attributes["productName"], String("NVIDIA H100 80GB HBM3".into()));
    assert_eq!(gpu0.attributes["driverVersion"], Version("550.54.15".into()));
    assert_eq!(gpu0.attributes["cudaDriverVersion"], Version("12.4.0".into()));
    assert_eq!(gpu0.attributes["cudaComputeCapability"], Version("9.0.0".into()));
    assert_eq!(
        gpu0.attributes["resource.kubernetes.io/pciBusID"],
        String("0000:1b:00.0".into())
    );
    assert_eq!(
        gpu0.attributes["resource.kubernetes.io/pcieRoot"],
        String("pci0000:15".into())
    );
    assert_eq!(gpu0.attributes["resource.kubernetes.io/numaNode"], Int(0));
    assert_eq!(gpu0.attributes["railyard.dev/nvlinkIsland"], Int(0));
    assert_eq!(gpu0.attributes["railyard.dev/rail"], Int(0));
    let profile = common::profile("dgx-h100-mig");
    let mib = profile.gpu_memory_mib(&profile.gpus[0]) as i64;
    assert_eq!(gpu0.capacity["memory"].value.as_i64(), Some(mib << 20));
    assert!(!gpu0.attributes.contains_key("index"), "NVIDIA dropped index");
    // GPU 4 is in MIG mode with seven 1g.10gb: no whole GPU, its instances
    // under NVIDIA's names, with uuid, parentUUID and profile.
    assert!(!pool.devices.iter().any(|d| d.name == "gpu-4"));
    let mig = pool.devices.iter().find(|d| d.name == "gpu-4-mig-1g10gb-19-0").unwrap();
    assert_eq!(mig.attributes["type"], String("mig".into()));
    assert_eq!(mig.attributes["profile"], String("1g.10gb".into()));
    assert!(mig.attributes.contains_key("uuid") && mig.attributes.contains_key("parentUUID"));
    assert_eq!(mig.capacity["memorySlice0"].value.as_i64(), Some(1));
    assert_eq!(mig.capacity["multiprocessors"].value.as_i64(), Some(16));
    // GPU 0 (MIG off) offers every (profile, placement) as a partitionable
    // device without a uuid, tied to the whole GPU by one counter set.
    let dynamic: Vec<_> = pool
        .devices
        .iter()
        .filter(|d| d.name.starts_with("gpu-0-mig-"))
        .collect();
    let placements: usize = railyard_core::mig::MigFamily::H100_80gb
        .profiles()
        .map(|p| p.spec().placements.len())
        .sum();
    assert_eq!(dynamic.len(), placements);
    assert!(dynamic.iter().all(|d| !d.attributes.contains_key("uuid")));
    assert!(
        dynamic
            .iter()
            .chain([&gpu0])
            .all(|d| d.consumes_counters[0].counter_set == "gpu-0-counter-set")
    );
}

#[test]
fn nvlink_islands_are_bridged_pairs_on_pcie_and_one_per_nvswitch_box() {
    use railyard_dra::inventory::nvlink_islands;
    let pcie = nvlink_islands(&common::profile("a100-pcie-4x"));
    assert_eq!(pcie.values().copied().collect::<Vec<_>>(), vec![0, 0, 2, 2]);
    let dgx = nvlink_islands(&common::profile("dgx-h100"));
    assert!(dgx.values().all(|i| *i == 0));
    let t4 = nvlink_islands(&common::profile("t4-2x"));
    assert_eq!(t4.values().copied().collect::<Vec<_>>(), vec![0, 1]);
}

#[test]
fn shared_gpus_publish_consumable_memory_and_shares() {
    let cfg = railyard_dra::config::DraConfig::from_yaml("version: v1\nsharing: {shares: 4}\n").unwrap();
    let pool = common::pool("dgx-h100", &cfg);
    let gpu = &pool.devices[0];
    assert!(gpu.allow_multiple_allocations);
    let memory = &gpu.capacity["memory"];
    let policy = memory.request_policy.as_ref().unwrap();
    let profile = common::profile("dgx-h100");
    let mib = profile.gpu_memory_mib(&profile.gpus[0]) as i64;
    assert_eq!(
        policy.default.as_ref().unwrap().as_i64(),
        Some((mib / 4) << 20),
        "a quarter, whole MiB"
    );
    assert_eq!(gpu.capacity["shares"].value.as_i64(), Some(4));
    assert!(gpu.consumes_counters.is_empty(), "shared GPUs are not partitioned");
    assert!(!pool.devices.iter().any(|d| d.name.contains("-mig-")));
}

#[test]
fn config_errors_name_the_field_and_value() {
    use railyard_dra::config::DraConfig;
    let e = DraConfig::from_yaml("version: v1\nsharing: {shares: 0}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sharing.shares") && e.contains('0'), "{e}");
    let e = DraConfig::from_yaml("version: v1\nsharng: {}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sharng"), "{e}");
    let e = DraConfig::from_yaml("version: v2\n").unwrap_err().to_string();
    assert!(e.contains("version") && e.contains("v2"), "{e}");
    let e = DraConfig::from_yaml("version: v1\ndriverName: GPU_NVIDIA\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("driverName") && e.contains("GPU_NVIDIA"), "{e}");
    let e = DraConfig::from_yaml("version: v1\nsharing: {shares: 2, memoryPerShare: 10Gx}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("sharing.memoryPerShare") && e.contains("10Gx"), "{e}");
}

#[test]
fn server_versions_parse_from_flags_and_discovery() {
    assert_eq!("1.34".parse::<ServerVersion>().unwrap(), ServerVersion::V1_34);
    assert_eq!("v1.35".parse::<ServerVersion>().unwrap(), ServerVersion::V1_35);
    assert_eq!(ServerVersion::from_discovery("1", "37+").unwrap(), ServerVersion::V1_36);
    assert!("2.0".parse::<ServerVersion>().is_err());
    assert!("135".parse::<ServerVersion>().is_err());
}
