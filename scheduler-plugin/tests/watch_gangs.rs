//! Gang APIs from a mocked API server (kube's tower-test pattern; every
//! request's method, path and query checked): discovery of what is served,
//! Workloads and upstream PodGroups through list and watch into the gang
//! index, relists, and a cluster that serves none of them.
//!
//! The watch functions apply each event before asking the stream for the
//! next, so when the mock receives the next request, everything answered
//! before it is in the index: the checks need no sleeps. Time is paused so
//! the watcher's backoff and the re-probe interval pass at once.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::mock::*;
use common::*;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use railyard_scheduler::AppState;
use railyard_scheduler::k8s::{self, LeanPod};
use railyard_scheduler::watch::{self, GangKind, Served};
use serde_json::{Value, json};

/// What kube-apiserver answers for a group-version it does not serve.
fn not_served() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from(b"404 page not found\n".to_vec()))
        .expect("response")
}

fn resources(group_version: &str, plurals: &[(&str, &str)]) -> Value {
    let list: Vec<Value> = plurals
        .iter()
        .map(|(plural, kind)| json!({"name": plural, "namespaced": true, "kind": kind, "verbs": ["list", "watch"]}))
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list})
}

fn list(api_version: &str, kind: &str, rv: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": rv}, "items": items})
}

