//! GPU health from NVML events, shared by both backends.
//!
//! A critical XID (any XID not in [`HealthConfig::ignored_xids`]) or a
//! `GPU_IS_LOST` answer marks a GPU unhealthy. An XID that NVML attributes
//! to a MIG instance (both its GPU instance and compute instance ids are
//! given) marks only that MIG device, as NVIDIA's device plugin does; one
//! without them marks the whole GPU. A GPU with anything unhealthy is probed
//! every [`HealthConfig::poll_interval`]; it recovers when the probe succeeds
//! and the driver's recovery action (`NVML_FI_DEV_GET_GPU_RECOVERY_ACTION`)
//! reads `NONE`. Where the driver cannot report a recovery action, a GPU
//! marked unhealthy by an XID stays unhealthy, as NVIDIA's device plugin
//! keeps it, until the process restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::types::{HealthEvent, HealthEventKind, UnhealthyReason};

/// XIDs NVIDIA's device plugin ignores by default: application errors
/// (13 graphics engine exception, 31 MMU fault, 43 reset channel, 45 preemptive
/// cleanup, 68 video processor exception, 109 context switch timeout).
pub const DEFAULT_IGNORED_XIDS: [u64; 6] = [13, 31, 43, 45, 68, 109];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// No health events at all (NVIDIA's `DP_DISABLE_HEALTHCHECKS=all`).
    pub disabled: bool,
    pub ignored_xids: BTreeSet<u64>,
    /// How often the NVML thread drains events and probes unhealthy GPUs.
    pub poll_interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            disabled: false,
            ignored_xids: DEFAULT_IGNORED_XIDS.into_iter().collect(),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// The recovery action the simulated driver asks for after an XID: none for
/// the application XIDs NVIDIA ignores, a GPU reset for the rest.
pub fn default_recovery_action(xid: u64) -> u32 {
    if DEFAULT_IGNORED_XIDS.contains(&xid) { 0 } else { 1 }
}

/// Current health of one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuHealth {
    Healthy,
    /// The whole GPU, and with it every MIG device on it.
    Unhealthy(UnhealthyReason),
    /// The GPU works, but these MIG devices, by (GPU instance id, compute
    /// instance id), had critical XIDs.
    MigDevicesUnhealthy(BTreeMap<(u32, u32), UnhealthyReason>),
}

impl GpuHealth {
    /// Whether the MIG device `(gpu_instance_id, compute_instance_id)` of
    /// this GPU is unhealthy: the whole GPU or that device.
    pub fn mig_device_unhealthy(&self, gpu_instance_id: u32, compute_instance_id: u32) -> bool {
        match self {
            GpuHealth::Healthy => false,
            GpuHealth::Unhealthy(_) => true,
            GpuHealth::MigDevicesUnhealthy(m) => m.contains_key(&(gpu_instance_id, compute_instance_id)),
        }
    }
}

/// Turns raw observations into [`HealthEvent`]s: each change once.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    config: HealthConfig,
    state: BTreeMap<u32, (String, GpuHealth)>,
}

impl HealthTracker {
    /// `gpus`: index and UUID of every GPU, all healthy.
    pub fn new(config: HealthConfig, gpus: impl IntoIterator<Item = (u32, String)>) -> Self {
        HealthTracker {
            config,
            state: gpus.into_iter().map(|(i, u)| (i, (u, GpuHealth::Healthy))).collect(),
        }
    }

    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    pub fn snapshot(&self) -> BTreeMap<u32, GpuHealth> {
        self.state.iter().map(|(i, (_, h))| (*i, h.clone())).collect()
    }

    /// GPUs to probe for recovery: unhealthy, or with an unhealthy MIG
    /// device (the driver's recovery action is per GPU).
    pub fn unhealthy(&self) -> Vec<u32> {
        self.state
            .iter()
            .filter(|(_, (_, h))| *h != GpuHealth::Healthy)
            .map(|(i, _)| *i)
            .collect()
    }

    /// Marks the whole GPU (`mig_device` `None`) or one MIG device.
    fn mark(&mut self, gpu: u32, mig_device: Option<(u32, u32)>, reason: UnhealthyReason) -> Option<HealthEvent> {
        if self.config.disabled {
            return None;
        }
        let (uuid, h) = self.state.get_mut(&gpu)?;
        match (mig_device, &mut *h) {
            // Already covered: the whole GPU is unhealthy.
            (_, GpuHealth::Unhealthy(_)) => return None,
            (None, _) => *h = GpuHealth::Unhealthy(reason),
            (Some(id), GpuHealth::Healthy) => *h = GpuHealth::MigDevicesUnhealthy(BTreeMap::from([(id, reason)])),
            (Some(id), GpuHealth::MigDevicesUnhealthy(m)) => {
                if m.contains_key(&id) {
                    return None;
                }
                m.insert(id, reason);
            }
        }
        Some(HealthEvent {
            gpu,
            uuid: uuid.clone(),
            mig_device,
            kind: HealthEventKind::Unhealthy(reason),
        })
    }

