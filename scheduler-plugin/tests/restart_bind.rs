//! `bind` for pods this extender did not filter (it restarted between
//! kube-scheduler's filter and bind, or another replica filtered them): the
//! pod is read from the API (a mocked API server that checks each request),
//! its ask computed, a gang member matched to its slot.

mod common;

use std::sync::Arc;

use axum::body::Body as AxumBody;
use common::mock::*;
use common::*;
use http::{Request, StatusCode};
use kube::client::Body;
use prometheus_client::registry::Registry;
use railyard_core::extender::{PodState, ViewConfig};
use railyard_scheduler::app::Binder;
use railyard_scheduler::binder::KubeBinder;
use railyard_scheduler::k8s::LeanPod;
use railyard_scheduler::{AppState, Config, app};
use serde_json::{Value, json};
use tower::ServiceExt;

const GROUP: &str = "scheduling.x-k8s.io/pod-group";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// A fresh extender (nothing filtered) binding through `binder`, with one
/// DGX node in its view.
fn fresh_state(binder: Arc<dyn Binder>) -> Arc<AppState> {
    let state = AppState::new(
        Config {
            url_prefix: PREFIX.into(),
            view: ViewConfig::default(),
        },
        binder,
        Registry::default(),
    )
    .with_clock(|| 1_000_000);
    let topo = dgx_profile_json();
    let n: k8s_openapi::api::core::v1::Node =
        serde_json::from_value(node("dgx0", &[("nvidia.com/gpu", "8")], &[], Some(&topo))).expect("node");
    state.view_mut().upsert_node(railyard_scheduler::k8s::node_input(&n));
    Arc::new(state)
}

async fn post_bind(state: &Arc<AppState>, args: &Value) -> Value {
    let req = Request::post(format!("{PREFIX}/bind"))
        .header("content-type", "application/json")
        .body(AxumBody::from(serde_json::to_vec(args).expect("json")))
        .expect("request");
    let resp = app(state.clone()).oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
    serde_json::from_slice(&bytes).expect("bind result json")
}

fn bind_args(ns: &str, name: &str, uid: &str, node: &str) -> Value {
    json!({"PodName": name, "PodNamespace": ns, "PodUID": uid, "Node": node})
}

#[tokio::test]
async fn kube_binder_reads_the_pod_and_tells_gone_from_failed() {
    let (client, mut handle) = mock();
    let p = pod("team", "train-0", "uid-0", &[("nvidia.com/gpu", "2")], &[]);
    let server = tokio::spawn(async move {
        let expect_get = |req: &Request<Body>, path: &str| {
            assert_eq!(req.method(), http::Method::GET);
            assert_eq!(req.uri().path(), path);
        };
        let (req, send) = handle.next_request().await.expect("a request");
        expect_get(&req, "/api/v1/namespaces/team/pods/train-0");
        send.send_response(respond(StatusCode::OK, p));
        let (req, send) = handle.next_request().await.expect("a request");
        expect_get(&req, "/api/v1/namespaces/team/pods/gone");
        send.send_response(respond(
            StatusCode::NOT_FOUND,
            status(404, "NotFound", "pods \"gone\" not found"),
        ));
        let (req, send) = handle.next_request().await.expect("a request");
        expect_get(&req, "/api/v1/namespaces/team/pods/secret");
        send.send_response(respond(
            StatusCode::FORBIDDEN,
            status(
                403,
                "Forbidden",
                "pods \"secret\" is forbidden: User \"system:serviceaccount:railyard:scheduler\" cannot get resource",
            ),
        ));
    });
    let binder = KubeBinder::new(client);
    let found = binder.get_pod("team", "train-0").await.expect("read").expect("exists");
    assert_eq!(found.metadata.uid.as_deref(), Some("uid-0"));
    assert_eq!(
        railyard_scheduler::k8s::pod_ask(&found).expect("ask").gpu,
        railyard_core::extender::GpuAsk::Whole(2)
    );
    assert!(
        binder
            .get_pod("team", "gone")
            .await
            .expect("a 404 is not an error")
            .is_none()
    );
    let err = binder.get_pod("team", "secret").await.expect_err("forbidden");
    assert!(err.contains("cannot get resource"), "{err}");
    server.await.expect("server checks");
}

