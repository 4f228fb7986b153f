//! The mig-parted config a node gets when no config file is mounted: the
//! names the GPU operator (v26.3 and later) generates from NVML, so
//! `nvidia.com/mig.config=all-1g.10gb` works with no ConfigMap (PROTOCOLS
//! §13):
//!
//! - `all-disabled`: MIG off on every GPU;
//! - `all-enabled`: MIG on, no instances;
//! - `all-<profile>` (`+` written `.`): as many of that profile as fit, on
//!   the GPUs whose model offers it;
//! - `all-balanced`: 2 × 1g + 1 × 2g + 1 × 3g per 7-slice GPU.
//!
//! On a node with several models every entry except `all-disabled` carries
//! a `device-filter`, so each model gets its own profile names.

use std::collections::BTreeMap;

use super::mig_parted::{ConfigGpu, EntryDevices, MigConfigEntry, MigPartedConfig, device_filter};
use crate::mig::{MigFamily, MigLayout, ProfileKind};

/// The config names generated for `gpus`; see the module docs.
pub fn generated_config(gpus: &[ConfigGpu]) -> MigPartedConfig {
    let mut configs: BTreeMap<String, Vec<MigConfigEntry>> = BTreeMap::new();
    configs.insert(
        "all-disabled".into(),
        vec![MigConfigEntry {
            device_filter: None,
            devices: EntryDevices::All,
            mig_enabled: false,
            mig_devices: BTreeMap::new(),
        }],
    );
    // One group per model (PCI id) with MIG, in index order of first GPU.
    let mut models: Vec<(Option<u16>, MigFamily, Vec<u32>)> = Vec::new();
    for g in gpus {
        let Some(family) = g.family else { continue };
        match models
            .iter_mut()
            .find(|(id, f, _)| *id == g.pci_device_id && *f == family)
        {
            Some((_, _, idx)) => idx.push(g.index),
            None => models.push((g.pci_device_id, family, vec![g.index])),
        }
    }
    // A filter is needed when some GPU of the node is of another model; a
    // model without a known PCI id is selected by index instead.
    let mixed = gpus.iter().any(|g| g.family.is_none()) || models.len() > 1;
    let entry = |id: Option<u16>, indices: &[u32], mig_devices: BTreeMap<String, u32>| {
        let (device_filter, devices) = match (mixed, id) {
            (false, _) => (None, EntryDevices::All),
            (true, Some(id)) => (Some(vec![device_filter(id)]), EntryDevices::All),
            (true, None) => (None, EntryDevices::List(indices.to_vec())),
        };
        MigConfigEntry {
            device_filter,
            devices,
            mig_enabled: true,
            mig_devices,
        }
    };
    for (id, family, indices) in &models {
        let mut add = |name: String, devices: BTreeMap<String, u32>| {
            configs.entry(name).or_default().push(entry(*id, indices, devices));
        };
        add("all-enabled".into(), BTreeMap::new());
        for p in family.profiles() {
            let n = most_that_fit(*family, p.kind);
            add(
                format!("all-{}", p.name.replace('+', ".")),
                BTreeMap::from([(p.name.to_string(), n)]),
            );
        }
        let balanced = [(ProfileKind::G1, 2), (ProfileKind::G2, 1), (ProfileKind::G3, 1)];
        add(
            "all-balanced".into(),
            balanced
                .iter()
                .map(|&(k, n)| (family.profile(k).name.to_string(), n))
                .collect(),
        );
    }
    MigPartedConfig {
        version: "v1".into(),
        mig_configs: configs,
    }
}

/// The largest count of one profile that fits a GPU (at most its
/// `max_count`; fewer where placements overlap, e.g. 3 × 2g on 8 slices).
fn most_that_fit(family: MigFamily, kind: ProfileKind) -> u32 {
    (1..=u32::from(kind.spec().max_count))
        .rev()
        .find(|&n| MigLayout::pack(family, &[(kind, n)]).is_ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::mig_parted::GpuTarget;

    fn gpu(index: u32, product: &str) -> ConfigGpu {
        ConfigGpu::new(index, product, None)
    }

    #[test]
    fn one_model_gets_nvidias_names_without_filters() {
        let gpus: Vec<ConfigGpu> = (0..8).map(|i| gpu(i, "NVIDIA H100 80GB HBM3")).collect();
        let c = generated_config(&gpus);
        let names: Vec<&str> = c.names().collect();
        for want in [
            "all-disabled",
            "all-enabled",
            "all-balanced",
            "all-1g.10gb",
            "all-1g.10gb.me",
            "all-1g.20gb",
            "all-2g.20gb",
            "all-3g.40gb",
            "all-4g.40gb",
            "all-7g.80gb",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let t = c.targets_for("all-balanced", &gpus).unwrap();
        for target in t.values() {
            let GpuTarget::MigEnabled(l) = target else {
                panic!("{target:?}")
            };
            assert_eq!(
                l.counts(),
                BTreeMap::from([("1g.10gb", 2), ("2g.20gb", 1), ("3g.40gb", 1)])
            );
        }
        let t = c.targets_for("all-1g.10gb", &gpus).unwrap();
        assert!(matches!(&t[&3], GpuTarget::MigEnabled(l) if l.counts()["1g.10gb"] == 7));
        let t = c.targets_for("all-2g.20gb", &gpus).unwrap();
        assert!(matches!(&t[&3], GpuTarget::MigEnabled(l) if l.counts()["2g.20gb"] == 3));
        let t = c.targets_for("all-enabled", &gpus).unwrap();
        assert!(matches!(&t[&0], GpuTarget::MigEnabled(l) if l.instances.is_empty()));
        assert!(c.mig_configs.values().flatten().all(|e| e.device_filter.is_none()));
    }

    #[test]
    fn mixed_nodes_filter_by_model_and_leave_other_gpus_alone() {
        let gpus = vec![
            gpu(0, "NVIDIA H200"),
            gpu(1, "NVIDIA A100-SXM4-40GB"),
            gpu(2, "Tesla T4"),
        ];
        let c = generated_config(&gpus);
        // Each model keeps its own names.
        let t = c.targets_for("all-balanced", &gpus).unwrap();
        assert!(matches!(&t[&0], GpuTarget::MigEnabled(l) if l.counts()["3g.71gb"] == 1));
        assert!(matches!(&t[&1], GpuTarget::MigEnabled(l) if l.counts()["3g.20gb"] == 1));
        assert_eq!(t[&2], GpuTarget::Untouched);
        let t = c.targets_for("all-1g.18gb", &gpus).unwrap();
        assert!(matches!(&t[&0], GpuTarget::MigEnabled(l) if l.counts()["1g.18gb"] == 7));
        assert_eq!(t[&1], GpuTarget::Untouched);
        let t = c.targets_for("all-disabled", &gpus).unwrap();
        assert!(t.values().all(|t| *t == GpuTarget::MigDisabled));
        // And the generated config is a valid mig-parted file.
        let yaml = serde_json::to_string(&c).unwrap();
        assert!(yaml.contains("\"device-filter\":[\"0x233510DE\"]"), "{yaml}");
    }
}