/// A watch response: one JSON event per line.
fn events(evs: &[(&str, Value)]) -> Response<Body> {
    let mut body = Vec::new();
    for (ty, obj) in evs {
        body.extend(serde_json::to_vec(&json!({"type": ty, "object": obj})).expect("json"));
        body.push(b'\n');
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("response")
}

async fn next(handle: &mut Handle) -> (Request<Body>, Reply) {
    handle.next_request().await.expect("another request")
}

fn query(req: &Request<Body>) -> String {
    req.uri().query().unwrap_or("").to_string()
}

fn expect_list(req: &Request<Body>, path: &str) {
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(req.uri().path(), path);
    assert!(!query(req).contains("watch=true"), "a list, not a watch: {}", req.uri());
}

fn expect_watch(req: &Request<Body>, path: &str, from_rv: &str) {
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(req.uri().path(), path);
    let q = query(req);
    assert!(q.contains("watch=true"), "a watch: {}", req.uri());
    assert!(
        q.contains(&format!("resourceVersion={from_rv}")),
        "from {from_rv}: {}",
        req.uri()
    );
}

/// `scheduling.k8s.io/v1alpha1` Workload: `(pod group, gang minCount)`,
/// `None` for the basic policy.
fn workload(name: &str, rv: &str, groups: &[(&str, Option<u32>)]) -> Value {
    let groups: Vec<Value> = groups
        .iter()
        .map(|(g, min)| match min {
            Some(m) => json!({"name": g, "policy": {"gang": {"minCount": m}}}),
            None => json!({"name": g, "policy": {"basic": {}}}),
        })
        .collect();
    json!({"apiVersion": "scheduling.k8s.io/v1alpha1", "kind": "Workload",
           "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
           "spec": {"controllerRef": {"apiGroup": "batch", "kind": "Job", "name": name}, "podGroups": groups}})
}

/// `scheduling.k8s.io/v1alpha2` PodGroup.
fn upstream_pod_group(name: &str, rv: &str, min: Option<u32>) -> Value {
    let policy = match min {
        Some(m) => json!({"gang": {"minCount": m}}),
        None => json!({"basic": {}}),
    };
    json!({"apiVersion": "scheduling.k8s.io/v1alpha2", "kind": "PodGroup",
           "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
           "spec": {"podGroupTemplateRef": {"workload": {"workloadName": "w", "podGroupTemplateName": name}},
                    "schedulingPolicy": policy}})
}

/// `scheduling.k8s.io/v1beta1` PodGroup (1.37: `workloadRef` instead of
/// `podGroupTemplateRef`, `disruptionMode` an object).
fn upstream_pod_group_v1beta1(name: &str, rv: &str, min: u32) -> Value {
    json!({"apiVersion": "scheduling.k8s.io/v1beta1", "kind": "PodGroup",
           "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
           "spec": {"workloadRef": {"workloadName": "w", "templateName": name},
                    "schedulingPolicy": {"gang": {"minCount": min}},
                    "disruptionMode": {"all": {}}}})
}

/// What the gang index says about a pod whose spec has `field`.
fn resolve(state: &AppState, field: (&str, Value)) -> Result<Option<u32>, String> {
    let mut p = pod("ns", "member", "uid-m", &[("nvidia.com/gpu", "8")], &[]);
    p["spec"][field.0] = field.1;
    let p: LeanPod = serde_json::from_value(p).expect("pod");
    let r = k8s::gang_ref(&p).expect("a gang member");
    state.gangs.read().expect("gang index").resolve(&r)
}

fn workload_ref(w: &str, g: &str) -> (&'static str, Value) {
    ("workloadRef", json!({"name": w, "podGroup": g}))
}

fn scheduling_group(g: &str) -> (&'static str, Value) {
    ("schedulingGroup", json!({"podGroupName": g}))
}

#[tokio::test]
async fn detect_reports_what_is_served_and_survives_what_is_not() {
    // 1.36 with the upstream API on, no scheduler-plugins CRD: the group
    // 404s (plain text, as kube-apiserver answers), v1alpha1 is served
    // without Workloads, v1alpha2 serves PodGroups.
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        for (path, resp) in [
            ("/apis/scheduling.x-k8s.io/v1alpha1", not_served()),
            (
                "/apis/scheduling.k8s.io/v1alpha1",
                respond(
                    StatusCode::OK,
                    resources("scheduling.k8s.io/v1alpha1", &[("priorityclasses", "PriorityClass")]),
                ),
            ),
            (
                "/apis/scheduling.k8s.io/v1alpha2",
                respond(
                    StatusCode::OK,
                    resources(
                        "scheduling.k8s.io/v1alpha2",
                        &[("workloads", "Workload"), ("podgroups", "PodGroup")],
                    ),
                ),
            ),
            ("/apis/scheduling.k8s.io/v1beta1", not_served()),
        ] {
            let (req, send) = next(&mut handle).await;
            assert_eq!(req.method(), http::Method::GET);
            assert_eq!(req.uri().path(), path);
            send.send_response(resp);
        }
    });
    let served = watch::detect(&client).await;
    server.await.expect("server checks");
    assert_eq!(
        served,
        Served {
            pod_groups: false,
            workloads_v1alpha1: false,
            pod_groups_v1alpha2: true,
            pod_groups_v1beta1: false,
        }
    );

    // 1.35 with Workloads and the CRD; then a cluster whose discovery fails
    // (503 from an aggregated API, a dropped connection): not served, and
    // detect still answers.
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.uri().path(), "/apis/scheduling.x-k8s.io/v1alpha1");
        send.send_response(respond(
            StatusCode::OK,
            resources("scheduling.x-k8s.io/v1alpha1", &[("podgroups", "PodGroup")]),
        ));
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.uri().path(), "/apis/scheduling.k8s.io/v1alpha1");
        send.send_response(respond(
            StatusCode::OK,
            resources("scheduling.k8s.io/v1alpha1", &[("workloads", "Workload")]),
        ));
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.uri().path(), "/apis/scheduling.k8s.io/v1alpha2");
        send.send_response(not_served());
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.uri().path(), "/apis/scheduling.k8s.io/v1beta1");
        send.send_response(not_served());
        for path in [
            "/apis/scheduling.x-k8s.io/v1alpha1",
            "/apis/scheduling.k8s.io/v1alpha1",
            "/apis/scheduling.k8s.io/v1alpha2",
            "/apis/scheduling.k8s.io/v1beta1",
        ] {
            let (req, send) = next(&mut handle).await;
            assert_eq!(req.uri().path(), path);
            if path.ends_with("v1alpha2") || path.ends_with("v1beta1") {
                send.send_error(std::io::Error::other("connection reset by peer"));
            } else {
                send.send_response(respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "ServiceUnavailable", "code": 503}),
                ));
            }
        }
    });
    assert_eq!(
        watch::detect(&client).await,
        Served {
            pod_groups: true,
            workloads_v1alpha1: true,
            pod_groups_v1alpha2: false,
            pod_groups_v1beta1: false,
        }
    );
    assert_eq!(watch::detect(&client).await, Served::default());
    server.await.expect("server checks");
}

