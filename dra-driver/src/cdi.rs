//! One CDI spec per prepared claim, named as NVIDIA's DRA driver names
//! them (PROTOCOLS §12): vendor `k8s.gpu.nvidia.com`, class `claim`, device
//! `<claim uid>-<device>`, file `k8s.gpu.nvidia.com-claim_<uid>.json`.
//! The spec is annotated with the claim it belongs to, so a node whose
//! checkpoint is lost can still tell which files belong to which claim.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use railyard_core::cdi::{
    CONTROL_DEVICES, CdiDeviceSpec, CdiSpec, ContainerEdits, DeviceNode, MEMORY_LIMIT_ENV, VISIBLE_DEVICES_ENV,
};

use crate::fsutil;

pub const CDI_VENDOR: &str = "k8s.gpu.nvidia.com";
pub const CDI_CLASS: &str = "claim";
pub const ANNOTATION_CLAIM_UID: &str = "railyard.dev/claim-uid";
pub const ANNOTATION_CLAIM_NAMESPACE: &str = "railyard.dev/claim-namespace";
pub const ANNOTATION_CLAIM_NAME: &str = "railyard.dev/claim-name";

/// A claim as kubelet names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClaimId {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ClaimId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({})", self.namespace, self.name, self.uid)
    }
}

/// What one prepared device puts into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEdits {
    /// The published device name.
    pub device: String,
    /// Its `NVIDIA_VISIBLE_DEVICES` entry: the GPU or MIG UUID.
    pub visible: String,
    /// Device nodes as seen in the container (`/dev/nvidia3`,
    /// `/dev/nvidia-caps/nvidia-cap12`).
    pub device_nodes: Vec<String>,
    /// The memory share of a shared GPU, MiB.
    pub memory_limit_mib: Option<u64>,
    /// Further env, e.g. `CUDA_MPS_*` for an MPS claim.
    pub env: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error("claim uid {0:?}: not usable in a CDI name (letters, digits and '-' only)")]
    BadUid(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Kubernetes UIDs are UUIDs; anything else would escape the file name.
fn check_uid(uid: &str) -> Result<(), CdiError> {
    if uid.is_empty() || uid.len() > 64 || !uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(CdiError::BadUid(uid.to_owned()));
    }
    Ok(())
}

pub fn cdi_device_name(uid: &str, device: &str) -> String {
    format!("{uid}-{device}")
}

/// The fully qualified id kubelet passes to the runtime.
pub fn cdi_device_id(uid: &str, device: &str) -> String {
    format!("{CDI_VENDOR}/{CDI_CLASS}={}", cdi_device_name(uid, device))
}

pub fn spec_file_name(uid: &str) -> String {
    format!("{CDI_VENDOR}-{CDI_CLASS}_{uid}.json")
}

/// The claim's spec. `host_root` is where the driver's `/dev` is on the
/// host when it is not `/` (a driver container's `/run/nvidia/driver`).
pub fn claim_spec(claim: &ClaimId, devices: &[DeviceEdits], host_root: Option<&str>) -> Result<CdiSpec, CdiError> {
    check_uid(&claim.uid)?;
    let node = |path: &str| DeviceNode {
        path: path.to_owned(),
        host_path: host_root.map(|r| format!("{}{path}", r.trim_end_matches('/'))),
        permissions: None,
    };
    let mut env = vec![format!(
        "{VISIBLE_DEVICES_ENV}={}",
        devices.iter().map(|d| d.visible.as_str()).collect::<Vec<_>>().join(",")
    )];
    // The same `<index>=<MiB>M` list the device plugin hands shared
    // replicas, indexed by position in NVIDIA_VISIBLE_DEVICES.
    let limits: Vec<String> = devices
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.memory_limit_mib.map(|m| format!("{i}={m}M")))
        .collect();
    if !limits.is_empty() {
        env.push(format!("{MEMORY_LIMIT_ENV}={}", limits.join(",")));
    }
    for d in devices {
        for e in &d.env {
            if !env.contains(e) {
                env.push(e.clone());
            }
        }
    }
    let annotations = BTreeMap::from([
        (ANNOTATION_CLAIM_UID.to_owned(), claim.uid.clone()),
        (ANNOTATION_CLAIM_NAMESPACE.to_owned(), claim.namespace.clone()),
        (ANNOTATION_CLAIM_NAME.to_owned(), claim.name.clone()),
    ]);
    let mut spec = CdiSpec {
        cdi_version: String::new(),
        kind: format!("{CDI_VENDOR}/{CDI_CLASS}"),
        annotations,
        devices: devices
            .iter()
            .map(|d| CdiDeviceSpec {
                name: cdi_device_name(&claim.uid, &d.device),
                container_edits: ContainerEdits {
                    device_nodes: d.device_nodes.iter().map(|p| node(p)).collect(),
                    ..ContainerEdits::default()
                },
            })
            .collect(),
        container_edits: ContainerEdits {
            env,
            device_nodes: CONTROL_DEVICES.iter().map(|p| node(p)).collect(),
            mounts: Vec::new(),
        },
    };
    spec.cdi_version = spec.min_version().into();
    Ok(spec)
}

