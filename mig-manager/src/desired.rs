//! The layout a node should have, from its Node object:
//!
//! - the label `nvidia.com/mig.config=<name>`, a config of the mounted
//!   mig-parted file (NVIDIA's format as it is, `device-filter` included) or,
//!   without a file, of the names the GPU operator generates
//!   ([`railyard_core::config::generated_config`]);
//! - overridden by the annotation `railyard.dev/mig-layout`, an explicit
//!   layout per GPU index (see [`parse_layout_annotation`]), which a
//!   cluster-level repartitioner can write.
//!
//! Pure: labels, annotations and the config in, a [`Desired`] out.

use std::collections::BTreeMap;

use railyard_core::config::{ConfigGpu, MigPartedConfig, generated_config};
use railyard_core::mig::{GpuGoal, MigTarget, WantedInstance};

/// NVIDIA's label: the name of the config this node should have.
pub const CONFIG_LABEL: &str = "nvidia.com/mig.config";
/// NVIDIA's state label: `pending`, `rebooting`, `success`, `failed`.
pub const STATE_LABEL: &str = "nvidia.com/mig.config.state";
/// Railyard's explicit per-GPU layout; wins over [`CONFIG_LABEL`].
pub const LAYOUT_ANNOTATION: &str = "railyard.dev/mig-layout";
/// Why the state is what it is, e.g. `waiting: GPU 2 instance 1g.10gb@3 in use by default/train-0`.
pub const REASON_ANNOTATION: &str = "railyard.dev/mig.config.reason";

/// What the node should have, and where that came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// `config all-balanced` or `annotation railyard.dev/mig-layout`.
    pub source: String,
    pub target: MigTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    #[error("label {CONFIG_LABEL}={name:?}: {message}")]
    Config { name: String, message: String },
    #[error("annotation {LAYOUT_ANNOTATION}: {path}: {message}")]
    Layout { path: String, message: String },
}

/// The desired layout, or `None` when the node has neither the label nor the
/// annotation (then nothing is managed, as with NVIDIA's manager).
pub fn desired(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    config: Option<&MigPartedConfig>,
    gpus: &[ConfigGpu],
) -> Result<Option<Desired>, DesiredError> {
    if let Some(text) = annotations.get(LAYOUT_ANNOTATION).filter(|t| !t.trim().is_empty()) {
        return Ok(Some(Desired {
            source: format!("annotation {LAYOUT_ANNOTATION}"),
            target: parse_layout_annotation(text, gpus)?,
        }));
    }
    let Some(name) = labels.get(CONFIG_LABEL).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let generated;
    let config = match config {
        Some(c) => c,
        None => {
            generated = generated_config(gpus);
            &generated
        }
    };
    let targets = config.targets_for(name, gpus).map_err(|e| DesiredError::Config {
        name: name.clone(),
        message: e.to_string(),
    })?;
    Ok(Some(Desired {
        source: format!("config {name}"),
        target: MigTarget::from_mig_parted(&targets),
    }))
}

