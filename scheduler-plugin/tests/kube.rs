//! The Kubernetes side against a mocked API server (kube's tower-test
//! pattern): every request is checked.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::mock::*;
use common::*;
use http::StatusCode;
use railyard_core::extender::PodState;
use railyard_scheduler::app::{BindRequest, Binder};
use railyard_scheduler::binder::KubeBinder;
use railyard_scheduler::watch;
use serde_json::json;

#[tokio::test]
async fn kube_binder_posts_the_binding_with_the_decision() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri().path(), "/api/v1/namespaces/team/pods/train-0/binding");
        let body = body_json(req).await;
        assert_eq!(body["kind"], "Binding");
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(body["metadata"]["name"], "train-0");
        assert_eq!(body["metadata"]["uid"], "uid-0");
        assert_eq!(body["metadata"]["annotations"]["railyard.dev/gpus"], "0,1");
        assert_eq!(
            body["target"],
            json!({"apiVersion": "v1", "kind": "Node", "name": "dgx3"})
        );
        send.send_response(respond(
            StatusCode::CREATED,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ));
        // A second bind is refused by the API (conflict): the error surfaces.
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.uri().path(), "/api/v1/namespaces/team/pods/train-1/binding");
        send.send_response(respond(
            StatusCode::CONFLICT,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
                   "message": "pod train-1 is already assigned to node dgx1", "code": 409}),
        ));
    });
    let binder = KubeBinder::new(client);
    let req = |name: &str, uid: &str| BindRequest {
        namespace: "team".into(),
        name: name.into(),
        uid: uid.into(),
        node: "dgx3".into(),
        annotations: [("railyard.dev/gpus".to_string(), "0,1".to_string())].into(),
    };
    binder.bind(req("train-0", "uid-0")).await.expect("bound");
    let err = binder.bind(req("train-1", "uid-1")).await.expect_err("conflict");
    assert!(err.contains("already assigned"), "{err}");
    server.await.expect("server checks");
}

#[tokio::test]
async fn detects_which_gang_apis_are_served() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        for _ in 0..4 {
            let (req, send) = handle.next_request().await.expect("a request");
            assert_eq!(req.method(), http::Method::GET);
            match req.uri().path() {
                "/apis/scheduling.x-k8s.io/v1alpha1" => send.send_response(respond(
                    StatusCode::OK,
                    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "scheduling.x-k8s.io/v1alpha1",
                           "resources": [{"name": "podgroups", "singularName": "podgroup", "namespaced": true,
                                          "kind": "PodGroup", "verbs": ["get", "list", "watch"]}]}),
                )),
                "/apis/scheduling.k8s.io/v1alpha1"
                | "/apis/scheduling.k8s.io/v1alpha2"
                | "/apis/scheduling.k8s.io/v1beta1" => send.send_response(respond(
                    StatusCode::NOT_FOUND,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                )),
                other => panic!("unexpected request {other}"),
            }
        }
    });
    let served = watch::detect(&client).await;
    assert_eq!(
        served,
        watch::Served {
            pod_groups: true,
            workloads_v1alpha1: false,
            pod_groups_v1alpha2: false,
            pod_groups_v1beta1: false,
        }
    );
    server.await.expect("server checks");
}

/// The watches list nodes, pods and PodGroups from the mocked API and feed
/// the view; `/healthz` turns ready once pods are listed.
#[tokio::test]
async fn watches_build_the_view_from_the_api() {
    let (client, mut handle) = mock();
    let topo = dgx_profile_json();
    let dgx = node("dgx0", &[("nvidia.com/gpu", "8")], &[], Some(&topo));
    let mut running = pod("ns", "train-0", "uid-0", &[("nvidia.com/gpu", "2")], &[]);
    running["spec"]["nodeName"] = json!("dgx0");
    running["metadata"]["annotations"] = json!({"railyard.dev/gpus": "6,7"});
    running["status"]["phase"] = json!("Running");
    let _server = tokio::spawn(async move {
        // Watch requests are held open (never answered) so the streams stay up.
        let mut held = Vec::new();
        let mut seen = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            assert_eq!(req.method(), http::Method::GET, "{}", req.uri());
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            seen.push(path.clone());
            if query.contains("watch=true") {
                held.push(send);
                continue;
            }
            let list = |kind: &str, items: serde_json::Value| json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "10"}, "items": items});
            let resp = match path.as_str() {
                "/apis/scheduling.x-k8s.io/v1alpha1" => respond(
                    StatusCode::OK,
                    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "scheduling.x-k8s.io/v1alpha1",
                           "resources": [{"name": "podgroups", "singularName": "podgroup", "namespaced": true,
                                          "kind": "PodGroup", "verbs": ["list", "watch"]}]}),
                ),
                // Owner kinds gangs are inferred from: none served here.
                "/apis/scheduling.k8s.io/v1alpha1"
                | "/apis/scheduling.k8s.io/v1alpha2"
                | "/apis/scheduling.k8s.io/v1beta1"
                | "/apis/batch/v1"
                | "/apis/jobset.x-k8s.io/v1alpha2"
                | "/apis/kubeflow.org/v1"
                | "/apis/kubeflow.org/v2beta1"
                | "/apis/leaderworkerset.x-k8s.io/v1" => respond(
                    StatusCode::NOT_FOUND,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                ),
                "/api/v1/nodes" => respond(StatusCode::OK, list("NodeList", json!([dgx]))),
                "/api/v1/pods" => respond(StatusCode::OK, list("PodList", json!([running]))),
                "/apis/scheduling.x-k8s.io/v1alpha1/podgroups" => respond(
                    StatusCode::OK,
                    json!({"kind": "PodGroupList", "apiVersion": "scheduling.x-k8s.io/v1alpha1",
                           "metadata": {"resourceVersion": "10"},
                           "items": [{"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
                                      "metadata": {"name": "job", "namespace": "ns"}, "spec": {"minMember": 3}}]}),
                ),
                other => panic!("unexpected request {other}?{query}"),
            };
            send.send_response(resp);
        }
        seen
    });
    let f = Fixture::new(60_000);
    let state = f.state.clone();
    let watches = tokio::spawn(watch::run(client, state.clone()));
    let mut ok = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let v = state.view();
        let pod_ok = v
            .pod_state("uid-0")
            .is_some_and(|(n, s, g)| n == "dgx0" && s == PodState::Bound && g == vec![6, 7]);
        let pg_ok = state.gangs.read().unwrap().pod_groups.get("ns/job") == Some(&3);
        if pod_ok && pg_ok && v.has_node("dgx0") && state.ready.load(Ordering::Relaxed) {
            ok = true;
            break;
        }
    }
    assert!(ok, "view not built from the API");
    assert_eq!(state.view().free_gpus("dgx0").unwrap(), vec![0, 1, 2, 3, 4, 5]);
    watches.abort();
    let _ = Arc::strong_count(&state);
}
