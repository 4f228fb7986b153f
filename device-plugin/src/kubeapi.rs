//! Kubernetes API access (`--kube-api`): the node's labels from a watch on
//! its Node object ([`KubeNodeLabels`]), the topology annotation patched on
//! the Node ([`KubeAnnotator`]) and the watchdog's Events on the offending
//! pod ([`KubeEventRecorder`]). Each implements the trait the plugin already
//! uses without API access, so the file, flag and log paths stay.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Config};
use railyard_watchdog::events::{EventRecorder, PodEvent, REASON_OVER_SHARE, REASON_SIGNALLED};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::config::{ConfigError, NodeLabels};
use crate::options::{KubeApi, Options};
use crate::topology::{AnnotateFuture, NodeAnnotator};

/// Field manager of the plugin's writes to the Node.
pub const FIELD_MANAGER: &str = "railyard-device-plugin";
/// `reportingController` of the watchdog's Events.
pub const EVENT_CONTROLLER: &str = "railyard.dev/watchdog";
/// Events waiting to be written; more are dropped (and logged).
const EVENT_QUEUE: usize = 256;

/// Whether `--kube-api` asks for API access: `on`, or `auto` inside a pod
/// (`KUBERNETES_SERVICE_HOST` is set, as kubelet does for every container).
pub fn enabled(mode: KubeApi) -> bool {
    match mode {
        KubeApi::On => true,
        KubeApi::Off => false,
        KubeApi::Auto => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty()),
    }
}

/// A client when `--kube-api` asks for one: from `KUBECONFIG` (or
/// `~/.kube/config`) when present, else the in-cluster service account
/// (kube's `Config::infer`). `Ok(None)`: API access is off.
pub async fn client(o: &Options) -> Result<Option<(Client, String)>, String> {
    if !enabled(o.kube_api) {
        return Ok(None);
    }
    let node = o.node_name.clone().filter(|n| !n.is_empty()).ok_or(
        "API access (--kube-api) needs this node's name: --node-name or NODE_NAME (downward API spec.nodeName)",
    )?;
    let config = Config::infer()
        .await
        .map_err(|e| format!("Kubernetes client config (in-cluster or KUBECONFIG): {e}"))?;
    let client = Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))?;
    Ok(Some((client, node)))
}

fn labels_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// The node's labels from a watch on its Node object (a watcher with the
/// field selector `metadata.name=<node>`, re-listing and backing off on
/// errors as kube's watcher does). Every change ticks [`NodeLabels::changes`],
/// so a relabelled node has its config checked at once.
#[derive(Debug)]
pub struct KubeNodeLabels {
    labels: Arc<RwLock<BTreeMap<String, String>>>,
    changes: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Drop for KubeNodeLabels {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeNodeLabels {
    /// Starts the watch and returns once the Node was listed, so the first
    /// config selection sees its labels. An error before that (no access,
    /// API unreachable) is returned; after it, errors are logged and the
    /// watch retries with backoff, keeping the last labels.
    pub async fn start(client: Client, node: &str) -> Result<KubeNodeLabels, String> {
        let api: Api<Node> = Api::all(client);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={node}"));
        let mut stream = Box::pin(watcher(api, cfg).default_backoff());
        let labels = Arc::new(RwLock::new(BTreeMap::new()));
        let (tx, changes) = watch::channel(0u64);
        let mut state = WatchState {
            node: node.to_string(),
            labels: labels.clone(),
            changes: tx,
            init: None,
        };
        loop {
            match stream.next().await {
                Some(Ok(ev)) => {
                    if state.on_event(ev) {
                        break;
                    }
                }
                Some(Err(e)) => return Err(format!("watching Node {node}: {e}")),
                None => return Err(format!("watching Node {node}: the watch ended")),
            }
        }
        let task = tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => {
                        state.on_event(ev);
                    }
                    Err(e) => {
                        tracing::warn!(node = %state.node, error = %e, "watching the Node failed; retrying with backoff, last labels kept");
                    }
                }
            }
        });
        Ok(KubeNodeLabels { labels, changes, task })
    }

    /// The labels as last seen.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.labels.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct WatchState {
    node: String,
    labels: Arc<RwLock<BTreeMap<String, String>>>,
    changes: watch::Sender<u64>,
    /// Labels seen during a (re)list, applied at its end.
    init: Option<Option<BTreeMap<String, String>>>,
}

