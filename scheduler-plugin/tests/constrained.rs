//! GPU-product constraints through the extender's HTTP API: pods select a
//! product by nodeSelector or required node affinity on
//! `nvidia.com/gpu.product`, and the score of every other pod weighs the
//! demand that can only use that product.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{Value, json};

const T4: &str = "Tesla-T4";
const A100: &str = "NVIDIA-A100-SXM4-40GB";
const NODES: [&str; 4] = ["t4-0", "t4-1", "a100-0", "a100-1"];

fn gpu_pod(uid: &str) -> Value {
    pod("ns", uid, uid, &[("nvidia.com/gpu", "1")], &[])
}

fn select_by_node_selector(mut p: Value, product: &str) -> Value {
    p["spec"]["nodeSelector"] = json!({"nvidia.com/gpu.product": product});
    p
}

fn select_by_affinity(mut p: Value, products: &[&str]) -> Value {
    p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "nvidia.com/gpu.product", "operator": "In", "values": products},
        ]}],
    }}});
    p
}

/// Two T4 and two A100 nodes of 4 GPUs; t4-0 and a100-0 each run two
/// 1-GPU pods; those on t4-0 are `t4_pod`s.
fn cluster(t4_pod: impl Fn(Value) -> Value) -> Fixture {
    let f = Fixture::new(60_000);
    for (name, product) in [("t4-0", T4), ("t4-1", T4), ("a100-0", A100), ("a100-1", A100)] {
        f.add_node(&node(
            name,
            &[("nvidia.com/gpu", "4")],
            &[("nvidia.com/gpu.product", product)],
            None,
        ));
    }
    for (uid, host, gpu) in [
        ("t4-a", "t4-0", 0),
        ("t4-b", "t4-0", 1),
        ("any-a", "a100-0", 0),
        ("any-b", "a100-0", 1),
    ] {
        let mut p = gpu_pod(uid);
        if host.starts_with("t4") {
            p = t4_pod(p);
        }
        p["spec"]["nodeName"] = json!(host);
        p["status"]["phase"] = json!("Running");
        p["metadata"]["annotations"] = json!({"railyard.dev/gpus": gpu.to_string()});
        f.observe(&p);
    }
    // The upkeep tick rebuilds the mix from the pods placed.
    f.state.tick();
    f
}

async fn scores(f: &Fixture, p: &Value, nodes: &[&str]) -> BTreeMap<String, i64> {
    let r = f
        .post_json("prioritize", &json!({"Pod": p, "Nodes": null, "NodeNames": nodes}))
        .await;
    r.as_array()
        .expect("host priorities")
        .iter()
        .map(|s| {
            (
                s["Host"].as_str().unwrap_or("").to_string(),
                s["Score"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// Without constrained pods the busy T4 and the busy A100 score alike for
/// an unconstrained pod; once the T4 pods select their product (either
/// way), the A100 scores higher: the T4s are kept for the demand that can
/// only use them.
#[tokio::test]
async fn prioritize_weighs_constrained_demand() {
    let plain = scores(&cluster(|p| p), &gpu_pod("next"), &NODES).await;
    assert_eq!(plain["t4-0"], plain["a100-0"], "{plain:?}");
    for f in [
        cluster(|p| select_by_node_selector(p, T4)),
        cluster(|p| select_by_affinity(p, &[T4])),
    ] {
        let s = scores(&f, &gpu_pod("next"), &NODES).await;
        assert!(s["a100-0"] > s["t4-0"], "{s:?}");
        assert_eq!(s["a100-0"], 10, "{s:?}");
    }
}

/// A T4-only pod, given the T4 nodes kube-scheduler's own filter leaves,
/// packs onto the busy one; the A100s would score 0 were they passed.
#[tokio::test]
async fn a_t4_only_pod_still_finds_a_t4() {
    let f = cluster(|p| select_by_node_selector(p, T4));
    let pod = select_by_affinity(gpu_pod("t4-late"), &[T4]);
    let s = scores(&f, &pod, &["t4-0", "t4-1"]).await;
    assert_eq!((s["t4-0"], s["t4-1"]), (10, 0), "{s:?}");
    let s = scores(&f, &pod, &NODES).await;
    assert_eq!((s["a100-0"], s["a100-1"]), (0, 0), "{s:?}");
}
