//! Machine profile + driver config → the pool a node publishes, with
//! NVIDIA's device names, attributes and capacities (PROTOCOLS §12) and
//! Railyard's additions: per-GPU shared counters that tie a whole GPU to
//! its MIG devices, every (profile, placement) as a partitionable device,
//! shareable GPUs with consumable memory, and NVLink/rail attributes.

use std::collections::BTreeMap;

use railyard_core::catalog::{Architecture, GpuModel};
use railyard_core::machine::{GpuSpec, MachineProfile};
use railyard_core::mig::{MigFamily, MigInstance, MigLayout, MigProfile, Placement, enumerate_maximal_layouts};
use railyard_core::topology::NodeTopology;

use crate::config::DraConfig;
use crate::device::{AttrValue, Capacity, CounterConsumption, CounterSet, Device, Pool, RequestPolicy, ValidValues};
use crate::names::{ATTR_NUMA_NODE, ATTR_NVLINK_ISLAND, ATTR_PCI_BUS_ID, ATTR_PCIE_ROOT, ATTR_RAIL};
use crate::quantity::Quantity;

const MIB: i64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("GPU {index}: {message}")]
    Gpu { index: u32, message: String },
    #[error("machine profile {name}: {message}")]
    Profile { name: String, message: String },
}

/// Counter names in DNS form, as NVIDIA's partitionable MIG uses them.
pub const COUNTER_MULTIPROCESSORS: &str = "multiprocessors";
pub const COUNTER_MEMORY: &str = "memory";
const ENGINE_COUNTERS: [&str; 5] = ["copy-engines", "decoders", "encoders", "jpeg-engines", "ofa-engines"];
const ENGINE_CAPACITIES: [&str; 5] = ["copyEngines", "decoders", "encoders", "jpegEngines", "ofaEngines"];

pub fn memory_slice_counter(i: u8) -> String {
    format!("memory-slice-{i}")
}

pub fn counter_set_name(minor: u32) -> String {
    format!("gpu-{minor}-counter-set")
}

/// NVIDIA's whole-GPU device name, `gpu-<minor>`.
pub fn gpu_device_name(gpu: &GpuSpec) -> String {
    format!("gpu-{}", gpu.minor.unwrap_or(gpu.index))
}

/// NVIDIA's MIG device name: `gpu-<minor>-mig-<profile without dots>-<GI
/// profile id>-<placement start>`.
pub fn mig_device_name(minor: u32, profile: &MigProfile, start: u8) -> String {
    let name: String = profile.name.chars().filter(|c| *c != '.' && *c != '+').collect();
    format!("gpu-{minor}-mig-{name}-{}-{start}", profile.spec().profile_id)
}

/// The topology the allocator ranks this machine's multi-GPU picks by.
pub fn pool_topology(profile: &MachineProfile) -> Result<crate::alloc::PoolTopology, InventoryError> {
    let topology = NodeTopology::from_profile(profile).map_err(|e| InventoryError::Profile {
        name: profile.name.clone(),
        message: e.to_string(),
    })?;
    let gpus = profile.gpus.iter().map(|g| (gpu_device_name(g), g.index)).collect();
    Ok(crate::alloc::PoolTopology { topology, gpus })
}

