//! mig-parted's config (`version: v1`, `mig-configs:`), as NVIDIA's MIG
//! manager and the GPU operator's default ConfigMap use it, and turning a
//! named config into per-GPU MIG layouts for a machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::budget::from_yaml_bounded as from_yaml;
use crate::catalog::NVIDIA_PCI_VENDOR;
use crate::machine::MachineProfile;
use crate::mig::{MigFamily, MigLayout, ProfileKind};
use crate::yaml::ConfigError;

const WHAT: &str = "mig-parted config";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigPartedConfig {
    pub version: String,
    #[serde(rename = "mig-configs")]
    pub mig_configs: BTreeMap<String, Vec<MigConfigEntry>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigConfigEntry {
    /// PCI ids as mig-parted writes them, `0x20B010DE` (device << 16 | vendor);
    /// a single string or a list. Absent = every model.
    #[serde(rename = "device-filter", default, deserialize_with = "one_or_many_str")]
    pub device_filter: Option<Vec<String>>,
    pub devices: EntryDevices,
    #[serde(rename = "mig-enabled")]
    pub mig_enabled: bool,
    #[serde(rename = "mig-devices", default)]
    pub mig_devices: BTreeMap<String, u32>,
}

/// `all` or a list of GPU indices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum EntryDevices {
    All,
    List(Vec<u32>),
}

impl<'de> Deserialize<'de> for EntryDevices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::yaml::Value;
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) if s == "all" => Ok(EntryDevices::All),
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| D::Error::custom(format!("devices[{i}]: {v} is not a GPU index")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(EntryDevices::List),
            other => Err(D::Error::custom(format!(
                "devices must be \"all\" or a list of GPU indices, got {other}"
            ))),
        }
    }
}

fn one_or_many_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    }))
}

/// What a named config asks of one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuTarget {
    /// No entry matched: leave the GPU as it is.
    Untouched,
    MigDisabled,
    MigEnabled(MigLayout),
}

impl MigPartedConfig {
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let c: MigPartedConfig = from_yaml(WHAT, text)?;
        if c.version != "v1" {
            return Err(ConfigError::invalid(
                WHAT,
                "version",
                &c.version,
                "unknown version; only v1 is supported",
            ));
        }
        for (name, entries) in &c.mig_configs {
            for (i, e) in entries.iter().enumerate() {
                for (j, f) in e.device_filter.iter().flatten().enumerate() {
                    parse_device_filter(f).map_err(|r| {
                        ConfigError::invalid(WHAT, format!("mig-configs.{name}[{i}].device-filter[{j}]"), f, r)
                    })?;
                }
                if !e.mig_enabled && !e.mig_devices.is_empty() {
                    return Err(ConfigError::invalid(
                        WHAT,
                        format!("mig-configs.{name}[{i}].mig-devices"),
                        format!("{:?}", e.mig_devices),
                        "mig-devices needs mig-enabled: true",
                    ));
                }
            }
        }
        Ok(c)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.mig_configs.keys().map(String::as_str)
    }

    /// Resolves config `name` for every GPU of `machine`; see
    /// [`MigPartedConfig::targets_for`].
    pub fn targets(&self, name: &str, machine: &MachineProfile) -> Result<BTreeMap<u32, GpuTarget>, ConfigError> {
        self.targets_for(name, &ConfigGpu::from_machine(machine))
    }

    /// Resolves config `name` for every GPU of a node. A profile name is
    /// checked against the GPU's model, so `1g.5gb` on an H100 is an error
    /// listing the H100's profiles; counts that do not fit one GPU are an
    /// error too. When several entries match a GPU, the last one wins, as in
    /// mig-parted.
    pub fn targets_for(&self, name: &str, gpus: &[ConfigGpu]) -> Result<BTreeMap<u32, GpuTarget>, ConfigError> {
        let entries = self.mig_configs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.names().collect();
            ConfigError::invalid(
                WHAT,
                "mig-configs",
                name,
                format!("no such config; known: {}", known.join(", ")),
            )
        })?;
        let mut out: BTreeMap<u32, GpuTarget> = gpus.iter().map(|g| (g.index, GpuTarget::Untouched)).collect();
        for (i, e) in entries.iter().enumerate() {
            let at = |f: &str| format!("mig-configs.{name}[{i}].{f}");
            let model_matches = |g: &ConfigGpu| match &e.device_filter {
                None => true,
                Some(filters) => filters.iter().any(|f| parse_device_filter(f).ok() == g.pci_device_id),
            };
            // An entry whose device-filter matches no GPU here does not apply
            // to this machine, so its device indices are not checked either.
            if !gpus.iter().any(model_matches) {
                continue;
            }
            if let EntryDevices::List(list) = &e.devices
                && let Some(bad) = list.iter().find(|d| !gpus.iter().any(|g| g.index == **d))
            {
                return Err(ConfigError::invalid(
                    WHAT,
                    at("devices"),
                    bad,
                    format!("this machine has {} GPUs", gpus.len()),
                ));
            }
            for g in gpus {
                let selected = match &e.devices {
                    EntryDevices::All => true,
                    EntryDevices::List(l) => l.contains(&g.index),
                };
                if !selected || !model_matches(g) {
                    continue;
                }
                let target = if !e.mig_enabled {
                    GpuTarget::MigDisabled
                } else {
                    let family = g.family.ok_or_else(|| {
                        ConfigError::invalid(
                            WHAT,
                            at("mig-enabled"),
                            true,
                            format!("GPU {} ({}) is not MIG-capable", g.index, g.product_name),
                        )
                    })?;
                    let mut wanted: Vec<(ProfileKind, u32)> = Vec::new();
                    for (profile, count) in &e.mig_devices {
                        let p = family.profile_by_name(profile).ok_or_else(|| {
                            ConfigError::invalid(
                                WHAT,
                                at(&format!("mig-devices.{profile}")),
                                profile,
                                format!(
                                    "unknown MIG profile for {}; it has: {}",
                                    g.product_name,
                                    family.profile_names().join(", ")
                                ),
                            )
                        })?;
                        wanted.push((p.kind, *count));
                    }
                    let layout = MigLayout::pack(family, &wanted).map_err(|err| {
                        ConfigError::invalid(WHAT, at("mig-devices"), format!("{:?}", e.mig_devices), err.to_string())
                    })?;
                    GpuTarget::MigEnabled(layout)
                };
                out.insert(g.index, target);
            }
        }
        Ok(out)
    }
}