#[tokio::test(start_paused = true)]
async fn workloads_from_list_and_watch_land_in_the_gang_index() {
    const PATH: &str = "/apis/scheduling.k8s.io/v1alpha1/workloads";
    let (client, mut handle) = mock();
    let f = Fixture::new(60_000);
    let state = f.state.clone();
    let task = tokio::spawn(watch::watch_gang_objects(client, state.clone(), GangKind::Workload));

    let (req, send) = next(&mut handle).await;
    expect_list(&req, PATH);
    send.send_response(respond(
        StatusCode::OK,
        list(
            "scheduling.k8s.io/v1alpha1",
            "WorkloadList",
            "10",
            vec![workload("train", "5", &[("workers", Some(4)), ("driver", None)])],
        ),
    ));

    let (req, send) = next(&mut handle).await;
    expect_watch(&req, PATH, "10");
    assert_eq!(resolve(&state, workload_ref("train", "workers")), Ok(Some(4)));
    assert_eq!(
        resolve(&state, workload_ref("train", "driver")),
        Ok(None),
        "basic policy: scheduled alone"
    );
    let e = resolve(&state, workload_ref("train", "eval")).expect_err("no such group");
    assert!(e.contains("has no pod group \"eval\""), "{e}");
    let e = resolve(&state, workload_ref("infer", "workers")).expect_err("not listed");
    assert!(e.contains("waiting for Workload ns/infer"), "{e}");
    send.send_response(events(&[
        ("ADDED", workload("infer", "11", &[("workers", Some(2))])),
        (
            "MODIFIED",
            workload("train", "12", &[("workers", Some(8)), ("driver", None)]),
        ),
    ]));

    let (req, send) = next(&mut handle).await;
    expect_watch(&req, PATH, "12");
    assert_eq!(resolve(&state, workload_ref("infer", "workers")), Ok(Some(2)));
    assert_eq!(resolve(&state, workload_ref("train", "workers")), Ok(Some(8)));
    send.send_response(events(&[(
        "DELETED",
        workload("train", "13", &[("workers", Some(8)), ("driver", None)]),
    )]));

    let (req, send) = next(&mut handle).await;
    expect_watch(&req, PATH, "13");
    let e = resolve(&state, workload_ref("train", "workers")).expect_err("deleted");
    assert!(e.contains("waiting for Workload ns/train"), "{e}");
    assert_eq!(resolve(&state, workload_ref("infer", "workers")), Ok(Some(2)));
    // The watch fell too far behind: the watcher relists.
    send.send_response(events(&[(
        "ERROR",
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
               "message": "too old resource version: 13 (40)", "code": 410}),
    )]));

    let (req, send) = next(&mut handle).await;
    expect_list(&req, PATH);
    // While the relist is read, what was known stays (as with a reflector):
    // members are not told to wait for a Workload that exists.
    assert_eq!(resolve(&state, workload_ref("infer", "workers")), Ok(Some(2)));
    // `infer` was deleted while the watch was down; `serve` is new.
    send.send_response(respond(
        StatusCode::OK,
        list(
            "scheduling.k8s.io/v1alpha1",
            "WorkloadList",
            "40",
            vec![workload("serve", "38", &[("replicas", Some(3))])],
        ),
    ));

    let (req, _held) = next(&mut handle).await;
    expect_watch(&req, PATH, "40");
    assert_eq!(resolve(&state, workload_ref("serve", "replicas")), Ok(Some(3)));
    let e = resolve(&state, workload_ref("infer", "workers")).expect_err("gone after the relist");
    assert!(e.contains("waiting for Workload ns/infer"), "{e}");
    assert_eq!(state.gangs.read().unwrap().workloads.len(), 1);
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn upstream_pod_groups_from_list_and_watch_land_in_the_gang_index() {
    const PATH: &str = "/apis/scheduling.k8s.io/v1alpha2/podgroups";
    let (client, mut handle) = mock();
    let f = Fixture::new(60_000);
    let state = f.state.clone();
    let task = tokio::spawn(watch::watch_gang_objects(
        client,
        state.clone(),
        GangKind::UpstreamPodGroup,
    ));

    let (req, send) = next(&mut handle).await;
    expect_list(&req, PATH);
    send.send_response(respond(
        StatusCode::OK,
        list(
            "scheduling.k8s.io/v1alpha2",
            "PodGroupList",
            "7",
            vec![
                upstream_pod_group("ring", "6", Some(3)),
                upstream_pod_group("solo", "6", None),
            ],
        ),
    ));

    let (req, send) = next(&mut handle).await;
    expect_watch(&req, PATH, "7");
    assert_eq!(resolve(&state, scheduling_group("ring")), Ok(Some(3)));
    assert_eq!(
        resolve(&state, scheduling_group("solo")),
        Ok(None),
        "basic policy: scheduled alone"
    );
    // The scheduler-plugins index is a different API: not fed from here.
    assert!(state.gangs.read().unwrap().pod_groups.is_empty());
    send.send_response(events(&[
        ("ADDED", upstream_pod_group("pair", "8", Some(2))),
        ("DELETED", upstream_pod_group("ring", "9", Some(3))),
    ]));

    let (req, _held) = next(&mut handle).await;
    expect_watch(&req, PATH, "9");
    assert_eq!(resolve(&state, scheduling_group("pair")), Ok(Some(2)));
    let e = resolve(&state, scheduling_group("ring")).expect_err("deleted");
    assert!(e.contains("waiting for PodGroup ns/ring (scheduling.k8s.io)"), "{e}");
    task.abort();
}

