//! What a container gets for its devices: the `Allocate` response per
//! device-list strategy, and the CDI spec that names every device.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use railyard_core::allocation::granted_devices;
use railyard_core::config::DevicePluginConfig;
use railyard_core::config::device_plugin::{DeviceIdStrategy, DeviceListStrategy, SharingStrategy};
use railyard_core::resources::{AdvertisedDevice, AdvertisedResource, Device};
use railyard_kubelet_api::deviceplugin::v1beta1::{CdiDevice, ContainerAllocateResponse, DeviceSpec, Mount};

use crate::nvcaps::cap_device;

/// The `volume-mounts` strategy's directory, as NVIDIA's.
pub const VOLUME_MOUNTS_DIR: &str = "/var/run/nvidia-container-devices";
/// Where the MPS pipe directory appears in containers.
pub const MPS_PIPE_IN_CONTAINER: &str = "/mps/pipe";
pub use railyard_core::cdi::{
    CONTROL_DEVICES, CdiDeviceSpec, CdiMount, CdiSpec, ContainerEdits, DeviceNode, MEMORY_LIMIT_ENV,
    MPS_MEMORY_LIMIT_ENV, MPS_PIPE_ENV, MPS_THREAD_PERCENTAGE_ENV, VISIBLE_DEVICES_ENV,
};

/// Everything about a container's devices that comes from the config and
/// flags rather than from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub strategies: Vec<DeviceListStrategy>,
    pub id_strategy: DeviceIdStrategy,
    pub pass_device_specs: bool,
    /// Host root of `/dev/nvidia*`.
    pub dev_root: String,
    pub mps_root: String,
    pub cdi_kind: String,
    pub cdi_annotation_prefix: String,
    /// `/dev/nvidia<minor>` per GPU index.
    pub minors: BTreeMap<u32, u32>,
    /// `/dev/nvidia-caps/nvidia-cap<minor>` of the GPU instance and the
    /// compute instance, per MIG device id ([`crate::nvcaps`]).
    pub mig_caps: BTreeMap<String, [u32; 2]>,
}

impl Settings {
    pub fn new(c: &DevicePluginConfig, cdi_kind: &str, minors: BTreeMap<u32, u32>) -> Settings {
        let plugin = c.flags.plugin.clone().unwrap_or_default();
        let driver_root = c.flags.nvidia_driver_root.clone().unwrap_or_else(|| "/".into());
        Settings {
            strategies: c.device_list_strategies(),
            id_strategy: c.device_id_strategy(),
            pass_device_specs: plugin.pass_device_specs.unwrap_or(false),
            dev_root: c.flags.nvidia_dev_root.clone().unwrap_or(driver_root),
            mps_root: c.flags.mps_root.clone().unwrap_or_else(|| "/run/nvidia/mps".into()),
            cdi_kind: cdi_kind.to_string(),
            cdi_annotation_prefix: plugin.cdi_annotation_prefix.unwrap_or_else(|| "cdi.k8s.io/".into()),
            minors,
            mig_caps: BTreeMap::new(),
        }
    }

    pub fn with_mig_caps(mut self, mig_caps: BTreeMap<String, [u32; 2]>) -> Settings {
        self.mig_caps = mig_caps;
        self
    }

    pub fn uses_cdi(&self) -> bool {
        self.strategies
            .iter()
            .any(|s| matches!(s, DeviceListStrategy::CdiCri | DeviceListStrategy::CdiAnnotations))
    }

    /// How the runtime knows a device: its UUID or its index (`0`, `0:1`).
    pub fn device_name<'a>(&self, d: &'a Device) -> &'a str {
        match self.id_strategy {
            DeviceIdStrategy::Uuid => &d.id,
            DeviceIdStrategy::Index => &d.index,
        }
    }

    pub fn cdi_name(&self, d: &Device) -> String {
        format!("{}={}", self.cdi_kind, self.device_name(d))
    }

    fn host_dev(&self, path: &str) -> String {
        host_path(&self.dev_root, path)
    }

    fn gpu_node(&self, gpu: u32) -> String {
        format!("/dev/nvidia{}", self.minors.get(&gpu).copied().unwrap_or(gpu))
    }

    /// A device's own nodes: its GPU's `/dev/nvidia<minor>`, and for a MIG
    /// device its GPU instance's and compute instance's capability nodes.
    pub fn device_nodes(&self, d: &Device) -> Vec<String> {
        let mut nodes = vec![self.gpu_node(d.gpu)];
        if let Some(caps) = self.mig_caps.get(&d.id) {
            nodes.extend(caps.iter().map(|m| cap_device(*m)));
        }
        nodes
    }
}

