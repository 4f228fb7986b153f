//! Kubernetes Events on the offending pod, written through [`EventRecorder`]:
//! the device plugin writes `events.k8s.io/v1` Events with its kube-backed
//! recorder when it has API access, and uses [`LogEventRecorder`] (logs what
//! it would write) when it runs without; tests use [`RecordingEventRecorder`].

use std::sync::{Arc, Mutex};

/// An Event about a pod (`involvedObject` = the pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    pub namespace: String,
    pub pod: String,
    /// The container the event is about (Event `fieldPath`
    /// `spec.containers{<name>}`).
    pub container: String,
    /// `Warning` for every watchdog event.
    pub warning: bool,
    /// CamelCase, e.g. [`REASON_OVER_SHARE`].
    pub reason: &'static str,
    pub message: String,
}

/// Over its share for the whole grace period.
pub const REASON_OVER_SHARE: &str = "GpuMemoryOverShare";
/// Signals sent to the container's processes.
pub const REASON_SIGNALLED: &str = "GpuMemoryShareEnforced";

pub trait EventRecorder: Send + Sync + std::fmt::Debug {
    fn record(&self, event: PodEvent);
}

/// Logs the event it would write.
#[derive(Debug, Clone, Default)]
pub struct LogEventRecorder;

impl EventRecorder for LogEventRecorder {
    fn record(&self, e: PodEvent) {
        tracing::info!(
            namespace = %e.namespace,
            pod = %e.pod,
            container = %e.container,
            reason = e.reason,
            message = %e.message,
            "no Kubernetes API access (--kube-api off): pod Event not written"
        );
    }
}

/// Keeps every event, for tests.
#[derive(Debug, Clone, Default)]
pub struct RecordingEventRecorder {
    pub events: Arc<Mutex<Vec<PodEvent>>>,
}

impl RecordingEventRecorder {
    pub fn events(&self) -> Vec<PodEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl EventRecorder for RecordingEventRecorder {
    fn record(&self, e: PodEvent) {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(e);
    }
}
