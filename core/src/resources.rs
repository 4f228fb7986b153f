//! The resources a node advertises to kubelet, named exactly as NVIDIA's
//! device plugin names them, so manifests move over unchanged:
//! `nvidia.com/gpu`, `nvidia.com/mig-<profile>` (`+` → `.`), and time-sliced
//! or MPS replicas (`<name>.shared` with `renameByDefault`), with replica ids
//! `<device-id>::<n>` and a memory share per replica.

use std::collections::BTreeMap;

use crate::config::device_plugin::{
    DevicePluginConfig, MAX_DEVICES_PER_RESOURCE, MigStrategy, RESOURCE_PREFIX, ReplicaDevices, SharingStrategy,
};
use crate::config::mig_parted::GpuTarget;
use crate::config::quantity_to_mib;
use crate::machine::MachineProfile;
use crate::mig::{MigLayout, Placement};

/// Suffix NVIDIA appends to shared resources under `renameByDefault`.
pub const SHARED_SUFFIX: &str = ".shared";

/// One physical GPU as the node agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInventory {
    pub index: u32,
    pub uuid: String,
    pub memory_mib: u64,
    pub numa_node: Option<u32>,
    pub mig_enabled: bool,
    pub mig_devices: Vec<MigDevice>,
}

/// A MIG device (GPU instance + its full compute instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigDevice {
    /// `MIG-<uuid>`.
    pub uuid: String,
    /// Position among the GPU's MIG devices; the `<gpu>:<mig>` index.
    pub index: u32,
    /// Profile name, e.g. `1g.5gb+me`.
    pub profile: &'static str,
    pub memory_mib: u64,
    pub placement: Placement,
}

/// A schedulable device: a whole GPU or a MIG device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// GPU or MIG UUID; what kubelet knows the device by.
    pub id: String,
    /// `0` for a GPU, `0:1` for a MIG device, as NVIDIA's device selectors use.
    pub index: String,
    pub gpu: u32,
    pub numa_node: Option<u32>,
    pub memory_mib: u64,
    pub mig_profile: Option<&'static str>,
}

/// One device id as advertised to kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedDevice {
    /// The device id, or `<device-id>::<n>` for replica n.
    pub id: String,
    pub device: Device,
    pub replica: Option<u32>,
    /// Memory this id may use: the whole device, or its replica's share.
    pub memory_share_mib: u64,
}

/// One extended resource and the ids behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedResource {
    pub name: String,
    pub devices: Vec<AdvertisedDevice>,
    pub sharing: SharingStrategy,
    pub fail_requests_greater_than_one: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error(
        "migStrategy single: all GPUs must have the same MIG mode; MIG enabled on GPUs {enabled:?}, disabled on {disabled:?}"
    )]
    SingleMixedModes { enabled: Vec<u32>, disabled: Vec<u32> },
    #[error("migStrategy single: more than one MIG device type present on node: {profiles}")]
    SingleMixedProfiles { profiles: String },
    #[error("migStrategy single: MIG is enabled on GPUs {gpus:?} but no MIG devices exist")]
    SingleNoDevices { gpus: Vec<u32> },
    #[error("{path}: invalid value {value:?}: {reason}")]
    Sharing {
        path: String,
        value: String,
        reason: String,
    },
    /// Even unshared, a resource holds more devices than kubelet can take
    /// (only a broken inventory gets here; sharing is refused as `Sharing`).
    #[error("{resource}: {count} devices, above the maximum of {max} per resource")]
    TooManyDevices { resource: String, count: usize, max: usize },
}

/// `nvidia.com/mig-<profile>` with `+` replaced by `.`.
pub fn mig_resource_name(profile: &str) -> String {
    format!("{RESOURCE_PREFIX}/mig-{}", profile.replace('+', "."))
}

pub fn gpu_resource_name() -> String {
    format!("{RESOURCE_PREFIX}/gpu")
}

