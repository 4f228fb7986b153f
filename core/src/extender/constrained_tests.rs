//! GPU-product constraints in the extender's score: the mix comes from the
//! pods it sees, with their product selectors, and the score weighs how
//! much constrained demand needs each model (`packing::constraints`).

use std::collections::BTreeMap;

use super::tests::{ask, bound, node};
use super::*;

const T4: &str = "Tesla-T4";
const A100: &str = "NVIDIA-A100-SXM4-40GB";

fn only(product: &str) -> GpuProducts {
    GpuProducts::from_pod(Some(product), std::iter::empty::<Vec<Requirement>>())
}

fn one_gpu(products: GpuProducts) -> PodAsk {
    let mut a = ask(GpuAsk::Whole(1));
    a.products = products;
    a
}

/// Two T4 and two A100 nodes of 4 GPUs; t4-0 and a100-0 each run two
/// 1-GPU pods. `t4_only`: the pods on t4-0 select T4 by product.
fn cluster(t4_only: bool) -> ClusterView {
    let mut v = ClusterView::new(ViewConfig::default());
    for (name, product) in [("t4-0", T4), ("t4-1", T4), ("a100-0", A100), ("a100-1", A100)] {
        v.upsert_node(node(
            name,
            &[("nvidia.com/gpu", 4)],
            &[(GPU_PRODUCT_LABEL, product)],
            None,
        ));
    }
    let t4_pods = if t4_only { only(T4) } else { GpuProducts::ANY };
    for (uid, host, gpu, products) in [
        ("t4-a", "t4-0", 0, t4_pods.clone()),
        ("t4-b", "t4-0", 1, t4_pods),
        ("any-a", "a100-0", 0, GpuProducts::ANY),
        ("any-b", "a100-0", 1, GpuProducts::ANY),
    ] {
        v.observe_pod(bound(uid, host, one_gpu(products), Some(vec![gpu])), 0);
    }
    v.refresh(0);
    v
}

fn scores(v: &ClusterView, a: &PodAsk) -> BTreeMap<String, i64> {
    v.score(a, ["t4-0", "t4-1", "a100-0", "a100-1"]).into_iter().collect()
}

/// Without constraints the two busy nodes are alike. With T4-only pods in
/// the mix, an unconstrained pod leaves the T4s to them: the busy A100
/// scores above the busy T4.
#[test]
fn unconstrained_pods_leave_the_constrained_model_to_its_pods() {
    let free = scores(&cluster(false), &one_gpu(GpuProducts::ANY));
    assert_eq!(free["t4-0"], free["a100-0"], "{free:?}");
    let s = scores(&cluster(true), &one_gpu(GpuProducts::ANY));
    assert!(s["a100-0"] > s["t4-0"], "{s:?}");
    assert_eq!(s["a100-0"], MAX_SCORE, "{s:?}");
}

/// A T4-only pod arriving after unconstrained ones still finds a T4: it
/// scores only on T4 nodes (kube-scheduler passes only those; the others
/// are not a place for it) and packs onto the busy one.
#[test]
fn a_t4_only_pod_scores_the_t4s() {
    let v = cluster(true);
    let s = scores(&v, &one_gpu(only(T4)));
    assert_eq!(s["a100-0"], 0, "{s:?}");
    assert_eq!(s["a100-1"], 0, "{s:?}");
    assert_eq!(s["t4-0"], MAX_SCORE, "{s:?}");
    let t4s = v.score(&one_gpu(only(T4)), ["t4-0", "t4-1"]);
    assert_eq!(t4s[0], ("t4-0".to_string(), MAX_SCORE), "{t4s:?}");
}

/// The mix follows the capacity by model: a node of a new model rebuilds
/// it at the next refresh, and unlabelled nodes are their own class.
#[test]
fn a_new_model_rebuilds_the_classes() {
    let mut v = cluster(true);
    let before = v.scorer.id;
    v.upsert_node(node(
        "h100-0",
        &[("nvidia.com/gpu", 8)],
        &[(GPU_PRODUCT_LABEL, "H100")],
        None,
    ));
    v.upsert_node(node("plain-0", &[("nvidia.com/gpu", 8)], &[], None));
    v.refresh(1);
    assert_ne!(v.scorer.id, before, "new capacity by model: new scorer");
    assert!(!v.scorer.classes_stale(&v.capacity_by_model()));
    let s: BTreeMap<_, _> = v
        .score(&one_gpu(GpuProducts::ANY), ["t4-0", "a100-0", "h100-0", "plain-0"])
        .into_iter()
        .collect();
    assert!(s["a100-0"] > s["t4-0"], "{s:?}");
}

const H100: &str = "NVIDIA-H100-80GB-HBM3";

/// 8-GPU nodes (name, product, `pool` label) on one leaf.
fn pools(nodes: &[(&str, &str, &str)]) -> ClusterView {
    let mut v = ClusterView::new(ViewConfig::default());
    for (name, product, pool) in nodes {
        v.upsert_node(node(
            name,
            &[("nvidia.com/gpu", 8)],
            &[
                (GPU_PRODUCT_LABEL, product),
                ("fabric.topograph.run/tier-0", "leaf0"),
                ("pool", pool),
            ],
            Some(super::tests::profile("dgx-h100")),
        ));
    }
    v
}

fn gang_of_two(id: &str, products: GpuProducts, selector: &[(&str, &str)]) -> GangSpec {
    GangSpec {
        id: id.into(),
        min_members: 2,
        gpus_per_member: 8,
        node_selector: selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        products,
        ..GangSpec::default()
    }
}

/// The nodes of the plan the gang's first member gets.
fn planned(v: &mut ClusterView, s: &GangSpec) -> Vec<String> {
    let f = v.gang_filter(s, &format!("{}-0", s.id), Some(0), 0).unwrap();
    assert!(matches!(f, GangFilter::Slot { .. }), "{}: {f:?}", s.id);
    let mut n: Vec<String> = v
        .reservation(&s.id)
        .unwrap()
        .plan
        .slots
        .iter()
        .map(|s| s.node.clone())
        .collect();
    n.sort();
    n
}

/// A gang whose members select a product (or a node label) gets slots only
/// on nodes kube-scheduler lets them onto: a slot elsewhere would never
/// fill and leave the gang half placed.
#[test]
fn a_gang_is_planned_only_on_nodes_its_members_may_go_to() {
    let mut v = pools(&[
        ("a100-0", A100, "train"),
        ("h100-0", H100, "train"),
        ("a100-1", A100, "train"),
        ("h100-1", H100, "batch"),
    ]);
    assert_eq!(
        planned(&mut v, &gang_of_two("ns/h100", only(H100), &[])),
        ["h100-0", "h100-1"]
    );
    assert_eq!(
        planned(&mut v, &gang_of_two("ns/a100", only(A100), &[])),
        ["a100-0", "a100-1"]
    );

    let mut v = pools(&[
        ("a100-0", A100, "train"),
        ("h100-0", H100, "train"),
        ("h100-1", H100, "batch"),
    ]);
    // H100 in pool "train" is one node: the gang of two is not planned,
    // though two H100 nodes are free.
    let s = gang_of_two("ns/h100-train", only(H100), &[("pool", "train")]);
    let f = v.gang_filter(&s, "m", Some(0), 0).unwrap();
    assert!(matches!(f, GangFilter::Wait(_) | GangFilter::Never(_)), "{f:?}");
    assert!(v.reservation("ns/h100-train").is_none());
    let any_train = gang_of_two("ns/any-train", GpuProducts::ANY, &[("pool", "train")]);
    assert_eq!(planned(&mut v, &any_train), ["a100-0", "h100-0"]);
}
