//! Fixture cluster state and HTTP helpers shared by the tests.
#![allow(dead_code)]

pub mod mock;
pub mod training;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use prometheus_client::registry::Registry;
use railyard_core::extender::ViewConfig;
use railyard_scheduler::{AppState, Config, RecordingBinder, app};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const PREFIX: &str = "/railyard";

pub fn dgx_profile_json() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/machines/dgx-h100.yaml");
    let text = std::fs::read_to_string(p).expect("profile");
    let prof = railyard_core::machine::MachineProfile::from_yaml(&text).expect("parse");
    serde_json::to_string(&prof).expect("json")
}

/// A Node object.
pub fn node(name: &str, alloc: &[(&str, &str)], labels: &[(&str, &str)], topology: Option<&str>) -> Value {
    let mut a = serde_json::Map::new();
    a.insert("cpu".into(), json!("128"));
    a.insert("memory".into(), json!("1024Gi"));
    for (k, v) in alloc {
        a.insert(k.to_string(), json!(v));
    }
    let l: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let mut ann = serde_json::Map::new();
    if let Some(t) = topology {
        ann.insert("railyard.dev/gpu-topology".into(), json!(t));
    }
    json!({
        "metadata": {"name": name, "labels": l, "annotations": ann},
        "status": {"allocatable": a, "capacity": a},
    })
}

/// A Pod object asking for `res` (one container).
pub fn pod(ns: &str, name: &str, uid: &str, res: &[(&str, &str)], labels: &[(&str, &str)]) -> Value {
    let r: serde_json::Map<String, Value> = res.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let l: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({
        "metadata": {"name": name, "namespace": ns, "uid": uid, "labels": l},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": r, "limits": r}}]},
        "status": {"phase": "Pending"},
    })
}

/// The decision key every fixture extender holds, as replicas and restarts
/// of one deployment share its Secret.
pub fn test_key() -> railyard_scheduler::decision::DecisionKey {
    railyard_scheduler::decision::DecisionKey::from_bytes(&[42; 32])
}

pub struct Fixture {
    pub state: Arc<AppState>,
    pub binder: RecordingBinder,
    pub clock: Arc<AtomicU64>,
}

impl Fixture {
    pub fn new(ttl_ms: u64) -> Fixture {
        Fixture::with_key(ttl_ms, test_key())
    }

    /// An extender holding `key` for its decisions.
    pub fn with_key(ttl_ms: u64, key: railyard_scheduler::decision::DecisionKey) -> Fixture {
        let binder = RecordingBinder::default();
        let clock = Arc::new(AtomicU64::new(1_000_000));
        let c = clock.clone();
        let state = AppState::new(
            Config {
                url_prefix: PREFIX.into(),
                view: ViewConfig {
                    reservation_ttl_ms: ttl_ms,
                    ..ViewConfig::default()
                },
            },
            Arc::new(binder.clone()),
            Registry::default(),
        )
        .with_clock(move || c.load(Ordering::Relaxed))
        .with_decision_key(key);
        Fixture {
            state: Arc::new(state),
            binder,
            clock,
        }
    }

    pub fn add_node(&self, n: &Value) {
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(n.clone()).expect("node");
        self.state
            .view_mut()
            .upsert_node(railyard_scheduler::k8s::node_input(&node));
    }

    /// Applies a pod as the watch would.
    pub fn observe(&self, p: &Value) {
        let pod: railyard_scheduler::k8s::LeanPod = serde_json::from_value(p.clone()).expect("pod");
        let now = self.state.now();
        let obs = railyard_scheduler::k8s::observation(&pod, self.state.decision_key()).expect("observation");
        self.state.view_mut().observe_pod(obs, now);
    }

    pub async fn post(&self, verb: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let req = Request::post(format!("{PREFIX}/{verb}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("request");
        let resp = app(self.state.clone()).oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, bytes.to_vec())
    }

    pub async fn post_json(&self, verb: &str, body: &Value) -> Value {
        let (status, bytes) = self.post(verb, serde_json::to_vec(body).expect("json")).await;
        assert_eq!(status, StatusCode::OK, "{verb}: {}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).expect("response json")
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let req = Request::get(path).body(Body::empty()).expect("request");
        let resp = app(self.state.clone()).oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// filter → prioritize → bind on the best node, as kube-scheduler does.
    /// Returns the node bound, or the filter result when nothing passed.
    pub async fn schedule(&self, p: &Value, nodes: &[&str]) -> Result<String, Value> {
        let args = json!({"Pod": p, "Nodes": null, "NodeNames": nodes});
        let f = self.post_json("filter", &args).await;
        let passed: Vec<String> = serde_json::from_value(f["NodeNames"].clone()).unwrap_or_default();
        if passed.is_empty() || !f["Error"].as_str().unwrap_or("").is_empty() {
            return Err(f);
        }
        let pr = self
            .post_json("prioritize", &json!({"Pod": p, "Nodes": null, "NodeNames": passed}))
            .await;
        let best = pr
            .as_array()
            .expect("array")
            .iter()
            .max_by_key(|h| h["Score"].as_i64().unwrap_or(0))
            .expect("a node")["Host"]
            .as_str()
            .expect("host")
            .to_string();
        let b = self
            .post_json(
                "bind",
                &json!({
                    "PodName": p["metadata"]["name"], "PodNamespace": p["metadata"]["namespace"],
                    "PodUID": p["metadata"]["uid"], "Node": best,
                }),
            )
            .await;
        if b["Error"].as_str().unwrap_or("").is_empty() {
            Ok(best)
        } else {
            Err(b)
        }
    }
}
