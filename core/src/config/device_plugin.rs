//! NVIDIA's k8s-device-plugin config file (`version: v1`), as the GPU
//! operator and the plugin's Helm chart write it. Field names and defaults
//! follow NVIDIA's; unknown fields are rejected so a typo is not silently
//! ignored. One Railyard extension: `memoryPerReplica` on a shared resource.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::budget::from_yaml_bounded as from_yaml;
use crate::yaml::{ConfigError, Value};

const WHAT: &str = "device plugin config";
/// NVIDIA's limit on the name part of a resource name.
pub const MAX_RESOURCE_NAME_LENGTH: usize = 63;
pub const RESOURCE_PREFIX: &str = "nvidia.com";

/// Most replicas one device may be split into (`replicas:`, time-slicing or
/// MPS). Every replica is a device id that kubelet keeps in its checkpoint
/// and in every ListAndWatch message, and every replica that runs holds its
/// own CUDA context (a few hundred MiB of device memory), so even a 141 GB
/// H200 hosts only a few hundred at once, and MPS serves a few dozen
/// clients per device (48 on Volta). NVIDIA's plugin sets no maximum,
/// so `replicas: 2147483648` made it (and us) build billions of ids and be
/// OOM-killed before the config could be refused. 1,024 is above any count
/// that can run and small enough that one device's ids cost 50 KB.
pub const MAX_REPLICAS: u32 = 1024;

/// Most device ids one resource may advertise (replicas × GPUs or MIG
/// devices, plus the unshared devices left under the same name). kubelet
/// receives them all in one ListAndWatch response, and gRPC's default
/// maximum message size (4 MiB, which kubelet's device-plugin client keeps)
/// bounds that response. One entry there is the id (a 40-character UUID,
/// `::` and up to 4 digits of replica; the older `MIG-GPU-<uuid>/<gi>/<ci>`
/// form is up to ~56), `Healthy`/`Unhealthy` and one NUMA node, with
/// protobuf framing: at most ~80 bytes, so 4 MiB holds about 52,000 ids.
/// 16,384 (16 GPUs × 1,024 replicas) stays under a third of that (~1.3 MiB
/// per message) and keeps kubelet's checkpoint, which lists every id, under
/// a megabyte per resource.
pub const MAX_DEVICES_PER_RESOURCE: usize = 16_384;

/// Most entries in a `devices:` list: each names a distinct device of the
/// resource on this node, so a longer list cannot be valid.
pub const MAX_DEVICE_REFS: usize = MAX_DEVICES_PER_RESOURCE;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePluginConfig {
    #[serde(default = "v1")]
    pub version: String,
    #[serde(default)]
    pub flags: Flags,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub sharing: Sharing,
    #[serde(default)]
    pub imex: Imex,
    #[serde(default)]
    pub health: Option<Health>,
}

