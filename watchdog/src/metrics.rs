//! The watchdog's Prometheus metrics (prefix `railyard_watchdog_`), in the
//! caller's registry. Label values are bounded: per-container gauges follow
//! the containers holding shared replicas on this node (stale series are
//! removed), counters carry only fixed words (mode, signal, outcome, result).

use std::collections::BTreeSet;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub type Labels = Vec<(String, String)>;

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[derive(Debug, Clone, Default)]
pub struct WatchdogMetrics {
    /// GPU memory a container uses on a device, MiB; `{namespace,pod,container,device}`.
    pub usage_mib: Family<Labels, Gauge>,
    /// Its share there, MiB; same labels.
    pub share_mib: Family<Labels, Gauge>,
    /// Containers over their share for the grace period, by mode.
    pub violations: Family<Labels, Counter>,
    /// Signals, by signal and outcome (sent, gone, pid_reused, failed).
    pub signals: Family<Labels, Counter>,
    /// Scans, by result (enforced, no_shares, gpu_data_missing,
    /// gpu_data_stale, pod_resources_unavailable).
    pub scans: Family<Labels, Counter>,
    /// GPU processes seen in the last scan, by owner (container, host, unattributed).
    pub processes: Family<Labels, Gauge>,
    series: std::sync::Arc<std::sync::Mutex<BTreeSet<Labels>>>,
}

impl WatchdogMetrics {
    pub fn new(registry: &mut Registry) -> WatchdogMetrics {
        let m = WatchdogMetrics::default();
        let r = registry.sub_registry_with_prefix("railyard_watchdog");
        r.register(
            "container_gpu_memory_used_mib",
            "GPU memory used by a container's processes on a shared device, MiB",
            m.usage_mib.clone(),
        );
        r.register(
            "container_gpu_memory_share_mib",
            "GPU memory share of a container on a shared device, MiB",
            m.share_mib.clone(),
        );
        r.register(
            "violations",
            "Containers over their GPU memory share for the grace period, by mode",
            m.violations.clone(),
        );
        r.register(
            "signals",
            "Signals to processes over their container's share, by signal and outcome",
            m.signals.clone(),
        );
        r.register("scans", "Watchdog scans, by result", m.scans.clone());
        r.register(
            "gpu_processes",
            "GPU processes in the last scan, by owner",
            m.processes.clone(),
        );
        m
    }

    /// Sets the per-container gauges to `rows` (labels, usage, share) and
    /// removes the series of containers no longer present.
    pub fn set_usage(&self, rows: &[(Labels, u64, u64)]) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let now: BTreeSet<Labels> = rows.iter().map(|(l, _, _)| l.clone()).collect();
        for gone in series.difference(&now) {
            self.usage_mib.remove(gone);
            self.share_mib.remove(gone);
        }
        for (l, usage, share) in rows {
            self.usage_mib
                .get_or_create(l)
                .set(i64::try_from(*usage).unwrap_or(i64::MAX));
            self.share_mib
                .get_or_create(l)
                .set(i64::try_from(*share).unwrap_or(i64::MAX));
        }
        *series = now;
    }
}