fn host_path(root: &str, path: &str) -> String {
    let root = root.trim_end_matches('/');
    format!("{root}{path}")
}

fn sanitize(resource: &str) -> String {
    resource.replace('/', "_")
}

/// The `Allocate` response for one container's granted devices.
pub fn container_response(
    s: &Settings,
    resource: &AdvertisedResource,
    devices: &[&AdvertisedDevice],
) -> ContainerAllocateResponse {
    static REQUEST: AtomicU64 = AtomicU64::new(0);
    let granted = granted_devices(devices);
    let names: Vec<&str> = granted.iter().map(|(d, _)| s.device_name(&d.device)).collect();
    let mut r = ContainerAllocateResponse::default();
    for strategy in &s.strategies {
        match strategy {
            DeviceListStrategy::EnvVar => {
                r.envs.insert(VISIBLE_DEVICES_ENV.into(), names.join(","));
            }
            DeviceListStrategy::VolumeMounts => {
                r.envs.insert(VISIBLE_DEVICES_ENV.into(), VOLUME_MOUNTS_DIR.into());
                r.mounts.extend(names.iter().map(|n| Mount {
                    container_path: format!("{VOLUME_MOUNTS_DIR}/{n}"),
                    host_path: "/dev/null".into(),
                    read_only: false,
                }));
            }
            DeviceListStrategy::CdiAnnotations => {
                let key = format!(
                    "{}railyard-device-plugin_{}-{}",
                    s.cdi_annotation_prefix,
                    sanitize(&resource.name),
                    REQUEST.fetch_add(1, Ordering::Relaxed)
                );
                let value: Vec<String> = granted.iter().map(|(d, _)| s.cdi_name(&d.device)).collect();
                r.annotations.insert(key, value.join(","));
            }
            DeviceListStrategy::CdiCri => {
                r.cdi_devices.extend(granted.iter().map(|(d, _)| CdiDevice {
                    name: s.cdi_name(&d.device),
                }));
            }
        }
    }
    if s.pass_device_specs {
        let mut nodes: Vec<String> = CONTROL_DEVICES.iter().map(|p| p.to_string()).collect();
        for (d, _) in &granted {
            for n in s.device_nodes(&d.device) {
                if !nodes.contains(&n) {
                    nodes.push(n);
                }
            }
        }
        r.devices = nodes
            .into_iter()
            .map(|p| DeviceSpec {
                host_path: s.host_dev(&p),
                container_path: p,
                permissions: "rw".into(),
            })
            .collect();
    }
    let shared = devices.iter().any(|d| d.replica.is_some());
    if shared {
        let limits: Vec<String> = granted
            .iter()
            .enumerate()
            .map(|(i, (_, mib))| format!("{i}={mib}M"))
            .collect();
        r.envs.insert(MEMORY_LIMIT_ENV.into(), limits.join(","));
        if resource.sharing == SharingStrategy::Mps {
            r.envs.insert(MPS_MEMORY_LIMIT_ENV.into(), limits.join(","));
            let replicas = resource
                .devices
                .iter()
                .filter(|d| devices.first().is_some_and(|f| f.device.id == d.device.id))
                .count()
                .max(1);
            r.envs
                .insert(MPS_THREAD_PERCENTAGE_ENV.into(), (100 / replicas).max(1).to_string());
            r.envs.insert(MPS_PIPE_ENV.into(), MPS_PIPE_IN_CONTAINER.into());
            r.mounts.push(Mount {
                container_path: MPS_PIPE_IN_CONTAINER.into(),
                host_path: format!("{}/{}/pipe", s.mps_root.trim_end_matches('/'), sanitize(&resource.name)),
                read_only: false,
            });
            r.mounts.push(Mount {
                container_path: "/dev/shm".into(),
                host_path: format!("{}/shm", s.mps_root.trim_end_matches('/')),
                read_only: false,
            });
        }
    }
    r
}