/// Builds the pool `node_name` publishes.
pub fn build_pool(profile: &MachineProfile, config: &DraConfig, node_name: &str) -> Result<Pool, InventoryError> {
    let topo = NodeTopology::from_profile(profile).map_err(|e| InventoryError::Profile {
        name: profile.name.clone(),
        message: e.to_string(),
    })?;
    let islands = nvlink_islands(profile);
    let mut pool = Pool {
        driver: config.driver_name.clone(),
        name: node_name.to_owned(),
        node_name: node_name.to_owned(),
        counter_sets: Vec::new(),
        devices: Vec::new(),
    };
    for gpu in &profile.gpus {
        let gpu_err = |message: String| InventoryError::Gpu {
            index: gpu.index,
            message,
        };
        let model = profile.gpu_model(gpu).model();
        let minor = gpu.minor.unwrap_or(gpu.index);
        let mut common = common_attributes(profile, gpu, model);
        common.insert(
            ATTR_NVLINK_ISLAND.into(),
            AttrValue::Int(islands.get(&gpu.index).copied().unwrap_or(gpu.index).into()),
        );
        let rail = topo
            .nearest_nic(gpu.index, None)
            .map_err(|e| gpu_err(e.to_string()))?
            .and_then(|n| n.rail);
        if let Some(rail) = rail {
            common.insert(ATTR_RAIL.into(), AttrValue::Int(rail.into()));
        }
        let memory = i64::try_from(profile.gpu_memory_mib(gpu))
            .unwrap_or(0)
            .saturating_mul(MIB);
        let family = model.and_then(|m| m.mig);
        let shared = config
            .sharing
            .as_ref()
            .filter(|s| !gpu.mig_enabled && (s.gpus.is_empty() || s.gpus.contains(&gpu.index)));
        let mut whole = Device {
            name: gpu_device_name(gpu),
            ..Device::default()
        };
        whole.attributes = common.clone();
        whole.attributes.insert("type".into(), AttrValue::String("gpu".into()));
        whole
            .attributes
            .insert("uuid".into(), AttrValue::String(gpu.uuid.clone()));
        whole
            .capacity
            .insert("memory".into(), Capacity::fixed(Quantity::from_bytes(memory)));
        if let Some(s) = shared {
            let per_share = s
                .memory_per_share
                .clone()
                .unwrap_or_else(|| Quantity::from_bytes(memory / i64::from(s.shares) / MIB * MIB));
            whole.allow_multiple_allocations = true;
            whole.capacity.insert(
                "memory".into(),
                Capacity {
                    value: Quantity::from_bytes(memory),
                    request_policy: Some(RequestPolicy {
                        default: Some(per_share),
                        valid: Some(ValidValues::Range {
                            min: Quantity::from_bytes(MIB),
                            max: Some(Quantity::from_bytes(memory)),
                            step: Some(Quantity::from_bytes(MIB)),
                        }),
                    }),
                },
            );
            let shares = i64::from(s.shares);
            whole.capacity.insert(
                "shares".into(),
                Capacity {
                    value: Quantity::from_i64(shares),
                    request_policy: Some(RequestPolicy {
                        default: Some(Quantity::from_i64(1)),
                        valid: Some(ValidValues::Range {
                            min: Quantity::from_i64(1),
                            max: Some(Quantity::from_i64(shares)),
                            step: Some(Quantity::from_i64(1)),
                        }),
                    }),
                },
            );
            pool.devices.push(whole);
            continue;
        }
        let Some(family) = family else {
            pool.devices.push(whole);
            continue;
        };
        let layout = profile.mig_layout(gpu).map_err(|e| gpu_err(e.to_string()))?;
        if !gpu.mig_enabled && !config.dynamic_mig {
            pool.devices.push(whole);
            continue;
        }
        let set = counter_set(family, memory);
        let set_name = counter_set_name(minor);
        if !gpu.mig_enabled {
            // A whole GPU takes every counter, so no MIG device of it can be
            // allocated beside it (NVIDIA's #719).
            whole.consumes_counters = vec![CounterConsumption {
                counter_set: set_name.clone(),
                counters: set.clone(),
            }];
            pool.devices.push(whole);
        }
        let mig = |instance: MigInstance, uuid: Option<String>| {
            let p = family.profile(instance.kind);
            let mut d = Device {
                name: mig_device_name(minor, &p, instance.placement.start),
                ..Device::default()
            };
            d.attributes = common.clone();
            d.attributes.insert("type".into(), AttrValue::String("mig".into()));
            if let Some(uuid) = uuid {
                d.attributes.insert("uuid".into(), AttrValue::String(uuid));
            }
            d.attributes
                .insert("parentUUID".into(), AttrValue::String(gpu.uuid.clone()));
            d.attributes.insert("profile".into(), AttrValue::String(p.name.into()));
            let consumed = mig_consumption(&p, instance.placement);
            for (name, value) in mig_capacity(&p, instance.placement) {
                d.capacity.insert(name, Capacity::fixed(value));
            }
            d.consumes_counters = vec![CounterConsumption {
                counter_set: set_name.clone(),
                counters: consumed,
            }];
            d
        };
        // Existing instances (a layout set by the MIG manager), then the
        // placements still free beside them when dynamic MIG is on.
        for (i, instance) in layout.instances.iter().enumerate() {
            let uuid = gpu.mig_instances.get(i).map(|_| {
                format!(
                    "MIG-{}-{}-{}",
                    gpu.uuid.trim_start_matches("GPU-"),
                    instance.placement.start,
                    i
                )
            });
            pool.devices.push(mig(*instance, uuid));
        }
        if config.dynamic_mig {
            for p in family.profiles() {
                for &placement in p.spec().placements {
                    let instance = MigInstance {
                        kind: p.kind,
                        placement,
                    };
                    if layout.can_add(instance) {
                        pool.devices.push(mig(instance, None));
                    }
                }
            }
        }
        pool.counter_sets.push(CounterSet {
            name: set_name,
            counters: set,
        });
    }
    Ok(pool)
}

