//! Every verb through `Router::oneshot`, including malformed bodies.

mod common;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use common::*;
use railyard_scheduler::app::UNKNOWN_NODE;
use serde_json::{Value, json};

fn shared_nodes(f: &Fixture) {
    let res = [("nvidia.com/gpu.shared", "8")];
    let labels = [("nvidia.com/gpu.count", "2"), ("nvidia.com/gpu.replicas", "4")];
    f.add_node(&node("s1", &res, &labels, None));
    f.add_node(&node("s2", &res, &labels, None));
    f.add_node(&node("g1", &[("nvidia.com/gpu", "2")], &[], None));
}

#[tokio::test]
async fn filter_speaks_extender_v1_in_node_cache_mode() {
    let f = Fixture::new(60_000);
    shared_nodes(&f);
    // s1: two replicas used on each GPU (half of each GPU): 4 replicas free
    // on the node, but no single GPU has 3.
    for (i, gpu) in [(0, "0"), (1, "1")] {
        let mut p = pod(
            "ns",
            &format!("u{i}"),
            &format!("uid-u{i}"),
            &[("nvidia.com/gpu.shared", "2")],
            &[],
        );
        p["spec"]["nodeName"] = json!("s1");
        p["metadata"]["annotations"] = json!({"railyard.dev/gpus": gpu});
        f.observe(&p);
    }
    let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu.shared", "3")], &[]);
    let r = f
        .post_json(
            "filter",
            &json!({"Pod": p, "Nodes": null, "NodeNames": ["s1", "s2", "g1", "nope"]}),
        )
        .await;
    let obj = r.as_object().expect("object");
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    for k in [
        "Nodes",
        "NodeNames",
        "FailedNodes",
        "FailedAndUnresolvableNodes",
        "Error",
    ] {
        assert!(keys.contains(&k), "missing {k} in {r}");
    }
    assert_eq!(r["Nodes"], Value::Null);
    assert_eq!(r["NodeNames"], json!(["s2"]));
    assert_eq!(r["FailedNodes"]["s1"], "no single GPU has enough free share");
    assert!(r["FailedNodes"]["nope"].is_string());
    assert_eq!(
        r["FailedAndUnresolvableNodes"]["g1"],
        "node advertises no nvidia.com/gpu.shared"
    );
    assert_eq!(r["Error"], "");
}

#[tokio::test]
async fn filter_with_full_nodes_returns_node_objects() {
    let f = Fixture::new(60_000);
    let a = node("a", &[("nvidia.com/gpu", "4")], &[], None);
    let b = node("b", &[("nvidia.com/gpu", "1")], &[], None);
    // Nodes come from the watch (here: the fixture), never from requests.
    f.add_node(&a);
    f.add_node(&b);
    let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu", "2")], &[]);
    let r = f
        .post_json(
            "filter",
            &json!({"Pod": p, "Nodes": {"metadata": {}, "items": [a, b]}, "NodeNames": null}),
        )
        .await;
    assert_eq!(r["NodeNames"], Value::Null);
    let items = r["Nodes"]["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["name"], "a");
    assert!(r["FailedAndUnresolvableNodes"]["b"].is_string());
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_message() {
    let f = Fixture::new(60_000);
    for verb in ["filter", "prioritize", "bind", "preempt"] {
        for body in [&b""[..], b"{", b"[1,2]", b"{\"Pod\": 7}", b"null"] {
            let (status, msg) = f.post(verb, body.to_vec()).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{verb} {:?}",
                String::from_utf8_lossy(body)
            );
            let msg = String::from_utf8_lossy(&msg);
            assert!(msg.starts_with(verb) && msg.len() > verb.len() + 5, "{msg}");
        }
    }
    // Parses, but is not a request that can be served.
    for verb in ["filter", "prioritize"] {
        let (status, msg) = f.post(verb, b"{\"NodeNames\": [\"a\"]}".to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&msg).contains("no Pod"));
        let p = pod("ns", "p", "u", &[], &[]);
        let (status, msg) = f.post(verb, serde_json::to_vec(&json!({"Pod": p})).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&msg).contains("neither NodeNames nor Nodes"));
    }
}

