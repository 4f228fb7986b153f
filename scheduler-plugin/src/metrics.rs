//! Prometheus metrics, registered into a registry the caller owns. Labels
//! are fixed vocabularies (verb, outcome, state); error text never goes into
//! a label.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub verb: &'static str,
    /// `ok`, `error`, `bad_request`, `no_fit`, `gang_slot`, `gang_wait`,
    /// `gang_never`, `bound`, `bind_failed`.
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// A fixed vocabulary chosen by the caller; never error text.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteBackLabels {
    /// `whole` or `shared`.
    pub kind: &'static str,
    /// `followed` (kubelet gave the decided GPUs), `drifted` (other GPUs),
    /// `invalid` (not the pod's node or ask: ignored).
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `filling` or `complete`.
    pub state: &'static str,
}

fn latency() -> Histogram {
    // 50 µs .. ~1.6 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.00005, 2.0, 16,
    ))
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub latency: Family<VerbLabels, Histogram, fn() -> Histogram>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub gangs: Family<StateLabels, Gauge>,
    pub nodes: Gauge,
    pub pods: Gauge,
    /// Nodes whose topology labels do not parse (planned without topology).
    pub mislabelled_nodes: Gauge,
    /// Gang plans read back from the API and rejected, by reason.
    pub gang_plans_ignored: Family<ReasonLabels, Counter>,
    /// Requests whose handler panicked (answered 500), by verb.
    pub panics: Family<VerbLabels, Counter>,
    /// Requests refused before a handler ran: `body_too_large`,
    /// `body_timeout`, `body_error`.
    pub refused: Family<ReasonLabels, Counter>,
    /// Device-plugin write-backs applied to the view, by kind and result.
    pub writebacks: Family<WriteBackLabels, Counter>,
    /// Pods booked elsewhere that a write-back displaced (now unknown).
    pub writeback_displaced: Counter,
    /// Pods whose GPU positions are unknown (write-back overdue, or
    /// displaced), and the nodes holding them (scored lowest).
    pub unknown_pods: Gauge,
    pub unknown_nodes: Gauge,
    /// Nodes whose device plugin writes back.
    pub writeback_nodes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            latency: Family::new_with_constructor(latency as fn() -> Histogram),
            decisions: Family::default(),
            gangs: Family::default(),
            nodes: Gauge::default(),
            pods: Gauge::default(),
            mislabelled_nodes: Gauge::default(),
            gang_plans_ignored: Family::default(),
            panics: Family::default(),
            refused: Family::default(),
            writebacks: Family::default(),
            writeback_displaced: Counter::default(),
            unknown_pods: Gauge::default(),
            unknown_nodes: Gauge::default(),
            writeback_nodes: Gauge::default(),
        }
    }
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("railyard_scheduler");
        r.register(
            "request_duration_seconds",
            "Extender request latency by verb",
            m.latency.clone(),
        );
        r.register(
            "decisions",
            "Extender decisions by verb and outcome",
            m.decisions.clone(),
        );
        r.register("gang_reservations", "Gang reservations by state", m.gangs.clone());
        r.register("nodes", "Nodes in the extender's view", m.nodes.clone());
        r.register("pods", "Pods placed in the extender's view", m.pods.clone());
        r.register(
            "mislabelled_nodes",
            "Nodes whose topology labels do not parse; gangs plan them without topology",
            m.mislabelled_nodes.clone(),
        );
        // Exposed as railyard_scheduler_gang_plans_ignored_total.
        r.register(
            "gang_plans_ignored",
            "Gang plans read back from the API and ignored, by reason",
            m.gang_plans_ignored.clone(),
        );
        r.register(
            "handler_panics",
            "Extender requests whose handler panicked (answered 500), by verb",
            m.panics.clone(),
        );
        r.register(
            "requests_refused",
            "Requests refused before a handler ran (body too large, too slow, broken), by reason",
            m.refused.clone(),
        );
        r.register(
            "writebacks",
            "Device-plugin write-backs of the GPUs kubelet gave, by kind and result",
            m.writebacks.clone(),
        );
        r.register(
            "writeback_displaced_pods",
            "Pods moved off the GPUs another pod's write-back showed taken",
            m.writeback_displaced.clone(),
        );
        r.register(
            "unknown_position_pods",
            "Pods whose GPUs are not known (write-back overdue or displaced)",
            m.unknown_pods.clone(),
        );
        r.register(
            "unknown_position_nodes",
            "Nodes holding pods whose GPUs are not known; scored lowest for GPU asks",
            m.unknown_nodes.clone(),
        );
        r.register(
            "writeback_nodes",
            "Nodes whose device plugin writes back the GPUs kubelet gave",
            m.writeback_nodes.clone(),
        );
        m
    }

    /// Counts what a pod observation's write-back did.
    pub fn writeback(&self, out: railyard_core::extender::WriteBack) {
        use railyard_core::extender::WriteBack;
        let (kind, result, displaced) = match out {
            WriteBack::Unchanged => return,
            WriteBack::Invalid => ("unknown", "invalid", 0),
            WriteBack::Applied { kind, drift, displaced } => {
                (kind.label(), if drift { "drifted" } else { "followed" }, displaced)
            }
        };
        self.writebacks.get_or_create(&WriteBackLabels { kind, result }).inc();
        self.writeback_displaced.inc_by(u64::from(displaced));
    }

    pub fn decision(&self, verb: &'static str, outcome: &'static str) {
        self.decisions.get_or_create(&DecisionLabels { verb, outcome }).inc();
    }

    /// Counts a gang plan read back from the API and rejected. `reason` is a
    /// static word (e.g. `no_gpu_request`, `slot_mismatch`), never error text.
    pub fn gang_plan_ignored(&self, reason: &'static str) {
        self.gang_plans_ignored.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn panicked(&self, verb: &'static str) {
        self.panics.get_or_create(&VerbLabels { verb }).inc();
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn observe(&self, verb: &'static str, seconds: f64) {
        self.latency.get_or_create(&VerbLabels { verb }).observe(seconds);
    }
}
