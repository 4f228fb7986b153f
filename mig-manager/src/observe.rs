//! What the node's GPUs hold now, read through the [`GpuBackend`]: every
//! run starts from here, never from a journal, so a manager killed mid-apply
//! re-plans from the real state.

use railyard_core::config::ConfigGpu;
use railyard_core::mig::{GpuMigState, InstanceRef, MigFamily, MigInstance};
use railyard_gpu::{GpuBackend, GpuError, MigInstanceInfo, MigMode};

/// One GPU as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedGpu {
    pub index: u32,
    /// `GPU-…`.
    pub uuid: String,
    /// `/dev/nvidia<minor>`; DRA device names use it (`gpu-<minor>`).
    pub minor: u32,
    pub product_name: String,
    pub pci_device_id: u16,
    /// `None`: not MIG-capable.
    pub family: Option<MigFamily>,
    pub mode: MigMode,
    /// GPU instances by placement; empty when MIG is off.
    pub instances: Vec<MigInstanceInfo>,
}

/// The planner's form of an instance the backend reports.
pub fn mig_instance(i: &MigInstanceInfo) -> MigInstance {
    MigInstance {
        kind: i.kind,
        placement: i.placement,
    }
}

/// `[3g.40gb@0:4, 1g.10gb@6:1 (no compute instance)]`.
pub fn describe_instances(instances: &[MigInstanceInfo]) -> String {
    let parts: Vec<String> = instances
        .iter()
        .map(|i| {
            let ci = if i.compute_instance_id.is_none() {
                " (no compute instance)"
            } else {
                ""
            };
            format!("{}@{}{ci}", i.profile, i.placement)
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

impl ObservedGpu {
    /// `instance` of this GPU, as the busy set and the planner name it.
    pub fn instance_ref(&self, instance: &MigInstanceInfo) -> InstanceRef {
        InstanceRef {
            gpu: self.index,
            instance: mig_instance(instance),
        }
    }

    /// The instance at `start`, if any.
    pub fn instance_at(&self, start: u8) -> Option<&MigInstanceInfo> {
        self.instances.iter().find(|i| i.placement.start == start)
    }

    pub fn state(&self) -> GpuMigState {
        GpuMigState::new(
            self.index,
            self.family,
            self.mode.current && self.family.is_some(),
            self.instances.iter().map(mig_instance).collect(),
        )
    }
}

/// Every GPU of the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    pub gpus: Vec<ObservedGpu>,
}

impl Observed {
    /// Reads the inventory (MIG modes and instances included).
    pub async fn read(backend: &dyn GpuBackend) -> Result<Observed, GpuError> {
        let inv = backend.inventory().await?;
        let gpus = inv
            .gpus
            .into_iter()
            .map(|g| {
                let (family, mode, instances) = match g.mig {
                    Some(m) => (Some(m.family), m.mode, m.instances),
                    None => (None, MigMode::default(), Vec::new()),
                };
                ObservedGpu {
                    index: g.index,
                    uuid: g.uuid,
                    minor: g.minor,
                    product_name: g.product_name,
                    pci_device_id: g.pci_device_id,
                    family,
                    mode,
                    instances,
                }
            })
            .collect();
        Ok(Observed { gpus })
    }

    pub fn gpu(&self, index: u32) -> Option<&ObservedGpu> {
        self.gpus.iter().find(|g| g.index == index)
    }

    /// The planner's view.
    pub fn states(&self) -> Vec<GpuMigState> {
        self.gpus.iter().map(ObservedGpu::state).collect()
    }

    /// The config resolver's view (model, PCI id for `device-filter`).
    pub fn config_gpus(&self) -> Vec<ConfigGpu> {
        self.gpus
            .iter()
            .map(|g| {
                let mut c = ConfigGpu::new(g.index, &g.product_name, Some(g.pci_device_id));
                // The backend's own MIG answer wins over the catalog's.
                c.family = g.family;
                c
            })
            .collect()
    }

    /// The instance whose MIG device has this `MIG-…` UUID.
    pub fn instance_by_uuid(&self, uuid: &str) -> Option<InstanceRef> {
        self.gpus.iter().find_map(|g| {
            g.instances
                .iter()
                .find(|i| i.uuid.as_deref() == Some(uuid))
                .map(|i| g.instance_ref(i))
        })
    }

    /// The layout in human form, e.g. `GPU 0: MIG on [3g.40gb@0:4, 1g.10gb@6:1]; GPU 1: MIG off`.
    pub fn describe(&self) -> String {
        self.gpus
            .iter()
            .map(|g| match (g.family, g.mode.current) {
                (None, _) => format!("GPU {}: not MIG-capable", g.index),
                (Some(_), false) => format!("GPU {}: MIG off", g.index),
                (Some(_), true) => format!("GPU {}: MIG on {}", g.index, describe_instances(&g.instances)),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}