#[tokio::test]
async fn requests_it_cannot_serve_get_error_in_the_result() {
    let f = Fixture::new(60_000);
    shared_nodes(&f);
    let p = pod(
        "ns",
        "p",
        "u",
        &[("nvidia.com/gpu", "1"), ("nvidia.com/gpu.shared", "1")],
        &[],
    );
    let r = f.post_json("filter", &json!({"Pod": p, "NodeNames": ["g1"]})).await;
    assert!(r["Error"].as_str().unwrap().contains("both"), "{r}");
    // Bind of a pod never filtered.
    let b = f
        .post_json(
            "bind",
            &json!({"PodName": "x", "PodNamespace": "ns", "PodUID": "ux", "Node": "g1"}),
        )
        .await;
    assert!(!b["Error"].as_str().unwrap().is_empty());
    let b = f
        .post_json(
            "bind",
            &json!({"PodName": "", "PodNamespace": "ns", "PodUID": "", "Node": ""}),
        )
        .await;
    assert!(b["Error"].as_str().unwrap().contains("required"));
}

#[tokio::test]
async fn prioritize_scores_every_node_0_to_10_in_order() {
    let f = Fixture::new(60_000);
    shared_nodes(&f);
    let mut used = pod("ns", "u", "uid-u", &[("nvidia.com/gpu.shared", "2")], &[]);
    used["spec"]["nodeName"] = json!("s2");
    f.observe(&used);
    f.state.tick();
    let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu.shared", "2")], &[]);
    // Without a preceding filter (computed), then after one (cached).
    for _ in 0..2 {
        let r = f
            .post_json(
                "prioritize",
                &json!({"Pod": p, "Nodes": null, "NodeNames": ["s1", "s2", "g1"]}),
            )
            .await;
        let list = r.as_array().expect("HostPriorityList");
        let hosts: Vec<&str> = list.iter().map(|h| h["Host"].as_str().unwrap()).collect();
        assert_eq!(hosts, vec!["s1", "s2", "g1"]);
        assert!(list.iter().all(|h| (0..=10).contains(&h["Score"].as_i64().unwrap())));
        assert_eq!(list[1]["Score"], 10, "{r}");
        assert!(list[0]["Score"].as_i64().unwrap() < 10);
        assert_eq!(list[2]["Score"], 0);
        f.post_json("filter", &json!({"Pod": p, "NodeNames": ["s1", "s2", "g1"]}))
            .await;
    }
}

#[tokio::test]
async fn bind_records_the_decision_and_never_double_books() {
    let f = Fixture::new(60_000);
    shared_nodes(&f);
    let a = pod("ns", "a", "uid-a", &[("nvidia.com/gpu", "2")], &[]);
    let b = pod("ns", "b", "uid-b", &[("nvidia.com/gpu", "1")], &[]);
    // Both pass filter against the same state...
    for p in [&a, &b] {
        let r = f.post_json("filter", &json!({"Pod": p, "NodeNames": ["g1"]})).await;
        assert_eq!(r["NodeNames"], json!(["g1"]));
    }
    // ...the first bind takes both GPUs, the second is refused.
    let ra = f
        .post_json(
            "bind",
            &json!({"PodName": "a", "PodNamespace": "ns", "PodUID": "uid-a", "Node": "g1"}),
        )
        .await;
    assert_eq!(ra["Error"], "");
    let rb = f
        .post_json(
            "bind",
            &json!({"PodName": "b", "PodNamespace": "ns", "PodUID": "uid-b", "Node": "g1"}),
        )
        .await;
    assert!(rb["Error"].as_str().unwrap().contains("no longer fits"), "{rb}");
    let bound = f.binder.bound.lock().unwrap().clone();
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].node, "g1");
    assert_eq!(bound[0].uid, "uid-a");
    assert_eq!(bound[0].annotations["railyard.dev/gpus"], "0,1");
    // A failed API binding is undone.
    f.binder.fail_nodes.lock().unwrap().push("s1".into());
    let c = pod("ns", "c", "uid-c", &[("nvidia.com/gpu.shared", "4")], &[]);
    f.post_json("filter", &json!({"Pod": c, "NodeNames": ["s1"]})).await;
    let rc = f
        .post_json(
            "bind",
            &json!({"PodName": "c", "PodNamespace": "ns", "PodUID": "uid-c", "Node": "s1"}),
        )
        .await;
    assert!(rc["Error"].as_str().unwrap().contains("refused"));
    assert!(f.state.view().pod_state("uid-c").is_none());
}