/// Attributes every device of a GPU carries (NVIDIA's names and types).
fn common_attributes(profile: &MachineProfile, gpu: &GpuSpec, model: Option<&GpuModel>) -> BTreeMap<String, AttrValue> {
    let mut a = BTreeMap::new();
    let s = |v: &str| AttrValue::String(truncate(v));
    a.insert("productName".into(), s(&gpu.product_name));
    a.insert("brand".into(), s("Nvidia"));
    if let Some(m) = model {
        let (arch, cc) = match m.architecture {
            Architecture::Pascal => ("Pascal", "6.0.0"),
            Architecture::Volta => ("Volta", "7.0.0"),
            Architecture::Turing => ("Turing", "7.5.0"),
            Architecture::Ampere if m.mig.is_some() => ("Ampere", "8.0.0"),
            Architecture::Ampere => ("Ampere", "8.6.0"),
            Architecture::Ada => ("Ada Lovelace", "8.9.0"),
            Architecture::Hopper => ("Hopper", "9.0.0"),
        };
        a.insert("architecture".into(), s(arch));
        a.insert("cudaComputeCapability".into(), AttrValue::Version(cc.into()));
    }
    if let Some(v) = driver_semver(&profile.driver_version) {
        a.insert("driverVersion".into(), AttrValue::Version(v));
    }
    let cuda = profile.cuda_driver_version;
    a.insert(
        "cudaDriverVersion".into(),
        AttrValue::Version(format!("{}.{}.0", cuda / 1000, cuda % 1000 / 10)),
    );
    a.insert(ATTR_PCI_BUS_ID.into(), s(&gpu.pci_bus_id.to_ascii_lowercase()));
    if let Some(root) = profile.root_of(gpu.pcie_switch.as_deref(), gpu.pcie_root.as_deref()) {
        a.insert(ATTR_PCIE_ROOT.into(), s(&root));
    }
    a.insert(ATTR_NUMA_NODE.into(), AttrValue::Int(gpu.numa_node.into()));
    a
}

fn truncate(v: &str) -> String {
    v.chars().take(crate::names::limits::STRING_ATTRIBUTE_LEN).collect()
}

/// `535.161.08` → `535.161.8`: NVIDIA driver versions carry leading zeros
/// that semver forbids.
fn driver_semver(v: &str) -> Option<String> {
    let parts: Vec<u64> = v.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let get = |i: usize| parts.get(i).copied().unwrap_or(0);
    (!parts.is_empty() && parts.len() <= 3).then(|| format!("{}.{}.{}", get(0), get(1), get(2)))
}

