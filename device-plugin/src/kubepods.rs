//! The I/O side of following the extender's decisions (`decisions`,
//! `follow`): a kube `watcher` on the pods bound to this node (field
//! selector `spec.nodeName=<node>`) feeding [`Follower::apply_event`], and
//! the write-back as a JSON merge patch of the pod's
//! `metadata.annotations` (field manager `railyard-device-plugin`).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::decisions::ALLOCATED_ANNOTATION;
use crate::follow::{self, AnnotationWriter, Backoff, Follower, WriteError, WriteFuture};
use crate::kubeapi::FIELD_MANAGER;
use crate::metrics::Metrics;
use crate::options::Options;

/// The running pieces: the follower and its tasks (aborted on drop, so a
/// dropped `PodDecisionsApi` stops watching and writing).
#[derive(Debug)]
pub struct PodDecisionsApi {
    pub follower: Arc<Follower>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PodDecisionsApi {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the pod watch, the writer and the PodResources reconciliation
/// for `node`, with `--follow-decisions`, `--pod-resources-socket` and
/// `--reconcile-interval` from `o`. Does not wait for the first list: until
/// it arrives every call falls back to the plugin's own rule.
pub fn start(client: Client, node: &str, o: &Options, metrics: Metrics) -> PodDecisionsApi {
    let (follower, rx) = Follower::new(o.follow_decisions, Some(o.pod_resources_socket.clone()), metrics);
    let writer = Arc::new(KubePodWriter::new(client.clone()));
    let tasks = vec![
        tokio::spawn(watch_pods(client, node.to_string(), Arc::downgrade(&follower))),
        tokio::spawn(follow::run_writer(follower.clone(), rx, writer, Backoff::default())),
        tokio::spawn(follow::run_reconciler(Arc::downgrade(&follower), o.reconcile_interval)),
    ];
    PodDecisionsApi { follower, tasks }
}

/// The watch: lists, then watches from the list's resourceVersion, and
/// re-lists and backs off on errors as kube's watcher does.
async fn watch_pods(client: Client, node: String, follower: std::sync::Weak<Follower>) {
    let api: Api<Pod> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = Box::pin(watcher(api, cfg).default_backoff());
    let mut failing = false;
    while let Some(ev) = stream.next().await {
        let Some(f) = follower.upgrade() else { return };
        match ev {
            Ok(ev) => {
                if failing || matches!(ev, watcher::Event::InitDone) {
                    tracing::info!(%node, pods = f.with_state(|s| s.len()), "watching this node's pods");
                }
                failing = false;
                f.apply_event(ev);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(%node, error = %e, "watching this node's pods failed; retrying with backoff (calls fall back to the plugin's rule meanwhile)");
                }
                failing = true;
            }
        }
    }
}

/// Patches `railyard.dev/allocated-gpus` with a JSON merge patch of
/// `{"metadata":{"annotations":{key: value}}}`, field manager
/// [`FIELD_MANAGER`].
#[derive(Clone)]
pub struct KubePodWriter {
    client: Client,
}

impl std::fmt::Debug for KubePodWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePodWriter").finish_non_exhaustive()
    }
}

impl KubePodWriter {
    pub fn new(client: Client) -> KubePodWriter {
        KubePodWriter { client }
    }

    async fn patch(&self, namespace: &str, name: &str, value: &str) -> Result<(), WriteError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({"metadata": {"annotations": {ALLOCATED_ANNOTATION: value}}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match api.patch_metadata(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(WriteError::Gone),
            Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => {
                Err(WriteError::Refused(format!("{}: {}", s.code, s.message)))
            }
            Err(e) => Err(WriteError::Retry(e.to_string())),
        }
    }
}

impl AnnotationWriter for KubePodWriter {
    fn write<'a>(&'a self, namespace: &'a str, name: &'a str, value: &'a str) -> WriteFuture<'a> {
        Box::pin(self.patch(namespace, name, value))
    }
}
