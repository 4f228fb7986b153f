//! A panic inside a request handler leaves the extender serving: the request
//! gets a 500 that says so, the panic is counted, the GPUs it had assumed are
//! not left booked, a poisoned lock does not take later requests down, and
//! every other node stays answerable. Panics are injected through the
//! `Binder` seam (bind and `get_pod`), the code the handler calls out to.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{PREFIX, node, pod};
use prometheus_client::registry::Registry;
use railyard_core::extender::ViewConfig;
use railyard_scheduler::k8s::LeanPod;
use railyard_scheduler::{AppState, BindRequest, Binder, Config, app};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Panics when binding to `panic_on` (in the call itself) or to
/// `panic_later_on` (in the future it returns), and in every `get_pod`.
#[derive(Debug, Default)]
struct PanickingBinder {
    bound: Mutex<Vec<BindRequest>>,
    panic_on: String,
    panic_later_on: String,
}

impl Binder for PanickingBinder {
    fn bind(&self, req: BindRequest) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>> {
        assert_ne!(req.node, self.panic_on, "injected panic in Binder::bind");
        let later = req.node == self.panic_later_on;
        if !later && let Ok(mut b) = self.bound.lock() {
            b.push(req);
        }
        Box::pin(async move {
            assert!(!later, "injected panic in the bind future");
            Ok(())
        })
    }

    fn get_pod(
        &self,
        _namespace: &str,
        _name: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<LeanPod>, String>> + Send + 'static>> {
        panic!("injected panic in Binder::get_pod")
    }
}

fn state(binder: Arc<PanickingBinder>) -> Arc<AppState> {
    let config = Config {
        url_prefix: PREFIX.into(),
        view: ViewConfig::default(),
    };
    let s = Arc::new(AppState::new(config, binder, Registry::default()));
    for name in ["g1", "g2", "g3"] {
        let n: k8s_openapi::api::core::v1::Node =
            serde_json::from_value(node(name, &[("nvidia.com/gpu", "2")], &[], None)).expect("node");
        s.view_mut().upsert_node(railyard_scheduler::k8s::node_input(&n));
    }
    s
}

async fn post(s: &Arc<AppState>, verb: &str, body: &Value) -> (StatusCode, String) {
    let req = Request::post(format!("{PREFIX}/{verb}"))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("request");
    let resp = app(s.clone()).oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn filter(s: &Arc<AppState>, p: &Value, nodes: &[&str]) -> Value {
    let (status, body) = post(s, "filter", &json!({"Pod": p, "NodeNames": nodes})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).expect("json")
}

fn bind_args(p: &Value, node: &str) -> Value {
    json!({
        "PodName": p["metadata"]["name"], "PodNamespace": p["metadata"]["namespace"],
        "PodUID": p["metadata"]["uid"], "Node": node,
    })
}

async fn metrics(s: &Arc<AppState>) -> String {
    let req = Request::get("/metrics").body(Body::empty()).expect("request");
    let resp = app(s.clone()).oneshot(req).await.expect("infallible");
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn a_panicking_handler_leaves_the_extender_serving() {
    let binder = Arc::new(PanickingBinder {
        panic_on: "g1".into(),
        panic_later_on: "g2".into(),
        ..Default::default()
    });
    let s = state(binder.clone());
    let a = pod("ns", "a", "uid-a", &[("nvidia.com/gpu", "2")], &[]);
    let b = pod("ns", "b", "uid-b", &[("nvidia.com/gpu", "2")], &[]);
    assert_eq!(filter(&s, &a, &["g1"]).await["NodeNames"], json!(["g1"]));
    assert_eq!(filter(&s, &b, &["g2"]).await["NodeNames"], json!(["g2"]));
    // A panic in the call and one in its future: both 500 with a message.
    for (p, n) in [(&a, "g1"), (&b, "g2")] {
        let (status, msg) = post(&s, "bind", &bind_args(p, n)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{msg}");
        assert!(msg.starts_with("bind: internal error (panic)"), "{msg}");
    }
    // The GPUs bind had assumed are free again: every node takes a 2-GPU pod.
    let c = pod("ns", "c", "uid-c", &[("nvidia.com/gpu", "2")], &[]);
    let r = filter(&s, &c, &["g1", "g2", "g3"]).await;
    assert_eq!(r["NodeNames"], json!(["g1", "g2", "g3"]), "{r}");
    // A pod never filtered is read through get_pod, which panics too.
    let (status, msg) = post(&s, "bind", &bind_args(&pod("ns", "x", "uid-x", &[], &[]), "g3")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{msg}");
    // Poison the view's lock as a panic under it would.
    let poisoner = s.clone();
    let joined = std::thread::spawn(move || {
        let _held = poisoner.view_mut();
        panic!("injected panic holding the view's write lock");
    })
    .join();
    assert!(joined.is_err());
    // Still serving, every node answerable, binds that do not panic bind.
    let r = filter(&s, &c, &["g1", "g2", "g3"]).await;
    assert_eq!(r["NodeNames"], json!(["g1", "g2", "g3"]), "{r}");
    let (status, msg) = post(&s, "prioritize", &json!({"Pod": c, "NodeNames": ["g1", "g2", "g3"]})).await;
    assert_eq!(status, StatusCode::OK, "{msg}");
    let (status, msg) = post(&s, "bind", &bind_args(&c, "g3")).await;
    assert_eq!((status, msg.as_str()), (StatusCode::OK, r#"{"Error":""}"#));
    assert_eq!(binder.bound.lock().expect("lock").len(), 1);
    let d = pod("ns", "d", "uid-d", &[("nvidia.com/gpu", "1")], &[]);
    let r = filter(&s, &d, &["g1", "g2", "g3"]).await;
    assert_eq!(r["NodeNames"], json!(["g1", "g2"]), "{r}");
    let m = metrics(&s).await;
    assert!(
        m.contains(r#"railyard_scheduler_handler_panics_total{verb="bind"} 3"#),
        "{m}"
    );
    let (status, body) = post(&s, "filter", &json!({"Pod": d, "NodeNames": []})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
