//! The device plugin and the scheduler extender together, on one stateful
//! fake API server: the topology the plugin publishes on its Node is what
//! the extender's watch places by, the extender's bind writes its decision
//! through the API, and the plugin allocates exactly those GPUs when the
//! kubelet admits the pod.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use common::node::{GPU, Node, SHARED, node_publishing_topology};
use common::{T, dp_config};
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

/// The extender, with its real watch and binder on the node's API; returns
/// once its view has the topology the plugin published.
async fn extender(n: &Node) -> (Arc<AppState>, tokio::task::JoinHandle<()>) {
    let client = n.api.server().client().unwrap();
    let state = Arc::new(AppState::new(
        Config {
            url_prefix: PREFIX.into(),
            view: ViewConfig::default(),
        },
        Arc::new(KubeBinder::new(client.clone())),
        prometheus_client::registry::Registry::default(),
    ));
    let watch = tokio::spawn(railyard_scheduler::watch::run(client, state.clone()));
    until(&state, "the extender knows node-a's topology", |s| {
        s.view().machine_count() == 1 && s.view().free_gpus("node-a").is_some()
    })
    .await;
    (state, watch)
}

/// A pending pod asking `count` of `resource`, as a user creates it; then
/// kube-scheduler's part of the extender protocol (filter, prioritize,
/// bind on node-a). Returns the decision the bind wrote on the pod, if any.
async fn schedule_any(n: &Node, state: &Arc<AppState>, name: &str, resource: &str, count: u32) -> Option<String> {
    let server = n.api.server();
    let pod = server
        .create(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ml"},
            "spec": {"schedulerName": "default-scheduler", "containers": [
                {"name": "main", "image": "cuda", "resources": {"limits": {resource: count.to_string()}}}
            ]},
            "status": {"phase": "Pending"},
        }))
        .unwrap();
    let nodes = json!(["node-a"]);
    let f = post(state, "filter", &json!({"Pod": pod, "Nodes": null, "NodeNames": nodes})).await;
    assert_eq!(f["NodeNames"], nodes, "{f}");
    let p = post(
        state,
        "prioritize",
        &json!({"Pod": pod, "Nodes": null, "NodeNames": nodes}),
    )
    .await;
    assert_eq!(p[0]["Host"], "node-a", "{p}");
    let b = post(
        state,
        "bind",
        &json!({"PodName": name, "PodNamespace": "ml", "PodUID": pod["metadata"]["uid"], "Node": "node-a"}),
    )
    .await;
    assert_eq!(b["Error"].as_str().unwrap_or(""), "", "{b}");
    // The binding went through the API: node and decision are on the pod.
    let bound = server.get("v1", "Pod", "ml", name).unwrap();
    assert_eq!(bound["spec"]["nodeName"], "node-a");
    let decision = bound["metadata"]["annotations"]["railyard.dev/gpus"]
        .as_str()
        .map(str::to_owned);
    assert!(
        n.follower().wait_for(T, |s| s.by_name("ml", name).is_some()).await,
        "the plugin's watch never delivered the bound pod"
    );
    decision
}

/// [`schedule_any`] for pods the extender records a decision for.
async fn schedule(n: &Node, state: &Arc<AppState>, name: &str, resource: &str, count: u32) -> String {
    schedule_any(n, state, name, resource, count)
        .await
        .unwrap_or_else(|| panic!("no decision on pod {name}"))
}

fn gpus_of(decision: &str) -> Vec<u32> {
    decision.split(',').map(|g| g.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extender_places_by_the_published_topology_and_the_plugin_allocates_its_decision() {
    let n = node_publishing_topology("version: v1\n", "dgx-h100", &[(GPU, 8)]).await;
    n.env.devices(GPU, 8).await;
    let (state, watch) = extender(&n).await;
    let node = n.api.server().get("v1", "Node", "", "node-a").unwrap();
    assert!(
        node["metadata"]["annotations"]
            .as_object()
            .is_some_and(|a| a.keys().any(|k| k.starts_with("railyard.dev/"))),
        "{node}"
    );
    let decision = schedule(&n, &state, "train", GPU, 4).await;
    let chosen = gpus_of(&decision);
    assert_eq!(chosen.len(), 4, "{decision}");
    // The kubelet admits it: the plugin follows the decision, and writes
    // back what it allocated.
    let a = n.admit("train", GPU, 4).await;
    assert_eq!(n.gpus(&a.devices), chosen);
    assert_eq!(
        n.api.wait_allocated("train", T).await.as_deref(),
        Some(decision.as_str())
    );
    watch.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_gpu_pods_get_the_replicas_of_the_gpu_the_extender_chose() {
    let n = node_publishing_topology(&dp_config("time-slicing-4"), "dgx-h100", &[(SHARED, 32)]).await;
    n.env.devices(SHARED, 32).await;
    let (state, watch) = extender(&n).await;
    for (i, name) in ["nb-1", "nb-2", "nb-3"].iter().enumerate() {
        let decision = schedule(&n, &state, name, SHARED, 1).await;
        let chosen = gpus_of(&decision);
        assert_eq!(chosen.len(), 1, "{decision}");
        let a = n.admit(name, SHARED, 1).await;
        assert_eq!(n.gpus(&a.devices), chosen, "pod {i}");
        assert_eq!(n.api.wait_allocated(name, T).await.as_deref(), Some(decision.as_str()));
    }
    watch.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mig_pod_is_placed_bound_and_allocated_with_its_cdi_device() {
    const MIG: &str = "nvidia.com/mig-1g.10gb";
    // dgx-h100-mig: GPU 4 holds 7x 1g.10gb, GPU 5 two more.
    let cfg = "version: v1\nflags:\n  migStrategy: mixed\n  plugin:\n    deviceListStrategy: cdi-cri\n";
    let n = node_publishing_topology(cfg, "dgx-h100-mig", &[(GPU, 4), (MIG, 9)]).await;
    let devices = n.env.devices(MIG, 9).await;
    let (state, watch) = extender(&n).await;
    schedule_any(&n, &state, "mig-a", MIG, 1).await;
    let a = n.admit("mig-a", MIG, 1).await;
    assert_eq!(a.devices.len(), 1);
    assert!(devices.iter().any(|d| d.id == a.devices[0]), "{:?}", a.devices);
    // The container gets its MIG device through CDI.
    assert_eq!(a.response.cdi_devices.len(), 1, "{:?}", a.response);
    let cdi = &a.response.cdi_devices[0].name;
    assert!(cdi.starts_with("railyard.dev/gpu="), "{cdi}");
    watch.abort();
}
