//! Which config is in force: a single file, or one of several named configs
//! chosen by the node label `nvidia.com/device-plugin.config` (NVIDIA's
//! config-manager semantics), with the command line and environment
//! overriding its `flags:`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use railyard_core::config::DevicePluginConfig;
use railyard_core::config::device_plugin::{DeviceListStrategy, PluginFlags};

use crate::options::Options;

/// The node label that selects a named config.
pub const CONFIG_LABEL: &str = "nvidia.com/device-plugin.config";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error(
        "no config selected: the node has no {CONFIG_LABEL} label and no --default-config is set, and {dir} holds {count} configs"
    )]
    NoneSelected { dir: PathBuf, count: usize },
    #[error("config {name:?} (from {origin}) not found in {dir}; available: {available}")]
    NotFound {
        name: String,
        origin: &'static str,
        dir: PathBuf,
        available: String,
    },
    #[error("config {name}: {message}")]
    Invalid { name: String, message: String },
}

/// Where the node's labels come from: the watched Node object with API
/// access ([`crate::kubeapi::KubeNodeLabels`]), else a flag or a file (see
/// README).
pub trait NodeLabels: Send + Sync + std::fmt::Debug {
    fn get(&self, key: &str) -> Result<Option<String>, ConfigError>;

    /// Ticks when the labels may have changed, for sources that are told
    /// (a Node watch); the config is then checked at once. Sources without
    /// it are polled every `--config-poll-ms`.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// Labels from `--node-config-label` and/or `--node-labels-file`.
#[derive(Debug, Clone, Default)]
pub struct FlagOrFileLabels {
    pub config_label: Option<String>,
    pub file: Option<PathBuf>,
}

impl FlagOrFileLabels {
    pub fn from_options(o: &Options) -> Self {
        FlagOrFileLabels {
            config_label: o.node_config_label.clone(),
            file: o.node_labels_file.clone(),
        }
    }
}

/// Parses `key="value"` / `key=value` lines (downward-API format).
pub fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

impl NodeLabels for FlagOrFileLabels {
    fn get(&self, key: &str) -> Result<Option<String>, ConfigError> {
        if let Some(f) = &self.file {
            match std::fs::read_to_string(f) {
                Ok(text) => {
                    if let Some(v) = parse_labels(&text).remove(key) {
                        return Ok(Some(v));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ConfigError::Io {
                        path: f.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        if key == CONFIG_LABEL {
            return Ok(self.config_label.clone());
        }
        Ok(None)
    }
}

/// The raw config the options and labels select, before parsing: compared
/// between checks to see whether anything changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSource {
    /// The named config, when named configs are used.
    pub name: Option<String>,
    pub path: Option<PathBuf>,
    pub text: String,
}

impl ConfigSource {
    pub fn describe(&self) -> String {
        match (&self.name, &self.path) {
            (Some(n), _) => n.clone(),
            (None, Some(p)) => p.display().to_string(),
            (None, None) => "(defaults)".into(),
        }
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Named configs in `dir`: file name without `.yaml`/`.yml`. Hidden files
/// (a ConfigMap volume's `..data` machinery) are skipped.
pub fn named_configs(dir: &Path) -> Result<BTreeMap<String, PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError::Io {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !e.path().is_file() {
            continue;
        }
        let key = name
            .strip_suffix(".yaml")
            .or_else(|| name.strip_suffix(".yml"))
            .unwrap_or(&name)
            .to_string();
        out.insert(key, e.path());
    }
    Ok(out)
}

/// Picks the config source as NVIDIA's config-manager does: the label's
/// named config, else the default, else the only one; or the single file;
/// or no file at all (defaults plus flags).
pub fn select(o: &Options, labels: &dyn NodeLabels) -> Result<ConfigSource, ConfigError> {
    if let Some(dir) = &o.config_dir {
        let all = named_configs(dir)?;
        let label = labels.get(CONFIG_LABEL)?.filter(|v| !v.is_empty());
        let (name, origin) = match (label, &o.default_config) {
            (Some(l), _) => (l, "node label"),
            (None, Some(d)) => (d.clone(), "--default-config"),
            (None, None) if all.len() == 1 => (all.keys().next().cloned().unwrap_or_default(), "only config"),
            (None, None) => {
                return Err(ConfigError::NoneSelected {
                    dir: dir.clone(),
                    count: all.len(),
                });
            }
        };
        let path = all.get(&name).ok_or_else(|| ConfigError::NotFound {
            name: name.clone(),
            origin,
            dir: dir.clone(),
            available: all.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        return Ok(ConfigSource {
            text: read(path)?,
            name: Some(name),
            path: Some(path.clone()),
        });
    }
    if let Some(f) = &o.config_file {
        return Ok(ConfigSource {
            name: None,
            path: Some(f.clone()),
            text: read(f)?,
        });
    }
    Ok(ConfigSource {
        name: None,
        path: None,
        text: "version: v1\n".into(),
    })
}

/// Parses the source and applies flag/env overrides.
pub fn load(source: &ConfigSource, o: &Options) -> Result<DevicePluginConfig, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        name: source.describe(),
        message,
    };
    let mut c = DevicePluginConfig::from_yaml(&source.text).map_err(|e| invalid(e.to_string()))?;
    apply_overrides(&mut c, o).map_err(invalid)?;
    Ok(c)
}

/// Flags and environment variables win over the file (NVIDIA's
/// `UpdateFromCLIFlags`: anything set on the command line or in the
/// environment replaces the file's value).
pub fn apply_overrides(c: &mut DevicePluginConfig, o: &Options) -> Result<(), String> {
    let f = &mut c.flags;
    if let Some(s) = o.mig_strategy {
        f.mig_strategy = Some(s);
    }
    if let Some(v) = o.fail_on_init_error {
        f.fail_on_init_error = Some(v);
    }
    if let Some(v) = &o.nvidia_driver_root {
        f.nvidia_driver_root = Some(v.clone());
    }
    if let Some(v) = &o.nvidia_dev_root {
        f.nvidia_dev_root = Some(v.clone());
    }
    if let Some(v) = &o.mps_root {
        f.mps_root = Some(v.clone());
    }
    let p = f.plugin.get_or_insert_with(PluginFlags::default);
    if let Some(list) = &o.device_list_strategy {
        let parsed = list
            .iter()
            .map(|s| {
                serde_saphyr::from_str::<DeviceListStrategy>(s.trim()).map_err(|_| {
                    format!(
                        "--device-list-strategy: invalid value {s:?}; valid: envvar, volume-mounts, cdi-annotations, cdi-cri"
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err("--device-list-strategy: at least one strategy is needed".into());
        }
        p.device_list_strategy = Some(parsed);
    }
    if let Some(v) = o.device_id_strategy {
        p.device_id_strategy = Some(v);
    }
    if let Some(v) = o.pass_device_specs {
        p.pass_device_specs = Some(v);
    }
    if let Some(v) = &o.cdi_annotation_prefix {
        p.cdi_annotation_prefix = Some(v.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use railyard_core::config::device_plugin::MigStrategy;

    #[test]
    fn labels_file_format() {
        let l = parse_labels("a=\"b\"\n# c\nnvidia.com/device-plugin.config=x\n\n");
        assert_eq!(l["a"], "b");
        assert_eq!(l[CONFIG_LABEL], "x");
    }

    #[test]
    fn oversized_and_duplicate_sharing_is_refused_with_the_field_path() {
        let o = Options::parse_from(["x"]);
        let src = |text: &str| ConfigSource {
            name: Some("n".into()),
            path: None,
            text: text.into(),
        };
        let e = load(
            &src("version: v1\nsharing:\n  mps:\n    resources:\n    - name: gpu\n      replicas: 2147483648\n"),
            &o,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("config n: ") && e.contains("sharing.mps.resources[0].replicas") && e.contains("2147483648"),
            "{e}"
        );
        let e = load(
            &src("version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - {name: gpu, replicas: 2}\n    - {name: gpu, replicas: 3}\n"),
            &o,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sharing.timeSlicing.resources[1].name") && e.contains("duplicate"),
            "{e}"
        );
    }

    #[test]
    fn flags_override_file() {
        let o = Options::parse_from([
            "x",
            "--mig-strategy",
            "mixed",
            "--device-list-strategy",
            "envvar,cdi-cri",
            "--device-id-strategy",
            "index",
        ]);
        let src = ConfigSource {
            name: None,
            path: None,
            text: "version: v1\nflags: {migStrategy: single, plugin: {deviceListStrategy: volume-mounts}}\n".into(),
        };
        let c = load(&src, &o).unwrap();
        assert_eq!(c.mig_strategy(), MigStrategy::Mixed);
        assert_eq!(
            c.device_list_strategies(),
            vec![DeviceListStrategy::EnvVar, DeviceListStrategy::CdiCri]
        );
        let o = Options::parse_from(["x", "--device-list-strategy", "nfs"]);
        let e = load(&src, &o).unwrap_err().to_string();
        assert!(e.contains("--device-list-strategy") && e.contains("nfs"), "{e}");
    }
}
