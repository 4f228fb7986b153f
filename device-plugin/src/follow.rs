//! The handle between the pod watch, the gRPC services and the write-backs
//! (see `decisions` for the rule and why it is safe). The services ask
//! [`Follower::preferred`] in `GetPreferredAllocation` and report every
//! `Allocate` to [`Follower::allocated`]; neither waits on the API. Write-backs
//! go through a queue to [`run_writer`] (retried with backoff), and
//! [`run_reconciler`] writes, from kubelet's PodResources, what no matched
//! `Allocate` reported.
//!
//! Metrics (prefix `railyard_device_plugin_`):
//! - `decisions_followed_total{resource}`: `GetPreferredAllocation` answered
//!   with the recorded devices;
//! - `decision_fallbacks_total{resource,reason}`: answered by the plugin's
//!   own rule instead; `reason` is one of `no_record`, `ambiguous`,
//!   `multi_container`, `invalid_record`, `stale`;
//! - `decision_allocations_total{resource,outcome}`: per `Allocate`,
//!   `as_decided` (matched to its pod, devices as recorded), `differs`
//!   (matched, other devices), `no_record` (matched, pod without a record),
//!   `unmatched` (no single pod; reconciliation writes it back);
//! - `allocation_writebacks_total{source,result}`: `source` `allocate` or
//!   `reconcile`; `result` `written`, `gone` (pod deleted or rewritten
//!   since), `refused` (403/422, not retried), `failed` (retries used up),
//!   `dropped` (queue full). Reconciliation retries the last three.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use railyard_core::resources::AdvertisedResource;
use railyard_watchdog::podresources::PodResourcesClient;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::decisions::{
    DeviceMap, Fallback, KubeletView, PodDecisions, Record, WriteBack, followable, format_gpus, reconcile, recorded_ids,
};
use crate::metrics::{Metrics, labels};

/// Write-backs waiting to be sent; more are dropped (reconciliation sends
/// them later).
const WRITE_QUEUE: usize = 1024;
/// Write-backs in flight at once.
const WRITERS: usize = 8;
/// How long kubelet's PodResources `List` may take on the admission path
/// before the call is decided from the watch alone.
const ADMISSION_LIST_TIMEOUT: Duration = Duration::from_secs(1);
const RECONCILE_LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// Retries of one write-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(200),
            max: Duration::from_secs(10),
            attempts: 8,
        }
    }
}

/// Why a patch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The pod is gone (404).
    Gone,
    /// Refused for good (403, 422: RBAC or the admission policy).
    Refused(String),
    /// Worth retrying (5xx, 429, connection).
    Retry(String),
}

pub type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), WriteError>> + Send + 'a>>;

/// Writes `railyard.dev/allocated-gpus` on a pod (`kubepods::KubePodWriter`
/// over the API).
pub trait AnnotationWriter: Send + Sync + fmt::Debug {
    fn write<'a>(&'a self, namespace: &'a str, name: &'a str, value: &'a str) -> WriteFuture<'a>;
}

/// Shared by the pod watch, every resource's service, the writer and the
/// reconciler.
pub struct Follower {
    follow: bool,
    state: Mutex<PodDecisions>,
    map: RwLock<DeviceMap>,
    /// Write-backs queued or sent, by pod UID, until the watch shows them.
    inflight: Mutex<BTreeMap<String, String>>,
    /// PodResources for the admission path and for reconciliation (two
    /// connections, so a slow reconciliation never holds an admission).
    admission_pr: Option<tokio::sync::Mutex<PodResourcesClient>>,
    reconcile_pr: Option<tokio::sync::Mutex<PodResourcesClient>>,
    writes: mpsc::Sender<WriteBack>,
    metrics: Metrics,
    changed: watch::Sender<u64>,
}

