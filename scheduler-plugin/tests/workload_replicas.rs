//! Replicas of an upstream Workload's pod group (`podGroupReplicaKey`,
//! scheduling.k8s.io 1.35) through the HTTP API: each replica is a gang of
//! its own, sized by the pod group's `minCount`.
//!
//! The fixture helpers are copied from `tests/common/mod.rs` (trimmed to what
//! these tests use) so this file stands alone.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use prometheus_client::registry::Registry;
use railyard_core::extender::ViewConfig;
use railyard_scheduler::k8s::LeanPod;
use railyard_scheduler::watch::{self, GangKind};
use railyard_scheduler::{AppState, Config, RecordingBinder, app};
use serde_json::{Value, json};
use tower::ServiceExt;

const PREFIX: &str = "/railyard";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";
const GANG_PLAN: &str = "railyard.dev/gang-plan";

fn dgx_profile_json() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/machines/dgx-h100.yaml");
    let text = std::fs::read_to_string(p).expect("profile");
    let prof = railyard_core::machine::MachineProfile::from_yaml(&text).expect("parse");
    serde_json::to_string(&prof).expect("json")
}

struct Fixture {
    state: Arc<AppState>,
    binder: RecordingBinder,
}

impl Fixture {
    /// `nodes` DGX H100 nodes (8 GPUs, topology published) on one leaf.
    fn dgx(nodes: usize) -> Fixture {
        let binder = RecordingBinder::default();
        let clock = Arc::new(AtomicU64::new(1_000_000));
        let state = AppState::new(
            Config {
                url_prefix: PREFIX.into(),
                view: ViewConfig {
                    reservation_ttl_ms: 600_000,
                    ..ViewConfig::default()
                },
            },
            Arc::new(binder.clone()),
            Registry::default(),
        )
        .with_clock(move || clock.load(Ordering::Relaxed));
        let f = Fixture {
            state: Arc::new(state),
            binder,
        };
        let topo = dgx_profile_json();
        for i in 0..nodes {
            let n = json!({
                "metadata": {"name": format!("dgx{i}"), "labels": {"fabric.topograph.run/tier-0": "leaf0"},
                             "annotations": {"railyard.dev/gpu-topology": topo}},
                "status": {"allocatable": {"cpu": "128", "memory": "1024Gi", "nvidia.com/gpu": "8"}},
            });
            let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(n).expect("node");
            f.state
                .view_mut()
                .upsert_node(railyard_scheduler::k8s::node_input(&node));
        }
        f
    }

    /// Workload `ns/train` with the gang pod group `workers` of `min`, fed
    /// through the Workload watch's event handler. Its podGroups list no
    /// replicas: those exist only in the pods' `podGroupReplicaKey`.
    fn workload(&self, min: u32) {
        let w = json!({"apiVersion": "scheduling.k8s.io/v1alpha1", "kind": "Workload",
                       "metadata": {"name": "train", "namespace": "ns", "resourceVersion": "1"},
                       "spec": {"podGroups": [{"name": "workers", "policy": {"gang": {"minCount": min}}}]}});
        let w: DynamicObject = serde_json::from_value(w).expect("workload");
        watch::apply_gang_object(&self.state, GangKind::Workload, Event::Apply(w), &mut None);
    }

    /// Applies a pod as the pod watch would.
    fn observe(&self, p: &Value) {
        let pod: LeanPod = serde_json::from_value(p.clone()).expect("pod");
        let now = self.state.now();
        let obs = railyard_scheduler::k8s::observation(&pod, self.state.decision_key()).expect("observation");
        self.state.view_mut().observe_pod(obs, now);
    }

    async fn post_json(&self, verb: &str, body: &Value) -> Value {
        let req = Request::post(format!("{PREFIX}/{verb}"))
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("request");
        let resp = app(self.state.clone()).oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        assert_eq!(status, StatusCode::OK, "{verb}: {}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).expect("response json")
    }

    async fn filter(&self, p: &Value, nodes: &[String]) -> Value {
        self.post_json("filter", &json!({"Pod": p, "Nodes": null, "NodeNames": nodes}))
            .await
    }

    /// filter → bind on the one node filter leaves, as kube-scheduler does
    /// for a gang member (prioritize cannot change a single candidate).
    async fn schedule(&self, p: &Value, nodes: &[String]) -> String {
        let f = self.filter(p, nodes).await;
        let passed: Vec<String> = serde_json::from_value(f["NodeNames"].clone()).expect("names");
        assert_eq!(passed.len(), 1, "a gang member is filtered to its slot: {f}");
        let b = self
            .post_json(
                "bind",
                &json!({"PodName": p["metadata"]["name"], "PodNamespace": "ns",
                        "PodUID": p["metadata"]["uid"], "Node": passed[0]}),
            )
            .await;
        assert_eq!(b["Error"].as_str().unwrap_or(""), "", "bind: {b}");
        passed[0].clone()
    }

    /// The nodes of a replica's reserved plan.
    fn planned(&self, gang: &str) -> Vec<String> {
        let view = self.state.view();
        let r = view
            .reservation(gang)
            .unwrap_or_else(|| panic!("no reservation for {gang}"));
        r.plan.slots.iter().map(|s| s.node.clone()).collect()
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("dgx{i}")).collect()
}

/// Member `i` of replica `key` of pod group `workers` (8 GPUs); `key: None`
/// leaves `podGroupReplicaKey` unset.
fn member(key: Option<&str>, i: usize) -> Value {
    let k = key.unwrap_or("none");
    let mut r = json!({"name": "train", "podGroup": "workers"});
    if let Some(key) = key {
        r["podGroupReplicaKey"] = json!(key);
    }
    json!({
        "metadata": {"name": format!("w-{k}-{i}"), "namespace": "ns", "uid": format!("uid-{k}-{i}"),
                     "labels": {INDEX: i.to_string()}},
        "spec": {"workloadRef": r,
                 "containers": [{"name": "c", "image": "x",
                                 "resources": {"requests": {"nvidia.com/gpu": "8"}, "limits": {"nvidia.com/gpu": "8"}}}]},
        "status": {"phase": "Pending"},
    })
}

/// The gang id and slot count recorded on a bound pod.
fn recorded(f: &Fixture, name: &str) -> (String, usize) {
    let bound = f.binder.bound.lock().expect("binder");
    let b = bound
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("{name} bound"));
    let plan: Value = serde_json::from_str(&b.annotations[GANG_PLAN]).expect("plan json");
    let slots = plan["slots"].as_array().expect("slots").len();
    (plan["gang"].as_str().expect("gang").to_string(), slots)
}