#[tokio::test]
async fn preempt_keeps_nodes_where_victims_free_one_gpu() {
    let f = Fixture::new(60_000);
    shared_nodes(&f);
    // s1: GPU 0 has 3 replicas used by v1; GPU 1 has 3 used by v2.
    for (v, gpu) in [("v1", "0"), ("v2", "1")] {
        let mut p = pod("ns", v, &format!("uid-{v}"), &[("nvidia.com/gpu.shared", "3")], &[]);
        p["spec"]["nodeName"] = json!("s1");
        p["metadata"]["annotations"] = json!({"railyard.dev/gpus": gpu});
        f.observe(&p);
        let mut q = p.clone();
        q["spec"]["nodeName"] = json!("s2");
        q["metadata"]["uid"] = json!(format!("uid-{v}-s2"));
        f.observe(&q);
    }
    // A pod needing a whole GPU's replicas: evicting v1 frees GPU 0 on s1;
    // on s2 the victim named (a 1-replica pod that is not there) frees nothing.
    let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu.shared", "4")], &[]);
    let args = json!({
        "Pod": p,
        "NodeNameToVictims": null,
        "NodeNameToMetaVictims": {
            "s1": {"Pods": [{"UID": "uid-v1"}], "NumPDBViolations": 0},
            "s2": {"Pods": [{"UID": "ghost"}], "NumPDBViolations": 1},
        },
    });
    let r = f.post_json("preempt", &args).await;
    let kept = r["NodeNameToMetaVictims"].as_object().expect("map");
    assert_eq!(kept.keys().collect::<Vec<_>>(), vec!["s1"]);
    assert_eq!(r["NodeNameToMetaVictims"]["s1"]["Pods"][0]["UID"], "uid-v1");
    // Full victims (not nodeCacheCapable) are answered as meta victims.
    let mut v2 = pod("ns", "v2", "uid-v2", &[("nvidia.com/gpu.shared", "3")], &[]);
    v2["spec"]["nodeName"] = json!("s1");
    let args = json!({"Pod": p, "NodeNameToVictims": {"s1": {"Pods": [v2], "NumPDBViolations": 0}}});
    let r = f.post_json("preempt", &args).await;
    assert_eq!(r["NodeNameToMetaVictims"]["s1"]["Pods"][0]["UID"], "uid-v2");
}

#[tokio::test]
async fn healthz_and_metrics() {
    let f = Fixture::new(60_000);
    shared_nodes(&f);
    let (s, body) = f.get("/healthz").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "ok"));
    let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu", "1")], &[]);
    f.post_json("filter", &json!({"Pod": p, "NodeNames": ["g1"]})).await;
    let _ = f.post("filter", b"{".to_vec()).await;
    f.state.tick();
    let (s, m) = f.get("/metrics").await;
    assert_eq!(s, StatusCode::OK);
    assert!(m.contains("railyard_scheduler_request_duration_seconds_bucket{"), "{m}");
    assert!(m.contains("verb=\"filter\""));
    assert!(
        m.contains("railyard_scheduler_decisions_total{verb=\"filter\",outcome=\"bad_request\"} 1"),
        "{m}"
    );
    assert!(m.contains("railyard_scheduler_nodes 3"));
    assert!(m.contains("railyard_scheduler_gang_reservations{state=\"filling\"} 0"));
    assert!(m.contains("railyard_scheduler_mislabelled_nodes 0"), "{m}");
    // A node whose topology labels do not parse is counted (and planned
    // without topology; the other nodes keep theirs).
    let topo = dgx_profile_json();
    f.add_node(&node(
        "bad-labels",
        &[("nvidia.com/gpu", "8")],
        &[("fabric.topograph.run/tier-1", "spine0")],
        Some(&topo),
    ));
    f.state.tick();
    let (_, m) = f.get("/metrics").await;
    assert!(m.contains("railyard_scheduler_mislabelled_nodes 1"), "{m}");
    // Unknown paths are 404, the wrong method 405.
    assert_eq!(f.get("/railyard/filter").await.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(f.get("/nope").await.0, StatusCode::NOT_FOUND);
}

