//! Which device a GPU process's memory is on: the physical GPU, or on a
//! MIG-enabled GPU the MIG device (GPU instance) it runs in, named by UUID as
//! the advertised device ids and the share table name them.

use std::collections::BTreeMap;

use railyard_core::resources::AdvertisedResource;
use railyard_gpu::{GpuProcess, NodeInventory};

use crate::scan::ShareTable;

#[derive(Debug, Clone, PartialEq, Eq)]
struct GpuDevices {
    uuid: String,
    /// GPU instance id → MIG device UUID, when MIG mode is on.
    mig: Option<BTreeMap<u32, String>>,
}

/// GPU index → its UUID and MIG devices, from the inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceMap {
    gpus: BTreeMap<u32, GpuDevices>,
}

impl DeviceMap {
    pub fn from_inventory(inv: &NodeInventory) -> DeviceMap {
        let gpus = inv
            .gpus
            .iter()
            .map(|g| {
                let mig = g.mig.as_ref().filter(|m| m.mode.current).map(|m| {
                    m.instances
                        .iter()
                        .filter_map(|i| Some((i.gpu_instance_id, i.uuid.clone()?)))
                        .collect()
                });
                (
                    g.index,
                    GpuDevices {
                        uuid: g.uuid.clone(),
                        mig,
                    },
                )
            })
            .collect();
        DeviceMap { gpus }
    }

    /// NVML indices of the GPUs to list processes on.
    pub fn gpu_indices(&self) -> Vec<u32> {
        self.gpus.keys().copied().collect()
    }

    /// The device `p`'s memory is on. On a MIG-enabled GPU that is the MIG
    /// device of its GPU instance; a GPU instance the inventory does not know
    /// (MIG reconfigured since) gets a name no share is keyed on
    /// (`<gpu uuid>/gi<id>`), so it is never enforced against a wrong share.
    /// `None` for a GPU not in the inventory.
    pub fn device_of(&self, p: &GpuProcess) -> Option<String> {
        let g = self.gpus.get(&p.gpu)?;
        Some(match (&g.mig, p.gpu_instance_id) {
            (Some(mig), Some(gi)) => mig.get(&gi).cloned().unwrap_or_else(|| format!("{}/gi{gi}", g.uuid)),
            _ => g.uuid.clone(),
        })
    }
}

/// What the watchdog enforces against: the shares of the resources being
/// advertised and the devices of the current inventory. The device plugin
/// publishes a new one on every config or inventory change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    pub shares: ShareTable,
    pub devices: DeviceMap,
}

impl NodeView {
    pub fn new(inventory: &NodeInventory, resources: &[AdvertisedResource]) -> NodeView {
        NodeView {
            shares: ShareTable::from_resources(resources),
            devices: DeviceMap::from_inventory(inventory),
        }
    }
}