impl WatchState {
    /// Applies one watch event; true at the end of a (re)list.
    fn on_event(&mut self, ev: watcher::Event<Node>) -> bool {
        match ev {
            watcher::Event::Init => self.init = Some(None),
            watcher::Event::InitApply(n) => self.init = Some(Some(labels_of(&n.metadata))),
            watcher::Event::InitDone => {
                match self.init.take().flatten() {
                    Some(l) => self.set(l),
                    None => tracing::warn!(node = %self.node, "Node not found; keeping the last labels"),
                }
                return true;
            }
            watcher::Event::Apply(n) => self.set(labels_of(&n.metadata)),
            watcher::Event::Delete(_) => {
                tracing::warn!(node = %self.node, "Node deleted; keeping the last labels");
            }
        }
        false
    }

    fn set(&self, new: BTreeMap<String, String>) {
        let mut cur = self.labels.write().unwrap_or_else(|e| e.into_inner());
        if *cur != new {
            tracing::info!(node = %self.node, labels = new.len(), "node labels changed");
            *cur = new;
            drop(cur);
            self.changes.send_modify(|n| *n += 1);
        }
    }
}

impl NodeLabels for KubeNodeLabels {
    fn get(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.labels.read().unwrap_or_else(|e| e.into_inner()).get(key).cloned())
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }
}

/// Writes annotations on this node: reads the Node's metadata and, only
/// when the value differs, sends a JSON merge patch of
/// `metadata.annotations` with field manager [`FIELD_MANAGER`].
#[derive(Debug, Clone)]
pub struct KubeAnnotator {
    api: Api<Node>,
    node: String,
}

impl KubeAnnotator {
    pub fn new(client: Client, node: impl Into<String>) -> KubeAnnotator {
        KubeAnnotator {
            api: Api::all(client),
            node: node.into(),
        }
    }

    /// True when a patch was sent, false when the node already had `value`.
    pub async fn write(&self, key: &str, value: &str) -> Result<bool, kube::Error> {
        let meta = self.api.get_metadata(&self.node).await?;
        let current = meta.metadata.annotations.as_ref().and_then(|a| a.get(key));
        if current.map(String::as_str) == Some(value) {
            tracing::debug!(node = %self.node, key, "annotation unchanged; not patched");
            return Ok(false);
        }
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        self.api
            .patch_metadata(&self.node, &params, &Patch::Merge(&patch))
            .await?;
        tracing::info!(node = %self.node, key, bytes = value.len(), "node annotation written");
        Ok(true)
    }
}

impl NodeAnnotator for KubeAnnotator {
    fn annotate<'a>(&'a self, key: &'a str, value: &'a str) -> AnnotateFuture<'a> {
        Box::pin(async move {
            self.write(key, value)
                .await
                .map(|_| ())
                .map_err(|e| format!("annotating Node {}: {e}", self.node))
        })
    }
}

/// The watchdog's pod Events as `events.k8s.io/v1` Events: `regarding` the
/// pod (with its UID, looked up with a GET, so `kubectl describe pod` shows
/// them) and the container's `fieldPath`, reporting controller
/// [`EVENT_CONTROLLER`], reporting instance the node. `record` never blocks
/// the watchdog: Events are queued and written by a background task.
#[derive(Debug, Clone)]
pub struct KubeEventRecorder {
    tx: mpsc::Sender<PodEvent>,
}

impl KubeEventRecorder {
    /// The recorder and the task writing its Events (it ends when every
    /// clone of the recorder is dropped).
    pub fn spawn(client: Client, node: impl Into<String>) -> (KubeEventRecorder, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<PodEvent>(EVENT_QUEUE);
        let writer = EventWriter {
            client,
            node: node.into(),
        };
        let task = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if let Err(err) = writer.write(&e).await {
                    tracing::warn!(
                        namespace = %e.namespace, pod = %e.pod, reason = e.reason, error = %err,
                        "writing the pod Event failed"
                    );
                }
            }
        });
        (KubeEventRecorder { tx }, task)
    }
}