/// One GPU as a mig-parted config sees it: its index, its model's PCI device
/// id (for `device-filter`) and MIG profile table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigGpu {
    pub index: u32,
    /// `nvmlDeviceGetName`, for messages.
    pub product_name: String,
    /// `None` where neither the GPU nor the catalog gives one: no
    /// `device-filter` matches it.
    pub pci_device_id: Option<u16>,
    /// `None`: not MIG-capable.
    pub family: Option<MigFamily>,
}

impl ConfigGpu {
    /// A GPU as NVML reports it; the model is identified from name and PCI id.
    pub fn new(index: u32, product_name: &str, pci_device_id: Option<u16>) -> ConfigGpu {
        let model = crate::catalog::identify(product_name, pci_device_id);
        ConfigGpu {
            index,
            product_name: product_name.to_string(),
            pci_device_id: pci_device_id.or_else(|| model.model().and_then(|m| m.pci_device_ids.first().copied())),
            family: model.mig_family(),
        }
    }

    pub fn from_machine(machine: &MachineProfile) -> Vec<ConfigGpu> {
        machine
            .gpus
            .iter()
            .map(|g| ConfigGpu::new(g.index, &g.product_name, g.pci_device_id))
            .collect()
    }
}

/// A PCI device id as `device-filter` writes it: `0x233010DE`.
pub fn device_filter(pci_device_id: u16) -> String {
    format!("0x{pci_device_id:04X}{NVIDIA_PCI_VENDOR:04X}")
}

