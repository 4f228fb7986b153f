//! Node objects are written by kubelets, device plugins and anyone allowed
//! to patch Nodes: a poisoned topology annotation must cost the extender
//! nothing but that node's topology.

mod common;

use common::*;
use serde_json::{Value, json};

fn dgx_profile() -> Value {
    serde_json::from_str(&dgx_profile_json()).expect("profile json")
}

fn node_object(v: &Value) -> k8s_openapi::api::core::v1::Node {
    serde_json::from_value(v.clone()).expect("node")
}

/// Finding 1: `"cpus": "0-4294967295"` made `MachineProfile::validate`
/// allocate 16 GiB and abort the extender, on every restart.
#[test]
fn an_unbounded_cpulist_costs_the_node_its_topology_only() {
    let mut p = dgx_profile();
    p["numa_nodes"][0]["cpus"] = json!("0-4294967295");
    let n = node("dgx0", &[("nvidia.com/gpu", "8")], &[], Some(&p.to_string()));
    let (input, problem) = railyard_scheduler::k8s::node_input_checked(&node_object(&n));
    assert!(input.topology.is_none());
    let why = problem.expect("a reason");
    assert!(
        why.contains("numa_nodes[0].cpus") && why.contains("4294967295"),
        "{why}"
    );
    // The node is still placed on, without topology.
    let f = Fixture::new(60_000);
    f.add_node(&n);
    assert!(f.state.view().has_node("dgx0"));
    assert_eq!(f.state.view().free_gpus("dgx0").map(|g| g.len()), Some(8));
}

/// Finding 4: 6,000 NUMA nodes in a 133 KB annotation took 2.7 s under the
/// view's write lock; now the profile is refused at its bound.
#[test]
fn too_many_numa_nodes_are_refused_with_the_field() {
    let mut p = dgx_profile();
    let numa: Vec<Value> = (0..6000).map(|i| json!({"id": i, "cpus": ""})).collect();
    p["numa_nodes"] = json!(numa);
    let text = p.to_string();
    assert!(text.len() < 256 * 1024, "{} bytes", text.len());
    let n = node("dgx0", &[("nvidia.com/gpu", "8")], &[], Some(&text));
    let (input, problem) = railyard_scheduler::k8s::node_input_checked(&node_object(&n));
    assert!(input.topology.is_none());
    let why = problem.expect("a reason");
    assert!(why.contains("numa_nodes") && why.contains("at most 1024"), "{why}");
}

/// An annotation larger than the API lets a node's annotations be is not
/// parsed at all.
#[test]
fn an_oversized_annotation_is_not_parsed() {
    let mut p = dgx_profile();
    p["description"] = json!("x".repeat(300 * 1024));
    let n = node("dgx0", &[("nvidia.com/gpu", "8")], &[], Some(&p.to_string()));
    let (input, problem) = railyard_scheduler::k8s::node_input_checked(&node_object(&n));
    assert!(input.topology.is_none());
    assert!(problem.expect("a reason").contains("more than the 262144"));
}
