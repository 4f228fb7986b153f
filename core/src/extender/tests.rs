use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::machine::MachineProfile;

fn profile(stem: &str) -> Arc<MachineProfile> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../configs/machines/{stem}.yaml"));
    let text = std::fs::read_to_string(&p).expect("profile file");
    Arc::new(MachineProfile::from_yaml(&text).expect("profile"))
}

fn node(name: &str, res: &[(&str, i64)], labels: &[(&str, &str)], topo: Option<Arc<MachineProfile>>) -> NodeInput {
    NodeInput {
        name: name.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        allocatable: res.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        cpu_milli: 128_000,
        memory_mib: 1 << 20,
        topology: topo,
        unschedulable: false,
    }
}

fn ask(gpu: GpuAsk) -> PodAsk {
    PodAsk {
        gpu,
        single_numa: false,
        cpu_milli: 1000,
        memory_mib: 1024,
    }
}

fn bound(uid: &str, node: &str, a: PodAsk, gpus: Option<Vec<u32>>) -> PodObservation {
    PodObservation {
        uid: uid.into(),
        node: Some(node.into()),
        ask: a,
        finished: false,
        gpus,
        plan: None,
    }
}

#[test]
fn parses_asks() {
    let a = PodAsk::from_resources([("nvidia.com/gpu", 2), ("cpu-ish", 3)], 0, 0, false).unwrap();
    assert_eq!(a.gpu, GpuAsk::Whole(2));
    let m = PodAsk::from_resources([("nvidia.com/mig-1g.10gb", 1)], 0, 0, false).unwrap();
    assert!(matches!(m.gpu, GpuAsk::Mig { count: 1, .. }));
    assert!(PodAsk::from_resources([("nvidia.com/gpu", 1), ("nvidia.com/gpu.shared", 1)], 0, 0, false).is_err());
    assert!(PodAsk::from_resources([("nvidia.com/gpu", -1)], 0, 0, false).is_err());
}

#[test]
fn shared_request_needs_one_gpu_with_enough_share() {
    // 2 GPUs x 4 replicas. Each GPU has 2 replicas used: 4 replicas free on
    // the node in total, but no GPU has 3.
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(node(
        "n",
        &[("nvidia.com/gpu.shared", 8)],
        &[("nvidia.com/gpu.count", "2"), ("nvidia.com/gpu.replicas", "4")],
        None,
    ));
    v.observe_pod(bound("a", "n", ask(GpuAsk::Shared(2)), Some(vec![0])), 0);
    v.observe_pod(bound("b", "n", ask(GpuAsk::Shared(2)), Some(vec![1])), 0);
    let out = v.filter(&ask(GpuAsk::Shared(3)), ["n"], false);
    assert!(out.passed.is_empty());
    assert_eq!(out.failed[0].1, "no single GPU has enough free share");
    let out = v.filter(&ask(GpuAsk::Shared(2)), ["n"], true);
    assert_eq!(out.passed, vec![0]);
    assert_eq!(out.scores, vec![10]);
    // More replicas than a GPU has can never fit.
    let out = v.filter(&ask(GpuAsk::Shared(5)), ["n"], false);
    assert_eq!(out.unresolvable.len(), 1);
}

#[test]
fn mig_profiles_and_unknown_nodes() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(node("m", &[("nvidia.com/mig-1g.10gb", 2)], &[], None));
    let one = ask(GpuAsk::Mig {
        resource: "nvidia.com/mig-1g.10gb".into(),
        count: 1,
    });
    let other = ask(GpuAsk::Mig {
        resource: "nvidia.com/mig-3g.40gb".into(),
        count: 1,
    });
    let out = v.filter(&one, ["m", "ghost"], false);
    assert_eq!(out.passed, vec![0]);
    assert_eq!(out.failed[0].0, 1);
    assert_eq!(v.filter(&other, ["m"], false).unresolvable.len(), 1);
    v.assume("p1", &one, "m").unwrap();
    v.assume("p2", &one, "m").unwrap();
    assert!(v.assume("p3", &one, "m").is_err());
    assert_eq!(v.filter(&one, ["m"], false).failed.len(), 1);
}

#[test]
fn single_numa_uses_the_topology() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(node("d", &[("nvidia.com/gpu", 8)], &[], Some(profile("dgx-h100"))));
    // Take one GPU on each NUMA node of the DGX (GPUs 0-3 on 0, 4-7 on 1).
    v.observe_pod(bound("x", "d", ask(GpuAsk::Whole(1)), Some(vec![0])), 0);
    v.observe_pod(bound("y", "d", ask(GpuAsk::Whole(1)), Some(vec![4])), 0);
    let mut four = ask(GpuAsk::Whole(4));
    assert_eq!(v.filter(&four, ["d"], false).passed.len(), 1);
    four.single_numa = true;
    let out = v.filter(&four, ["d"], false);
    assert_eq!(out.failed[0].1, "no single NUMA node has enough free GPUs");
    let mut three = ask(GpuAsk::Whole(3));
    three.single_numa = true;
    let a = v.assume("z", &three, "d").unwrap();
    let numa: Vec<bool> = a.gpus.iter().map(|&g| g < 4).collect();
    assert!(numa.iter().all(|&x| x == numa[0]), "{:?}", a.gpus);
}

