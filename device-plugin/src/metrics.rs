//! Prometheus metrics, registered into a registry the caller owns.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Advertised device ids by resource and health.
    pub devices: Family<Labels, Gauge>,
    /// Containers allocated, by resource.
    pub allocations: Family<Labels, Counter>,
    /// Allocate / GetPreferredAllocation calls refused, by resource and call.
    pub allocation_errors: Family<Labels, Counter>,
    /// Register calls, by resource and result (ok / error).
    pub registrations: Family<Labels, Counter>,
    /// Kubelet restarts seen (kubelet.sock recreated or own sockets removed).
    pub kubelet_restarts: Counter,
    /// Config checks that changed the config, by result (applied / rejected).
    pub config_reloads: Family<Labels, Counter>,
    /// Health events from the GPU backend, by kind.
    pub health_events: Family<Labels, Counter>,
    /// MIG layout notifications (the `--mig-layout-file` changed), each
    /// followed by an inventory re-read.
    pub mig_layout_notifications: Counter,
    /// `GetPreferredAllocation` answered with the extender's recorded
    /// devices, by resource.
    pub decisions_followed: Family<Labels, Counter>,
    /// `GetPreferredAllocation` answered by the plugin's own rule although
    /// API access is on, by resource and reason (see `follow`).
    pub decision_fallbacks: Family<Labels, Counter>,
    /// `Allocate` calls by resource and how they compare with the record.
    pub decision_allocations: Family<Labels, Counter>,
    /// `railyard.dev/allocated-gpus` write-backs by source and result.
    pub allocation_writebacks: Family<Labels, Counter>,
    /// The GPU memory watchdog's metrics (prefix `railyard_watchdog_`).
    pub watchdog: railyard_watchdog::metrics::WatchdogMetrics,
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            watchdog: railyard_watchdog::metrics::WatchdogMetrics::new(registry),
            ..Metrics::default()
        };
        let r = registry.sub_registry_with_prefix("railyard_device_plugin");
        r.register(
            "devices",
            "Advertised device ids by resource and health",
            m.devices.clone(),
        );
        r.register(
            "allocations",
            "Containers allocated, by resource",
            m.allocations.clone(),
        );
        r.register(
            "allocation_errors",
            "Allocate and GetPreferredAllocation calls refused",
            m.allocation_errors.clone(),
        );
        r.register(
            "registrations",
            "Register calls to kubelet, by result",
            m.registrations.clone(),
        );
        r.register(
            "kubelet_restarts",
            "Kubelet restarts detected",
            m.kubelet_restarts.clone(),
        );
        r.register(
            "config_reloads",
            "Config changes, applied or rejected",
            m.config_reloads.clone(),
        );
        r.register(
            "health_events",
            "GPU health events from the backend",
            m.health_events.clone(),
        );
        r.register(
            "mig_layout_notifications",
            "MIG layout file changes seen, each followed by an inventory re-read",
            m.mig_layout_notifications.clone(),
        );
        r.register(
            "decisions_followed",
            "GetPreferredAllocation answers that follow the extender's recorded devices",
            m.decisions_followed.clone(),
        );
        r.register(
            "decision_fallbacks",
            "GetPreferredAllocation answers by the plugin's own rule, by reason",
            m.decision_fallbacks.clone(),
        );
        r.register(
            "decision_allocations",
            "Allocate calls by outcome against the extender's record",
            m.decision_allocations.clone(),
        );
        r.register(
            "allocation_writebacks",
            "railyard.dev/allocated-gpus write-backs, by source and result",
            m.allocation_writebacks.clone(),
        );
        m
    }
}