/// `0x20B010DE` → device id 0x20B0 (vendor must be NVIDIA's 0x10DE).
fn parse_device_filter(f: &str) -> Result<u16, String> {
    let hex = f.strip_prefix("0x").or_else(|| f.strip_prefix("0X")).unwrap_or(f);
    let raw = u32::from_str_radix(hex, 16).map_err(|_| "expected a PCI id like 0x20B010DE".to_string())?;
    let (device, vendor) = crate::catalog::split_nvml_pci_device_id(raw);
    if vendor != NVIDIA_PCI_VENDOR {
        return Err(format!("vendor {vendor:#06x} is not NVIDIA (0x10de)"));
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(product: &str, n: u32) -> MachineProfile {
        let gpus: String = (0..n)
            .map(|i| {
                format!(
                    "  - {{index: {i}, product_name: \"{product}\", uuid: GPU-{i}, pci_bus_id: \"0000:{:02x}:00.0\", numa_node: 0}}\n",
                    i + 16
                )
            })
            .collect();
        MachineProfile::from_yaml(&format!(
            "name: m\nnuma_nodes: [{{id: 0, cpus: \"0-7\"}}]\ngpus:\n{gpus}"
        ))
        .unwrap()
    }

    // The shape of NVIDIA's default mig-parted config (GPU operator), abridged.
    const CONFIG: &str = r#"
version: v1
mig-configs:
  all-disabled:
    - devices: all
      mig-enabled: false
  all-1g.5gb:
    - device-filter: ["0x20B010DE", "0x20B110DE", "0x20F110DE"]
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 7
    - device-filter: "0x233010DE"
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 7
  2x2g.10gb-3x1g.5gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 3
        "2g.10gb": 2
  custom-split:
    - devices: [0, 1]
      mig-enabled: true
      mig-devices:
        "3g.20gb": 2
    - devices: [2, 3]
      mig-enabled: false
"#;

    #[test]
    fn resolves_per_gpu_targets() {
        let c = MigPartedConfig::from_yaml(CONFIG).unwrap();
        let a100 = machine("NVIDIA A100-SXM4-40GB", 4);
        let t = c.targets("2x2g.10gb-3x1g.5gb", &a100).unwrap();
        for target in t.values() {
            let GpuTarget::MigEnabled(l) = target else {
                panic!("{target:?}")
            };
            assert_eq!(l.counts(), BTreeMap::from([("1g.5gb", 3), ("2g.10gb", 2)]));
        }
        let t = c.targets("custom-split", &a100).unwrap();
        assert!(matches!(&t[&0], GpuTarget::MigEnabled(l) if l.counts()["3g.20gb"] == 2));
        assert_eq!(t[&3], GpuTarget::MigDisabled);

        // Device filters pick the entry for the model.
        let h100 = machine("NVIDIA H100 80GB HBM3", 2);
        let t = c.targets("all-1g.5gb", &h100).unwrap();
        assert!(matches!(&t[&0], GpuTarget::MigEnabled(l) if l.counts()["1g.10gb"] == 7));
    }

    #[test]
    fn unknown_profile_lists_the_models_profiles() {
        let c = MigPartedConfig::from_yaml(CONFIG).unwrap();
        let h100 = machine("NVIDIA H100 80GB HBM3", 1);
        let e = c.targets("2x2g.10gb-3x1g.5gb", &h100).unwrap_err().to_string();
        assert_eq!(
            e,
            "mig-parted config: mig-configs.2x2g.10gb-3x1g.5gb[0].mig-devices.1g.5gb: invalid value \"1g.5gb\": unknown MIG profile for NVIDIA H100 80GB HBM3; it has: 1g.10gb, 1g.10gb+me, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb"
        );
    }

    #[test]
    fn bad_configs_name_field_and_value() {
        let e = MigPartedConfig::from_yaml("version: v1\nmig-configs:\n  x:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"7g.40gb\": 1, \"1g.5gb\": 1}\n")
            .unwrap()
            .targets("x", &machine("NVIDIA A100-SXM4-40GB", 1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mig-configs.x[0].mig-devices") && e.contains("does not fit"),
            "{e}"
        );

        let e = MigPartedConfig::from_yaml(
            "version: v1\nmig-configs:\n  x:\n    - devices: some\n      mig-enabled: false\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("mig-configs.x[0].devices") && e.contains("some"), "{e}");

        let e = MigPartedConfig::from_yaml(
            "version: v1\nmig-configs:\n  x:\n    - devices: all\n      mig-enabled: true\n      mig-device: {}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `mig-device`"), "{e}");

        let e = MigPartedConfig::from_yaml("version: v1\nmig-configs:\n  x:\n    - device-filter: \"0x20B01002\"\n      devices: all\n      mig-enabled: false\n").unwrap_err().to_string();
        assert!(
            e.contains("device-filter[0]") && e.contains("0x20B01002") && e.contains("not NVIDIA"),
            "{e}"
        );

        let c = MigPartedConfig::from_yaml(CONFIG).unwrap();
        let e = c.targets("nope", &machine("Tesla T4", 1)).unwrap_err().to_string();
        assert!(e.contains("\"nope\"") && e.contains("all-disabled"), "{e}");
        let e = c.targets("all-1g.5gb", &machine("NVIDIA A100-SXM4-40GB", 1));
        assert!(e.is_ok());
        let e = c
            .targets("2x2g.10gb-3x1g.5gb", &machine("Tesla T4", 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not MIG-capable") && e.contains("Tesla T4"), "{e}");
    }
}