/// Finding 3: a full `Nodes` list (kube-scheduler without nodeCacheCapable)
/// used to add every unknown node to the view for good. Now nodes come from
/// the watch only: unknown ones are answered as failed and forgotten, and a
/// known node's copy in the request does not overwrite the watch's.
#[tokio::test]
async fn nodes_in_requests_never_enter_the_view() {
    let f = Fixture::new(60_000);
    f.add_node(&node("real", &[("nvidia.com/gpu", "8")], &[], None));
    let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu", "1")], &[]);
    for round in 0..5 {
        let mut items: Vec<Value> = (0..40)
            .map(|i| node(&format!("ghost-{round}-{i}"), &[("nvidia.com/gpu", "8")], &[], None))
            .collect();
        // The real node as the request sees it: no GPU (a stale or forged
        // copy); the watch's view (8 GPUs) decides.
        items.push(node("real", &[], &[], None));
        let list = json!({"metadata": {}, "items": items});
        let r = f
            .post_json("filter", &json!({"Pod": p, "Nodes": list, "NodeNames": null}))
            .await;
        let passed: Vec<&str> = r["Nodes"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str())
            .collect();
        assert_eq!(passed, vec!["real"], "{r}");
        let failed = r["FailedNodes"].as_object().expect("FailedNodes");
        assert_eq!(failed.len(), 40, "{r}");
        for (name, why) in failed {
            assert!(name.starts_with("ghost-"), "{name}");
            assert_eq!(why, UNKNOWN_NODE);
        }
        let scores = f
            .post_json("prioritize", &json!({"Pod": p, "Nodes": list, "NodeNames": null}))
            .await;
        for h in scores.as_array().expect("HostPriorityList") {
            if h["Host"] != "real" {
                assert_eq!(h["Score"], 0, "{h}");
            }
        }
        assert_eq!(f.state.view().node_count(), 1, "round {round}");
    }
    // NodeNames mode answers unknown names the same way.
    let r = f
        .post_json("filter", &json!({"Pod": p, "NodeNames": ["real", "ghost-x"]}))
        .await;
    assert_eq!(r["NodeNames"], json!(["real"]));
    assert_eq!(r["FailedNodes"]["ghost-x"], UNKNOWN_NODE);
    // Preempt keeps no node the view does not know (filter would refuse it).
    let args = json!({
        "Pod": p,
        "NodeNameToMetaVictims": {
            "ghost-0-0": {"Pods": [], "NumPDBViolations": 0},
            "real": {"Pods": [], "NumPDBViolations": 0},
        },
    });
    let r = f.post_json("preempt", &args).await;
    let kept: Vec<&String> = r["NodeNameToMetaVictims"].as_object().expect("map").keys().collect();
    assert_eq!(kept, vec!["real"], "{r}");
    f.state.tick();
    let (_, m) = f.get("/metrics").await;
    assert!(m.contains("railyard_scheduler_nodes 1\n"), "{m}");
}

/// How often `"key":` occurs in the raw JSON text.
fn key_count(raw: &str, key: &str) -> usize {
    raw.matches(&format!("\"{key}\":")).count()
}