/// kube-scheduler filtered with the previous process; the new one binds:
/// it reads the pod, picks its GPUs and records them in the Binding.
#[tokio::test]
async fn a_fresh_extender_binds_a_pod_it_did_not_filter() {
    let (client, mut handle) = mock();
    let state = fresh_state(Arc::new(KubeBinder::new(client)));
    let p = pod("team", "train-0", "uid-0", &[("nvidia.com/gpu", "2")], &[]);
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("the pod is read");
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri().path(), "/api/v1/namespaces/team/pods/train-0");
        send.send_response(respond(StatusCode::OK, p));
        let (req, send) = handle.next_request().await.expect("the binding");
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri().path(), "/api/v1/namespaces/team/pods/train-0/binding");
        let body = body_json(req).await;
        send.send_response(respond(
            StatusCode::CREATED,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ));
        body
    });
    let out = post_bind(&state, &bind_args("team", "train-0", "uid-0", "dgx0")).await;
    assert_eq!(out["Error"], "", "{out}");
    let body = server.await.expect("server checks");
    assert_eq!(body["metadata"]["uid"], "uid-0");
    assert_eq!(
        body["target"],
        json!({"apiVersion": "v1", "kind": "Node", "name": "dgx0"})
    );
    let gpus: Vec<u32> = body["metadata"]["annotations"]["railyard.dev/gpus"]
        .as_str()
        .expect("the GPUs are recorded")
        .split(',')
        .map(|g| g.parse().expect("an index"))
        .collect();
    assert_eq!(gpus.len(), 2, "{body}");
    assert!(body["metadata"]["annotations"].get("railyard.dev/gang-plan").is_none());
    // Assumed under the pod's UID with those GPUs: a second pod cannot get them.
    let (node, st, held) = state.view().pod_state("uid-0").expect("assumed");
    assert_eq!((node.as_str(), st), ("dgx0", PodState::Assumed));
    assert_eq!(held, gpus);
    let free = state.view().free_gpus("dgx0").expect("node");
    assert_eq!(free.len(), 6);
    assert!(gpus.iter().all(|g| !free.contains(g)));
}

/// Without PodUID in the request, the pod's real UID (the one the pod watch
/// reports) is the one assumed, so the pod is never counted twice.
#[tokio::test]
async fn a_bind_without_pod_uid_assumes_under_the_pods_real_uid() {
    let binder = railyard_scheduler::RecordingBinder::default();
    let p: LeanPod =
        serde_json::from_value(pod("team", "train-0", "uid-0", &[("nvidia.com/gpu", "1")], &[])).expect("pod");
    binder.pods.lock().unwrap().insert("team/train-0".into(), p);
    let state = fresh_state(Arc::new(binder.clone()));
    let out = post_bind(&state, &bind_args("team", "train-0", "", "dgx0")).await;
    assert_eq!(out["Error"], "", "{out}");
    assert!(state.view().pod_state("uid-0").is_some());
    assert!(state.view().pod_state("team/train-0").is_none());
    assert_eq!(binder.bound.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_pod_that_is_gone_or_recreated_is_not_bound() {
    let (client, mut handle) = mock();
    let state = fresh_state(Arc::new(KubeBinder::new(client)));
    let recreated = pod("team", "train-1", "uid-new", &[("nvidia.com/gpu", "1")], &[]);
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri().path(), "/api/v1/namespaces/team/pods/train-0");
        send.send_response(respond(
            StatusCode::NOT_FOUND,
            status(404, "NotFound", "pods \"train-0\" not found"),
        ));
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.uri().path(), "/api/v1/namespaces/team/pods/train-1");
        send.send_response(respond(StatusCode::OK, recreated));
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.uri().path(), "/api/v1/namespaces/team/pods/train-2");
        send.send_response(respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            status(500, "InternalError", "etcdserver: request timed out"),
        ));
        // No Binding is ever posted: the next thing is the client going away.
        assert!(handle.next_request().await.is_none(), "no binding expected");
    });
    let out = post_bind(&state, &bind_args("team", "train-0", "uid-0", "dgx0")).await;
    let e = out["Error"].as_str().expect("error");
    assert!(e.contains("team/train-0") && e.contains("no longer exists"), "{e}");
    let out = post_bind(&state, &bind_args("team", "train-1", "uid-old", "dgx0")).await;
    let e = out["Error"].as_str().expect("error");
    assert!(
        e.contains("team/train-1") && e.contains("uid-new") && e.contains("uid-old"),
        "{e}"
    );
    let out = post_bind(&state, &bind_args("team", "train-2", "uid-2", "dgx0")).await;
    let e = out["Error"].as_str().expect("error");
    assert!(
        e.contains("team/train-2") && e.contains("etcdserver: request timed out"),
        "{e}"
    );
    drop(state);
    server.await.expect("server checks");
}

fn member(job: &str, i: usize) -> Value {
    let idx = i.to_string();
    pod(
        "ns",
        &format!("{job}-{i}"),
        &format!("uid-{job}-{i}"),
        &[("nvidia.com/gpu", "8")],
        &[(GROUP, job), (INDEX, idx.as_str())],
    )
}