/// The inventory a machine profile describes, with each GPU's MIG state
/// taken from `targets` (a resolved mig-parted config) where it says more
/// than [`GpuTarget::Untouched`], else from the profile.
pub fn inventory(machine: &MachineProfile, targets: &BTreeMap<u32, GpuTarget>) -> Vec<GpuInventory> {
    machine
        .gpus
        .iter()
        .map(|g| {
            let (mig_enabled, layout) = match targets.get(&g.index) {
                Some(GpuTarget::MigDisabled) => (false, None),
                Some(GpuTarget::MigEnabled(l)) => (true, Some(l.clone())),
                Some(GpuTarget::Untouched) | None => {
                    (g.mig_enabled, machine.mig_layout(g).ok().filter(|_| g.mig_enabled))
                }
            };
            GpuInventory {
                index: g.index,
                uuid: g.uuid.clone(),
                memory_mib: machine.gpu_memory_mib(g),
                numa_node: Some(g.numa_node),
                mig_enabled,
                mig_devices: layout.map(|l| mig_devices(&g.uuid, &l.canonical())).unwrap_or_default(),
            }
        })
        .collect()
}

/// MIG devices of a layout, with stable UUIDs derived from the parent's UUID
/// and the placement (the simulated equivalent of what NVML assigns).
pub fn mig_devices(gpu_uuid: &str, layout: &MigLayout) -> Vec<MigDevice> {
    layout
        .instances
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let p = layout.family.profile(inst.kind);
            MigDevice {
                uuid: derived_mig_uuid(gpu_uuid, inst.placement, p.name),
                index: i as u32,
                profile: p.name,
                memory_mib: p.memory_mib,
                placement: inst.placement,
            }
        })
        .collect()
}

