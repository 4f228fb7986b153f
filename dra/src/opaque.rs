//! NVIDIA's opaque device configs (`resource.nvidia.com/v1beta1`
//! `GpuConfig`, `MigDeviceConfig`), parsed strictly as NVIDIA's driver
//! decodes them: an unknown field or a bad value is an error naming the
//! field path and the value. [`effective_config`] picks the config that
//! applies to a request: class configs first, then claim configs, the last
//! match wins, and a config naming no requests applies to all.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::quantity::Quantity;

pub const API_VERSION: &str = "resource.nvidia.com/v1beta1";
/// The API caps `opaque.parameters` at 10 KiB.
pub const MAX_PARAMETERS_BYTES: usize = 10 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Strategy {
    TimeSlicing,
    #[serde(rename = "MPS")]
    Mps,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Interval {
    #[default]
    Default,
    Short,
    Medium,
    Long,
}

impl Interval {
    /// The value for `nvidia-smi compute-policy --set-timeslice`.
    pub fn timeslice(self) -> u8 {
        match self {
            Interval::Default => 0,
            Interval::Short => 1,
            Interval::Medium => 2,
            Interval::Long => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TimeSlicingConfig {
    #[serde(default)]
    pub interval: Interval,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MpsConfig {
    pub default_active_thread_percentage: Option<i64>,
    pub default_pinned_device_memory_limit: Option<String>,
    #[serde(default)]
    pub default_per_device_pinned_memory_limit: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Sharing {
    pub strategy: Strategy,
    pub time_slicing_config: Option<TimeSlicingConfig>,
    pub mps_config: Option<MpsConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    api_version: String,
    kind: String,
    sharing: Option<Sharing>,
}

/// Which devices a config is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Gpu,
    Mig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    pub kind: DeviceKind,
    /// Normalised: TimeSlicing without `timeSlicingConfig` gets interval
    /// Default, as upstream's Normalize does.
    pub sharing: Option<Sharing>,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// Parses `opaque.parameters`; `path` prefixes error paths.
pub fn parse_config(path: &str, parameters: &serde_json::Value) -> Result<DeviceConfig, ConfigError> {
    let size = parameters.to_string().len();
    if size > MAX_PARAMETERS_BYTES {
        return Err(err(path, format!("{size} bytes, more than the 10 KiB limit")));
    }
    let raw: Raw = serde_path_to_error::deserialize(parameters).map_err(|e| {
        let p = e.path().to_string();
        err(
            if p == "." {
                path.to_owned()
            } else {
                format!("{path}.{p}")
            },
            e.inner().to_string(),
        )
    })?;
    if raw.api_version != API_VERSION {
        return Err(err(
            format!("{path}.apiVersion"),
            format!("{:?} is not {API_VERSION}", raw.api_version),
        ));
    }
    let kind = match raw.kind.as_str() {
        "GpuConfig" => DeviceKind::Gpu,
        "MigDeviceConfig" => DeviceKind::Mig,
        other => {
            return Err(err(
                format!("{path}.kind"),
                format!("{other:?} is not GpuConfig or MigDeviceConfig"),
            ));
        }
    };
    let mut sharing = raw.sharing;
    if let Some(s) = &mut sharing {
        let p = format!("{path}.sharing");
        match s.strategy {
            Strategy::TimeSlicing => {
                if s.mps_config.is_some() {
                    return Err(err(format!("{p}.mpsConfig"), "is set but strategy is TimeSlicing"));
                }
                s.time_slicing_config.get_or_insert_with(TimeSlicingConfig::default);
            }
            Strategy::Mps => {
                if s.time_slicing_config.is_some() {
                    return Err(err(format!("{p}.timeSlicingConfig"), "is set but strategy is MPS"));
                }
                if let Some(m) = &s.mps_config {
                    let p = format!("{p}.mpsConfig");
                    if let Some(v) = m.default_active_thread_percentage.filter(|v| !(0..=100).contains(v)) {
                        return Err(err(
                            format!("{p}.defaultActiveThreadPercentage"),
                            format!("{v} is outside 0..=100"),
                        ));
                    }
                    let limit = |field: String, text: &str| -> Result<(), ConfigError> {
                        let q = Quantity::parse(text).map_err(|e| err(field.clone(), e.to_string()))?;
                        if q.sign() < 0 {
                            return Err(err(field, format!("{text:?} is negative")));
                        }
                        Ok(())
                    };
                    if let Some(t) = &m.default_pinned_device_memory_limit {
                        limit(format!("{p}.defaultPinnedDeviceMemoryLimit"), t)?;
                    }
                    for (k, t) in &m.default_per_device_pinned_memory_limit {
                        limit(format!("{p}.defaultPerDevicePinnedMemoryLimit[{k}]"), t)?;
                    }
                }
            }
        }
    }
    Ok(DeviceConfig { kind, sharing })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    FromClass,
    FromClaim,
}

/// One opaque config of a class or a claim, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub source: ConfigSource,
    /// Requests it names; empty = every request.
    pub requests: Vec<String>,
    pub driver: String,
    pub config: DeviceConfig,
}

/// The config that applies to `request` (`<req>` or `<req>/<sub>`) on a
/// device of `kind` from `driver`: class configs first, then claim
/// configs, the last match wins. Other drivers' configs are ignored.
pub fn effective_config<'a>(
    entries: &'a [ConfigEntry],
    driver: &str,
    request: &str,
    kind: DeviceKind,
) -> Option<&'a DeviceConfig> {
    let base = request.split('/').next().unwrap_or(request);
    let applies = |e: &&ConfigEntry| {
        e.driver == driver
            && e.config.kind == kind
            && (e.requests.is_empty() || e.requests.iter().any(|r| r == request || r == base))
    };
    let last = |source| entries.iter().filter(|e| e.source == source).rfind(applies);
    last(ConfigSource::FromClaim)
        .or_else(|| last(ConfigSource::FromClass))
        .map(|e| &e.config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<DeviceConfig, ConfigError> {
        parse_config("parameters", &v)
    }

    #[test]
    fn nvidia_examples_parse_and_normalise() {
        let ts = parse(json!({"apiVersion": API_VERSION, "kind": "GpuConfig", "sharing": {"strategy": "TimeSlicing"}}))
            .unwrap();
        assert_eq!(
            ts.sharing.unwrap().time_slicing_config.unwrap().interval,
            Interval::Default
        );
        let mps = parse(
            json!({"apiVersion": API_VERSION, "kind": "MigDeviceConfig", "sharing": {"strategy": "MPS",
            "mpsConfig": {"defaultActiveThreadPercentage": 50, "defaultPinnedDeviceMemoryLimit": "10Gi"}}}),
        )
        .unwrap();
        assert_eq!(mps.kind, DeviceKind::Mig);
        assert_eq!(Interval::Long.timeslice(), 3);
    }

    #[test]
    fn errors_name_the_path_and_value() {
        let cases = [
            (
                json!({"apiVersion": API_VERSION, "kind": "GpuConfig", "sharng": {}}),
                "parameters.sharng",
                "sharng",
            ),
            (
                json!({"apiVersion": API_VERSION, "kind": "GpuConfig", "sharing": {"strategy": "Spatial"}}),
                "parameters.sharing.strategy",
                "Spatial",
            ),
            (
                json!({"apiVersion": API_VERSION, "kind": "GpuConfig", "sharing": {"strategy": "MPS", "mpsConfig": {"defaultActiveThreadPercentage": 150}}}),
                "parameters.sharing.mpsConfig.defaultActiveThreadPercentage",
                "150",
            ),
            (
                json!({"apiVersion": API_VERSION, "kind": "GpuConfig", "sharing": {"strategy": "MPS", "mpsConfig": {"defaultPinnedDeviceMemoryLimit": "10Gx"}}}),
                "parameters.sharing.mpsConfig.defaultPinnedDeviceMemoryLimit",
                "10Gx",
            ),
            (
                json!({"apiVersion": API_VERSION, "kind": "GpuConfig", "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Forever"}}}),
                "parameters.sharing.timeSlicingConfig.interval",
                "Forever",
            ),
            (
                json!({"apiVersion": API_VERSION, "kind": "GpuConfig", "sharing": {"strategy": "MPS", "timeSlicingConfig": {}}}),
                "parameters.sharing.timeSlicingConfig",
                "MPS",
            ),
            (
                json!({"apiVersion": "resource.nvidia.com/v1", "kind": "GpuConfig"}),
                "parameters.apiVersion",
                "resource.nvidia.com/v1",
            ),
            (
                json!({"apiVersion": API_VERSION, "kind": "TpuConfig"}),
                "parameters.kind",
                "TpuConfig",
            ),
        ];
        for (v, path, value) in cases {
            let e = parse(v).unwrap_err();
            assert!(e.path == path && e.to_string().contains(value), "{path}: {e}");
        }
    }

    #[test]
    fn class_configs_first_then_claim_configs_last_match_wins() {
        let cfg = |interval: Interval| DeviceConfig {
            kind: DeviceKind::Gpu,
            sharing: Some(Sharing {
                strategy: Strategy::TimeSlicing,
                time_slicing_config: Some(TimeSlicingConfig { interval }),
                mps_config: None,
            }),
        };
        let e = |source, requests: &[&str], driver: &str, i| ConfigEntry {
            source,
            requests: requests.iter().map(|s| s.to_string()).collect(),
            driver: driver.into(),
            config: cfg(i),
        };
        let entries = vec![
            e(ConfigSource::FromClaim, &["gpu"], "gpu.nvidia.com", Interval::Short),
            e(ConfigSource::FromClass, &[], "gpu.nvidia.com", Interval::Long),
            e(ConfigSource::FromClaim, &[], "gpu.nvidia.com", Interval::Medium),
            e(ConfigSource::FromClaim, &[], "other.example.com", Interval::Default),
        ];
        let pick = |req| {
            effective_config(&entries, "gpu.nvidia.com", req, DeviceKind::Gpu)
                .unwrap()
                .sharing
                .clone()
                .unwrap()
                .time_slicing_config
                .unwrap()
                .interval
        };
        assert_eq!(pick("gpu"), Interval::Medium, "the last claim config wins");
        assert_eq!(pick("gpu/small"), Interval::Medium);
        assert!(effective_config(&entries, "gpu.nvidia.com", "gpu", DeviceKind::Mig).is_none());
        assert_eq!(
            effective_config(&entries[1..2], "gpu.nvidia.com", "x", DeviceKind::Gpu)
                .unwrap()
                .sharing
                .clone()
                .unwrap()
                .time_slicing_config
                .unwrap()
                .interval,
            Interval::Long
        );
    }
}
