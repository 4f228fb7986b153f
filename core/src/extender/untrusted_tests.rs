//! The view fed what a hostile or broken cluster can write: node
//! annotations rewritten over and over, GPU counts past what the view tracks.

use std::sync::Arc;

use super::tests::{ask, bound, node, profile};
use super::*;
use crate::machine::{GpuSpec, MachineProfile, NumaNode};

/// 5,000 revisions of one node's topology annotation grew the process from
/// 5 to 144 MB: every revision was interned and none was ever freed.
#[test]
fn topologies_no_node_uses_are_freed() {
    let mut v = ClusterView::new(ViewConfig::default());
    let base = profile("dgx-h100");
    for i in 0..300 {
        let mut p = (*base).clone();
        p.description = format!("revision {i}");
        v.upsert_node(node("n", &[("nvidia.com/gpu", 8)], &[], Some(Arc::new(p))));
        assert_eq!(v.machine_count(), 1, "after revision {i}");
    }
    // Two nodes on one profile share it; it goes with the last of them.
    v.upsert_node(node("m", &[("nvidia.com/gpu", 8)], &[], Some(base.clone())));
    v.upsert_node(node("n", &[("nvidia.com/gpu", 8)], &[], Some(base.clone())));
    assert_eq!(v.machine_count(), 1);
    v.remove_node("n");
    assert_eq!(v.machine_count(), 1);
    // The survivor still plans with its topology.
    let mut four = ask(GpuAsk::Whole(4));
    four.single_numa = true;
    let a = v.assume("p", &four, "m").expect("fits on the DGX");
    assert!(
        a.gpus.iter().all(|&g| g < 4) || a.gpus.iter().all(|&g| g >= 4),
        "{:?}",
        a.gpus
    );
    v.remove_node("m");
    assert_eq!(v.machine_count(), 0);
    // A node that loses its annotation lets go of its topology too.
    v.upsert_node(node("n", &[("nvidia.com/gpu", 8)], &[], Some(base.clone())));
    v.upsert_node(node("n", &[("nvidia.com/gpu", 8)], &[], None));
    assert_eq!(v.machine_count(), 0);
}

/// A label-only change keeps the node's machine (no second intern).
#[test]
fn a_label_change_keeps_the_machine() {
    let mut v = ClusterView::new(ViewConfig::default());
    let p = profile("dgx-h100");
    v.upsert_node(node("n", &[("nvidia.com/gpu", 8)], &[], Some(p.clone())));
    v.upsert_node(node("n", &[("nvidia.com/gpu", 8)], &[("team", "a")], Some(p.clone())));
    v.upsert_node(node("n", &[("nvidia.com/gpu", 8)], &[("team", "b")], Some(p)));
    assert_eq!(v.machine_count(), 1);
    let out = v.filter(&ask(GpuAsk::Whole(8)), ["n"], false);
    assert_eq!(out.passed, vec![0]);
}

/// A topology of `n` GPUs split over two NUMA nodes.
fn wide_profile(n: u32) -> Arc<MachineProfile> {
    let mut p = (*profile("t4-2x")).clone();
    let gpu = p.gpus[0].clone();
    p.numa_nodes = vec![
        NumaNode {
            id: 0,
            cpus: "0-31".into(),
            socket: 0,
        },
        NumaNode {
            id: 1,
            cpus: "32-63".into(),
            socket: 1,
        },
    ];
    p.pcie_switches.clear();
    p.nics.clear();
    p.nvlink = Default::default();
    p.gpus = (0..n)
        .map(|i| GpuSpec {
            index: i,
            uuid: format!("GPU-{i}"),
            pci_bus_id: format!("{:04x}:{:02x}:00.0", i / 200, i % 200),
            numa_node: u32::from(i >= n / 2),
            pcie_switch: None,
            pcie_root: Some(format!("pci{:04x}:00", i)),
            ..gpu.clone()
        })
        .collect();
    p.validate().expect("valid wide profile");
    Arc::new(p)
}

/// 65+ GPUs overflowed the 64-bit masks: debug builds panicked, release
/// builds bound a 48-GPU single-NUMA pod across two NUMA nodes. Such a node
/// is now refused for GPU pods with a reason; CPU pods still go there.
#[test]
fn nodes_of_more_than_64_gpus_are_refused_with_a_reason() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(node("wide", &[("nvidia.com/gpu", 96)], &[], Some(wide_profile(96))));
    let mut big = ask(GpuAsk::Whole(48));
    big.single_numa = true;
    let out = v.filter(&big, ["wide"], true);
    assert!(out.passed.is_empty());
    assert_eq!(out.unresolvable, vec![(0, TOO_MANY_GPUS)]);
    assert!(v.assume("p", &big, "wide").is_err());
    assert_eq!(
        v.filter(&ask(GpuAsk::Shared(1)), ["wide"], false).unresolvable,
        vec![(0, TOO_MANY_GPUS)]
    );
    assert_eq!(v.filter(&ask(GpuAsk::None), ["wide"], false).passed, vec![0]);
    // The same node seen only through its allocatable (no topology): it was
    // silently capped at 64 GPUs.
    v.upsert_node(node("plain", &[("nvidia.com/gpu", 128)], &[], None));
    let out = v.filter(&ask(GpuAsk::Whole(1)), ["plain"], false);
    assert_eq!(out.unresolvable, vec![(0, TOO_MANY_GPUS)]);
    // A pod bound there anyway (by another scheduler) holds nothing we track
    // and breaks nothing.
    v.observe_pod(bound("q", "plain", ask(GpuAsk::Whole(2)), Some(vec![70, 71])), 0);
    assert_eq!(v.free_gpus("plain"), Some(Vec::new()));
}

/// Exactly 64 GPUs is still served, single-NUMA included.
#[test]
fn a_node_of_64_gpus_is_served_whole() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(node("n", &[("nvidia.com/gpu", 64)], &[], Some(wide_profile(64))));
    let mut half = ask(GpuAsk::Whole(32));
    half.single_numa = true;
    let a = v.assume("p", &half, "n").expect("32 GPUs on one NUMA node fit");
    assert!(
        a.gpus.iter().all(|&g| g < 32) || a.gpus.iter().all(|&g| g >= 32),
        "{:?}",
        a.gpus
    );
    v.observe_pod(seen(&a, "p", "n", half.clone()), 0);
    // The other NUMA node takes the second half, and then nothing is left.
    assert_eq!(v.filter(&half, ["n"], false).passed, vec![0]);
    let b = v.assume("q", &half, "n").expect("the other NUMA node");
    assert!(b.gpus.iter().all(|g| !a.gpus.contains(g)));
    v.observe_pod(seen(&b, "q", "n", half.clone()), 0);
    let out = v.filter(&ask(GpuAsk::Whole(1)), ["n"], false);
    assert_eq!(out.failed, vec![(0, "not enough free whole GPUs")]);
}

fn seen(a: &Assumed, uid: &str, node: &str, ask: PodAsk) -> PodObservation {
    bound(uid, node, ask, Some(a.gpus.clone()))
}
