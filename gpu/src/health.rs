//! GPU health from NVML events, shared by both backends.
//!
//! A critical XID (any XID not in [`HealthConfig::ignored_xids`]) or a
//! `GPU_IS_LOST` answer marks a GPU unhealthy. An unhealthy GPU is probed
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuHealth {
    Healthy,
    Unhealthy(UnhealthyReason),
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
        self.state.iter().map(|(i, (_, h))| (*i, *h)).collect()
    }

    /// GPUs to probe for recovery.
    pub fn unhealthy(&self) -> Vec<u32> {
        self.state
            .iter()
            .filter(|(_, (_, h))| *h != GpuHealth::Healthy)
            .map(|(i, _)| *i)
            .collect()
    }

    fn mark(&mut self, gpu: u32, reason: UnhealthyReason) -> Option<HealthEvent> {
        if self.config.disabled {
            return None;
        }
        let (uuid, h) = self.state.get_mut(&gpu)?;
        if *h != GpuHealth::Healthy {
            return None;
        }
        *h = GpuHealth::Unhealthy(reason);
        Some(HealthEvent {
            gpu,
            uuid: uuid.clone(),
            kind: HealthEventKind::Unhealthy(reason),
        })
    }

    /// An XID event; `None` if ignored or the GPU is already unhealthy.
    pub fn on_xid(&mut self, gpu: u32, xid: u64, gi: Option<u32>, ci: Option<u32>) -> Option<HealthEvent> {
        if self.config.ignored_xids.contains(&xid) {
            return None;
        }
        self.mark(
            gpu,
            UnhealthyReason::Xid {
                xid,
                gpu_instance_id: gi,
                compute_instance_id: ci,
            },
        )
    }

    pub fn on_lost(&mut self, gpu: u32) -> Option<HealthEvent> {
        self.mark(gpu, UnhealthyReason::GpuLost)
    }

    /// The result of probing an unhealthy GPU: `recovered` when it answered
    /// and needs no recovery action.
    pub fn on_probe(&mut self, gpu: u32, recovered: bool) -> Option<HealthEvent> {
        let (uuid, h) = self.state.get_mut(&gpu)?;
        if !recovered || *h == GpuHealth::Healthy {
            return None;
        }
        *h = GpuHealth::Healthy;
        Some(HealthEvent {
            gpu,
            uuid: uuid.clone(),
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
        let e = t.on_xid(0, 79, Some(1), Some(0)).unwrap();
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
}
