//! Machine profiles: everything NVML and sysfs would report about one node,
//! as YAML under `configs/machines/`. The simulated GPU backend, the fake
//! NVML library and the topology model all read this one format.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::catalog::{self, Identified};
use crate::yaml::ConfigError;

const WHAT: &str = "machine profile";

/// NVLink 2, 3 and 4 all carry 25 GB/s per link per direction.
pub const NVLINK_GBPS_PER_LINK: u32 = 25;

/// Bounds on what one profile may hold. A profile also arrives from the
/// API (the `railyard.dev/gpu-topology` node annotation), so every count is
/// untrusted: each bound sits well above any real machine and keeps the
/// work and memory of validating and building a profile proportional to its
/// text. They are checked in [`MachineProfile::validate`], before anything
/// is expanded.
pub mod limits {
    /// CPU ids: x86-64 Linux is built with at most 8,192 CPUs (`NR_CPUS`,
    /// `CONFIG_MAXSMP`); a cpulist naming a higher id, or a profile with more
    /// CPUs than that in all, is refused.
    pub const MAX_CPUS: u32 = 8192;
    /// NUMA nodes: Linux's `MAX_NUMNODES` with `NODES_SHIFT = 10`.
    pub const MAX_NUMA_NODES: usize = 1024;
    /// GPUs per profile: the largest single systems ship 16, and a profile
    /// may also model a whole NVLink domain (NVL72) as one machine. The
    /// extender places on nodes of at most 64 GPUs and refuses larger ones
    /// with a reason (`extender::MAX_NODE_GPUS`).
    pub const MAX_GPUS: usize = 256;
    /// NICs per node (a DGX H100 has 10 ConnectX ports plus BlueField).
    pub const MAX_NICS: usize = 128;
    /// PCIe switches per node (a DGX has 4 to 24, counting both levels).
    pub const MAX_PCIE_SWITCHES: usize = 512;
    /// NVLink pair entries (64 GPUs fully meshed would be 2,016 pairs).
    pub const MAX_NVLINK_LINKS: usize = 4096;
    /// MIG instances on one GPU: at most 7 exist on any model.
    pub const MAX_MIG_INSTANCES: usize = 8;
    /// Bytes of the topology annotation the extender will parse: the API
    /// caps all of a node's annotations together at 256 KiB.
    pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineProfile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// As `nvmlSystemGetDriverVersion` reports it.
    #[serde(default = "default_driver")]
    pub driver_version: String,
    /// As `nvmlSystemGetCudaDriverVersion_v2` reports it (e.g. 12040).
    #[serde(default = "default_cuda")]
    pub cuda_driver_version: u32,
    pub numa_nodes: Vec<NumaNode>,
    #[serde(default)]
    pub pcie_switches: Vec<PcieSwitch>,
    pub gpus: Vec<GpuSpec>,
    #[serde(default)]
    pub nvlink: NvLinkSpec,
    #[serde(default)]
    pub nics: Vec<NicSpec>,
}

