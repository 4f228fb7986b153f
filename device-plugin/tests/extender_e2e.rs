//! The device plugin and the scheduler extender together, on one stateful
//! fake API server: the topology the plugin publishes on its Node is what
//! the extender's watch places by, the extender's bind writes its decision
//! through the API, and the plugin allocates exactly those GPUs when the
//! kubelet admits the pod.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use common::T;
use common::node::{GPU, node_publishing_topology};
use http::Request;
use railyard_core::extender::ViewConfig;
use railyard_scheduler::app::{AppState, Config, app};
use railyard_scheduler::binder::KubeBinder;
use serde_json::{Value, json};
use tower::ServiceExt;

const PREFIX: &str = "/railyard";

async fn post(state: &Arc<AppState>, verb: &str, body: &Value) -> Value {
    let req = Request::post(format!("{PREFIX}/{verb}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    assert!(resp.status().is_success(), "{verb}: {}", resp.status());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Waits (bounded) until `cond` holds on the extender's state.
async fn until(state: &Arc<AppState>, what: &str, cond: impl Fn(&AppState) -> bool) {
    let poll = async {
        while !cond(state) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    assert!(tokio::time::timeout(T, poll).await.is_ok(), "never: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extender_places_by_the_published_topology_and_the_plugin_allocates_its_decision() {
    let n = node_publishing_topology("version: v1\n").await;
    n.env.devices(GPU, 8).await;
    let server = n.api.server();
    let client = server.client().unwrap();
    // The extender, with its real watch and binder on the same API.
    let state = Arc::new(AppState::new(
        Config {
            url_prefix: PREFIX.into(),
            view: ViewConfig::default(),
        },
        Arc::new(KubeBinder::new(client.clone())),
        prometheus_client::registry::Registry::default(),
    ));
    let watch = tokio::spawn(railyard_scheduler::watch::run(client, state.clone()));
    // The plugin's annotation is on the Node, and the extender's view has
    // the machine it describes.
    until(&state, "the extender knows node-a's topology", |s| {
        s.view().machine_count() == 1 && s.view().free_gpus("node-a").is_some_and(|g| g.len() == 8)
    })
    .await;
    let node = server.get("v1", "Node", "", "node-a").unwrap();
    assert!(
        node["metadata"]["annotations"]
            .as_object()
            .is_some_and(|a| a.keys().any(|k| k.starts_with("railyard.dev/"))),
        "{node}"
    );
    // A pending 4-GPU pod, as a user creates it.
    let pod = server
        .create(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "train", "namespace": "ml"},
            "spec": {"schedulerName": "default-scheduler", "containers": [
                {"name": "main", "image": "cuda", "resources": {"limits": {GPU: "4"}, "requests": {GPU: "4"}}}
            ]},
            "status": {"phase": "Pending"},
        }))
        .unwrap();
    // kube-scheduler's part of the extender protocol.
    let nodes = json!(["node-a"]);
    let f = post(
        &state,
        "filter",
        &json!({"Pod": pod, "Nodes": null, "NodeNames": nodes}),
    )
    .await;
    assert_eq!(f["NodeNames"], nodes, "{f}");
    let p = post(
        &state,
        "prioritize",
        &json!({"Pod": pod, "Nodes": null, "NodeNames": nodes}),
    )
    .await;
    assert_eq!(p[0]["Host"], "node-a", "{p}");
    let b = post(
        &state,
        "bind",
        &json!({"PodName": "train", "PodNamespace": "ml", "PodUID": pod["metadata"]["uid"], "Node": "node-a"}),
    )
    .await;
    assert_eq!(b["Error"].as_str().unwrap_or(""), "", "{b}");
    // The binding went through the API: node and decision are on the pod.
    let bound = server.get("v1", "Pod", "ml", "train").unwrap();
    assert_eq!(bound["spec"]["nodeName"], "node-a");
    let decision = bound["metadata"]["annotations"]["railyard.dev/gpus"]
        .as_str()
        .unwrap_or_else(|| panic!("no decision on the pod: {bound}"))
        .to_owned();
    let chosen: Vec<u32> = decision.split(',').map(|g| g.parse().unwrap()).collect();
    assert_eq!(chosen.len(), 4, "{decision}");
    // The kubelet admits it: the plugin follows the decision, and writes
    // back what it allocated.
    assert!(
        n.follower().wait_for(T, |s| s.by_name("ml", "train").is_some()).await,
        "the plugin's watch never delivered the bound pod"
    );
    let a = n.admit("train", GPU, 4).await;
    assert_eq!(n.gpus(&a.devices), chosen);
    assert_eq!(
        n.api.wait_allocated("train", T).await.as_deref(),
        Some(decision.as_str())
    );
    watch.abort();
}