fn derived_mig_uuid(gpu_uuid: &str, placement: Placement, profile: &str) -> String {
    // FNV-1a, twice with different seeds, for 128 stable bits.
    let fnv = |seed: u64| {
        let mut h = seed;
        for b in gpu_uuid
            .bytes()
            .chain(profile.bytes())
            .chain([placement.start, placement.size])
        {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
        h
    };
    let (a, b) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142));
    format!(
        "MIG-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// The devices each base resource (before sharing) holds under `strategy`.
fn base_resources(
    gpus: &[GpuInventory],
    strategy: MigStrategy,
) -> Result<BTreeMap<String, Vec<Device>>, ResourceError> {
    let whole = |g: &GpuInventory| Device {
        id: g.uuid.clone(),
        index: g.index.to_string(),
        gpu: g.index,
        numa_node: g.numa_node,
        memory_mib: g.memory_mib,
        mig_profile: None,
    };
    let mig = |g: &GpuInventory, m: &MigDevice| Device {
        id: m.uuid.clone(),
        index: format!("{}:{}", g.index, m.index),
        gpu: g.index,
        numa_node: g.numa_node,
        memory_mib: m.memory_mib,
        mig_profile: Some(m.profile),
    };
    let mut out: BTreeMap<String, Vec<Device>> = BTreeMap::new();
    match strategy {
        MigStrategy::None => {
            for g in gpus {
                out.entry(gpu_resource_name()).or_default().push(whole(g));
            }
        }
        MigStrategy::Single => {
            let (enabled, disabled): (Vec<&GpuInventory>, Vec<&GpuInventory>) =
                gpus.iter().partition(|g| g.mig_enabled);
            if !enabled.is_empty() && !disabled.is_empty() {
                return Err(ResourceError::SingleMixedModes {
                    enabled: enabled.iter().map(|g| g.index).collect(),
                    disabled: disabled.iter().map(|g| g.index).collect(),
                });
            }
            if enabled.is_empty() {
                for g in gpus {
                    out.entry(gpu_resource_name()).or_default().push(whole(g));
                }
            } else {
                let mut profiles: Vec<&str> = enabled
                    .iter()
                    .flat_map(|g| g.mig_devices.iter().map(|m| m.profile))
                    .collect();
                profiles.sort();
                profiles.dedup();
                if profiles.is_empty() {
                    return Err(ResourceError::SingleNoDevices {
                        gpus: enabled.iter().map(|g| g.index).collect(),
                    });
                }
                if profiles.len() > 1 {
                    return Err(ResourceError::SingleMixedProfiles {
                        profiles: profiles.join(", "),
                    });
                }
                for g in &enabled {
                    for m in &g.mig_devices {
                        out.entry(gpu_resource_name()).or_default().push(mig(g, m));
                    }
                }
            }
        }
        MigStrategy::Mixed => {
            for g in gpus {
                if g.mig_enabled {
                    for m in &g.mig_devices {
                        out.entry(mig_resource_name(m.profile)).or_default().push(mig(g, m));
                    }
                } else {
                    out.entry(gpu_resource_name()).or_default().push(whole(g));
                }
            }
        }
    }
    Ok(out)
}

fn unshared(d: &Device) -> AdvertisedDevice {
    AdvertisedDevice {
        id: d.id.clone(),
        device: d.clone(),
        replica: None,
        memory_share_mib: d.memory_mib,
    }
}

/// Every resource kubelet would see for this inventory under `config`,
/// sorted by name, each with its device ids.
pub fn advertised_resources(
    gpus: &[GpuInventory],
    config: &DevicePluginConfig,
) -> Result<Vec<AdvertisedResource>, ResourceError> {
    let base = base_resources(gpus, config.mig_strategy())?;
    let (sharing, replicated) = config.replicated();
    let section = match sharing {
        SharingStrategy::Mps => "mps",
        _ => "timeSlicing",
    };
    let fail_gt_one = config.fail_requests_greater_than_one();
    let mut out: BTreeMap<String, AdvertisedResource> = BTreeMap::new();
    let push = |out: &mut BTreeMap<String, AdvertisedResource>, name: &str, d: AdvertisedDevice, shared: bool| {
        let r = out.entry(name.to_string()).or_insert_with(|| AdvertisedResource {
            name: name.to_string(),
            devices: Vec::new(),
            sharing: SharingStrategy::None,
            fail_requests_greater_than_one: false,
        });
        if shared {
            r.sharing = sharing;
            r.fail_requests_greater_than_one = fail_gt_one;
        }
        r.devices.push(d);
    };
    for (name, devices) in &base {
        let rule = replicated.and_then(|r| r.resources.iter().enumerate().find(|(_, s)| &s.name == name));
        let Some((i, rule)) = rule else {
            devices.iter().for_each(|d| push(&mut out, name, unshared(d), false));
            continue;
        };
        let rr = replicated.map(|r| r.rename_by_default).unwrap_or(false);
        let at = |f: &str| format!("sharing.{section}.resources[{i}].{f}");
        let selected: Vec<bool> = match &rule.devices {
            ReplicaDevices::All => vec![true; devices.len()],
            ReplicaDevices::Count(n) => {
                if *n as usize > devices.len() {
                    return Err(ResourceError::Sharing {
                        path: at("devices"),
                        value: n.to_string(),
                        reason: format!("{name} has only {} devices on this node", devices.len()),
                    });
                }
                (0..devices.len()).map(|k| k < *n as usize).collect()
            }
            ReplicaDevices::List(list) => {
                if let Some(missing) = list
                    .iter()
                    .find(|r| !devices.iter().any(|d| &d.index == *r || &d.id == *r))
                {
                    return Err(ResourceError::Sharing {
                        path: at("devices"),
                        value: missing.clone(),
                        reason: format!("matches no {name} device on this node"),
                    });
                }
                devices
                    .iter()
                    .map(|d| list.iter().any(|r| r == &d.index || r == &d.id))
                    .collect()
            }
        };
        let shared_name = match (&rule.rename, rr) {
            (Some(n), _) => n.clone(),
            (None, true) => format!("{name}{SHARED_SUFFIX}"),
            (None, false) => name.clone(),
        };
        if shared_name != *name && base.contains_key(&shared_name) {
            return Err(ResourceError::Sharing {
                path: at("rename"),
                value: shared_name,
                reason: "collides with a resource this node already advertises".into(),
            });
        }
        // Count before expanding: the ids are built only once the total is
        // known to fit (parse time bounds replicas, this bounds the product).
        let n_selected = selected.iter().filter(|s| **s).count();
        let already = out.get(&shared_name).map_or(0, |r| r.devices.len());
        let unshared_here = if shared_name == *name {
            devices.len() - n_selected
        } else {
            0
        };
        let total = (n_selected as u64)
            .saturating_mul(u64::from(rule.replicas))
            .saturating_add((already + unshared_here) as u64);
        if total > MAX_DEVICES_PER_RESOURCE as u64 {
            return Err(ResourceError::Sharing {
                path: at("replicas"),
                value: rule.replicas.to_string(),
                reason: format!(
                    "{n_selected} devices × {} replicas make {total} {shared_name} devices on this node, above the maximum of {MAX_DEVICES_PER_RESOURCE} per resource",
                    rule.replicas
                ),
            });
        }
        for (d, sel) in devices.iter().zip(selected) {
            if !sel {
                push(&mut out, name, unshared(d), false);
                continue;
            }
            let share = match &rule.memory_per_replica {
                None => d.memory_mib / rule.replicas as u64,
                Some(q) => {
                    let mib = quantity_to_mib(q).map_err(|reason| ResourceError::Sharing {
                        path: at("memoryPerReplica"),
                        value: q.clone(),
                        reason,
                    })?;
                    if mib.saturating_mul(u64::from(rule.replicas)) > d.memory_mib {
                        return Err(ResourceError::Sharing {
                            path: at("memoryPerReplica"),
                            value: q.clone(),
                            reason: format!(
                                "{} replicas × {mib} MiB exceed device {} ({} MiB)",
                                rule.replicas, d.id, d.memory_mib
                            ),
                        });
                    }
                    mib
                }
            };
            for n in 0..rule.replicas {
                let ad = AdvertisedDevice {
                    id: format!("{}::{n}", d.id),
                    device: d.clone(),
                    replica: Some(n),
                    memory_share_mib: share,
                };
                push(&mut out, &shared_name, ad, true);
            }
        }
    }
    // Unshared resources are bounded by the inventory; say so rather than
    // hand kubelet a message it cannot take.
    if let Some(r) = out.values().find(|r| r.devices.len() > MAX_DEVICES_PER_RESOURCE) {
        return Err(ResourceError::TooManyDevices {
            resource: r.name.clone(),
            count: r.devices.len(),
            max: MAX_DEVICES_PER_RESOURCE,
        });
    }
    Ok(out.into_values().collect())
}

/// The resource → count map kubelet would show in the node's allocatable.
pub fn resource_counts(
    gpus: &[GpuInventory],
    config: &DevicePluginConfig,
) -> Result<BTreeMap<String, u32>, ResourceError> {
    Ok(advertised_resources(gpus, config)?
        .into_iter()
        .map(|r| (r.name, r.devices.len() as u32))
        .collect())
}

/// Splits a replica id `<device-id>::<n>` into the device id and replica.
pub fn parse_replica_id(id: &str) -> (&str, Option<u32>) {
    match id.rsplit_once("::") {
        Some((dev, n)) => match n.parse() {
            Ok(n) => (dev, Some(n)),
            Err(_) => (id, None),
        },
        None => (id, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MigPartedConfig;

    fn machine(product: &str, n: u32) -> MachineProfile {
        let gpus: String = (0..n)
            .map(|i| format!("  - {{index: {i}, product_name: \"{product}\", uuid: GPU-{i}, pci_bus_id: \"0000:{:02x}:00.0\", numa_node: 0}}\n", i + 16))
            .collect();
        MachineProfile::from_yaml(&format!(
            "name: m\nnuma_nodes: [{{id: 0, cpus: \"0-7\"}}]\ngpus:\n{gpus}"
        ))
        .unwrap()
    }

    fn dp(text: &str) -> DevicePluginConfig {
        DevicePluginConfig::from_yaml(text).unwrap()
    }

    fn targets(mig_parted: &str, name: &str, m: &MachineProfile) -> BTreeMap<u32, GpuTarget> {
        MigPartedConfig::from_yaml(mig_parted)
            .unwrap()
            .targets(name, m)
            .unwrap()
    }

    #[test]
    fn fact_time_slicing_4_replicas_rename_by_default() {
        let m = machine("Tesla T4", 4);
        let cfg = dp(
            "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n",
        );
        let res = advertised_resources(&inventory(&m, &BTreeMap::new()), &cfg).unwrap();
        assert_eq!(res.len(), 1, "no nvidia.com/gpu left: {res:?}");
        assert_eq!(res[0].name, "nvidia.com/gpu.shared");
        assert_eq!(res[0].devices.len(), 16);
        assert_eq!(res[0].devices[0].id, "GPU-0::0");
        assert_eq!(res[0].devices[15].id, "GPU-3::3");
        assert_eq!(res[0].devices[0].memory_share_mib, 15360 / 4);
        assert_eq!(res[0].sharing, SharingStrategy::TimeSlicing);
    }

    #[test]
    fn strategies_none_single_mixed() {
        let m = machine("NVIDIA A100-SXM4-40GB", 2);
        let all_1g = "version: v1\nmig-configs:\n  a:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"1g.5gb\": 7}\n  b:\n    - devices: [0]\n      mig-enabled: true\n      mig-devices: {\"1g.5gb\": 7}\n  c:\n    - devices: [0]\n      mig-enabled: true\n      mig-devices: {\"3g.20gb\": 2}\n    - devices: [1]\n      mig-enabled: true\n      mig-devices: {\"1g.5gb\": 7}\n";
        let inv = inventory(&m, &targets(all_1g, "a", &m));
        let none = resource_counts(&inv, &dp("version: v1\n")).unwrap();
        assert_eq!(none, BTreeMap::from([("nvidia.com/gpu".to_string(), 2)]));
        let single = resource_counts(&inv, &dp("version: v1\nflags: {migStrategy: single}\n")).unwrap();
        assert_eq!(single, BTreeMap::from([("nvidia.com/gpu".to_string(), 14)]));

        let half = inventory(&m, &targets(all_1g, "b", &m));
        let e = resource_counts(&half, &dp("version: v1\nflags: {migStrategy: single}\n")).unwrap_err();
        assert_eq!(
            e,
            ResourceError::SingleMixedModes {
                enabled: vec![0],
                disabled: vec![1]
            }
        );
        let mixed = resource_counts(&half, &dp("version: v1\nflags: {migStrategy: mixed}\n")).unwrap();
        assert_eq!(
            mixed,
            BTreeMap::from([
                ("nvidia.com/gpu".to_string(), 1),
                ("nvidia.com/mig-1g.5gb".to_string(), 7)
            ])
        );

        let two_kinds = inventory(&m, &targets(all_1g, "c", &m));
        let e = resource_counts(&two_kinds, &dp("version: v1\nflags: {migStrategy: single}\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "migStrategy single: more than one MIG device type present on node: 1g.5gb, 3g.20gb"
        );
    }

    #[test]
    fn shared_mig_resources_rename_and_device_selection() {
        let m = machine("NVIDIA A100-SXM4-40GB", 2);
        let layouts = targets(
            "version: v1\nmig-configs:\n  a:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"1g.5gb+me\": 1, \"3g.20gb\": 1, \"2g.10gb\": 1}\n",
            "a",
            &m,
        );
        let cfg = dp(
            "version: v1\nflags: {migStrategy: mixed}\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    failRequestsGreaterThanOne: true\n    resources:\n    - name: nvidia.com/mig-3g.20gb\n      replicas: 2\n      devices: [\"1:0\"]\n    - name: nvidia.com/mig-2g.10gb\n      rename: small\n      replicas: 3\n",
        );
        let res = advertised_resources(&inventory(&m, &layouts), &cfg).unwrap();
        let counts: BTreeMap<_, _> = res.iter().map(|r| (r.name.as_str(), r.devices.len())).collect();
        assert_eq!(
            counts,
            BTreeMap::from([
                ("nvidia.com/mig-1g.5gb.me", 2),
                ("nvidia.com/mig-3g.20gb", 1),
                ("nvidia.com/mig-3g.20gb.shared", 2),
                ("nvidia.com/small", 6),
            ])
        );
        let shared = res.iter().find(|r| r.name == "nvidia.com/mig-3g.20gb.shared").unwrap();
        assert!(shared.fail_requests_greater_than_one);
        assert_eq!(shared.devices[0].memory_share_mib, 19968 / 2);
        assert!(shared.devices.iter().all(|d| d.device.index == "1:0"));
    }

    #[test]
    fn memory_per_replica_is_checked_against_the_device() {
        let m = machine("Tesla T4", 1);
        let inv = inventory(&m, &BTreeMap::new());
        let ok = dp(
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: gpu\n      replicas: 3\n      memoryPerReplica: 4Gi\n",
        );
        let res = advertised_resources(&inv, &ok).unwrap();
        assert_eq!(res[0].devices[2].memory_share_mib, 4096);
        let too_much = dp(
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: gpu\n      replicas: 4\n      memoryPerReplica: 4Gi\n",
        );
        let e = advertised_resources(&inv, &too_much).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "sharing.timeSlicing.resources[0].memoryPerReplica: invalid value \"4Gi\": 4 replicas × 4096 MiB exceed"
            ),
            "{e}"
        );
        let missing = dp(
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: gpu\n      replicas: 2\n      devices: [\"3\"]\n",
        );
        let e = advertised_resources(&inv, &missing).unwrap_err().to_string();
        assert!(e.contains("resources[0].devices") && e.contains("\"3\""), "{e}");
    }

    fn whole_gpus(n: u32) -> Vec<GpuInventory> {
        (0..n)
            .map(|i| GpuInventory {
                index: i,
                uuid: format!("GPU-{i:08x}-0000-0000-0000-000000000000"),
                memory_mib: 81920,
                numa_node: Some(0),
                mig_enabled: false,
                mig_devices: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn total_devices_per_resource_are_bounded_before_expansion() {
        use crate::config::device_plugin::{MAX_DEVICES_PER_RESOURCE, MAX_REPLICAS};
        for key in ["timeSlicing", "mps"] {
            let cfg = dp(&format!(
                "version: v1\nsharing:\n  {key}:\n    resources:\n    - name: gpu\n      replicas: {MAX_REPLICAS}\n"
            ));
            // 16 GPUs × 1024 replicas is exactly the bound.
            let fits = MAX_DEVICES_PER_RESOURCE as u32 / MAX_REPLICAS;
            let res = advertised_resources(&whole_gpus(fits), &cfg).unwrap();
            assert_eq!(res[0].devices.len(), MAX_DEVICES_PER_RESOURCE);
            let e = advertised_resources(&whole_gpus(fits + 1), &cfg).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "sharing.{key}.resources[0].replicas: invalid value \"1024\": 17 devices × 1024 replicas make 17408 nvidia.com/gpu devices on this node, above the maximum of 16384 per resource"
                )
            );
        }
        // Unselected devices left under the same name count too.
        let cfg = dp(&format!(
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: gpu\n      replicas: {MAX_REPLICAS}\n      devices: 16\n"
        ));
        let e = advertised_resources(&whole_gpus(17), &cfg).unwrap_err().to_string();
        assert!(e.contains("16 devices × 1024 replicas make 16385"), "{e}");
    }

    #[test]
    fn replica_ids_round_trip() {
        assert_eq!(parse_replica_id("GPU-1::3"), ("GPU-1", Some(3)));
        assert_eq!(parse_replica_id("MIG-abc"), ("MIG-abc", None));
    }

    #[test]
    fn derived_mig_uuids_are_stable_and_distinct() {
        let m = machine("NVIDIA A100-SXM4-40GB", 2);
        let l = MigLayout::pack(crate::mig::MigFamily::A100_40gb, &[(crate::mig::ProfileKind::G1, 7)]).unwrap();
        let a = mig_devices("GPU-0", &l);
        let b = mig_devices("GPU-0", &l);
        assert_eq!(a, b);
        let mut ids: Vec<_> = a
            .iter()
            .map(|d| d.uuid.clone())
            .chain(mig_devices("GPU-1", &l).into_iter().map(|d| d.uuid))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 14);
        assert!(ids[0].starts_with("MIG-") && ids[0].len() == 40, "{}", ids[0]);
        let _ = m;
    }
}