/// Writes the claim's spec atomically; returns its path.
pub fn write_claim_spec(root: &Path, claim: &ClaimId, spec: &CdiSpec) -> Result<PathBuf, CdiError> {
    check_uid(&claim.uid)?;
    let path = root.join(spec_file_name(&claim.uid));
    let io_err = |source| CdiError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(root).map_err(io_err)?;
    let bytes = serde_json::to_vec_pretty(spec).map_err(|e| io_err(io::Error::other(e)))?;
    fsutil::write_atomic(&path, &bytes).map_err(io_err)?;
    Ok(path)
}

pub fn remove_claim_spec(root: &Path, uid: &str) -> Result<(), CdiError> {
    check_uid(uid)?;
    let path = root.join(spec_file_name(uid));
    fsutil::remove_durable(&path).map_err(|source| CdiError::Io { path, source })
}

/// The claim specs under `root` that this driver wrote, by the claim in
/// their annotations; a file that does not parse is skipped (and logged),
/// never fatal: other vendors' specs live in the same directory.
pub fn scan_claim_specs(root: &Path) -> Vec<(ClaimId, CdiSpec)> {
    let prefix = format!("{CDI_VENDOR}-{CDI_CLASS}_");
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) || !name.ends_with(".json") {
            continue;
        }
        let parsed = std::fs::read(e.path())
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<CdiSpec>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(spec) => {
                let get = |k: &str| spec.annotations.get(k).cloned().unwrap_or_default();
                let claim = ClaimId {
                    uid: get(ANNOTATION_CLAIM_UID),
                    namespace: get(ANNOTATION_CLAIM_NAMESPACE),
                    name: get(ANNOTATION_CLAIM_NAME),
                };
                if claim.uid.is_empty() {
                    tracing::warn!(file = %name, "CDI spec without {ANNOTATION_CLAIM_UID}; left alone");
                    continue;
                }
                out.push((claim, spec));
            }
            Err(err) => tracing::warn!(file = %name, %err, "unreadable CDI spec; left alone"),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claim() -> ClaimId {
        ClaimId {
            uid: "0b7e-41".into(),
            namespace: "ml".into(),
            name: "shared".into(),
        }
    }

    #[test]
    fn a_shared_gpu_and_a_mig_device_in_one_spec() {
        let devices = vec![
            DeviceEdits {
                device: "gpu-1".into(),
                visible: "GPU-aaaa".into(),
                device_nodes: vec!["/dev/nvidia1".into()],
                memory_limit_mib: Some(10240),
                env: Vec::new(),
            },
            DeviceEdits {
                device: "gpu-0-mig-1g10gb-19-0".into(),
                visible: "MIG-bbbb".into(),
                device_nodes: vec![
                    "/dev/nvidia0".into(),
                    "/dev/nvidia-caps/nvidia-cap21".into(),
                    "/dev/nvidia-caps/nvidia-cap22".into(),
                ],
                memory_limit_mib: None,
                env: Vec::new(),
            },
        ];
        let spec = claim_spec(&claim(), &devices, None).unwrap();
        assert_eq!(spec.kind, "k8s.gpu.nvidia.com/claim");
        assert_eq!(spec.cdi_version, "0.6.0", "annotations need 0.6.0");
        assert_eq!(spec.devices[0].name, "0b7e-41-gpu-1");
        assert_eq!(
            spec.container_edits.env,
            vec![
                "NVIDIA_VISIBLE_DEVICES=GPU-aaaa,MIG-bbbb",
                "RAILYARD_GPU_MEMORY_LIMIT=0=10240M"
            ]
        );
        let caps: Vec<_> = spec.devices[1]
            .container_edits
            .device_nodes
            .iter()
            .map(|n| &n.path)
            .collect();
        assert_eq!(caps.len(), 3);
        assert_eq!(
            cdi_device_id("0b7e-41", "gpu-1"),
            "k8s.gpu.nvidia.com/claim=0b7e-41-gpu-1"
        );
        let with_root = claim_spec(&claim(), &devices, Some("/run/nvidia/driver/")).unwrap();
        assert_eq!(
            with_root.devices[0].container_edits.device_nodes[0]
                .host_path
                .as_deref(),
            Some("/run/nvidia/driver/dev/nvidia1")
        );
    }

    #[test]
    fn written_specs_are_found_again_by_their_annotations() {
        let root = std::env::temp_dir().join(format!("railyard-cdi-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let spec = claim_spec(&claim(), &[], None).unwrap();
        let path = write_claim_spec(&root, &claim(), &spec).unwrap();
        assert!(path.ends_with("k8s.gpu.nvidia.com-claim_0b7e-41.json"));
        std::fs::write(root.join("k8s.gpu.nvidia.com-claim_junk.json"), "{").unwrap();
        std::fs::write(root.join("nvidia.com-gpu.json"), "{}").unwrap();
        let found = scan_claim_specs(&root);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, claim());
        remove_claim_spec(&root, &claim().uid).unwrap();
        remove_claim_spec(&root, &claim().uid).unwrap();
        assert!(scan_claim_specs(&root).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_uid_that_would_escape_the_file_name_is_refused() {
        let mut c = claim();
        c.uid = "../../etc/x".into();
        let e = claim_spec(&c, &[], None).unwrap_err().to_string();
        assert!(e.contains("../../etc/x"), "{e}");
        assert!(remove_claim_spec(Path::new("/tmp"), "a/b").is_err());
    }
}