/// A cluster without any gang API: nodes and pods are still watched (and
/// `/healthz` turns ready), and a PodGroup CRD installed later is picked up
/// without a restart.
#[tokio::test(start_paused = true)]
async fn without_gang_apis_the_view_is_still_watched_and_a_late_crd_is_picked_up() {
    let (client, mut handle) = mock();
    let f = Fixture::new(60_000);
    let topo = dgx_profile_json();
    let dgx = node("dgx0", &[("nvidia.com/gpu", "8")], &[], Some(&topo));
    let mut running = pod("ns", "train-0", "uid-0", &[("nvidia.com/gpu", "2")], &[]);
    running["spec"]["nodeName"] = json!("dgx0");
    running["status"]["phase"] = json!("Running");
    let state = f.state.clone();
    let task = tokio::spawn(watch::run(client, state.clone()));

    let mut watched = BTreeSet::new();
    let mut held = Vec::new();
    let mut crd_installed = false;
    let mut probes = 0;
    let done = tokio::time::timeout(Duration::from_secs(24 * 3600), async {
        while let Some((req, send)) = handle.next_request().await {
            assert_eq!(req.method(), http::Method::GET, "{}", req.uri());
            let path = req.uri().path().to_string();
            if query(&req).contains("watch=true") {
                held.push(send);
                watched.insert(path.clone());
                if path == "/api/v1/pods" {
                    // Pods listed: the running pod's GPUs are taken.
                    assert_eq!(state.view().pod_state("uid-0").map(|(n, ..)| n), Some("dgx0".into()));
                    crd_installed = true;
                }
                if path == "/apis/scheduling.x-k8s.io/v1alpha1/podgroups" {
                    return;
                }
                continue;
            }
            let resp = match path.as_str() {
                "/apis/scheduling.x-k8s.io/v1alpha1" => {
                    probes += 1;
                    if crd_installed {
                        respond(
                            StatusCode::OK,
                            resources("scheduling.x-k8s.io/v1alpha1", &[("podgroups", "PodGroup")]),
                        )
                    } else {
                        not_served()
                    }
                }
                // Nor any owner kind gangs are inferred from.
                "/apis/scheduling.k8s.io/v1alpha1"
                | "/apis/scheduling.k8s.io/v1alpha2"
                | "/apis/scheduling.k8s.io/v1beta1"
                | "/apis/batch/v1"
                | "/apis/jobset.x-k8s.io/v1alpha2"
                | "/apis/kubeflow.org/v1"
                | "/apis/kubeflow.org/v2beta1"
                | "/apis/leaderworkerset.x-k8s.io/v1" => not_served(),
                "/api/v1/nodes" => respond(StatusCode::OK, list("v1", "NodeList", "10", vec![dgx.clone()])),
                "/api/v1/pods" => respond(StatusCode::OK, list("v1", "PodList", "10", vec![running.clone()])),
                "/apis/scheduling.x-k8s.io/v1alpha1/podgroups" => respond(
                    StatusCode::OK,
                    list(
                        "scheduling.x-k8s.io/v1alpha1",
                        "PodGroupList",
                        "11",
                        vec![json!({"apiVersion": "scheduling.x-k8s.io/v1alpha1", "kind": "PodGroup",
                                    "metadata": {"name": "job", "namespace": "ns", "resourceVersion": "11"},
                                    "spec": {"minMember": 3}})],
                    ),
                ),
                other => panic!("unexpected request {other}?{}", query(&req)),
            };
            send.send_response(resp);
        }
        panic!("the watches stopped asking the API (watched so far: {watched:?})");
    })
    .await;
    assert!(done.is_ok(), "the watches stalled (watched so far: {watched:?})");
    assert!(state.ready.load(Ordering::Relaxed), "nodes and pods listed: ready");
    assert!(watched.contains("/api/v1/nodes"), "{watched:?}");
    assert!(state.view().has_node("dgx0"));
    assert!(probes >= 2, "asked again after the first 404");
    let p: LeanPod = serde_json::from_value(member_of("job")).expect("pod");
    let r = k8s::gang_ref(&p).expect("member");
    assert_eq!(state.gangs.read().unwrap().resolve(&r), Ok(Some(3)));
    task.abort();
    drop(held);
}