/// The annotation's format: a JSON object keyed by GPU index (as a string).
/// Each value is `"disabled"` (MIG off) or a list of instances, each a
/// profile name of that GPU's model with an optional start
/// (`"3g.40gb@0"`, `"1g.10gb"`; without a start the manager picks one). An
/// empty list is MIG on with no instances. GPUs not named are left alone.
///
/// ```json
/// {"0": ["3g.40gb@0", "2g.20gb", "1g.10gb", "1g.10gb"], "1": "disabled", "2": []}
/// ```
pub fn parse_layout_annotation(text: &str, gpus: &[ConfigGpu]) -> Result<MigTarget, DesiredError> {
    let err = |path: &str, message: String| DesiredError::Layout {
        path: path.to_string(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| err("(document)", format!("not JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| {
        err(
            "(document)",
            format!("expected an object keyed by GPU index, got {value}"),
        )
    })?;
    let present = || gpus.iter().map(|g| g.index.to_string()).collect::<Vec<_>>().join(", ");
    let mut target = MigTarget::default();
    for (key, v) in obj {
        let gpu = gpus
            .iter()
            .find(|g| key.parse::<u32>().ok() == Some(g.index))
            .ok_or_else(|| err(key, format!("no such GPU index; this node has GPUs {}", present())))?;
        let goal = match v {
            serde_json::Value::String(s) if s == "disabled" => GpuGoal::Disabled,
            serde_json::Value::Array(items) => {
                let family = gpu.family.ok_or_else(|| {
                    err(
                        key,
                        format!("GPU {} ({}) is not MIG-capable", gpu.index, gpu.product_name),
                    )
                })?;
                let mut wanted = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{key}[{i}]");
                    let s = item
                        .as_str()
                        .ok_or_else(|| err(&at, format!("expected \"PROFILE\" or \"PROFILE@START\", got {item}")))?;
                    let (profile, start) = match s.split_once('@') {
                        Some((p, st)) => (
                            p,
                            Some(st.trim().parse::<u8>().map_err(|_| {
                                err(&at, format!("{s:?}: the start {st:?} is not a memory-slice number"))
                            })?),
                        ),
                        None => (s, None),
                    };
                    let p = family.profile_by_name(profile).ok_or_else(|| {
                        err(
                            &at,
                            format!(
                                "unknown MIG profile {profile:?} for {}; it has: {}",
                                gpu.product_name,
                                family.profile_names().join(", ")
                            ),
                        )
                    })?;
                    wanted.push(match start {
                        Some(st) => WantedInstance::at(p.name, st),
                        None => WantedInstance::anywhere(p.name),
                    });
                }
                GpuGoal::Enabled(wanted)
            }
            other => {
                return Err(err(
                    key,
                    format!("expected \"disabled\" or a list of instances, got {other}"),
                ));
            }
        };
        target.gpus.insert(gpu.index, goal);
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpus() -> Vec<ConfigGpu> {
        vec![
            ConfigGpu::new(0, "NVIDIA H100 80GB HBM3", None),
            ConfigGpu::new(1, "NVIDIA H100 80GB HBM3", None),
            ConfigGpu::new(2, "Tesla T4", None),
        ]
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn no_label_and_no_annotation_manage_nothing() {
        assert_eq!(desired(&map(&[]), &map(&[]), None, &gpus()), Ok(None));
        assert_eq!(desired(&map(&[(CONFIG_LABEL, "")]), &map(&[]), None, &gpus()), Ok(None));
    }

    #[test]
    fn the_label_names_a_generated_config_without_a_file() {
        let d = desired(&map(&[(CONFIG_LABEL, "all-3g.40gb")]), &map(&[]), None, &gpus())
            .unwrap()
            .unwrap();
        assert_eq!(d.source, "config all-3g.40gb");
        let want = GpuGoal::Enabled(vec![
            WantedInstance::anywhere("3g.40gb"),
            WantedInstance::anywhere("3g.40gb"),
        ]);
        assert_eq!(d.target.gpus.get(&0), Some(&want));
        assert_eq!(d.target.gpus.get(&2), None, "the T4 is left alone");
        let e = desired(&map(&[(CONFIG_LABEL, "all-9g.1tb")]), &map(&[]), None, &gpus()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("label nvidia.com/mig.config=\"all-9g.1tb\": "),
            "{e}"
        );
        assert!(e.to_string().contains("no such config; known: all-1g.10gb"), "{e}");
    }

    #[test]
    fn the_annotation_overrides_the_label() {
        let d = desired(
            &map(&[(CONFIG_LABEL, "all-disabled")]),
            &map(&[(LAYOUT_ANNOTATION, r#"{"0": ["3g.40gb@4", "1g.10gb"], "1": "disabled"}"#)]),
            None,
            &gpus(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.source, "annotation railyard.dev/mig-layout");
        assert_eq!(
            d.target.gpus.get(&0),
            Some(&GpuGoal::Enabled(vec![
                WantedInstance::at("3g.40gb", 4),
                WantedInstance::anywhere("1g.10gb")
            ]))
        );
        assert_eq!(d.target.gpus.get(&1), Some(&GpuGoal::Disabled));
        assert_eq!(d.target.gpus.len(), 2);
    }

    #[test]
    fn bad_annotations_name_the_gpu_and_the_value() {
        for (text, want) in [
            ("[1]", "(document): expected an object keyed by GPU index"),
            ("{", "(document): not JSON"),
            (r#"{"7": []}"#, "7: no such GPU index; this node has GPUs 0, 1, 2"),
            (r#"{"2": []}"#, "2: GPU 2 (Tesla T4) is not MIG-capable"),
            (
                r#"{"0": ["1g.5gb"]}"#,
                "0[0]: unknown MIG profile \"1g.5gb\" for NVIDIA H100 80GB HBM3; it has: 1g.10gb",
            ),
            (
                r#"{"0": ["1g.10gb@x"]}"#,
                "0[0]: \"1g.10gb@x\": the start \"x\" is not a memory-slice number",
            ),
            (
                r#"{"0": [3]}"#,
                "0[0]: expected \"PROFILE\" or \"PROFILE@START\", got 3",
            ),
            (
                r#"{"0": "off"}"#,
                "0: expected \"disabled\" or a list of instances, got \"off\"",
            ),
        ] {
            let e = parse_layout_annotation(text, &gpus()).unwrap_err().to_string();
            assert!(e.starts_with("annotation railyard.dev/mig-layout: "), "{e}");
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
