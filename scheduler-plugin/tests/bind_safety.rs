//! Bind creates Bindings with the extender's own rights: it must not bind a
//! pod that is already bound or that another scheduler owns, and a bind
//! kube-scheduler gives up on (its `httpTimeout`) must still end bound or
//! undone, never leave GPUs booked for a pod that is not there.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use prometheus_client::registry::Registry;
use railyard_core::extender::{PodState, ViewConfig};
use railyard_scheduler::app::{BindRequest, Binder};
use railyard_scheduler::k8s::LeanPod;
use railyard_scheduler::{AppState, Config, app};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, oneshot};

/// What a held Binding call will answer, once sent.
type Release = oneshot::Receiver<Result<(), String>>;

/// Binds only when released, then answers `outcome`; serves `pods` to
/// `get_pod`.
#[derive(Debug, Default, Clone)]
struct GatedBinder {
    started: Arc<Notify>,
    release: Arc<Mutex<Option<Release>>>,
    pods: Arc<Mutex<Vec<LeanPod>>>,
    bound: Arc<Mutex<Vec<BindRequest>>>,
}

impl Binder for GatedBinder {
    fn bind(&self, req: BindRequest) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'static>> {
        let me = self.clone();
        Box::pin(async move {
            me.started.notify_one();
            let rx = me.release.lock().unwrap().take();
            let outcome = match rx {
                Some(rx) => rx.await.unwrap_or_else(|_| Err("released without an answer".into())),
                None => Ok(()),
            };
            if outcome.is_ok() {
                me.bound.lock().unwrap().push(req);
            }
            outcome
        })
    }

    fn get_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<LeanPod>, String>> + Send + 'static>> {
        let found = self
            .pods
            .lock()
            .unwrap()
            .iter()
            .find(|p| p.metadata.namespace.as_deref() == Some(namespace) && p.metadata.name.as_deref() == Some(name))
            .cloned();
        Box::pin(async move { Ok(found) })
    }
}

fn state(binder: GatedBinder, schedulers: &[&str]) -> Arc<AppState> {
    let state = AppState::new(
        Config {
            url_prefix: PREFIX.into(),
            view: ViewConfig::default(),
        },
        Arc::new(binder),
        Registry::default(),
    )
    .with_clock(|| 1_000_000)
    .with_scheduler_names(schedulers.iter().map(|s| s.to_string()).collect());
    let topo = dgx_profile_json();
    let n: k8s_openapi::api::core::v1::Node =
        serde_json::from_value(node("dgx0", &[("nvidia.com/gpu", "8")], &[], Some(&topo))).expect("node");
    state.view_mut().upsert_node(railyard_scheduler::k8s::node_input(&n));
    Arc::new(state)
}