fn member_of(group: &str) -> Value {
    pod(
        "ns",
        "m-0",
        "uid-m-0",
        &[("nvidia.com/gpu", "8")],
        &[("scheduling.x-k8s.io/pod-group", group)],
    )
}

/// 1.37 serves PodGroups as `v1beta1`: detected, watched in place of
/// `v1alpha2`, and its objects resolve members as before.
#[tokio::test(start_paused = true)]
async fn v1beta1_pod_groups_are_detected_and_watched_in_place_of_v1alpha2() {
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        for (path, resp) in [
            ("/apis/scheduling.x-k8s.io/v1alpha1", not_served()),
            ("/apis/scheduling.k8s.io/v1alpha1", not_served()),
            (
                "/apis/scheduling.k8s.io/v1alpha2",
                respond(
                    StatusCode::OK,
                    resources("scheduling.k8s.io/v1alpha2", &[("podgroups", "PodGroup")]),
                ),
            ),
            (
                "/apis/scheduling.k8s.io/v1beta1",
                respond(
                    StatusCode::OK,
                    resources(
                        "scheduling.k8s.io/v1beta1",
                        &[("workloads", "Workload"), ("podgroups", "PodGroup")],
                    ),
                ),
            ),
        ] {
            let (req, send) = next(&mut handle).await;
            assert_eq!(req.uri().path(), path);
            send.send_response(resp);
        }
        handle
    });
    let served = watch::detect(&client).await;
    let mut handle = server.await.expect("server checks");
    assert!(served.pod_groups_v1beta1 && served.pod_groups_v1alpha2);
    assert_eq!(
        watch::to_watch(&served),
        vec![
            GangKind::PodGroup,
            GangKind::Workload,
            GangKind::UpstreamPodGroupV1beta1
        ]
    );
    let only_alpha = Served {
        pod_groups_v1alpha2: true,
        ..Served::default()
    };
    assert!(watch::to_watch(&only_alpha).contains(&GangKind::UpstreamPodGroup));

    const PATH: &str = "/apis/scheduling.k8s.io/v1beta1/podgroups";
    let f = Fixture::new(60_000);
    let state = f.state.clone();
    let task = tokio::spawn(watch::watch_gang_objects(
        client,
        state.clone(),
        GangKind::UpstreamPodGroupV1beta1,
    ));
    let (req, send) = next(&mut handle).await;
    expect_list(&req, PATH);
    send.send_response(respond(
        StatusCode::OK,
        list(
            "scheduling.k8s.io/v1beta1",
            "PodGroupList",
            "3",
            vec![upstream_pod_group_v1beta1("ring", "3", 4)],
        ),
    ));
    let (req, send) = next(&mut handle).await;
    expect_watch(&req, PATH, "3");
    assert_eq!(resolve(&state, scheduling_group("ring")), Ok(Some(4)));
    send.send_response(events(&[("DELETED", upstream_pod_group_v1beta1("ring", "4", 4))]));
    let (req, _held) = next(&mut handle).await;
    expect_watch(&req, PATH, "4");
    assert!(resolve(&state, scheduling_group("ring")).is_err());
    task.abort();
}