    /// An XID event; `None` if ignored or what it is about is already
    /// unhealthy. With both `gi` and `ci` (NVML reports `0xFFFFFFFF`, here
    /// `None`, when it cannot attribute the XID) only that MIG device is
    /// marked, as NVIDIA's device plugin does; otherwise the whole GPU.
    pub fn on_xid(&mut self, gpu: u32, xid: u64, gi: Option<u32>, ci: Option<u32>) -> Option<HealthEvent> {
        if self.config.ignored_xids.contains(&xid) {
            return None;
        }
        let mig_device = gi.zip(ci);
        self.mark(
            gpu,
            mig_device,
            UnhealthyReason::Xid {
                xid,
                gpu_instance_id: gi,
                compute_instance_id: ci,
            },
        )
    }

    pub fn on_lost(&mut self, gpu: u32) -> Option<HealthEvent> {
        self.mark(gpu, None, UnhealthyReason::GpuLost)
    }

    /// The result of probing a GPU from [`Self::unhealthy`]: `recovered` when
    /// it answered and needs no recovery action. The GPU and every MIG
    /// device on it are healthy again: one `Recovered` event for the GPU.
    pub fn on_probe(&mut self, gpu: u32, recovered: bool) -> Option<HealthEvent> {
        let (uuid, h) = self.state.get_mut(&gpu)?;
        if !recovered || *h == GpuHealth::Healthy {
            return None;
        }
        *h = GpuHealth::Healthy;
        Some(HealthEvent {
            gpu,
            uuid: uuid.clone(),
            mig_device: None,
            kind: HealthEventKind::Recovered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_xids_and_one_event_per_change() {
        let mut t = HealthTracker::new(HealthConfig::default(), [(0, "GPU-a".to_string())]);
        assert_eq!(t.on_xid(0, 13, None, None), None);
        let e = t.on_xid(0, 79, None, None).unwrap();
        assert!(matches!(
            e.kind,
            HealthEventKind::Unhealthy(UnhealthyReason::Xid { xid: 79, .. })
        ));
        assert_eq!(t.on_xid(0, 48, None, None), None);
        assert_eq!(t.unhealthy(), vec![0]);
        assert_eq!(t.on_probe(0, false), None);
        assert_eq!(t.on_probe(0, true).unwrap().kind, HealthEventKind::Recovered);
        assert_eq!(t.on_probe(0, true), None);
        let mut off = HealthTracker::new(
            HealthConfig {
                disabled: true,
                ..HealthConfig::default()
            },
            [(0, "GPU-a".to_string())],
        );
        assert_eq!(off.on_lost(0), None);
    }

    #[test]
    fn mig_xids_mark_one_device_until_the_gpu_recovers() {
        let mut t = HealthTracker::new(
            HealthConfig::default(),
            [(0, "GPU-a".to_string()), (1, "GPU-b".to_string())],
        );
        let e = t.on_xid(0, 79, Some(3), Some(0)).unwrap();
        assert_eq!((e.gpu, e.mig_device), (0, Some((3, 0))));
        // The same device again: no new event; another device: one more.
        assert_eq!(t.on_xid(0, 94, Some(3), Some(0)), None);
        assert_eq!(t.on_xid(0, 94, Some(5), Some(0)).unwrap().mig_device, Some((5, 0)));
        let h = &t.snapshot()[&0];
        assert!(h.mig_device_unhealthy(3, 0) && h.mig_device_unhealthy(5, 0));
        assert!(!h.mig_device_unhealthy(4, 0) && !h.mig_device_unhealthy(3, 1));
        assert_eq!(t.snapshot()[&1], GpuHealth::Healthy);
        // Probed for recovery like an unhealthy GPU.
        assert_eq!(t.unhealthy(), vec![0]);
        let r = t.on_probe(0, true).unwrap();
        assert_eq!((r.kind, r.mig_device), (HealthEventKind::Recovered, None));
        assert_eq!(t.snapshot()[&0], GpuHealth::Healthy);

        // Only a GI (or nothing) named: the whole GPU, as NVIDIA's plugin.
        let e = t.on_xid(1, 79, Some(3), None).unwrap();
        assert_eq!(e.mig_device, None);
        assert!(matches!(t.snapshot()[&1], GpuHealth::Unhealthy(_)));
        assert_eq!(t.on_xid(1, 79, Some(3), Some(0)), None);
        // A MIG device first, then the whole GPU: one more event.
        t.on_xid(0, 79, Some(1), Some(0)).unwrap();
        assert_eq!(t.on_lost(0).unwrap().mig_device, None);
        assert!(t.snapshot()[&0].mig_device_unhealthy(2, 0));
    }
}