#[test]
fn assume_never_double_books() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(node("n", &[("nvidia.com/gpu", 2)], &[], None));
    let one = ask(GpuAsk::Whole(1));
    let a = v.assume("a", &one, "n").unwrap();
    let b = v.assume("b", &one, "n").unwrap();
    assert_ne!(a.gpus, b.gpus);
    assert!(matches!(
        v.assume("c", &one, "n"),
        Err(AssumeError::NoLongerFits { .. })
    ));
    // Idempotent for the same pod, and the API catching up changes nothing.
    assert_eq!(v.assume("a", &one, "n").unwrap().gpus, a.gpus);
    v.observe_pod(bound("a", "n", one.clone(), Some(a.gpus.clone())), 0);
    assert_eq!(v.free_gpus("n").unwrap(), Vec::<u32>::new());
    v.unassume("b");
    assert_eq!(v.free_gpus("n").unwrap(), b.gpus);
    v.remove_pod("a");
    assert_eq!(v.free_gpus("n").unwrap().len(), 2);
}

#[test]
fn shared_pods_pack_onto_a_used_gpu() {
    let mut v = ClusterView::new(ViewConfig::default());
    let res = [("nvidia.com/gpu.shared", 8)];
    let labels = [("nvidia.com/gpu.count", "2"), ("nvidia.com/gpu.replicas", "4")];
    v.upsert_node(node("empty", &res, &labels, None));
    v.upsert_node(node("used", &res, &labels, None));
    v.observe_pod(bound("a", "used", ask(GpuAsk::Shared(2)), Some(vec![1])), 0);
    v.refresh(0);
    let half = ask(GpuAsk::Shared(2));
    let s = v.score(&half, ["empty", "used"]);
    assert_eq!(s[1], ("used".to_string(), 10));
    assert!(s[0].1 < 10);
    let a = v.assume("b", &half, "used").unwrap();
    assert_eq!(a.gpus, vec![1]);
    assert_eq!(a.milli, 500);
}

fn dgx_cluster(n: usize) -> ClusterView {
    let mut v = ClusterView::new(ViewConfig {
        reservation_ttl_ms: 1000,
        ..ViewConfig::default()
    });
    for i in 0..n {
        let leaf = format!("leaf{}", i / 4);
        v.upsert_node(node(
            &format!("dgx{i}"),
            &[("nvidia.com/gpu", 8)],
            &[("fabric.topograph.run/tier-0", leaf.as_str())],
            Some(profile("dgx-h100")),
        ));
    }
    v
}

fn spec(members: u32, k: u32) -> GangSpec {
    GangSpec {
        id: "ns/job".into(),
        min_members: members,
        gpus_per_member: k,
        required: None,
        preferred: None,
    }
}

#[test]
fn gang_plans_reserves_and_fills() {
    let mut v = dgx_cluster(8);
    let s = spec(4, 8);
    let mut nodes = Vec::new();
    for m in 0..4 {
        match v.gang_filter(&s, &format!("m{m}"), Some(m), 0).unwrap() {
            GangFilter::Slot { node, slot } => {
                assert_eq!(slot, m as usize);
                nodes.push(node);
            }
            other => panic!("{other:?}"),
        }
    }
    // One leaf group holds all four.
    let mut sorted = nodes.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 4);
    // Reserved nodes are not offered to others.
    let one = ask(GpuAsk::Whole(1));
    let out = v.filter(&one, nodes.iter().map(String::as_str), false);
    assert!(out.passed.is_empty(), "{out:?}");
    // A fifth pod of the gang beyond minMember is a plain pod.
    assert_eq!(v.gang_filter(&s, "m4", None, 0).unwrap(), GangFilter::Plain);
    // Members bind to their slot; elsewhere is refused.
    let eight = ask(GpuAsk::Whole(8));
    assert!(matches!(
        v.assume("m0", &eight, &nodes[1]),
        Err(AssumeError::WrongSlot { .. })
    ));
    let a = v.assume("m0", &eight, &nodes[0]).unwrap();
    assert_eq!(a.gpus, (0..8).collect::<Vec<_>>());
    let (plan, slot) = a.plan.clone().unwrap();
    assert_eq!(slot, 0);

    // Restart: a fresh view rebuilds the reservation from the bound member.
    let mut fresh = dgx_cluster(8);
    fresh.observe_pod(
        PodObservation {
            uid: "m0".into(),
            node: Some(nodes[0].clone()),
            ask: eight.clone(),
            finished: false,
            gpus: Some(a.gpus.clone()),
            plan: Some((plan, 0)),
        },
        10,
    );
    let r = fresh.reservation("ns/job").unwrap();
    assert_eq!(r.held, vec![false, true, true, true]);
    match fresh.gang_filter(&s, "m2", Some(2), 20).unwrap() {
        GangFilter::Slot { node, slot } => {
            assert_eq!(slot, 2);
            assert_eq!(node, nodes[2]);
        }
        other => panic!("{other:?}"),
    }
    // Expiry releases what no pod filled; the rest is planned again.
    fresh.expire(5000);
    assert!(fresh.reservation("ns/job").is_none());
    assert_eq!(fresh.gang_members_placed("ns/job"), 1);
    match fresh.gang_filter(&s, "m2", Some(2), 5001).unwrap() {
        GangFilter::Slot { .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(fresh.reservation("ns/job").unwrap().plan.slots.len(), 3);
}

#[test]
fn gang_waits_or_never_fits() {
    let mut v = dgx_cluster(2);
    v.observe_pod(bound("x", "dgx0", ask(GpuAsk::Whole(1)), Some(vec![0])), 0);
    match v.gang_filter(&spec(2, 8), "a", None, 0).unwrap() {
        GangFilter::Wait(r) => assert!(r.contains("ns/job"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert!(v.reservation("ns/job").is_none());
    match v.gang_filter(&spec(3, 8), "a", None, 0).unwrap() {
        GangFilter::Never(_) => {}
        other => panic!("{other:?}"),
    }
    let _ = BTreeMap::<u8, u8>::new();
}