impl fmt::Debug for Follower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Follower")
            .field("follow", &self.follow)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Follower {
    /// `follow`: `--follow-decisions` (off: the plugin's own rule, still
    /// writing back). `pod_resources`: kubelet's PodResources socket.
    /// Returns the queue [`run_writer`] drains.
    pub fn new(
        follow: bool,
        pod_resources: Option<PathBuf>,
        metrics: Metrics,
    ) -> (Arc<Follower>, mpsc::Receiver<WriteBack>) {
        let (writes, rx) = mpsc::channel(WRITE_QUEUE);
        let client = |t| {
            pod_resources
                .as_ref()
                .map(|p| tokio::sync::Mutex::new(PodResourcesClient::new(p.clone(), t)))
        };
        let f = Follower {
            follow,
            state: Mutex::new(PodDecisions::default()),
            map: RwLock::new(DeviceMap::default()),
            inflight: Mutex::new(BTreeMap::new()),
            admission_pr: client(ADMISSION_LIST_TIMEOUT),
            reconcile_pr: client(RECONCILE_LIST_TIMEOUT),
            writes,
            metrics,
            changed: watch::channel(0).0,
        };
        (Arc::new(f), rx)
    }

    pub fn follows(&self) -> bool {
        self.follow
    }

    /// One pod watch event. Write-backs the API now shows (or whose pod went)
    /// stop being in flight.
    pub fn apply_event(&self, ev: watcher::Event<Pod>) {
        let version = {
            let mut st = lock(&self.state);
            st.apply_event(ev);
            let mut inflight = lock(&self.inflight);
            inflight.retain(|uid, v| st.get(uid).is_some_and(|e| e.allocated.as_deref() != Some(v.as_str())));
            st.version()
        };
        self.changed.send_replace(version);
    }

    /// The resources now served (at every applied config): names and the
    /// GPU behind each id. `gpus`: (UUID, index) of the physical GPUs.
    pub fn set_resources(&self, resources: &[AdvertisedResource], gpus: impl IntoIterator<Item = (String, u32)>) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .update(resources, gpus);
    }

    /// Runs `f` on the current state (tests, logs).
    pub fn with_state<T>(&self, f: impl FnOnce(&PodDecisions) -> T) -> T {
        f(&lock(&self.state))
    }

    /// Waits up to `timeout` until `f` holds for the state; re-checked on
    /// every change.
    pub async fn wait_for(&self, timeout: Duration, mut f: impl FnMut(&PodDecisions) -> bool) -> bool {
        let mut rx = self.changed.subscribe();
        let check = async {
            loop {
                if self.with_state(&mut f) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, check).await.is_ok() && self.with_state(f)
    }

    async fn kubelet_view(client: Option<&tokio::sync::Mutex<PodResourcesClient>>) -> Option<KubeletView> {
        let mut c = client?.lock().await;
        match c.list().await {
            Ok(r) => Some(KubeletView::from_list(&r)),
            Err(e) => {
                tracing::debug!(error = %e, "PodResources unavailable; matching from the pod watch alone");
                None
            }
        }
    }

    /// The recorded devices for a `GetPreferredAllocation` container
    /// request, or `None` (counted) when the plugin's own rule answers.
    pub async fn preferred(
        &self,
        r: &AdvertisedResource,
        available: &[String],
        must: &[String],
        size: usize,
    ) -> Option<Vec<String>> {
        if !self.follow || !followable(r) {
            return None;
        }
        let view = Self::kubelet_view(self.admission_pr.as_ref()).await;
        let served = self.map.read().unwrap_or_else(|e| e.into_inner()).served.clone();
        let outcome = {
            let st = lock(&self.state);
            st.match_call(&r.name, size as u64, &served, view.as_ref())
                .and_then(|e| match &e.record {
                    Record::Gpus(g) => recorded_ids(r, g, available, must, size).map(|ids| (e.uid.clone(), ids)),
                    Record::Absent => Err(Fallback::NoRecord),
                    Record::Invalid => Err(Fallback::InvalidRecord),
                })
        };
        match outcome {
            Ok((uid, ids)) => {
                self.metrics
                    .decisions_followed
                    .get_or_create(&labels(&[("resource", &r.name)]))
                    .inc();
                tracing::debug!(resource = %r.name, %uid, ?ids, "preferred allocation follows the extender's record");
                Some(ids)
            }
            Err(reason) => {
                self.metrics
                    .decision_fallbacks
                    .get_or_create(&labels(&[("resource", &r.name), ("reason", reason.as_str())]))
                    .inc();
                tracing::debug!(resource = %r.name, reason = reason.as_str(), "preferred allocation by the plugin's own rule");
                None
            }
        }
    }

    /// After an `Allocate` of `ids` for one container: the pod it was for,
    /// when exactly one can be, is consumed at once (the next admission must
    /// not see it pending) and its write-back queued.
    pub async fn allocated(&self, r: &AdvertisedResource, ids: &[String]) {
        if !followable(r) {
            return;
        }
        let view = Self::kubelet_view(self.admission_pr.as_ref()).await;
        let served = self.map.read().unwrap_or_else(|e| e.into_inner()).served.clone();
        let gpus: Vec<u32> = ids
            .iter()
            .filter_map(|id| r.devices.iter().find(|d| &d.id == id).map(|d| d.device.gpu))
            .collect();
        let value = format_gpus(gpus.iter().copied());
        let matched = {
            let mut st = lock(&self.state);
            let m = st
                .match_call(&r.name, ids.len() as u64, &served, view.as_ref())
                .ok()
                .map(|e| (e.uid.clone(), e.namespace.clone(), e.name.clone(), e.record.clone()));
            if let Some((uid, ..)) = &m {
                st.consume(uid);
            }
            m
        };
        let outcome = match &matched {
            None => "unmatched",
            Some((.., Record::Gpus(rec))) => {
                let mut a = gpus.clone();
                a.sort_unstable();
                a.dedup();
                let mut d = rec.clone();
                d.sort_unstable();
                if a == d { "as_decided" } else { "differs" }
            }
            Some(_) => "no_record",
        };
        self.metrics
            .decision_allocations
            .get_or_create(&labels(&[("resource", &r.name), ("outcome", outcome)]))
            .inc();
        tracing::debug!(resource = %r.name, outcome, gpus = %value, "allocation matched against the records");
        if let Some((uid, namespace, name, _)) = matched
            && !value.is_empty()
        {
            self.enqueue(WriteBack {
                uid,
                namespace,
                name,
                value,
                source: "allocate",
            });
        }
    }

    fn enqueue(&self, wb: WriteBack) {
        {
            let mut inflight = lock(&self.inflight);
            if inflight.get(&wb.uid) == Some(&wb.value) {
                return;
            }
            inflight.insert(wb.uid.clone(), wb.value.clone());
        }
        if let Err(e) = self.writes.try_send(wb) {
            let wb = match e {
                mpsc::error::TrySendError::Full(w) | mpsc::error::TrySendError::Closed(w) => w,
            };
            lock(&self.inflight).remove(&wb.uid);
            self.count_write(&wb, "dropped");
            tracing::warn!(namespace = %wb.namespace, pod = %wb.name, "write-back queue full; reconciliation retries it");
        }
    }

    fn count_write(&self, wb: &WriteBack, result: &str) {
        self.metrics
            .allocation_writebacks
            .get_or_create(&labels(&[("source", wb.source), ("result", result)]))
            .inc();
    }

    /// Queues the write-back of every pod kubelet lists with GPUs that the
    /// API does not show (or shows otherwise). Returns how many were queued;
    /// `None` when PodResources did not answer.
    pub async fn reconcile_once(&self) -> Option<usize> {
        let view = Self::kubelet_view(self.reconcile_pr.as_ref()).await?;
        let writes = {
            let map = self.map.read().unwrap_or_else(|e| e.into_inner()).clone();
            let mut st = lock(&self.state);
            let w = reconcile(&mut st, &view, &map);
            self.changed.send_replace(st.version());
            w
        };
        let n = writes.len();
        for wb in writes {
            self.enqueue(wb);
        }
        Some(n)
    }

    /// Whether `wb` is still to be written: the same pod (UID and name)
    /// is there, without that value, and no newer write-back replaced it.
    fn wanted(&self, wb: &WriteBack) -> bool {
        let st = lock(&self.state);
        let current = st.get(&wb.uid).is_some_and(|e| {
            e.namespace == wb.namespace && e.name == wb.name && e.allocated.as_ref() != Some(&wb.value)
        });
        current && lock(&self.inflight).get(&wb.uid) == Some(&wb.value)
    }

    fn done(&self, wb: &WriteBack, result: &str, keep_inflight: bool) {
        if !keep_inflight {
            let mut inflight = lock(&self.inflight);
            if inflight.get(&wb.uid) == Some(&wb.value) {
                inflight.remove(&wb.uid);
            }
        }
        self.count_write(wb, result);
    }
}

