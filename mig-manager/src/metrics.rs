//! Prometheus metrics of the node agent, registered into a registry the
//! caller owns (no globals). Labels carry outcomes, never error text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `success`, `waiting`, `rebooting`, `failed`.
    pub outcome: String,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub reconfigurations: Family<OutcomeLabel, Counter>,
    pub duration_seconds: Histogram,
    pub instances_created: Counter,
    pub instances_destroyed: Counter,
    pub blocked_targets: Counter,
    pub blocking_instances: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            reconfigurations: Family::default(),
            // 1 ms … ~65 s.
            duration_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            instances_created: Counter::default(),
            instances_destroyed: Counter::default(),
            blocked_targets: Counter::default(),
            blocking_instances: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("railyard_mig_manager");
        r.register(
            "reconfigurations",
            "Reconcile runs that had steps to take or a target they could not reach, by outcome",
            m.reconfigurations.clone(),
        );
        r.register(
            "reconfiguration_duration_seconds",
            "Time of a reconcile run that changed or tried to change the layout",
            m.duration_seconds.clone(),
        );
        r.register(
            "instances_created",
            "MIG GPU instances created",
            m.instances_created.clone(),
        );
        r.register(
            "instances_destroyed",
            "MIG GPU instances destroyed",
            m.instances_destroyed.clone(),
        );
        r.register(
            "blocked_targets",
            "Runs whose target was blocked by busy instances or GPUs",
            m.blocked_targets.clone(),
        );
        r.register(
            "blocking_instances",
            "Busy instances and GPUs blocking the current target",
            m.blocking_instances.clone(),
        );
        m
    }

    pub fn outcome(&self, outcome: &str) {
        self.reconfigurations
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}
