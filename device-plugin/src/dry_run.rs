//! `--dry-run`: the resources this node would advertise, from a machine
//! profile (and optionally a mig-parted layout) and the selected config.

use std::collections::BTreeMap;
use std::fmt::Write;

use railyard_core::config::MigPartedConfig;
use railyard_core::machine::MachineProfile;
use railyard_core::resources::{AdvertisedResource, advertised_resources, inventory};

use crate::config::{self, NodeLabels};
use crate::options::Options;

/// Computes the advertised resources without touching kubelet or a GPU.
pub fn resources(o: &Options, labels: &dyn NodeLabels) -> Result<(String, Vec<AdvertisedResource>), String> {
    let path = o.machine.as_ref().ok_or("--dry-run needs --machine <profile.yaml>")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let machine = MachineProfile::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let targets = match (&o.mig_config, &o.mig_config_name) {
        (Some(p), Some(name)) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let cfg = MigPartedConfig::from_yaml(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            cfg.targets(name, &machine)
                .map_err(|e| format!("mig-parted config {name:?}: {e}"))?
        }
        (Some(_), None) => return Err("--mig-config needs --mig-config-name".into()),
        _ => BTreeMap::new(),
    };
    let source = config::select(o, labels).map_err(|e| e.to_string())?;
    let cfg = config::load(&source, o).map_err(|e| e.to_string())?;
    let res = advertised_resources(&inventory(&machine, &targets), &cfg)
        .map_err(|e| format!("config {}: {e}", source.describe()))?;
    Ok((source.describe(), res))
}

/// The report `--dry-run` prints.
pub fn report(config: &str, resources: &[AdvertisedResource]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "config: {config}");
    for r in resources {
        let _ = writeln!(out, "{}: {}", r.name, r.devices.len());
        if r.sharing != railyard_core::config::SharingStrategy::None {
            let _ = writeln!(
                out,
                "  sharing: {}{}",
                r.sharing,
                if r.fail_requests_greater_than_one {
                    ", failRequestsGreaterThanOne"
                } else {
                    ""
                }
            );
        }
        for d in &r.devices {
            let numa = d.device.numa_node.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "  {}  index={} numa={} memory={}MiB{}",
                d.id,
                d.device.index,
                numa,
                d.memory_share_mib,
                d.device
                    .mig_profile
                    .map(|p| format!(" profile={p}"))
                    .unwrap_or_default()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::PathBuf;

    use clap::Parser;

    use super::*;
    use crate::config::FlagOrFileLabels;

    fn repo(rel: &str) -> String {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(rel)
            .display()
            .to_string()
    }

    fn run(args: &[&str]) -> Result<String, String> {
        let mut all = vec!["railyard-device-plugin".to_string(), "--dry-run".into()];
        all.extend(args.iter().map(|a| {
            if a.starts_with("configs/") {
                repo(a)
            } else {
                a.to_string()
            }
        }));
        let o = Options::parse_from(all);
        let (config, res) = resources(&o, &FlagOrFileLabels::from_options(&o))?;
        Ok(report(&config, &res))
    }

    #[test]
    fn the_two_resource_facts() {
        let out = run(&[
            "--machine",
            "configs/machines/a100-pcie-4x.yaml",
            "--config-file",
            "configs/device-plugin/mig-mixed.yaml",
            "--mig-config",
            "configs/mig-parted/config.yaml",
            "--mig-config-name",
            "2x2g.10gb-3x1g.5gb",
        ])
        .unwrap();
        let heads: Vec<&str> = out.lines().filter(|l| l.starts_with("nvidia.com/")).collect();
        assert_eq!(
            heads,
            ["nvidia.com/mig-1g.5gb: 12", "nvidia.com/mig-2g.10gb: 8"],
            "{out}"
        );

        let out = run(&[
            "--machine",
            "configs/machines/a100-pcie-4x.yaml",
            "--config-file",
            "configs/device-plugin/time-slicing-4.yaml",
        ])
        .unwrap();
        let heads: Vec<&str> = out.lines().filter(|l| l.starts_with("nvidia.com/")).collect();
        assert_eq!(heads, ["nvidia.com/gpu.shared: 16"], "{out}");
        assert!(out.contains("  sharing: time-slicing\n"), "{out}");
        assert!(out.contains("::3  index=3 numa=1 memory=10240MiB"), "{out}");
    }

    #[test]
    fn errors_are_clear() {
        let e = run(&["--config-file", "configs/device-plugin/mig-mixed.yaml"]).unwrap_err();
        assert!(e.contains("--machine"), "{e}");
        let e = run(&[
            "--machine",
            "configs/machines/a100-pcie-4x.yaml",
            "--mig-strategy",
            "single",
            "--mig-config",
            "configs/mig-parted/config.yaml",
            "--mig-config-name",
            "2x2g.10gb-3x1g.5gb",
        ])
        .unwrap_err();
        assert!(e.contains("more than one MIG device type"), "{e}");
    }

    /// Finding 1: the same unbounded cpulist aborted `--dry-run` (a 16 GiB
    /// allocation); now it is a clear error naming the field and value.
    #[test]
    fn an_unbounded_cpulist_is_an_error_not_an_abort() {
        let text = std::fs::read_to_string(repo("configs/machines/a100-pcie-4x.yaml")).expect("profile");
        let mut doc: serde_json::Value = serde_saphyr::from_str(&text).expect("yaml");
        doc["numa_nodes"][0]["cpus"] = serde_json::Value::from("0-4294967295");
        let dir = std::env::temp_dir().join(format!("railyard-dry-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("huge-cpulist.yaml");
        std::fs::write(&path, serde_saphyr::to_string(&doc).expect("yaml")).expect("write");
        let e = run(&["--machine", path.to_str().expect("utf-8 path")]).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.contains("numa_nodes[0].cpus") && e.contains("4294967295"), "{e}");
    }
}