fn gpu_pod(name: &str, scheduler: Option<&str>, node: Option<&str>) -> Value {
    let mut p = pod("ns", name, &format!("uid-{name}"), &[("nvidia.com/gpu", "2")], &[]);
    if let Some(s) = scheduler {
        p["spec"]["schedulerName"] = json!(s);
    }
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

async fn post(state: &Arc<AppState>, verb: &str, body: &Value) -> Value {
    use tower::ServiceExt;
    let req = http::Request::post(format!("{PREFIX}/{verb}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(body).expect("json")))
        .expect("request");
    let resp = app(state.clone()).oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), http::StatusCode::OK);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    serde_json::from_slice(&bytes).expect("json")
}

fn bind_args(name: &str) -> Value {
    json!({"PodName": name, "PodNamespace": "ns", "PodUID": format!("uid-{name}"), "Node": "dgx0"})
}

#[tokio::test]
async fn pods_of_other_schedulers_and_bound_pods_are_never_bound() {
    let binder = GatedBinder::default();
    let s = state(binder.clone(), &["railyard"]);
    // Filter refuses a pod meant for another scheduler (or none: the default).
    for p in [
        gpu_pod("theirs", Some("default-scheduler"), None),
        gpu_pod("unset", None, None),
    ] {
        let r = post(&s, "filter", &json!({"Pod": p, "NodeNames": ["dgx0"]})).await;
        let e = r["Error"].as_str().unwrap_or("");
        assert!(e.contains("default-scheduler") && e.contains("--scheduler-name"), "{r}");
        assert!(r["NodeNames"].is_null());
    }
    // Bind of pods it never filtered: read from the API, then refused.
    *binder.pods.lock().unwrap() = vec![
        serde_json::from_value(gpu_pod("theirs", Some("default-scheduler"), None)).unwrap(),
        serde_json::from_value(gpu_pod("placed", Some("railyard"), Some("other-node"))).unwrap(),
        serde_json::from_value(gpu_pod("mine", Some("railyard"), None)).unwrap(),
    ];
    let r = post(&s, "bind", &bind_args("theirs")).await;
    assert!(
        r["Error"]
            .as_str()
            .unwrap()
            .contains("for scheduler \"default-scheduler\""),
        "{r}"
    );
    let r = post(&s, "bind", &bind_args("placed")).await;
    assert!(
        r["Error"].as_str().unwrap().contains("already bound to other-node"),
        "{r}"
    );
    assert!(binder.bound.lock().unwrap().is_empty(), "no Binding for either");
    assert!(s.view().pod_state("uid-theirs").is_none() && s.view().pod_state("uid-placed").is_none());
    // Its own pods still bind.
    let r = post(&s, "bind", &bind_args("mine")).await;
    assert_eq!(r["Error"], "", "{r}");
    assert_eq!(binder.bound.lock().unwrap().len(), 1);
}

/// Sends a bind over a real connection and drops it once the Binding call
/// has started, as kube-scheduler does when its `httpTimeout` passes.
async fn abandoned_bind(s: &Arc<AppState>, binder: &GatedBinder, name: &str) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(axum::serve(listener, app(s.clone())).into_future());
    let body = serde_json::to_vec(&bind_args(name)).expect("json");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {PREFIX}/bind HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    conn.write_all(&body).await.expect("write");
    binder.started.notified().await;
    drop(conn);
    // Give the server a moment to notice the closed connection and drop the
    // handler (what the test is about); a correct extender passes whether or
    // not it has by then.
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.abort();
}

#[tokio::test]
async fn a_bind_the_scheduler_gave_up_on_still_ends_bound_or_undone() {
    for outcome in [Err("etcd timeout".to_string()), Ok(())] {
        let binder = GatedBinder::default();
        let (tx, rx) = oneshot::channel();
        *binder.release.lock().unwrap() = Some(rx);
        let s = state(binder.clone(), &[]);
        let p = gpu_pod("late", None, None);
        post(&s, "filter", &json!({"Pod": p, "NodeNames": ["dgx0"]})).await;
        abandoned_bind(&s, &binder, "late").await;
        // The GPUs are assumed while the Binding is in flight.
        assert_eq!(s.view().pod_state("uid-late").map(|p| p.1), Some(PodState::Assumed));
        let failed = outcome.is_err();
        tx.send(outcome).expect("the bind task is still waiting");
        // Poll (no timing assertion): the bind task finishes on its own.
        for _ in 0..1000 {
            let settled = if failed {
                s.view().pod_state("uid-late").is_none()
            } else {
                !binder.bound.lock().unwrap().is_empty()
            };
            if settled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if failed {
            assert!(s.view().pod_state("uid-late").is_none(), "a refused Binding is undone");
            assert_eq!(s.view().free_gpus("dgx0").map(|g| g.len()), Some(8));
        } else {
            assert_eq!(binder.bound.lock().unwrap().len(), 1, "the Binding went through");
            assert_eq!(s.view().free_gpus("dgx0").map(|g| g.len()), Some(6));
        }
    }
}