fn default_driver() -> String {
    "550.54.15".into()
}
fn default_cuda() -> u32 {
    12040
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumaNode {
    pub id: u32,
    /// Linux cpulist syntax, e.g. `0-55,112-167`.
    pub cpus: String,
    /// CPU socket the node belongs to.
    #[serde(default)]
    pub socket: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcieSwitch {
    pub id: String,
    /// PCIe root complex (host bridge) it hangs off, `pci<domain>:<bus>` as in
    /// `resource.kubernetes.io/pcieRoot`.
    pub root: String,
    pub numa_node: u32,
    /// Upstream switch, for two-level switch trees.
    #[serde(default)]
    pub parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSpec {
    pub index: u32,
    /// `nvmlDeviceGetName`, e.g. `NVIDIA H100 80GB HBM3`.
    pub product_name: String,
    /// PCI device id (upper half of NVML's `pciDeviceId`).
    #[serde(default)]
    pub pci_device_id: Option<u16>,
    pub uuid: String,
    /// Sysfs form: `0000:18:00.0`.
    pub pci_bus_id: String,
    /// `/dev/nvidia<minor>`; defaults to the index.
    #[serde(default)]
    pub minor: Option<u32>,
    pub numa_node: u32,
    /// PCIe switch the GPU sits under; absent = directly on a root port.
    #[serde(default)]
    pub pcie_switch: Option<String>,
    /// Root complex when there is no switch.
    #[serde(default)]
    pub pcie_root: Option<String>,
    /// Total memory; defaults to the catalog's value for the model.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    #[serde(default)]
    pub mig_enabled: bool,
    /// MIG instances present at start, when `mig_enabled`.
    #[serde(default)]
    pub mig_instances: Vec<MigInstanceSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigInstanceSpec {
    pub profile: String,
    pub start: u8,
}

/// NVLink wiring. Either every GPU is on NVSwitches, or explicit pairs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvLinkSpec {
    /// All GPUs connect through NVSwitch: every pair gets the GPU's full
    /// NVLink bandwidth.
    #[serde(default)]
    pub nvswitch: bool,
    /// Direct links (NVLink bridges, hybrid cube mesh).
    #[serde(default)]
    pub links: Vec<NvLinkPair>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvLinkPair {
    pub gpus: [u32; 2],
    /// Number of NVLink links between the two.
    pub links: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// RDMA device name, e.g. `mlx5_0` (`/sys/class/infiniband/<name>`).
    pub name: String,
    /// Network interface, e.g. `ibp24s0`.
    #[serde(default)]
    pub netdev: Option<String>,
    pub pci_bus_id: String,
    pub numa_node: u32,
    #[serde(default)]
    pub pcie_switch: Option<String>,
    #[serde(default)]
    pub pcie_root: Option<String>,
    pub speed_gbps: u32,
    /// Rail index in a rail-optimized fabric; none for front-end NICs.
    #[serde(default)]
    pub rail: Option<u32>,
    #[serde(default)]
    pub link_layer: LinkLayer,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkLayer {
    #[default]
    Infiniband,
    Ethernet,
}

impl MachineProfile {
    /// Parses and validates a profile.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        // Bounded like the configs: a profile file can be a mounted
        // ConfigMap too, and aliases must not expand past its size.
        let p: MachineProfile = crate::config::budget::from_yaml_bounded(WHAT, text)?;
        p.validate()?;
        Ok(p)
    }

    pub fn gpu_model(&self, gpu: &GpuSpec) -> Identified {
        catalog::identify(&gpu.product_name, gpu.pci_device_id)
    }

    /// Memory of a GPU: the profile's value, else the catalog's.
    pub fn gpu_memory_mib(&self, gpu: &GpuSpec) -> u64 {
        gpu.memory_mib
            .or_else(|| self.gpu_model(gpu).model().map(|m| m.memory_mib))
            .unwrap_or(0)
    }

    /// PCIe root complex of a device: its own, or its switch's.
    pub fn root_of(&self, switch: Option<&str>, root: Option<&str>) -> Option<String> {
        if let Some(r) = root {
            return Some(r.to_string());
        }
        let sw = self.pcie_switches.iter().find(|s| Some(s.id.as_str()) == switch)?;
        Some(sw.root.clone())
    }

    pub fn gpu(&self, index: u32) -> Option<&GpuSpec> {
        self.gpus.iter().find(|g| g.index == index)
    }

    /// NVLink bandwidth between two GPUs of this machine, GB/s one way; 0 if
    /// they have no NVLink path. On NVSwitch systems every pair gets the GPU's
    /// full NVLink bandwidth (NVIDIA's allocator wrongly counts only direct links).
    pub fn nvlink_gbps(&self, a: u32, b: u32) -> u32 {
        if a == b {
            return 0;
        }
        let per_link = |i: u32| {
            self.gpu(i)
                .and_then(|g| self.gpu_model(g).model())
                .map_or(NVLINK_GBPS_PER_LINK, |m| {
                    m.nvlink_gbps_per_link.max(NVLINK_GBPS_PER_LINK)
                })
        };
        if self.nvlink.nvswitch {
            let full = |i: u32| {
                self.gpu(i)
                    .and_then(|g| self.gpu_model(g).model())
                    .map_or(0, |m| m.nvlink_gbps())
            };
            return full(a).min(full(b));
        }
        self.nvlink
            .links
            .iter()
            .filter(|l| l.gpus == [a, b] || l.gpus == [b, a])
            .map(|l| l.links * per_link(a).min(per_link(b)))
            .sum()
    }

    /// Cross-reference checks serde cannot do. Errors name the field path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_sizes()?;
        let numa: BTreeSet<u32> = self.numa_nodes.iter().map(|n| n.id).collect();
        let switches: BTreeSet<&str> = self.pcie_switches.iter().map(|s| s.id.as_str()).collect();
        let mut total_cpus = 0u32;
        for (i, n) in self.numa_nodes.iter().enumerate() {
            let at = format!("numa_nodes[{i}].cpus");
            let count = cpulist_len(&n.cpus).map_err(|reason| ConfigError::invalid(WHAT, &at, &n.cpus, reason))?;
            total_cpus = total_cpus.saturating_add(count);
            if total_cpus > limits::MAX_CPUS {
                return Err(ConfigError::invalid(
                    WHAT,
                    at,
                    &n.cpus,
                    format!(
                        "the profile's NUMA nodes list more than {} CPUs in all",
                        limits::MAX_CPUS
                    ),
                ));
            }
        }
        for (i, s) in self.pcie_switches.iter().enumerate() {
            if !numa.contains(&s.numa_node) {
                return Err(ConfigError::invalid(
                    WHAT,
                    format!("pcie_switches[{i}].numa_node"),
                    s.numa_node,
                    "no such NUMA node",
                ));
            }
            if let Some(p) = &s.parent
                && (!switches.contains(p.as_str()) || p == &s.id)
            {
                return Err(ConfigError::invalid(
                    WHAT,
                    format!("pcie_switches[{i}].parent"),
                    p,
                    "no such PCIe switch",
                ));
            }
        }
        let mut indices = BTreeSet::new();
        let mut uuids = BTreeSet::new();
        for (i, g) in self.gpus.iter().enumerate() {
            let at = |f: &str| format!("gpus[{i}].{f}");
            if !indices.insert(g.index) {
                return Err(ConfigError::invalid(WHAT, at("index"), g.index, "duplicate GPU index"));
            }
            if !g.uuid.starts_with("GPU-") || !uuids.insert(g.uuid.as_str()) {
                return Err(ConfigError::invalid(
                    WHAT,
                    at("uuid"),
                    &g.uuid,
                    "must be a unique `GPU-…` UUID",
                ));
            }
            check_bus_id(&g.pci_bus_id).map_err(|r| ConfigError::invalid(WHAT, at("pci_bus_id"), &g.pci_bus_id, r))?;
            if !numa.contains(&g.numa_node) {
                return Err(ConfigError::invalid(
                    WHAT,
                    at("numa_node"),
                    g.numa_node,
                    "no such NUMA node",
                ));
            }
            if let Some(sw) = &g.pcie_switch
                && !switches.contains(sw.as_str())
            {
                return Err(ConfigError::invalid(WHAT, at("pcie_switch"), sw, "no such PCIe switch"));
            }
            let model = self.gpu_model(g);
            if !g.mig_instances.is_empty() {
                let Some(family) = model.mig_family() else {
                    return Err(ConfigError::invalid(
                        WHAT,
                        at("mig_instances"),
                        &g.product_name,
                        "model is not MIG-capable",
                    ));
                };
                if !g.mig_enabled {
                    return Err(ConfigError::invalid(
                        WHAT,
                        at("mig_enabled"),
                        false,
                        "MIG instances need mig_enabled: true",
                    ));
                }
                self.mig_layout(g).map_err(|e| {
                    let _ = family;
                    ConfigError::invalid(
                        WHAT,
                        at("mig_instances"),
                        format!(
                            "{:?}",
                            g.mig_instances
                                .iter()
                                .map(|m| format!("{}@{}", m.profile, m.start))
                                .collect::<Vec<_>>()
                        ),
                        e.to_string(),
                    )
                })?;
            }
        }
        for (i, l) in self.nvlink.links.iter().enumerate() {
            for g in l.gpus {
                if !indices.contains(&g) {
                    return Err(ConfigError::invalid(
                        WHAT,
                        format!("nvlink.links[{i}].gpus"),
                        g,
                        "no GPU with this index",
                    ));
                }
            }
            if l.gpus[0] == l.gpus[1] || l.links == 0 {
                return Err(ConfigError::invalid(
                    WHAT,
                    format!("nvlink.links[{i}]"),
                    format!("{:?} x{}", l.gpus, l.links),
                    "needs two different GPUs and at least one link",
                ));
            }
        }
        if self.nvlink.nvswitch && !self.nvlink.links.is_empty() {
            return Err(ConfigError::invalid(
                WHAT,
                "nvlink.links",
                self.nvlink.links.len(),
                "give either nvswitch: true or explicit links, not both",
            ));
        }
        for (i, n) in self.nics.iter().enumerate() {
            let at = |f: &str| format!("nics[{i}].{f}");
            check_bus_id(&n.pci_bus_id).map_err(|r| ConfigError::invalid(WHAT, at("pci_bus_id"), &n.pci_bus_id, r))?;
            if !numa.contains(&n.numa_node) {
                return Err(ConfigError::invalid(
                    WHAT,
                    at("numa_node"),
                    n.numa_node,
                    "no such NUMA node",
                ));
            }
            if let Some(sw) = &n.pcie_switch
                && !switches.contains(sw.as_str())
            {
                return Err(ConfigError::invalid(WHAT, at("pcie_switch"), sw, "no such PCIe switch"));
            }
            if n.speed_gbps == 0 {
                return Err(ConfigError::invalid(WHAT, at("speed_gbps"), 0, "must be positive"));
            }
        }
        Ok(())
    }

    /// Counts against [`limits`], checked first so that nothing below
    /// expands an oversized input.
    fn check_sizes(&self) -> Result<(), ConfigError> {
        let too_many = |path: String, n: usize, max: usize, what: &str| {
            (n > max).then(|| ConfigError::invalid(WHAT, path, n, format!("at most {max} {what}")))
        };
        let checks = [
            too_many(
                "numa_nodes".into(),
                self.numa_nodes.len(),
                limits::MAX_NUMA_NODES,
                "NUMA nodes per machine",
            ),
            too_many("gpus".into(), self.gpus.len(), limits::MAX_GPUS, "GPUs per machine"),
            too_many("nics".into(), self.nics.len(), limits::MAX_NICS, "NICs per machine"),
            too_many(
                "pcie_switches".into(),
                self.pcie_switches.len(),
                limits::MAX_PCIE_SWITCHES,
                "PCIe switches per machine",
            ),
            too_many(
                "nvlink.links".into(),
                self.nvlink.links.len(),
                limits::MAX_NVLINK_LINKS,
                "NVLink entries per machine",
            ),
        ];
        if let Some(e) = checks.into_iter().flatten().next() {
            return Err(e);
        }
        for (i, g) in self.gpus.iter().enumerate() {
            if let Some(e) = too_many(
                format!("gpus[{i}].mig_instances"),
                g.mig_instances.len(),
                limits::MAX_MIG_INSTANCES,
                "MIG instances per GPU",
            ) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The MIG layout a GPU starts with.
    pub fn mig_layout(&self, g: &GpuSpec) -> Result<crate::mig::MigLayout, crate::mig::LayoutError> {
        use crate::mig::{LayoutError, MigInstance, MigLayout};
        let family = self
            .gpu_model(g)
            .mig_family()
            .ok_or_else(|| LayoutError::UnknownProfile {
                profile: "(any)".into(),
                family: crate::mig::MigFamily::A100_40gb,
                available: "none: model is not MIG-capable".into(),
            })?;
        let mut instances = Vec::new();
        for m in &g.mig_instances {
            let p = family
                .profile_by_name(&m.profile)
                .ok_or_else(|| LayoutError::UnknownProfile {
                    profile: m.profile.clone(),
                    family,
                    available: family.profile_names().join(", "),
                })?;
            instances.push(MigInstance::at(p.kind, m.start));
        }
        let layout = MigLayout::new(family, instances);
        layout.validate()?;
        Ok(layout)
    }
}

/// Parses a Linux cpulist (`0-3,8,10-11`) into CPU ids. Ids must be below
/// [`limits::MAX_CPUS`] and the list may name at most that many CPUs, so the
/// result is bounded whatever the text says.
pub fn parse_cpulist(s: &str) -> Result<Vec<u32>, String> {
    let ranges = cpulist_ranges(s)?;
    Ok(ranges.into_iter().flat_map(|(a, b)| a..=b).collect())
}

/// How many CPUs a cpulist names, without expanding it.
pub fn cpulist_len(s: &str) -> Result<u32, String> {
    Ok(cpulist_ranges(s)?.iter().map(|&(a, b)| b - a + 1).sum())
}

/// The cpulist's ranges `(first, last)`, bounded as [`parse_cpulist`] says.
fn cpulist_ranges(s: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut out = Vec::new();
    let mut count = 0u32;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let bad = || format!("`{part}` is not a CPU number or range");
        let a: u32 = a.trim().parse().map_err(|_| bad())?;
        let b: u32 = b.trim().parse().map_err(|_| bad())?;
        if b < a {
            return Err(format!("range `{part}` ends before it starts"));
        }
        if b >= limits::MAX_CPUS {
            return Err(format!(
                "CPU {b} in `{part}` is above the largest CPU id Linux supports ({})",
                limits::MAX_CPUS - 1
            ));
        }
        count += b - a + 1;
        if count > limits::MAX_CPUS {
            return Err(format!("the list names more than {} CPUs", limits::MAX_CPUS));
        }
        out.push((a, b));
    }
    Ok(out)
}

/// Checks the sysfs BDF form `dddd:bb:dd.f` (hex).
fn check_bus_id(s: &str) -> Result<(), &'static str> {
    let ok = s.len() == 12
        && s.char_indices().all(|(i, c)| match i {
            4 | 7 => c == ':',
            10 => c == '.',
            _ => c.is_ascii_hexdigit(),
        });
    if ok {
        Ok(())
    } else {
        Err("expected a PCI address like 0000:18:00.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
name: mini
numa_nodes: [{id: 0, cpus: "0-7"}]
pcie_switches: [{id: sw0, root: "pci0000:00", numa_node: 0}]
gpus:
  - {index: 0, product_name: "NVIDIA A100-SXM4-40GB", uuid: GPU-0, pci_bus_id: "0000:07:00.0", numa_node: 0, pcie_switch: sw0,
     mig_enabled: true, mig_instances: [{profile: 3g.20gb, start: 0}, {profile: 2g.10gb, start: 4}]}
  - {index: 1, product_name: "Tesla T4", uuid: GPU-1, pci_bus_id: "0000:08:00.0", numa_node: 0, pcie_root: "pci0000:00"}
nics: [{name: mlx5_0, pci_bus_id: "0000:09:00.0", numa_node: 0, pcie_switch: sw0, speed_gbps: 200, rail: 0}]
"#;

    #[test]
    fn parses_a_small_profile() {
        let p = MachineProfile::from_yaml(MINI).unwrap();
        assert_eq!(p.gpus.len(), 2);
        assert_eq!(p.gpu_memory_mib(&p.gpus[1]), 15360);
        assert_eq!(p.mig_layout(&p.gpus[0]).unwrap().counts().len(), 2);
        assert_eq!(
            p.root_of(p.gpus[0].pcie_switch.as_deref(), None).as_deref(),
            Some("pci0000:00")
        );
    }

    #[test]
    fn errors_name_field_and_value() {
        let bad = MINI.replace("pcie_switch: sw0,\n", "pcie_switch: sw9,\n");
        let e = MachineProfile::from_yaml(&bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            "machine profile: gpus[0].pcie_switch: invalid value \"sw9\": no such PCIe switch"
        );

        let bad = MINI.replace("{profile: 2g.10gb, start: 4}", "{profile: 2g.10gb, start: 2}");
        let e = MachineProfile::from_yaml(&bad).unwrap_err();
        assert!(
            e.to_string().contains("gpus[0].mig_instances") && e.to_string().contains("overlaps"),
            "{e}"
        );

        let bad = MINI.replace("0000:08:00.0", "08:00.0");
        let e = MachineProfile::from_yaml(&bad).unwrap_err();
        assert_eq!(e.path(), "gpus[1].pci_bus_id");

        let bad = MINI.replace("speed_gbps: 200", "speed_gbps: 200, colour: red");
        let e = MachineProfile::from_yaml(&bad).unwrap_err();
        assert!(
            e.to_string().contains("nics[0]") && e.to_string().contains("unknown field `colour`"),
            "{e}"
        );
    }

    #[test]
    fn nvlink_pair_bandwidth() {
        let p = MachineProfile::from_yaml(MINI).unwrap();
        assert_eq!(p.nvlink_gbps(0, 1), 0);
        let bridged = MINI.replace("nics:", "nvlink: {links: [{gpus: [0, 1], links: 4}]}\nnics:");
        let p = MachineProfile::from_yaml(&bridged).unwrap();
        assert_eq!(p.nvlink_gbps(1, 0), 100);
        let switched = MINI.replace("nics:", "nvlink: {nvswitch: true}\nnics:");
        let p = MachineProfile::from_yaml(&switched).unwrap();
        // T4 has no NVLink, so even on a switch the pair gets none.
        assert_eq!(p.nvlink_gbps(0, 1), 0);
    }

    #[test]
    fn cpulists() {
        assert_eq!(parse_cpulist("0-2,8").unwrap(), vec![0, 1, 2, 8]);
        assert_eq!(cpulist_len("0-55,112-167").unwrap(), 112);
        assert!(parse_cpulist("3-1").is_err());
        assert!(parse_cpulist("a").is_err());
        assert_eq!(parse_cpulist("8191").unwrap(), vec![8191]);
    }

    /// `0-4294967295` used to expand to 2^32 ids (16 GiB) before anything
    /// looked at it; the extender re-read it on every restart and aborted.
    #[test]
    fn huge_cpulists_are_refused_not_expanded() {
        let e = parse_cpulist("0-4294967295").unwrap_err();
        assert!(e.contains("4294967295") && e.contains("8191"), "{e}");
        assert!(parse_cpulist("0-8192").is_err());
        // Repeats cannot add up past the bound either.
        let repeated = ["0-8191"; 3].join(",");
        assert!(parse_cpulist(&repeated).unwrap_err().contains("more than 8192"));
        let p = MINI.replace("\"0-7\"", "\"0-4294967295\"");
        let e = MachineProfile::from_yaml(&p).unwrap_err();
        assert_eq!(e.path(), "numa_nodes[0].cpus");
    }

    #[test]
    fn sizes_are_bounded_with_field_paths() {
        let mut p = MachineProfile::from_yaml(MINI).unwrap();
        let gpu = p.gpus[1].clone();
        p.gpus = (0..257)
            .map(|i| GpuSpec {
                index: i,
                uuid: format!("GPU-{i}"),
                ..gpu.clone()
            })
            .collect();
        let e = p.validate().unwrap_err();
        assert_eq!(e.path(), "gpus");
        assert!(e.to_string().contains("at most 256 GPUs"), "{e}");

        let mut p = MachineProfile::from_yaml(MINI).unwrap();
        p.numa_nodes = (0..1025)
            .map(|id| NumaNode {
                id,
                cpus: String::new(),
                socket: 0,
            })
            .collect();
        assert_eq!(p.validate().unwrap_err().path(), "numa_nodes");

        // Many NUMA nodes each within bounds, but too many CPUs together.
        let mut p = MachineProfile::from_yaml(MINI).unwrap();
        p.numa_nodes = (0..3)
            .map(|id| NumaNode {
                id,
                cpus: "0-4000".into(),
                socket: 0,
            })
            .collect();
        assert_eq!(p.validate().unwrap_err().path(), "numa_nodes[2].cpus");
    }
}