/// `/healthz` turns ready only once nodes *and* pods are listed. The pod
/// list is asked for only after the node list is in (a bound gang member
/// rebuilds its reservation only over known nodes), and while it is
/// outstanding the extender is not ready.
#[tokio::test(start_paused = true)]
async fn not_ready_until_nodes_and_pods_are_listed() {
    let (client, mut handle) = mock();
    let f = Fixture::new(60_000);
    let state = f.state.clone();
    let task = tokio::spawn(watch::run(client, state.clone()));
    let mut held = Vec::new();
    // Discovery (nothing served), then the node list; no pod list before it.
    let node_list = loop {
        let (req, send) = next(&mut handle).await;
        let path = req.uri().path().to_string();
        if query(&req).contains("watch=true") {
            held.push(send);
            continue;
        }
        match path.as_str() {
            "/api/v1/nodes" => break send,
            p if p.starts_with("/apis/") && !p.ends_with("podgroups") && !p.ends_with("workloads") => {
                send.send_response(not_served())
            }
            other => panic!("unexpected request {other} before the node list"),
        }
    };
    assert!(!state.ready.load(Ordering::Relaxed), "nothing listed: not ready");
    let topo = dgx_profile_json();
    let dgx = node("dgx0", &[("nvidia.com/gpu", "8")], &[], Some(&topo));
    node_list.send_response(respond(StatusCode::OK, list("v1", "NodeList", "6", vec![dgx])));
    // The node watch follows its list, and the pod list is asked for.
    let pod_list = loop {
        let (req, send) = next(&mut handle).await;
        if req.uri().path() == "/api/v1/pods" && !query(&req).contains("watch=true") {
            break send;
        }
        held.push(send);
    };
    assert!(state.view().has_node("dgx0"));
    assert!(
        !state.ready.load(Ordering::Relaxed),
        "nodes listed, pods not yet: not ready"
    );
    pod_list.send_response(respond(StatusCode::OK, list("v1", "PodList", "7", vec![])));
    // The pod watch follows its list; by then the list is applied.
    loop {
        let (req, send) = next(&mut handle).await;
        let is_pod_watch = req.uri().path() == "/api/v1/pods" && query(&req).contains("watch=true");
        held.push(send);
        if is_pod_watch {
            break;
        }
    }
    assert!(state.ready.load(Ordering::Relaxed));
    task.abort();
}

/// Discovery of the owner kinds gangs are inferred from: one request per
/// API version, in order; CRDs not installed (404) are not served, and an
/// MPIJob `v1` is not watched where `v2beta1` serves the same objects.
#[tokio::test]
async fn owner_apis_are_detected_by_discovery() {
    use railyard_scheduler::owners::watch::{self as owners, OwnerApi};
    let (client, mut handle) = mock();
    let server = tokio::spawn(async move {
        for (path, resp) in [
            (
                "/apis/batch/v1",
                respond(
                    StatusCode::OK,
                    resources("batch/v1", &[("jobs", "Job"), ("cronjobs", "CronJob")]),
                ),
            ),
            ("/apis/jobset.x-k8s.io/v1alpha2", not_served()),
            (
                "/apis/kubeflow.org/v1",
                respond(
                    StatusCode::OK,
                    resources("kubeflow.org/v1", &[("pytorchjobs", "PyTorchJob")]),
                ),
            ),
            (
                "/apis/kubeflow.org/v2beta1",
                respond(
                    StatusCode::OK,
                    resources("kubeflow.org/v2beta1", &[("mpijobs", "MPIJob")]),
                ),
            ),
            (
                "/apis/kubeflow.org/v1",
                respond(
                    StatusCode::OK,
                    resources("kubeflow.org/v1", &[("pytorchjobs", "PyTorchJob")]),
                ),
            ),
            ("/apis/leaderworkerset.x-k8s.io/v1", not_served()),
        ] {
            let (req, send) = next(&mut handle).await;
            assert_eq!(req.method(), http::Method::GET);
            assert_eq!(req.uri().path(), path);
            send.send_response(resp);
        }
    });
    let served = owners::detect(&client).await;
    server.await.expect("server checks");
    assert_eq!(
        served,
        vec![
            (OwnerApi::Job, true),
            (OwnerApi::JobSet, false),
            (OwnerApi::PyTorchJob, true),
            (OwnerApi::MpiJobV2beta1, true),
            (OwnerApi::MpiJobV1, false),
            (OwnerApi::LeaderWorkerSet, false),
        ]
    );
    let watched: Vec<OwnerApi> = owners::to_watch(&served).into_iter().map(|(a, _)| a).collect();
    assert!(!watched.contains(&OwnerApi::MpiJobV1), "{watched:?}");
    assert!(
        watched.contains(&OwnerApi::JobSet),
        "asked about again later: {watched:?}"
    );
}