fn v1() -> String {
    "v1".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigStrategy {
    #[default]
    None,
    Single,
    Mixed,
}

impl std::str::FromStr for MigStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(MigStrategy::None),
            "single" => Ok(MigStrategy::Single),
            "mixed" => Ok(MigStrategy::Mixed),
            _ => Err(format!("unknown MIG strategy {s:?}; valid: none, single, mixed")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceListStrategy {
    #[serde(rename = "envvar")]
    EnvVar,
    #[serde(rename = "volume-mounts")]
    VolumeMounts,
    #[serde(rename = "cdi-annotations")]
    CdiAnnotations,
    #[serde(rename = "cdi-cri")]
    CdiCri,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceIdStrategy {
    #[default]
    Uuid,
    Index,
}

/// `flags:`; every field optional, as in NVIDIA's `CommandLineFlags`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Flags {
    pub mig_strategy: Option<MigStrategy>,
    pub fail_on_init_error: Option<bool>,
    pub restart_on_device_unhealthy: Option<bool>,
    pub mps_root: Option<String>,
    pub nvidia_driver_root: Option<String>,
    pub nvidia_dev_root: Option<String>,
    pub gdrcopy_enabled: Option<bool>,
    pub gds_enabled: Option<bool>,
    #[serde(rename = "mofedEnabled")]
    pub mofed_enabled: Option<bool>,
    #[serde(rename = "useNodeFeatureAPI")]
    pub use_node_feature_api: Option<bool>,
    pub device_discovery_strategy: Option<String>,
    pub plugin: Option<PluginFlags>,
    pub gfd: Option<GfdFlags>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PluginFlags {
    pub pass_device_specs: Option<bool>,
    /// A single strategy or a list, as NVIDIA accepts both.
    #[serde(default, deserialize_with = "one_or_many")]
    pub device_list_strategy: Option<Vec<DeviceListStrategy>>,
    #[serde(rename = "deviceIDStrategy")]
    pub device_id_strategy: Option<DeviceIdStrategy>,
    #[serde(rename = "cdiAnnotationPrefix")]
    pub cdi_annotation_prefix: Option<String>,
    #[serde(rename = "nvidiaCTKPath")]
    pub nvidia_ctk_path: Option<String>,
    #[serde(rename = "nvidiaCDIHookPath")]
    pub nvidia_cdi_hook_path: Option<String>,
    pub container_driver_root: Option<String>,
    pub driver_root_ctr_path: Option<String>,
    pub kubelet_socket: Option<String>,
    #[serde(rename = "cdiFeatureFlags")]
    pub cdi_feature_flags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GfdFlags {
    pub oneshot: Option<bool>,
    pub no_timestamp: Option<bool>,
    pub sleep_interval: Option<String>,
    pub output_file: Option<String>,
    pub machine_type_file: Option<String>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<DeviceListStrategy>>, D::Error> {
    // Untagged enums hide the variant error; re-parse to give a useful one.
    let v = Value::deserialize(d)?;
    let strategy = |v: &Value| {
        let s = serde::de::value::StrDeserializer::<serde::de::value::Error>::new(v.as_str()?);
        DeviceListStrategy::deserialize(s).ok()
    };
    let parsed = match &v {
        Value::Sequence(items) => items.iter().map(strategy).collect::<Option<Vec<_>>>(),
        one => strategy(one).map(|s| vec![s]),
    };
    match parsed {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom(format!(
            "invalid device list strategy {v}; valid: envvar, volume-mounts, cdi-annotations, cdi-cri"
        ))),
    }
}

/// `resources:` — custom names for GPUs and MIG devices by pattern.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub gpus: Vec<ResourcePattern>,
    #[serde(default)]
    pub mig: Vec<ResourcePattern>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcePattern {
    pub pattern: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Sharing {
    #[serde(default)]
    pub time_slicing: Option<ReplicatedResources>,
    #[serde(default)]
    pub mps: Option<ReplicatedResources>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharingStrategy {
    None,
    TimeSlicing,
    Mps,
}

impl fmt::Display for SharingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The values of GFD's `nvidia.com/gpu.sharing-strategy` label.
        f.write_str(match self {
            SharingStrategy::None => "none",
            SharingStrategy::TimeSlicing => "time-slicing",
            SharingStrategy::Mps => "mps",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplicatedResources {
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub rename_by_default: bool,
    /// `None` = not set; NVIDIA defaults it to true for MPS, false otherwise.
    #[serde(default)]
    pub fail_requests_greater_than_one: Option<bool>,
    #[serde(default)]
    pub resources: Vec<ReplicatedResource>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplicatedResource {
    pub name: String,
    #[serde(default)]
    pub rename: Option<String>,
    #[serde(default)]
    pub devices: ReplicaDevices,
    pub replicas: u32,
    /// Railyard extension: memory each replica may use (`8Gi`); default is
    /// the device's memory divided by `replicas`.
    #[serde(default)]
    pub memory_per_replica: Option<String>,
}

/// Which devices of a resource are replicated: `all`, the first N, or a list
/// of GPU indices (`0`), MIG indices (`0:1`) and UUIDs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub enum ReplicaDevices {
    #[default]
    All,
    Count(u32),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for ReplicaDevices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        match v {
            Value::String(s) if s == "all" => Ok(ReplicaDevices::All),
            Value::String(s) => Err(D::Error::custom(format!(
                "devices set as {s:?} but the only valid string is \"all\""
            ))),
            Value::UInt(c) if c > 0 && c <= u64::from(u32::MAX) => Ok(ReplicaDevices::Count(c as u32)),
            n @ (Value::UInt(_) | Value::Int(_) | Value::Float(_)) => Err(D::Error::custom(format!(
                "devices set as {n} but a count of devices must be > 0"
            ))),
            Value::Sequence(items) => {
                if items.len() > MAX_DEVICE_REFS {
                    return Err(D::Error::custom(format!(
                        "devices lists {} entries, above the maximum of {MAX_DEVICE_REFS}",
                        items.len()
                    )));
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let s = match item {
                        Value::UInt(n) => n.to_string(),
                        Value::String(s) => s.clone(),
                        other => {
                            return Err(D::Error::custom(format!(
                                "devices[{i}]: {} is not a GPU index, MIG index or UUID",
                                other
                            )));
                        }
                    };
                    if !is_device_ref(&s) {
                        return Err(D::Error::custom(format!(
                            "devices[{i}]: {s:?} is not a GPU index (0), MIG index (0:1) or UUID (GPU-…, MIG-…)"
                        )));
                    }
                    out.push(s);
                }
                Ok(ReplicaDevices::List(out))
            }
            other => Err(D::Error::custom(format!(
                "unrecognized devices spec {}; use \"all\", a count or a list",
                other
            ))),
        }
    }
}

fn is_device_ref(s: &str) -> bool {
    let is_uint = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if is_uint(s) {
        return true;
    }
    if let Some((a, b)) = s.split_once(':')
        && is_uint(a)
        && is_uint(b)
    {
        return true;
    }
    s.starts_with("GPU-") || s.starts_with("MIG-")
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Imex {
    #[serde(default, rename = "channelIDs")]
    pub channel_ids: Vec<u32>,
    #[serde(default)]
    pub required: bool,
}

/// `health:` (newer NVIDIA releases): which XIDs mark a device unhealthy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Health {
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default, rename = "ignoredXIDs")]
    pub ignored_xids: Vec<u64>,
    #[serde(default, rename = "criticalXIDs")]
    pub critical_xids: Option<Value>,
}

impl DevicePluginConfig {
    /// Parses and validates a config file's text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let mut c: DevicePluginConfig = from_yaml(WHAT, text)?;
        c.normalize_and_validate()?;
        Ok(c)
    }

    pub fn mig_strategy(&self) -> MigStrategy {
        self.flags.mig_strategy.unwrap_or_default()
    }

    pub fn device_list_strategies(&self) -> Vec<DeviceListStrategy> {
        self.flags
            .plugin
            .as_ref()
            .and_then(|p| p.device_list_strategy.clone())
            .unwrap_or_else(|| vec![DeviceListStrategy::EnvVar])
    }

    pub fn device_id_strategy(&self) -> DeviceIdStrategy {
        self.flags
            .plugin
            .as_ref()
            .and_then(|p| p.device_id_strategy)
            .unwrap_or_default()
    }

    /// The active sharing strategy and its settings (MPS wins, as in NVIDIA's plugin).
    pub fn replicated(&self) -> (SharingStrategy, Option<&ReplicatedResources>) {
        match (&self.sharing.mps, &self.sharing.time_slicing) {
            (Some(m), _) if !m.resources.is_empty() => (SharingStrategy::Mps, Some(m)),
            (_, Some(t)) if !t.resources.is_empty() => (SharingStrategy::TimeSlicing, Some(t)),
            _ => (SharingStrategy::None, None),
        }
    }

    /// Whether a request for more than one shared replica is refused.
    /// NVIDIA defaults this to true for MPS and false for time-slicing.
    pub fn fail_requests_greater_than_one(&self) -> bool {
        match self.replicated() {
            (SharingStrategy::Mps, Some(r)) => r.fail_requests_greater_than_one.unwrap_or(true),
            (_, Some(r)) => r.fail_requests_greater_than_one.unwrap_or(false),
            _ => false,
        }
    }

    fn normalize_and_validate(&mut self) -> Result<(), ConfigError> {
        if self.version != "v1" {
            return Err(ConfigError::invalid(
                WHAT,
                "version",
                &self.version,
                "unknown version; only v1 is supported",
            ));
        }
        if let Some(dls) = self.flags.plugin.as_ref().and_then(|p| p.device_list_strategy.as_ref())
            && dls.is_empty()
        {
            return Err(ConfigError::invalid(
                WHAT,
                "flags.plugin.deviceListStrategy",
                "[]",
                "at least one strategy is needed",
            ));
        }
        let both = [&self.sharing.time_slicing, &self.sharing.mps]
            .iter()
            .all(|s| s.as_ref().is_some_and(|r| !r.resources.is_empty()));
        if both {
            return Err(ConfigError::invalid(
                WHAT,
                "sharing",
                "timeSlicing and mps",
                "configure one sharing strategy per config, not both",
            ));
        }
        for (key, section) in [
            ("timeSlicing", &mut self.sharing.time_slicing),
            ("mps", &mut self.sharing.mps),
        ] {
            let Some(section) = section else { continue };
            if let Some(s) = &section.strategy
                && !s.is_empty()
            {
                return Err(ConfigError::invalid(
                    WHAT,
                    format!("sharing.{key}.strategy"),
                    s,
                    "unknown strategy; leave it unset",
                ));
            }
            // A second entry for the same resource would be silently
            // ignored by the expansion (the first match wins): refuse it.
            let mut seen: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
            for (i, r) in section.resources.iter_mut().enumerate() {
                let at = |f: &str| format!("sharing.{key}.resources[{i}].{f}");
                r.name = qualify(&r.name).map_err(|e| ConfigError::invalid(WHAT, at("name"), &r.name, e))?;
                if let Some(first) = seen.insert(r.name.clone(), i) {
                    return Err(ConfigError::invalid(
                        WHAT,
                        at("name"),
                        &r.name,
                        format!("duplicate resource name; sharing.{key}.resources[{first}] already configures it"),
                    ));
                }
                if let Some(rename) = &r.rename {
                    r.rename = Some(qualify(rename).map_err(|e| ConfigError::invalid(WHAT, at("rename"), rename, e))?);
                }
                if r.replicas < 2 {
                    return Err(ConfigError::invalid(
                        WHAT,
                        at("replicas"),
                        r.replicas,
                        "must be at least 2 to share a device",
                    ));
                }
                if r.replicas > MAX_REPLICAS {
                    return Err(ConfigError::invalid(
                        WHAT,
                        at("replicas"),
                        r.replicas,
                        format!(
                            "{} is above the maximum of {MAX_REPLICAS} replicas per device",
                            r.replicas
                        ),
                    ));
                }
                if let Some(m) = &r.memory_per_replica {
                    let mib = super::quantity_to_mib(m)
                        .map_err(|e| ConfigError::invalid(WHAT, at("memoryPerReplica"), m, e))?;
                    if mib == 0 {
                        return Err(ConfigError::invalid(
                            WHAT,
                            at("memoryPerReplica"),
                            m,
                            "must be at least 1Mi",
                        ));
                    }
                }
                if key == "mps" && r.name.starts_with("nvidia.com/mig-") {
                    return Err(ConfigError::invalid(
                        WHAT,
                        at("name"),
                        &r.name,
                        "MPS sharing of MIG devices is not supported",
                    ));
                }
            }
        }
        for (key, list) in [("gpus", &self.resources.gpus), ("mig", &self.resources.mig)] {
            for (i, p) in list.iter().enumerate() {
                qualify(&p.name)
                    .map_err(|e| ConfigError::invalid(WHAT, format!("resources.{key}[{i}].name"), &p.name, e))?;
            }
        }
        Ok(())
    }
}

/// Adds the `nvidia.com/` prefix when missing and checks the name, as
/// NVIDIA's `ResourceName` does.
pub fn qualify(name: &str) -> Result<String, String> {
    let (prefix, rest) = match name.split_once('/') {
        Some((p, r)) => (p, r),
        None => (RESOURCE_PREFIX, name),
    };
    if prefix != RESOURCE_PREFIX {
        return Err(format!("resource names must use the {RESOURCE_PREFIX}/ prefix"));
    }
    if rest.is_empty() || rest.len() > MAX_RESOURCE_NAME_LENGTH {
        return Err(format!(
            "the name after {RESOURCE_PREFIX}/ must be 1 to {MAX_RESOURCE_NAME_LENGTH} characters"
        ));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    let ends_ok =
        rest.starts_with(|c: char| c.is_ascii_alphanumeric()) && rest.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !rest.chars().all(ok_char) || !ends_ok {
        return Err("must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric".into());
    }
    Ok(format!("{RESOURCE_PREFIX}/{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_docs_time_slicing_example_parses() {
        // From NVIDIA's device plugin README, "Shared Access to GPUs".
        let c = DevicePluginConfig::from_yaml(
            r#"
version: v1
flags:
  migStrategy: none
  failOnInitError: true
  nvidiaDriverRoot: /
  plugin:
    passDeviceSpecs: false
    deviceListStrategy: envvar
    deviceIDStrategy: uuid
  gfd:
    oneshot: false
    noTimestamp: false
    outputFile: /etc/kubernetes/node-feature-discovery/features.d/gfd
    sleepInterval: 60s
sharing:
  timeSlicing:
    resources:
    - name: nvidia.com/gpu
      replicas: 10
"#,
        )
        .unwrap();
        assert_eq!(c.mig_strategy(), MigStrategy::None);
        assert_eq!(c.replicated().0, SharingStrategy::TimeSlicing);
        assert_eq!(c.device_list_strategies(), vec![DeviceListStrategy::EnvVar]);
        assert!(!c.fail_requests_greater_than_one());
    }

    #[test]
    fn gpu_operator_time_slicing_configmap_entry_parses() {
        // The shape of an entry of the GPU operator's time-slicing ConfigMap.
        let c = DevicePluginConfig::from_yaml(
            r#"
version: v1
flags:
  migStrategy: mixed
sharing:
  timeSlicing:
    renameByDefault: true
    failRequestsGreaterThanOne: true
    resources:
      - name: nvidia.com/mig-1g.5gb
        replicas: 2
      - name: gpu
        rename: gpu-shared
        devices: ["0", "1:0", GPU-8ab1f5b2-2c0a-4ae5-9c0e-6b5f4c3d2e1a]
        replicas: 4
"#,
        )
        .unwrap();
        let (_, r) = c.replicated();
        let r = r.unwrap();
        assert!(r.rename_by_default);
        assert_eq!(r.resources[1].name, "nvidia.com/gpu");
        assert_eq!(r.resources[1].rename.as_deref(), Some("nvidia.com/gpu-shared"));
        assert!(matches!(&r.resources[1].devices, ReplicaDevices::List(l) if l.len() == 3));
    }

    #[test]
    fn mps_defaults_fail_requests_greater_than_one() {
        let c = DevicePluginConfig::from_yaml(
            "version: v1\nsharing:\n  mps:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n",
        )
        .unwrap();
        assert_eq!(c.replicated().0, SharingStrategy::Mps);
        assert!(c.fail_requests_greater_than_one());
    }

    #[test]
    fn device_list_strategy_as_list() {
        let c = DevicePluginConfig::from_yaml(
            "version: v1\nflags:\n  plugin:\n    deviceListStrategy: [envvar, cdi-cri]\n",
        )
        .unwrap();
        assert_eq!(
            c.device_list_strategies(),
            vec![DeviceListStrategy::EnvVar, DeviceListStrategy::CdiCri]
        );
    }

    fn err(text: &str) -> String {
        DevicePluginConfig::from_yaml(text).unwrap_err().to_string()
    }

    #[test]
    fn bad_configs_name_field_and_value() {
        let e = err("version: v1\nflags:\n  migStrategy: mixd\n");
        assert!(e.contains("flags.migStrategy") && e.contains("mixd"), "{e}");

        let e = err(
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 1\n",
        );
        assert_eq!(
            e,
            "device plugin config: sharing.timeSlicing.resources[0].replicas: invalid value \"1\": must be at least 2 to share a device"
        );

        let e = err(
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n      devices: some\n",
        );
        assert!(
            e.contains("sharing.timeSlicing.resources[0].devices") && e.contains("\"some\""),
            "{e}"
        );

        let e =
            err("version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: amd.com/gpu\n      replicas: 4\n");
        assert!(
            e.contains("resources[0].name") && e.contains("amd.com/gpu") && e.contains("nvidia.com/ prefix"),
            "{e}"
        );

        let e = err("version: v1\nflags:\n  migStrategy: none\n  migStrategi: none\n");
        assert!(e.contains("unknown field `migStrategi`"), "{e}");

        let e = err("version: v2\n");
        assert!(e.contains("version") && e.contains("v2"), "{e}");

        let e = err("version: v1\nflags:\n  plugin:\n    deviceListStrategy: nfs\n");
        assert!(
            e.contains("flags.plugin.deviceListStrategy") && e.contains("nfs"),
            "{e}"
        );

        let e = err(
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: gpu\n      replicas: 2\n      memoryPerReplica: 8GB\n",
        );
        assert!(e.contains("memoryPerReplica") && e.contains("8GB"), "{e}");
    }

    #[test]
    fn replica_count_bomb_is_refused_at_parse_time() {
        for key in ["timeSlicing", "mps"] {
            let e = err(&format!(
                "version: v1\nsharing:\n  {key}:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 2147483648\n"
            ));
            assert_eq!(
                e,
                format!(
                    "device plugin config: sharing.{key}.resources[0].replicas: invalid value \"2147483648\": 2147483648 is above the maximum of {MAX_REPLICAS} replicas per device"
                )
            );
            let e = err(&format!(
                "version: v1\nsharing:\n  {key}:\n    resources:\n    - name: gpu\n      replicas: {}\n",
                MAX_REPLICAS + 1
            ));
            assert!(e.contains(&format!("sharing.{key}.resources[0].replicas")), "{e}");
            // The bound itself is accepted.
            DevicePluginConfig::from_yaml(&format!(
                "version: v1\nsharing:\n  {key}:\n    resources:\n    - name: gpu\n      replicas: {MAX_REPLICAS}\n"
            ))
            .unwrap();
        }
        // Beyond u32 is a type error that still names the field.
        let e = err(
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: gpu\n      replicas: 99999999999\n",
        );
        assert!(e.contains("sharing.timeSlicing.resources[0].replicas"), "{e}");
    }

    #[test]
    fn duplicate_shared_resources_are_refused() {
        for key in ["timeSlicing", "mps"] {
            // `gpu` and `nvidia.com/gpu` are the same resource.
            let e = err(&format!(
                "version: v1\nsharing:\n  {key}:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 2\n    - name: nvidia.com/gpu-b\n      replicas: 2\n    - name: gpu\n      replicas: 8\n"
            ));
            assert_eq!(
                e,
                format!(
                    "device plugin config: sharing.{key}.resources[2].name: invalid value \"nvidia.com/gpu\": duplicate resource name; sharing.{key}.resources[0] already configures it"
                )
            );
        }
    }

    #[test]
    fn long_device_lists_are_refused() {
        let list = vec!["0"; MAX_DEVICE_REFS + 1].join(", ");
        let e = err(&format!(
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: gpu\n      replicas: 2\n      devices: [{list}]\n"
        ));
        assert!(
            e.contains("sharing.timeSlicing.resources[0].devices") && e.contains("above the maximum"),
            "{e}"
        );
    }

    #[test]
    fn qualify_names() {
        assert_eq!(qualify("gpu").unwrap(), "nvidia.com/gpu");
        assert_eq!(qualify("nvidia.com/mig-1g.5gb").unwrap(), "nvidia.com/mig-1g.5gb");
        assert!(qualify("nvidia.com/-x").is_err());
        assert!(qualify(&"a".repeat(64)).is_err());
    }
}