/// NVLink islands: GPUs joined by NVLink, transitively (all of an NVSwitch
/// box; each bridged pair on a PCIe box). The id is the island's lowest
/// GPU index.
pub fn nvlink_islands(profile: &MachineProfile) -> BTreeMap<u32, u32> {
    let mut island: BTreeMap<u32, u32> = profile.gpus.iter().map(|g| (g.index, g.index)).collect();
    if profile.nvlink.nvswitch {
        let min = profile.gpus.iter().map(|g| g.index).min().unwrap_or(0);
        return island.keys().map(|g| (*g, min)).collect();
    }
    // Few GPUs per node: relabel until stable (at most one pass per link).
    for _ in 0..=profile.nvlink.links.len() {
        let mut changed = false;
        for l in &profile.nvlink.links {
            let (Some(&a), Some(&b)) = (island.get(&l.gpus[0]), island.get(&l.gpus[1])) else {
                continue;
            };
            if a != b {
                let (lo, hi) = (a.min(b), a.max(b));
                island.values_mut().filter(|v| **v == hi).for_each(|v| *v = lo);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    island
}

/// One GPU's counter set: enough of each counter for the whole GPU and for
/// any full MIG layout of its family.
fn counter_set(family: MigFamily, memory: i64) -> BTreeMap<String, Quantity> {
    let full = family.profiles().max_by_key(|p| p.sms);
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    let mut raise = |name: &str, v: i64| {
        let e = totals.entry(name.to_owned()).or_insert(0);
        *e = (*e).max(v);
    };
    raise(COUNTER_MEMORY, memory);
    if let Some(p) = full {
        for (name, v) in profile_counts(&p) {
            raise(name, v);
        }
    }
    for layout in enumerate_maximal_layouts(family) {
        let mut sum: BTreeMap<&str, i64> = BTreeMap::new();
        for i in &layout.instances {
            let p = family.profile(i.kind);
            for (name, v) in profile_counts(&p) {
                *sum.entry(name).or_insert(0) += v;
            }
            *sum.entry(COUNTER_MEMORY).or_insert(0) += mib_bytes(p.memory_mib);
        }
        for (name, v) in sum {
            raise(name, v);
        }
    }
    let mut set: BTreeMap<String, Quantity> = totals
        .into_iter()
        .map(|(k, v)| {
            (
                k.clone(),
                if k == COUNTER_MEMORY {
                    Quantity::from_bytes(v)
                } else {
                    Quantity::from_i64(v)
                },
            )
        })
        .collect();
    for i in 0..railyard_core::mig::MEMORY_SLICES {
        set.insert(memory_slice_counter(i), Quantity::from_i64(1));
    }
    set
}

fn mib_bytes(mib: u64) -> i64 {
    i64::try_from(mib).unwrap_or(0).saturating_mul(MIB)
}

fn profile_counts(p: &MigProfile) -> [(&'static str, i64); 6] {
    let e = p.engines;
    [
        (COUNTER_MULTIPROCESSORS, p.sms.into()),
        (ENGINE_COUNTERS[0], e.copy.into()),
        (ENGINE_COUNTERS[1], e.decoder.into()),
        (ENGINE_COUNTERS[2], e.encoder.into()),
        (ENGINE_COUNTERS[3], e.jpeg.into()),
        (ENGINE_COUNTERS[4], e.ofa.into()),
    ]
}

/// What a MIG device at `placement` takes from its GPU's counter set.
fn mig_consumption(p: &MigProfile, placement: Placement) -> BTreeMap<String, Quantity> {
    let mut c: BTreeMap<String, Quantity> = profile_counts(p)
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| (k.to_owned(), Quantity::from_i64(v)))
        .collect();
    c.insert(COUNTER_MEMORY.into(), Quantity::from_bytes(mib_bytes(p.memory_mib)));
    for i in placement.start..placement.end() {
        c.insert(memory_slice_counter(i), Quantity::from_i64(1));
    }
    c
}

/// A MIG device's capacities, as NVIDIA names them.
fn mig_capacity(p: &MigProfile, placement: Placement) -> Vec<(String, Quantity)> {
    let counts = profile_counts(p);
    let mut c = vec![("multiprocessors".to_owned(), Quantity::from_i64(counts[0].1))];
    for (i, name) in ENGINE_CAPACITIES.iter().enumerate() {
        c.push(((*name).to_owned(), Quantity::from_i64(counts[i + 1].1)));
    }
    c.push(("memory".into(), Quantity::from_bytes(mib_bytes(p.memory_mib))));
    for i in placement.start..placement.end() {
        c.push((format!("memorySlice{i}"), Quantity::from_i64(1)));
    }
    c
}

/// The MIG layout the allocated MIG devices of one GPU form (for checks
/// that an allocation is buildable).
pub fn layout_of(family: MigFamily, devices: &[(MigProfile, u8)]) -> MigLayout {
    MigLayout::new(
        family,
        devices
            .iter()
            .map(|(p, start)| MigInstance::at(p.kind, *start))
            .collect(),
    )
}