impl EventRecorder for KubeEventRecorder {
    fn record(&self, e: PodEvent) {
        if let Err(err) = self.tx.try_send(e) {
            let e = match err {
                mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
            };
            tracing::warn!(
                namespace = %e.namespace, pod = %e.pod, reason = e.reason, message = %e.message,
                "pod Event dropped: the Event queue is full or closed"
            );
        }
    }
}

struct EventWriter {
    client: Client,
    node: String,
}

impl EventWriter {
    async fn write(&self, e: &PodEvent) -> Result<(), kube::Error> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &e.namespace);
        let uid = match pods.get_metadata_opt(&e.pod).await {
            Ok(Some(p)) => p.metadata.uid,
            Ok(None) => {
                tracing::debug!(namespace = %e.namespace, pod = %e.pod, "pod gone; Event written without its UID");
                None
            }
            Err(err) => {
                tracing::debug!(namespace = %e.namespace, pod = %e.pod, error = %err, "pod UID lookup failed; Event written without it");
                None
            }
        };
        let event = pod_event(e, uid, &self.node, Timestamp::now());
        let events: Api<Event> = Api::namespaced(self.client.clone(), &e.namespace);
        events.create(&PostParams::default(), &event).await?;
        tracing::debug!(namespace = %e.namespace, pod = %e.pod, reason = e.reason, "pod Event written");
        Ok(())
    }
}

/// The machine-readable `action` of a watchdog Event.
pub fn action_of(reason: &str) -> &'static str {
    match reason {
        REASON_OVER_SHARE => "CheckGPUMemoryShare",
        REASON_SIGNALLED => "SignalProcesses",
        _ => "EnforceGPUMemoryShare",
    }
}

/// Cuts `s` to at most `max` bytes on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

/// The `events.k8s.io/v1` Event for a watchdog [`PodEvent`]. Its name is
/// `<pod>.<hex nanoseconds>`, as client-go names Events.
pub fn pod_event(e: &PodEvent, pod_uid: Option<String>, node: &str, now: Timestamp) -> Event {
    let suffix = format!(".{:x}", now.as_nanosecond());
    let name = format!("{}{suffix}", truncate(&e.pod, 253 - suffix.len()));
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(e.namespace.clone()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some(action_of(e.reason).into()),
        reason: Some(e.reason.into()),
        // The API allows at most 1 kB.
        note: Some(truncate(&e.message, 1024).into()),
        type_: Some(if e.warning { "Warning" } else { "Normal" }.into()),
        reporting_controller: Some(EVENT_CONTROLLER.into()),
        reporting_instance: Some(truncate(node, 128).into()),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(e.pod.clone()),
            namespace: Some(e.namespace.clone()),
            uid: pod_uid,
            field_path: (!e.container.is_empty()).then(|| format!("spec.containers{{{}}}", e.container)),
            ..ObjectReference::default()
        }),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields_and_limits() {
        let e = PodEvent {
            namespace: "ml".into(),
            pod: "p".repeat(300),
            container: "train".into(),
            warning: true,
            reason: REASON_OVER_SHARE,
            message: "é".repeat(800),
        };
        let now = Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let ev = pod_event(&e, None, "gpu-node-1", now);
        let name = ev.metadata.name.unwrap_or_default();
        assert!(name.len() <= 253 && name.ends_with(&format!(".{:x}", now.as_nanosecond())));
        assert!(ev.note.unwrap_or_default().len() <= 1024);
        assert_eq!(ev.action.as_deref(), Some("CheckGPUMemoryShare"));
        let r = ev.regarding.unwrap_or_default();
        assert_eq!(r.uid, None);
        assert_eq!(r.field_path.as_deref(), Some("spec.containers{train}"));
    }
}
