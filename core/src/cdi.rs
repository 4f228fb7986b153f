//! The Container Device Interface spec (PROTOCOLS §6): the part of it
//! Railyard writes, shared by the device plugin and the DRA driver. Loaders
//! reject unknown fields, so only these are emitted, and a file's
//! `cdiVersion` is the lowest that covers the fields it uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The lowest CDI version covering the fields we emit.
pub const CDI_VERSION_PLAIN: &str = "0.3.0";
/// Needed once a device node has a `hostPath`.
pub const CDI_VERSION_HOST_PATH: &str = "0.5.0";
/// Needed once the spec has `annotations`.
pub const CDI_VERSION_ANNOTATIONS: &str = "0.6.0";

/// Env var with the memory share (MiB) of each granted shared device.
pub const MEMORY_LIMIT_ENV: &str = "RAILYARD_GPU_MEMORY_LIMIT";
/// CUDA MPS client limit, set when sharing is MPS.
pub const MPS_MEMORY_LIMIT_ENV: &str = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT";
pub const MPS_THREAD_PERCENTAGE_ENV: &str = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE";
pub const MPS_PIPE_ENV: &str = "CUDA_MPS_PIPE_DIRECTORY";
pub const VISIBLE_DEVICES_ENV: &str = "NVIDIA_VISIBLE_DEVICES";
/// `/dev/nvidiactl` and the UVM devices every CUDA container needs.
pub const CONTROL_DEVICES: [&str; 3] = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiSpec {
    pub cdi_version: String,
    pub kind: String,
    /// Needs CDI 0.6.0 ([`CDI_VERSION_ANNOTATIONS`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
    pub devices: Vec<CdiDeviceSpec>,
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiDeviceSpec {
    pub name: String,
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub env: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub mounts: Vec<CdiMount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub permissions: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiMount {
    pub host_path: String,
    pub container_path: String,
    pub options: Vec<String>,
}

impl CdiSpec {
    /// The lowest `cdiVersion` that covers the fields this spec uses.
    pub fn min_version(&self) -> &'static str {
        if !self.annotations.is_empty() {
            return CDI_VERSION_ANNOTATIONS;
        }
        let host_paths = self
            .devices
            .iter()
            .map(|d| &d.container_edits)
            .chain([&self.container_edits])
            .flat_map(|e| &e.device_nodes)
            .any(|n| n.host_path.is_some());
        if host_paths {
            CDI_VERSION_HOST_PATH
        } else {
            CDI_VERSION_PLAIN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_lowest_covering_the_fields_used() {
        let node = |host: Option<&str>| DeviceNode {
            path: "/dev/nvidia0".into(),
            host_path: host.map(str::to_string),
            permissions: None,
        };
        let mut spec = CdiSpec {
            cdi_version: String::new(),
            kind: "k8s.gpu.nvidia.com/claim".into(),
            annotations: BTreeMap::new(),
            devices: vec![CdiDeviceSpec {
                name: "a".into(),
                container_edits: ContainerEdits {
                    device_nodes: vec![node(None)],
                    ..ContainerEdits::default()
                },
            }],
            container_edits: ContainerEdits::default(),
        };
        assert_eq!(spec.min_version(), "0.3.0");
        spec.devices[0].container_edits.device_nodes = vec![node(Some("/run/nvidia/driver/dev/nvidia0"))];
        assert_eq!(spec.min_version(), "0.5.0");
        spec.annotations.insert("railyard.dev/claim".into(), "ns/name".into());
        assert_eq!(spec.min_version(), "0.6.0");
        // Empty annotations are not written (0.3.0 loaders reject the key).
        spec.annotations.clear();
        let json = serde_json::to_string(&spec).unwrap_or_default();
        assert!(!json.contains("annotations"), "{json}");
    }
}
