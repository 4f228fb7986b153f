//! The Kubernetes side of the node agent: a watch on this node's Node
//! object (labels and annotations), the state label and reason annotation
//! as one JSON merge patch, and Events on the Node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::desired::{REASON_ANNOTATION, STATE_LABEL};

/// Field manager of the agent's writes.
pub const FIELD_MANAGER: &str = "railyard-mig-manager";
/// `reportingController` of its Events.
pub const EVENT_CONTROLLER: &str = "railyard.dev/mig-manager";
/// The API allows at most 1 kB in an Event's note.
const NOTE_MAX: usize = 1024;

/// What the agent reads of its Node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeView {
    pub uid: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl NodeView {
    pub fn of(node: &Node) -> NodeView {
        NodeView {
            uid: node.metadata.uid.clone(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            annotations: node.metadata.annotations.clone().unwrap_or_default(),
        }
    }
}

/// A watch on one Node (field selector `metadata.name=<node>`), re-listing
/// and backing off on errors as kube's watcher does. `None` until the Node
/// was listed, and while it does not exist.
#[derive(Debug)]
pub struct NodeWatch {
    pub rx: watch::Receiver<Option<NodeView>>,
    task: JoinHandle<()>,
}

impl Drop for NodeWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NodeWatch {
    pub fn start(client: Client, node: &str) -> NodeWatch {
        let (tx, rx) = watch::channel(None);
        let api: Api<Node> = Api::all(client);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={node}"));
        let node = node.to_string();
        let task = tokio::spawn(async move {
            let mut stream = Box::pin(watcher(api, cfg).default_backoff());
            // Objects of the re-list in progress; replaces the view at InitDone.
            let mut listing: Option<Option<NodeView>> = None;
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Init) => listing = Some(None),
                    Ok(watcher::Event::InitApply(n)) => listing = Some(Some(NodeView::of(&n))),
                    Ok(watcher::Event::InitDone) => {
                        let view = listing.take().flatten();
                        tx.send_if_modified(|v| replace(v, view));
                    }
                    Ok(watcher::Event::Apply(n)) => {
                        let view = Some(NodeView::of(&n));
                        tx.send_if_modified(|v| replace(v, view));
                    }
                    Ok(watcher::Event::Delete(_)) => {
                        tx.send_if_modified(|v| replace(v, None));
                    }
                    Err(e) => {
                        tracing::warn!(node = %node, error = %e, "watching the Node failed; retrying with backoff, last view kept");
                    }
                }
            }
        });
        NodeWatch { rx, task }
    }
}

fn replace(v: &mut Option<NodeView>, new: Option<NodeView>) -> bool {
    if *v == new {
        return false;
    }
    *v = new;
    true
}

/// Writes the state label and the reason annotation (removed when `reason`
/// is empty) in one merge patch.
pub async fn publish_state(client: &Client, node: &str, state: &str, reason: &str) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let reason = if reason.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::Value::String(reason.to_string())
    };
    let patch = serde_json::json!({
        "metadata": {
            "labels": { STATE_LABEL: state },
            "annotations": { REASON_ANNOTATION: reason },
        }
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch(node, &params, &Patch::Merge(&patch)).await.map(|_| ())
}

/// An Event about the Node (in `default`, where `kubectl describe node`
/// looks).
pub fn node_event(node: &str, uid: Option<String>, warning: bool, reason: &str, note: &str, now: Timestamp) -> Event {
    let suffix = format!(".{:x}", now.as_nanosecond());
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}{suffix}", truncate(node, 253 - suffix.len()))),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some("Reconfigure".into()),
        reason: Some(reason.into()),
        note: Some(truncate(note, NOTE_MAX).into()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        reporting_controller: Some(EVENT_CONTROLLER.into()),
        reporting_instance: Some(truncate(node, 128).into()),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            uid,
            ..ObjectReference::default()
        }),
        ..Event::default()
    }
}

pub async fn create_event(client: &Client, event: &Event) -> Result<(), kube::Error> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), event).await.map(|_| ())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