/// The CDI spec for every physical device behind `resources`: each under
/// its UUID and its index, plus `all`. Device nodes per device (a MIG
/// device's include its nvidia-caps nodes); the control
/// devices and `NVIDIA_VISIBLE_DEVICES=void` (so the legacy NVIDIA hook adds
/// nothing) for the whole spec; MPS devices get the MPS pipe mount.
pub fn cdi_spec(s: &Settings, resources: &[AdvertisedResource]) -> CdiSpec {
    let node = |path: &str| {
        let host = s.host_dev(path);
        DeviceNode {
            host_path: (host != path).then_some(host),
            path: path.to_string(),
            permissions: None,
        }
    };
    // Physical devices (by id), with the MPS resource they are shared under.
    let mut physical: BTreeMap<String, (Device, Option<String>)> = BTreeMap::new();
    for r in resources {
        for d in &r.devices {
            let mps = (r.sharing == SharingStrategy::Mps && d.replica.is_some()).then(|| r.name.clone());
            let e = physical
                .entry(d.device.id.clone())
                .or_insert_with(|| (d.device.clone(), None));
            if mps.is_some() {
                e.1 = mps;
            }
        }
    }
    let mut ordered: Vec<&(Device, Option<String>)> = physical.values().collect();
    ordered.sort_by(|a, b| (a.0.gpu, &a.0.index).cmp(&(b.0.gpu, &b.0.index)));
    let mut devices = Vec::new();
    let mut all = ContainerEdits::default();
    for (d, mps) in ordered {
        let mut edits = ContainerEdits {
            device_nodes: s.device_nodes(d).iter().map(|p| node(p)).collect(),
            ..ContainerEdits::default()
        };
        if let Some(res) = mps {
            edits.mounts.push(CdiMount {
                host_path: format!("{}/{}/pipe", s.mps_root.trim_end_matches('/'), sanitize(res)),
                container_path: MPS_PIPE_IN_CONTAINER.into(),
                options: vec!["rbind".into(), "rw".into()],
            });
            edits.env.push(format!("{MPS_PIPE_ENV}={MPS_PIPE_IN_CONTAINER}"));
        }
        for n in &edits.device_nodes {
            if !all.device_nodes.contains(n) {
                all.device_nodes.push(n.clone());
            }
        }
        for name in [d.id.as_str(), d.index.as_str()] {
            devices.push(CdiDeviceSpec {
                name: name.to_string(),
                container_edits: edits.clone(),
            });
        }
    }
    if !devices.is_empty() {
        devices.push(CdiDeviceSpec {
            name: "all".into(),
            container_edits: all,
        });
    }
    let shared = ContainerEdits {
        env: vec![format!("{VISIBLE_DEVICES_ENV}=void")],
        device_nodes: CONTROL_DEVICES.iter().map(|p| node(p)).collect(),
        mounts: Vec::new(),
    };
    let mut spec = CdiSpec {
        cdi_version: String::new(),
        kind: s.cdi_kind.clone(),
        annotations: BTreeMap::new(),
        devices,
        container_edits: shared,
    };
    spec.cdi_version = spec.min_version().into();
    spec
}

/// `<dir>/<vendor>-<class>.json`.
pub fn cdi_spec_path(dir: &Path, kind: &str) -> PathBuf {
    dir.join(format!("{}.json", kind.replace('/', "-")))
}

/// Writes the spec atomically: a hidden temp file in the same directory
/// (CDI loaders only read `*.json`/`*.yaml`), fsynced, then renamed over the
/// old one, so a runtime never reads half a spec.
pub fn write_cdi_spec(dir: &Path, spec: &CdiSpec) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = cdi_spec_path(dir, &spec.kind);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        std::process::id()
    ));
    let json = serde_json::to_vec_pretty(spec).map_err(std::io::Error::other)?;
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The container env as a sorted map (for logs and tests).
pub fn sorted_envs(r: &ContainerAllocateResponse) -> BTreeMap<String, String> {
    let m: &HashMap<String, String> = &r.envs;
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