fn gang_fixture(binder_pods: &[Value]) -> Fixture {
    let f = Fixture::new(600_000);
    let topo = dgx_profile_json();
    for i in 0..4 {
        f.add_node(&node(&format!("dgx{i}"), &[("nvidia.com/gpu", "8")], &[], Some(&topo)));
    }
    // No published topology: gangs are never planned here.
    f.add_node(&node("plain", &[("nvidia.com/gpu", "8")], &[], None));
    let mut pods = f.binder.pods.lock().expect("pods");
    for p in binder_pods {
        let key = format!(
            "{}/{}",
            p["metadata"]["namespace"].as_str().expect("namespace"),
            p["metadata"]["name"].as_str().expect("name")
        );
        pods.insert(key, serde_json::from_value(p.clone()).expect("pod"));
    }
    drop(pods);
    f
}

async fn bind(f: &Fixture, p: &Value, node: &str) -> String {
    let args = bind_args(
        p["metadata"]["namespace"].as_str().expect("namespace"),
        p["metadata"]["name"].as_str().expect("name"),
        p["metadata"]["uid"].as_str().expect("uid"),
        node,
    );
    f.post_json("bind", &args).await["Error"]
        .as_str()
        .expect("Error is a string")
        .to_string()
}

/// No member was bound before the restart: the first bind plans the gang as
/// filter would, and only the member's slot is accepted.
#[tokio::test]
async fn an_unfiltered_gang_member_binds_only_to_its_slot() {
    let pods: Vec<Value> = (0..2).map(|i| member("job", i)).collect();
    let f = gang_fixture(&pods);
    // The PodGroup is not listed yet: refused with the reason, nothing planned.
    let e = bind(&f, &pods[0], "dgx0").await;
    assert!(e.contains("waiting for PodGroup ns/job"), "{e}");
    assert!(f.state.view().reservation("ns/job").is_none());
    f.state.gang_index_mut().pod_groups.insert("ns/job".into(), 2);

    let e = bind(&f, &pods[0], "plain").await;
    let plan = f.state.view().reservation("ns/job").expect("planned").plan.clone();
    assert!(
        e.contains("reserved on") && e.contains(&plan.slots[0].node) && e.contains("ns/job-0"),
        "{e}"
    );
    assert!(f.binder.bound.lock().unwrap().is_empty());
    for (i, p) in pods.iter().enumerate() {
        assert_eq!(bind(&f, p, &plan.slots[i].node).await, "", "member {i}");
    }
    let bound = f.binder.bound.lock().unwrap().clone();
    assert_eq!(bound.len(), 2);
    for (i, b) in bound.iter().enumerate() {
        assert_eq!(b.node, plan.slots[i].node);
        assert_eq!(b.annotations["railyard.dev/gang-slot"], i.to_string());
        assert_eq!(b.annotations["railyard.dev/gpus"], "0,1,2,3,4,5,6,7");
        let recorded: railyard_core::extender::PlanRecord =
            serde_json::from_str(&b.annotations["railyard.dev/gang-plan"]).expect("plan");
        assert_eq!(recorded, plan);
    }
}

/// One member bound before the restart: the new process rebuilds the
/// reservation from its annotations, and the next member, never filtered
/// here, fills its own slot.
#[tokio::test]
async fn after_a_restart_a_member_fills_its_slot_in_the_rebuilt_reservation() {
    let pods: Vec<Value> = (0..2).map(|i| member("job", i)).collect();
    let before = gang_fixture(&[]);
    before.state.gang_index_mut().pod_groups.insert("ns/job".into(), 2);
    let names = ["dgx0", "dgx1", "dgx2", "dgx3"];
    let first = before.schedule(&pods[0], &names).await.expect("member 0 placed");
    let plan = before.state.view().reservation("ns/job").expect("planned").plan.clone();
    let b0 = before.binder.bound.lock().unwrap()[0].clone();

    let after = gang_fixture(&pods);
    after.state.gang_index_mut().pod_groups.insert("ns/job".into(), 2);
    let mut bound0 = pods[0].clone();
    bound0["spec"]["nodeName"] = json!(first);
    bound0["metadata"]["annotations"] = serde_json::to_value(&b0.annotations).unwrap();
    bound0["status"]["phase"] = json!("Running");
    after.observe(&bound0);
    assert_eq!(after.state.view().reservation("ns/job").expect("rebuilt").plan, plan);

    let wrong = names.iter().find(|n| **n != plan.slots[1].node).unwrap();
    let e = bind(&after, &pods[1], wrong).await;
    assert!(e.contains(&format!("reserved on {}", plan.slots[1].node)), "{e}");
    assert_eq!(bind(&after, &pods[1], &plan.slots[1].node).await, "");
    let b1 = after.binder.bound.lock().unwrap()[0].clone();
    assert_eq!(b1.annotations["railyard.dev/gang-slot"], "1");
    assert_eq!(
        b1.annotations["railyard.dev/gang-plan"],
        b0.annotations["railyard.dev/gang-plan"]
    );
    let r = after.state.view().reservation("ns/job").expect("reservation").clone();
    assert_eq!(r.held, vec![false, false], "every slot is a pod's now");
}
