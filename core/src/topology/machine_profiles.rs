//! Every machine profile shipped under `configs/machines` parses, validates,
//! builds a topology, and keeps GPU UUIDs unique across all profiles.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::NodeTopology;
use crate::machine::MachineProfile;

pub(crate) fn machines_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/machines")
}

/// Loads one shipped profile by file stem, e.g. `dgx-h100`.
pub(crate) fn load(stem: &str) -> MachineProfile {
    let path = machines_dir().join(format!("{stem}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    MachineProfile::from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn all() -> Vec<(String, String)> {
    let dir = machines_dir();
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                text,
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_machine_profile_parses_and_builds() {
    let files = all();
    for required in [
        "dgx-h100.yaml",
        "dgx-a100.yaml",
        "a100-pcie-4x.yaml",
        "t4-2x.yaml",
        "dgx-h100-mig.yaml",
    ] {
        assert!(
            files.iter().any(|(n, _)| n == required),
            "configs/machines/{required} is missing"
        );
    }
    let mut uuids: BTreeMap<String, String> = BTreeMap::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (file, text) in &files {
        assert!(
            text.starts_with('#'),
            "{file} must start with a comment saying what the machine is"
        );
        let p = MachineProfile::from_yaml(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let stem = file.trim_end_matches(".yaml").trim_end_matches(".yml");
        assert_eq!(p.name, stem, "{file}: name should match the file name");
        if let Some(other) = names.insert(p.name.clone(), file.clone()) {
            panic!("profile name {} used by {file} and {other}", p.name);
        }
        let t = NodeTopology::from_profile(&p).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(t.gpu_indices().len(), p.gpus.len(), "{file}");
        for g in &p.gpus {
            assert!(
                p.gpu_model(g).model().is_some(),
                "{file}: GPU {} model {:?} not in the catalog",
                g.index,
                g.product_name
            );
            let u = &g.uuid;
            let well_formed = u.len() == 40
                && u.strip_prefix("GPU-").is_some_and(|rest| {
                    rest.char_indices().all(|(i, c)| {
                        if [8, 13, 18, 23].contains(&i) {
                            c == '-'
                        } else {
                            c.is_ascii_hexdigit()
                        }
                    })
                });
            assert!(
                well_formed,
                "{file}: GPU {} UUID {u:?} is not GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
                g.index
            );
            if let Some(other) = uuids.insert(u.clone(), file.clone()) {
                panic!("UUID {u} used in {file} and {other}");
            }
        }
    }
}

#[test]
fn machine_mig_profile_has_mig_gpus() {
    let p = load("dgx-h100-mig");
    let mig: Vec<u32> = p.gpus.iter().filter(|g| g.mig_enabled).map(|g| g.index).collect();
    assert_eq!(mig, vec![4, 5, 6, 7]);
    let counts: Vec<usize> = p
        .gpus
        .iter()
        .filter(|g| g.mig_enabled)
        .map(|g| g.mig_instances.len())
        .collect();
    assert_eq!(counts, vec![7, 4, 1, 0]);
    for g in p.gpus.iter().filter(|g| g.mig_enabled) {
        assert!(p.mig_layout(g).is_ok(), "GPU {}", g.index);
    }
}

#[test]
fn machine_dgx_h100_facts() {
    let p = load("dgx-h100");
    assert_eq!(p.gpus.len(), 8);
    assert!(p.gpus.iter().all(|g| g.pci_device_id == Some(0x2330)));
    assert!(p.nvlink.nvswitch);
    let rails: Vec<u32> = p.nics.iter().filter_map(|n| n.rail).collect();
    assert_eq!(rails, (0..8).collect::<Vec<_>>());
    assert!(p.nics.iter().filter(|n| n.rail.is_some()).all(|n| n.speed_gbps == 400));
    assert_eq!(p.nics.iter().filter(|n| n.rail.is_none()).count(), 2);
    // Each compute NIC shares its PCIe switch with exactly one GPU, on the same
    // NUMA node, and is that GPU's NIC (so GPU i is on rail i).
    let topo = crate::topology::NodeTopology::from_profile(&p).unwrap();
    for n in p.nics.iter().filter(|n| n.rail.is_some()) {
        let gpus: Vec<_> = p.gpus.iter().filter(|g| g.pcie_switch == n.pcie_switch).collect();
        assert_eq!(gpus.len(), 1, "{}", n.name);
        assert_eq!(gpus[0].numa_node, n.numa_node, "{}", n.name);
        assert_eq!(
            topo.gpu_nic(gpus[0].index).map(|x| x.name.as_str()),
            Some(n.name.as_str())
        );
    }
    let cpus: usize = p
        .numa_nodes
        .iter()
        .map(|n| crate::machine::parse_cpulist(&n.cpus).map_or(0, |c| c.len()))
        .sum();
    assert_eq!(cpus, 224);
}

/// The cached per-GPU NIC the fabric uses is the same answer placement gets
/// when it ranks NICs with every one of them free.
#[test]
fn cached_gpu_nic_matches_a_fresh_ranking() {
    for name in ["dgx-h100", "dgx-a100", "a100-pcie-4x", "t4-2x", "dgx-h100-mig"] {
        let p = load(name);
        let topo = crate::topology::NodeTopology::from_profile(&p).unwrap();
        let all: std::collections::BTreeSet<String> = p.nics.iter().map(|n| n.name.clone()).collect();
        for g in &p.gpus {
            let fresh = topo.nearest_nic(g.index, Some(&all)).unwrap();
            assert_eq!(topo.gpu_nic(g.index), fresh.as_ref(), "{name} GPU {}", g.index);
        }
    }
}