/// Sends the queued write-backs, [`WRITERS`] at a time, each retried with
/// `backoff`. Ends when the queue's sender (the [`Follower`]) is gone.
pub async fn run_writer(
    follower: Arc<Follower>,
    mut rx: mpsc::Receiver<WriteBack>,
    writer: Arc<dyn AnnotationWriter>,
    backoff: Backoff,
) {
    let permits = Arc::new(Semaphore::new(WRITERS));
    // The queue's sender lives in the follower: hold only a weak reference
    // here, so the writer ends with it.
    let follower = Arc::downgrade(&follower);
    while let Some(wb) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (follower, writer) = (follower.clone(), writer.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut delay = backoff.first;
            for attempt in 1..=backoff.attempts.max(1) {
                let Some(f) = follower.upgrade() else { return };
                if !f.wanted(&wb) {
                    f.done(&wb, "gone", false);
                    return;
                }
                match writer.write(&wb.namespace, &wb.name, &wb.value).await {
                    Ok(()) => {
                        tracing::info!(namespace = %wb.namespace, pod = %wb.name, gpus = %wb.value, source = wb.source, "allocated GPUs written back");
                        f.done(&wb, "written", true);
                        return;
                    }
                    Err(WriteError::Gone) => {
                        f.done(&wb, "gone", false);
                        return;
                    }
                    Err(WriteError::Refused(e)) => {
                        tracing::warn!(namespace = %wb.namespace, pod = %wb.name, error = %e, "write-back refused");
                        f.done(&wb, "refused", false);
                        return;
                    }
                    Err(WriteError::Retry(e)) if attempt < backoff.attempts => {
                        tracing::debug!(namespace = %wb.namespace, pod = %wb.name, error = %e, attempt, "write-back failed; retrying");
                    }
                    Err(WriteError::Retry(e)) => {
                        tracing::warn!(namespace = %wb.namespace, pod = %wb.name, error = %e, "write-back failed; reconciliation retries it");
                        f.done(&wb, "failed", false);
                        return;
                    }
                }
                drop(f);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(backoff.max);
            }
        });
    }
}

/// Every `interval`, [`Follower::reconcile_once`]. Ends with the follower.
pub async fn run_reconciler(follower: std::sync::Weak<Follower>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unavailable_logged = false;
    loop {
        tick.tick().await;
        let Some(f) = follower.upgrade() else { return };
        match f.reconcile_once().await {
            Some(n) => {
                unavailable_logged = false;
                if n > 0 {
                    tracing::debug!(queued = n, "write-backs queued from PodResources");
                }
            }
            None if !unavailable_logged => {
                unavailable_logged = true;
                tracing::warn!(
                    "PodResources unavailable: allocations not matched at Allocate are not written back until it answers"
                );
            }
            None => {}
        }
    }
}