#[tokio::test]
async fn each_replica_of_a_pod_group_gets_its_own_reservation() {
    let f = Fixture::dgx(4);
    f.workload(2);
    let nodes = names(4);
    // The first member of each replica plans its replica: two reservations
    // of minCount slots each, on different nodes.
    let r0 = f.filter(&member(Some("0"), 0), &nodes).await;
    let r1 = f.filter(&member(Some("1"), 0), &nodes).await;
    let plan0 = f.planned("ns/train/workers/0");
    let plan1 = f.planned("ns/train/workers/1");
    assert_eq!((plan0.len(), plan1.len()), (2, 2), "{plan0:?} {plan1:?}");
    assert!(f.state.view().reservation("ns/train/workers").is_none());
    let all: BTreeSet<&String> = plan0.iter().chain(&plan1).collect();
    assert_eq!(all.len(), 4, "replicas share no node: {plan0:?} {plan1:?}");
    assert_eq!(r0["NodeNames"], json!([plan0[0]]), "{r0}");
    assert_eq!(r1["NodeNames"], json!([plan1[0]]), "{r1}");

    // Members arrive interleaved; each goes to its own replica's plan.
    for (key, i, plan) in [("1", 1, &plan1), ("0", 0, &plan0), ("0", 1, &plan0), ("1", 0, &plan1)] {
        let node = f.schedule(&member(Some(key), i), &nodes).await;
        assert_eq!(&node, &plan[i], "replica {key} member {i}");
        let (gang, slots) = recorded(&f, &format!("w-{key}-{i}"));
        assert_eq!((gang.as_str(), slots), (format!("ns/train/workers/{key}").as_str(), 2));
    }
    assert_eq!(f.binder.bound.lock().expect("binder").len(), 4);
}

#[tokio::test]
async fn filling_one_replica_does_not_complete_the_other() {
    // Room for one replica of two members at a time.
    let f = Fixture::dgx(3);
    f.workload(2);
    let nodes = names(3);
    let mut placed0 = Vec::new();
    for i in 0..2 {
        placed0.push(f.schedule(&member(Some("0"), i), &nodes).await);
    }
    // Replica 1 is a gang of 2 that does not fit beside replica 0: its
    // members wait, none is placed alone on the one free node.
    for i in 0..2 {
        let r = f.filter(&member(Some("1"), i), &nodes).await;
        assert_eq!(r["NodeNames"], json!([]), "replica 1 member {i}: {r}");
        let failed = r["FailedNodes"].as_object().expect("failed nodes");
        assert_eq!(failed.len(), 3, "{r}");
        for why in failed.values() {
            assert!(
                why.as_str().unwrap_or("").contains("gang ns/train/workers/1 waits"),
                "{r}"
            );
        }
        assert!(f.state.view().reservation("ns/train/workers/1").is_none());
    }
    // Replica 0 finishes (the pod watch sees it Succeeded): replica 1 now fits.
    let bound = f.binder.bound.lock().expect("binder").clone();
    for b in &bound {
        let i: usize = b.name.rsplit('-').next().and_then(|s| s.parse().ok()).expect("index");
        let mut p = member(Some("0"), i);
        p["spec"]["nodeName"] = json!(b.node);
        p["metadata"]["annotations"] = serde_json::to_value(&b.annotations).expect("annotations");
        p["status"]["phase"] = json!("Succeeded");
        f.observe(&p);
    }
    let mut placed1 = Vec::new();
    for i in 0..2 {
        placed1.push(f.schedule(&member(Some("1"), i), &nodes).await);
        assert_eq!(recorded(&f, &format!("w-1-{i}")), ("ns/train/workers/1".to_string(), 2));
    }
    assert_eq!(placed1, f.planned("ns/train/workers/1"));
    assert_ne!(placed1[0], placed1[1]);
}

#[tokio::test]
async fn a_member_without_replica_key_keeps_the_pod_group_id() {
    // Plans recorded before replica keys were read name the gang
    // `<ns>/<workload>/<podGroup>`; keyless members still use that id.
    let f = Fixture::dgx(2);
    f.workload(2);
    let nodes = names(2);
    for i in 0..2 {
        f.schedule(&member(None, i), &nodes).await;
        assert_eq!(
            recorded(&f, &format!("w-none-{i}")),
            ("ns/train/workers".to_string(), 2)
        );
    }
}