/// Finding 11: a request naming a node twice gave duplicate keys in the
/// `FailedNodes` map. Every key is written once; `NodeNames` keeps what was
/// sent.
#[tokio::test]
async fn duplicate_node_names_give_unique_map_keys() {
    let f = Fixture::new(60_000);
    shared_nodes(&f);
    // Known names that pass twice stay twice in the list; unknown ones fail
    // once.
    let small = pod("ns", "small", "uid-small", &[("nvidia.com/gpu", "1")], &[]);
    let r = f
        .post_json(
            "filter",
            &json!({"Pod": small, "NodeNames": ["g1", "g1", "ghost", "ghost"]}),
        )
        .await;
    assert_eq!(r["NodeNames"], json!(["g1", "g1"]));
    assert_eq!(r["FailedNodes"].as_object().expect("map").len(), 1);
    // g1 full (failed: may free up), s1/s2 without whole GPUs (unresolvable).
    let mut used = pod("ns", "used", "uid-used", &[("nvidia.com/gpu", "2")], &[]);
    used["spec"]["nodeName"] = json!("g1");
    f.observe(&used);
    let names = json!(["nope", "g1", "nope", "s1", "g1", "s1", "nope", "s2"]);
    let (status, raw) = f
        .post(
            "filter",
            serde_json::to_vec(&json!({"Pod": small, "NodeNames": names})).expect("json"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let raw = String::from_utf8(raw).expect("utf-8");
    for key in ["nope", "g1", "s1", "s2"] {
        assert_eq!(key_count(&raw, key), 1, "{key} in {raw}");
    }
    let r: Value = serde_json::from_str(&raw).expect("json");
    let failed: BTreeMap<String, String> = serde_json::from_value(r["FailedNodes"].clone()).expect("map");
    assert_eq!(failed.keys().collect::<Vec<_>>(), vec!["g1", "nope"], "{raw}");
    assert_eq!(failed["nope"], UNKNOWN_NODE);
    let unresolvable: BTreeMap<String, String> =
        serde_json::from_value(r["FailedAndUnresolvableNodes"].clone()).expect("map");
    assert_eq!(unresolvable.keys().collect::<Vec<_>>(), vec!["s1", "s2"], "{raw}");
    // A gang waiting for members fails every node: once each.
    let gang = pod(
        "ns",
        "m0",
        "uid-m0",
        &[("nvidia.com/gpu", "1")],
        &[("scheduling.x-k8s.io/pod-group", "pg")],
    );
    let (_, raw) = f
        .post(
            "filter",
            serde_json::to_vec(&json!({"Pod": gang, "NodeNames": ["g1", "g1", "x", "x"]})).expect("json"),
        )
        .await;
    let raw = String::from_utf8(raw).expect("utf-8");
    assert_eq!(key_count(&raw, "g1"), 1, "{raw}");
    assert_eq!(key_count(&raw, "x"), 1, "{raw}");
}

/// Finding 8: the body limit. A body just above it gets 413 (whether or not
/// it declares its length); one just at it, and a nodeCacheCapable request
/// for 10,000 nodes with the longest legal names, are served.
#[tokio::test]
async fn bodies_above_the_limit_get_413() {
    let f = Fixture::new(60_000);
    shared_nodes(&f);
    let limit = f.state.request_limits().max_request_bytes;
    let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu", "1")], &[]);
    // 10,000 names of 253 bytes (DNS subdomain maximum), all distinct.
    let names: Vec<String> = (0..10_000).map(|i| format!("{i:05}-{}", "n".repeat(247))).collect();
    assert!(names.iter().all(|n| n.len() == 253));
    let body = serde_json::to_vec(&json!({"Pod": p, "Nodes": null, "NodeNames": names})).expect("json");
    assert!(body.len() > 2_500_000 && body.len() < limit, "{}", body.len());
    let r = f.post("filter", body).await;
    assert_eq!(r.0, StatusCode::OK, "{}", String::from_utf8_lossy(&r.1));
    let r: Value = serde_json::from_slice(&r.1).expect("json");
    assert_eq!(r["FailedNodes"].as_object().expect("map").len(), 10_000);
    // Exactly the limit: valid JSON padded with spaces.
    let mut at = serde_json::to_vec(&json!({"Pod": p, "NodeNames": ["g1"]})).expect("json");
    at.resize(limit, b' ');
    let (status, _) = f.post("filter", at.clone()).await;
    assert_eq!(status, StatusCode::OK);
    at.push(b' ');
    for verb in ["filter", "prioritize", "bind", "preempt"] {
        let (status, msg) = f.post(verb, at.clone()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{verb}");
        assert!(String::from_utf8_lossy(&msg).contains("--max-request-bytes"));
    }
    // A declared length above the limit is refused before the body is read.
    let req = axum::http::Request::post(format!("{PREFIX}/filter"))
        .header("content-length", (limit + 1).to_string())
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = tower::ServiceExt::oneshot(railyard_scheduler::app(f.state.clone()), req)
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.headers()["connection"], "close");
    let (_, m) = f.get("/metrics").await;
    assert!(
        m.contains("railyard_scheduler_requests_refused_total{reason=\"body_too_large\"} 5"),
        "{m}"
    );
}

/// Finding 8 with a configured limit: `--max-request-bytes`.
#[tokio::test]
async fn the_body_limit_is_configurable() {
    let mut f = Fixture::new(60_000);
    let limits = railyard_scheduler::app::RequestLimits {
        max_request_bytes: 4096,
        ..Default::default()
    };
    let state = std::sync::Arc::try_unwrap(f.state).expect("sole owner");
    f.state = std::sync::Arc::new(state.with_request_limits(limits));
    shared_nodes(&f);
    let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu", "1")], &[]);
    let mut body = serde_json::to_vec(&json!({"Pod": p, "NodeNames": ["g1"]})).expect("json");
    body.resize(4096, b' ');
    assert_eq!(f.post("filter", body.clone()).await.0, StatusCode::OK);
    body.push(b' ');
    assert_eq!(f.post("filter", body).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

/// Finding 8, across requests: bodies held at once are bounded by
/// `max_inflight_bytes`, whatever the number of connections. A request
/// whose body would pass the budget waits for the one holding it.
#[tokio::test]
async fn bodies_in_flight_share_one_budget() {
    use futures_util::StreamExt as _;
    use tower::ServiceExt as _;

    let mut f = Fixture::new(60_000);
    let limits = railyard_scheduler::app::RequestLimits {
        max_request_bytes: 4096,
        max_inflight_bytes: 4096,
        body_timeout: std::time::Duration::from_secs(600),
    };
    let state = std::sync::Arc::try_unwrap(f.state).expect("sole owner");
    f.state = std::sync::Arc::new(state.with_request_limits(limits));
    shared_nodes(&f);
    let p = pod("ns", "p", "uid-p", &[("nvidia.com/gpu", "1")], &[]);
    let mut whole = serde_json::to_vec(&json!({"Pod": p, "NodeNames": ["g1"]})).expect("json");
    whole.resize(4096, b' ');
    // A: declares the whole budget, sends its body only when told.
    let (tx, rx) = tokio::sync::mpsc::channel::<axum::body::Bytes>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    })
    .boxed();
    let req = |body: axum::body::Body, len: usize| {
        axum::http::Request::post(format!("{PREFIX}/filter"))
            .header("content-length", len.to_string())
            .body(body)
            .expect("request")
    };
    let a = tokio::spawn(
        railyard_scheduler::app(f.state.clone()).oneshot(req(axum::body::Body::from_stream(stream), 4096)),
    );
    // B asks only once A holds the whole budget (A then waits for its body).
    let taken = async {
        while f.state.inflight_free_bytes() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), taken)
        .await
        .expect("A never took the budget");
    let small = serde_json::to_vec(&json!({"Pod": p, "NodeNames": ["g1"]})).expect("json");
    let len = small.len();
    let b = tokio::spawn(railyard_scheduler::app(f.state.clone()).oneshot(req(axum::body::Body::from(small), len)));
    // Waiting proves nothing by itself, but without the budget B is served
    // at once and fails here.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!b.is_finished(), "B was served while A held the whole budget");
    tx.send(axum::body::Bytes::from(whole)).await.expect("send");
    drop(tx);
    let patience = std::time::Duration::from_secs(30);
    let a = tokio::time::timeout(patience, a)
        .await
        .expect("A hung")
        .expect("task")
        .expect("infallible");
    assert_eq!(a.status(), StatusCode::OK);
    let b = tokio::time::timeout(patience, b)
        .await
        .expect("B hung")
        .expect("task")
        .expect("infallible");
    assert_eq!(b.status(), StatusCode::OK);
}
