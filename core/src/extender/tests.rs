use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::machine::MachineProfile;

pub(super) fn profile(stem: &str) -> Arc<MachineProfile> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../configs/machines/{stem}.yaml"));
    let text = std::fs::read_to_string(&p).expect("profile file");
    Arc::new(MachineProfile::from_yaml(&text).expect("profile"))
}

pub(super) fn node(
    name: &str,
    res: &[(&str, i64)],
    labels: &[(&str, &str)],
    topo: Option<Arc<MachineProfile>>,
) -> NodeInput {
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

pub(super) fn ask(gpu: GpuAsk) -> PodAsk {
    PodAsk {
        gpu,
        single_numa: false,
        cpu_milli: 1000,
        memory_mib: 1024,
        products: super::GpuProducts::ANY,
    }
}

pub(super) fn bound(uid: &str, node: &str, a: PodAsk, gpus: Option<Vec<u32>>) -> PodObservation {
    PodObservation {
        uid: uid.into(),
        node: Some(node.into()),
        ask: a,
        finished: false,
        gpus,
        plan: None,
        allocated: None,
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
    dgx_cluster_with(n, |i| i / 4)
}

/// `n` DGX H100 nodes `dgx{i}`, node i under leaf switch `leaf_of(i)`;
/// reservations expire after 1 s.
fn dgx_cluster_with(n: usize, leaf_of: impl Fn(usize) -> usize) -> ClusterView {
    let mut v = ClusterView::new(ViewConfig {
        reservation_ttl_ms: 1000,
        ..ViewConfig::default()
    });
    for i in 0..n {
        let leaf = format!("leaf{}", leaf_of(i));
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
        ..GangSpec::default()
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
            allocated: None,
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
        GangFilter::Slot { slot, .. } => assert_eq!(slot, 2),
        other => panic!("{other:?}"),
    }
    // The new plan keeps the bound member in its slot.
    let replanned = fresh.reservation("ns/job").unwrap();
    assert_eq!(replanned.plan.slots.len(), 4);
    assert_eq!(replanned.plan.slots[0].node, nodes[0]);
    assert_eq!(replanned.claimed[0].as_deref(), Some("m0"));
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

fn slot_node(f: GangFilter) -> (String, usize) {
    match f {
        GangFilter::Slot { node, slot } => (node, slot),
        other => panic!("expected a slot, got {other:?}"),
    }
}

/// What the API shows for a member the extender bound: its node, GPUs and
/// the plan annotation written at bind.
fn seen_bound(uid: &str, node: &str, a: &Assumed) -> PodObservation {
    PodObservation {
        uid: uid.into(),
        node: Some(node.into()),
        ask: ask(GpuAsk::Whole(8)),
        finished: false,
        gpus: Some(a.gpus.clone()),
        plan: a.plan.clone(),
        allocated: None,
    }
}

/// Leaf of `dgx{i}` in [`six_and_two`].
fn leaf_of_six_and_two(node: &str) -> usize {
    let i: usize = node.trim_start_matches("dgx").parse().expect("dgx node");
    usize::from(i >= 6)
}

/// Eight DGX nodes: six under leaf 0, two under leaf 1.
fn six_and_two() -> ClusterView {
    dgx_cluster_with(8, |i| usize::from(i >= 6))
}

/// Members placed plus slots held never exceed the gang's size.
fn assert_within_gang(v: &ClusterView, gang: &str, size: u32) {
    let held = v
        .reservation(gang)
        .map_or(0, |r| r.held.iter().filter(|h| **h).count() as u32);
    let placed = v.gang_members_placed(gang);
    assert!(placed + held <= size, "{placed} placed + {held} held > {size}");
}

#[test]
fn an_expired_gang_is_replanned_around_its_bound_members() {
    let mut v = six_and_two();
    let s = spec(4, 8);
    let eight = ask(GpuAsk::Whole(8));
    // The gang is planned into leaf 0 (the only one with 4 nodes); m0 and m1
    // bind, m2 and m3 do not come before the reservation expires.
    let first: Vec<(String, usize)> = (0..4)
        .map(|m| slot_node(v.gang_filter(&s, &format!("m{m}"), Some(m), 0).unwrap()))
        .collect();
    assert!(first.iter().all(|(n, _)| leaf_of_six_and_two(n) == 0), "{first:?}");
    let a0 = v.assume("m0", &eight, &first[0].0).unwrap();
    let a1 = v.assume("m1", &eight, &first[1].0).unwrap();
    v.observe_pod(seen_bound("m0", &first[0].0, &a0), 10);
    v.observe_pod(seen_bound("m1", &first[1].0, &a1), 10);
    let old_plan = a0.plan.clone().unwrap().0;

    // After expiry the next member re-plans: m0 and m1 keep their nodes and
    // slots, only two slots are reserved, next to them in leaf 0 (planned
    // from scratch, the two would fill leaf 1 exactly).
    let (n2, slot2) = slot_node(v.gang_filter(&s, "m2", Some(2), 1500).unwrap());
    assert_eq!(slot2, 2);
    let r = v.reservation("ns/job").unwrap().clone();
    assert_eq!(r.plan.expires_ms, 2500);
    assert_eq!(r.plan.slots.len(), 4);
    assert_eq!(r.plan.slots[0], old_plan.slots[0]);
    assert_eq!(r.plan.slots[1], old_plan.slots[1]);
    assert_eq!(r.claimed[..2], [Some("m0".to_string()), Some("m1".to_string())]);
    assert_eq!(r.held, vec![false, false, true, true]);
    let mut nodes: Vec<&str> = r.plan.slots.iter().map(|s| s.node.as_str()).collect();
    assert!(nodes.iter().all(|n| leaf_of_six_and_two(n) == 0), "{nodes:?}");
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 4, "four distinct nodes: {:?}", r.plan.slots);
    assert_eq!(r.plan.slots[2].node, n2);
    assert_eq!(v.gang_members_placed("ns/job"), 2);
    assert_within_gang(&v, "ns/job", 4);
    assert_eq!(v.slot_of("m0"), Some(("ns/job".into(), 0, first[0].0.clone())));
    assert_eq!(v.slot_of("m2"), Some(("ns/job".into(), 2, n2.clone())));

    // m3 gets the last slot, a fifth pod is a plain pod.
    let (n3, slot3) = slot_node(v.gang_filter(&s, "m3", Some(3), 1600).unwrap());
    assert_eq!(slot3, 3);
    assert_eq!(v.gang_filter(&s, "m4", None, 1600).unwrap(), GangFilter::Plain);
    let a2 = v.assume("m2", &eight, &n2).unwrap();
    let a3 = v.assume("m3", &eight, &n3).unwrap();
    assert_eq!(a2.plan.as_ref().map(|(p, s)| (p.slots.len(), *s)), Some((4, 2)));
    assert_eq!(v.gang_members_placed("ns/job"), 4);
    assert_eq!(v.gang_counts(), (1, 0));
    assert_within_gang(&v, "ns/job", 4);

    // m0 seen again with its old, expired plan annotation: no resurrected
    // reservation, no second count of its GPUs.
    let pods = v.pod_count();
    v.observe_pod(seen_bound("m0", &first[0].0, &a0), 1700);
    assert_eq!(v.reservation("ns/job").unwrap().plan, r.plan);
    assert_eq!(v.pod_count(), pods);
    assert_eq!(v.gang_members_placed("ns/job"), 4);
    assert_eq!(v.free_gpus(&first[0].0).unwrap(), Vec::<u32>::new());

    // Restart: a fresh view rebuilds the re-planned reservation from the
    // members' annotations (old plan on m0, m1; new plan on m2, m3),
    // whichever it sees first.
    let seen = [
        seen_bound("m0", &first[0].0, &a0),
        seen_bound("m1", &first[1].0, &a1),
        seen_bound("m2", &n2, &a2),
        seen_bound("m3", &n3, &a3),
    ];
    for order in [[0, 2, 1, 3], [2, 3, 0, 1], [0, 1, 2, 3]] {
        let mut fresh = six_and_two();
        for i in order {
            fresh.observe_pod(seen[i].clone(), 1800);
            assert_within_gang(&fresh, "ns/job", 4);
        }
        let rebuilt = fresh.reservation("ns/job").unwrap_or_else(|| panic!("order {order:?}"));
        assert_eq!(rebuilt.plan, r.plan, "order {order:?}");
        assert_eq!(rebuilt.held, vec![false; 4], "order {order:?}");
        let claimed: Vec<Option<&str>> = rebuilt.claimed.iter().map(Option::as_deref).collect();
        assert_eq!(
            claimed,
            [Some("m0"), Some("m1"), Some("m2"), Some("m3")],
            "order {order:?}"
        );
        assert_eq!(fresh.gang_members_placed("ns/job"), 4);
        for (uid, slot) in [("m0", 0), ("m1", 1), ("m2", 2), ("m3", 3)] {
            assert_eq!(fresh.slot_of(uid), v.slot_of(uid), "{uid}, order {order:?}");
            assert_eq!(fresh.slot_of(uid).map(|(_, s, _)| s), Some(slot));
        }
        let busy: usize = fresh
            .node_names()
            .iter()
            .map(|n| 8 - fresh.free_gpus(n).unwrap().len())
            .sum();
        assert_eq!(busy, 32, "order {order:?}: each member's 8 GPUs counted once");
        assert_eq!(fresh.gang_filter(&s, "m4", None, 1900).unwrap(), GangFilter::Plain);
    }
}

#[test]
fn an_expired_gang_waits_for_room_beside_its_bound_members() {
    let mut v = dgx_cluster(8);
    let mut s = spec(4, 8);
    s.required = Some("tier-0".into());
    let eight = ask(GpuAsk::Whole(8));
    let first: Vec<(String, usize)> = (0..4)
        .map(|m| slot_node(v.gang_filter(&s, &format!("m{m}"), Some(m), 0).unwrap()))
        .collect();
    let a0 = v.assume("m0", &eight, &first[0].0).unwrap();
    let a1 = v.assume("m1", &eight, &first[1].0).unwrap();
    v.observe_pod(seen_bound("m0", &first[0].0, &a0), 10);
    v.observe_pod(seen_bound("m1", &first[1].0, &a1), 10);
    v.expire(1500);
    assert!(v.reservation("ns/job").is_none());
    // Two one-GPU pods land on the rest of m0's leaf group; the other leaf
    // is empty, but the gang must stay in one.
    let one = ask(GpuAsk::Whole(1));
    v.assume("x", &one, &first[2].0).unwrap();
    v.assume("y", &one, &first[3].0).unwrap();
    match v.gang_filter(&s, "m2", Some(2), 1500).unwrap() {
        GangFilter::Wait(r) => {
            assert!(r.contains("ns/job") && r.contains("beside the 2 already placed"), "{r}");
            assert!(r.contains("room for 2 more"), "{r}");
        }
        other => panic!("expected to wait, got {other:?}"),
    }
    assert!(v.reservation("ns/job").is_none());
    assert_eq!(v.gang_members_placed("ns/job"), 2);
    // All or nothing: with x gone, y still blocks the second node.
    v.unassume("x");
    assert!(matches!(
        v.gang_filter(&s, "m2", Some(2), 1600).unwrap(),
        GangFilter::Wait(_)
    ));
    // Once y leaves too, the gang is planned, still around m0 and m1.
    v.unassume("y");
    let (n2, slot2) = slot_node(v.gang_filter(&s, "m2", Some(2), 1600).unwrap());
    assert_eq!((n2.as_str(), slot2), (first[2].0.as_str(), 2));
    let r = v.reservation("ns/job").unwrap();
    assert_eq!(r.held, vec![false, false, true, true]);
    let nodes: Vec<&str> = r.plan.slots.iter().map(|s| s.node.as_str()).collect();
    let planned: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes, planned);
    assert_within_gang(&v, "ns/job", 4);

    // Members placed in two leaf groups can never form one.
    let mut apart = dgx_cluster(8);
    let plan = PlanRecord {
        gang: "ns/job".into(),
        expires_ms: 100,
        slots: vec![
            SlotRecord {
                node: "dgx0".into(),
                gpus: (0..8).collect(),
            },
            SlotRecord {
                node: "dgx4".into(),
                gpus: (0..8).collect(),
            },
        ],
    };
    for (slot, (uid, node)) in [("p0", "dgx0"), ("p1", "dgx4")].into_iter().enumerate() {
        apart.observe_pod(
            PodObservation {
                uid: uid.into(),
                node: Some(node.into()),
                ask: eight.clone(),
                finished: false,
                gpus: Some((0..8).collect()),
                plan: Some((plan.clone(), slot)),
                allocated: None,
            },
            200,
        );
    }
    assert!(apart.reservation("ns/job").is_none(), "an expired plan is not rebuilt");
    match apart.gang_filter(&s, "p2", Some(2), 300).unwrap() {
        GangFilter::Never(r) => assert!(r.contains("span more than one tier 0"), "{r}"),
        other => panic!("expected never, got {other:?}"),
    }
}

#[test]
fn held_gpus_survive_a_node_update_and_come_back_whole() {
    let mut v = dgx_cluster(2);
    match v.gang_filter(&spec(2, 8), "a", None, 0).unwrap() {
        GangFilter::Slot { .. } => {}
        other => panic!("{other:?}"),
    }
    let held: u32 = v.nodes.iter().map(|n| n.reserved.count_ones()).sum();
    assert_eq!(held, 16);
    // The device plugin relabels both nodes while the reservation is held.
    for i in 0..2 {
        let mut n = v.nodes[i].input.clone();
        n.labels.insert("example.com/relabelled".into(), "yes".into());
        v.upsert_node(n);
    }
    let eight = ask(GpuAsk::Whole(8));
    assert!(v.filter(&eight, ["dgx0", "dgx1"], false).passed.is_empty());
    // Nobody came: the reservation expires and every GPU is whole again.
    v.expire(10_000);
    assert!(v.reservation("ns/job").is_none());
    assert_eq!(v.filter(&eight, ["dgx0", "dgx1"], false).passed, vec![0, 1]);
    assert_eq!(v.free_gpus("dgx0").unwrap().len(), 8);
}

#[test]
fn mig_asks_for_one_or_several_devices() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(node(
        "a",
        &[("nvidia.com/mig-1g.10gb", 2), ("nvidia.com/mig-3g.40gb", 1)],
        &[],
        None,
    ));
    v.upsert_node(node("b", &[("nvidia.com/mig-3g.40gb", 2)], &[], None));
    v.upsert_node(node("c", &[("nvidia.com/mig-1g.10gb", 0)], &[], None));
    let mig = |r: &str, count| {
        ask(GpuAsk::Mig {
            resource: format!("nvidia.com/mig-{r}"),
            count,
        })
    };
    let out = v.filter(&mig("1g.10gb", 1), ["a", "b", "c"], false);
    assert_eq!(out.passed, vec![0]);
    assert_eq!(
        out.unresolvable,
        vec![
            (1, "node does not offer that MIG profile"),
            (2, "node does not offer that MIG profile")
        ]
    );
    assert_eq!(v.filter(&mig("3g.40gb", 2), ["a", "b"], false).passed, vec![1]);
    assert_eq!(v.filter(&mig("3g.40gb", 2), ["a"], false).unresolvable.len(), 1);
    v.assume("p1", &mig("1g.10gb", 1), "a").unwrap();
    assert_eq!(v.filter(&mig("1g.10gb", 1), ["a"], false).passed, vec![0]);
    assert_eq!(v.filter(&mig("1g.10gb", 2), ["a"], false).failed.len(), 1);
    v.assume("p2", &mig("1g.10gb", 1), "a").unwrap();
    assert_eq!(
        v.filter(&mig("1g.10gb", 1), ["a"], false).failed,
        vec![(0, "no free MIG device of that profile")]
    );
    v.remove_pod("p1");
    assert_eq!(v.filter(&mig("1g.10gb", 1), ["a"], false).passed, vec![0]);
    // A profile no node offers.
    assert_eq!(v.filter(&mig("7g.80gb", 1), ["a", "b"], false).unresolvable.len(), 2);
}

#[test]
fn node_names_resolve_after_removals_and_renames() {
    let mut v = ClusterView::new(ViewConfig::default());
    for i in 0..50 {
        v.upsert_node(node(&format!("n{i}"), &[("nvidia.com/gpu", 1 + (i % 8))], &[], None));
    }
    for i in (0..50).step_by(4) {
        v.remove_node(&format!("n{i}"));
    }
    v.upsert_node(node("n0", &[("nvidia.com/gpu", 8)], &[], None));
    let names: Vec<String> = (0..50).map(|i| format!("n{i}")).collect();
    let out = v.filter(&ask(GpuAsk::Whole(8)), names.iter().map(String::as_str), false);
    // Each surviving node answers for itself: n{i} has 1 + i % 8 GPUs.
    let expect: Vec<usize> = (0..50).filter(|&i| i == 0 || (i % 4 != 0 && i % 8 == 7)).collect();
    assert_eq!(out.passed, expect);
    let gone: Vec<usize> = out
        .failed
        .iter()
        .filter(|(_, r)| *r == "node is not in the extender's view yet")
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(gone, (4..50).step_by(4).collect::<Vec<_>>());
    assert_eq!(v.node_count(), 38);
}

/// Eight GPUs time-sliced four ways without renaming (NVIDIA's default
/// `renameByDefault: false`), labelled as GPU Feature Discovery does.
fn time_sliced(name: &str, topo: Option<Arc<MachineProfile>>) -> NodeInput {
    node(
        name,
        &[("nvidia.com/gpu", 32)],
        &[
            ("nvidia.com/gpu.count", "8"),
            ("nvidia.com/gpu.replicas", "4"),
            ("nvidia.com/gpu.sharing-strategy", "time-slicing"),
            ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3-SHARED"),
        ],
        topo,
    )
}

/// Milli in use per GPU of a node.
fn used(v: &ClusterView, node: &str) -> Vec<u16> {
    v.gpu_left(node).unwrap().iter().map(|(_, l)| 1000 - l).collect()
}

#[test]
fn time_sliced_nvidia_gpu_is_replicas_not_whole_gpus() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(time_sliced("ts", None));
    v.upsert_node(node("whole", &[("nvidia.com/gpu", 8)], &[], None));
    assert_eq!(used(&v, "ts"), vec![0; 8], "8 physical GPUs, not 32");
    let one = ask(GpuAsk::Whole(1));

    // `nvidia.com/gpu: 1` is one replica: a quarter of one GPU.
    let a = v.assume("r0", &one, "ts").unwrap();
    assert_eq!((a.gpus.len(), a.milli), (1, 250));
    for p in 1..4 {
        assert_eq!(v.assume(&format!("r{p}"), &one, "ts").unwrap().milli, 250);
    }
    assert_eq!(used(&v, "ts").iter().map(|&m| u32::from(m)).sum::<u32>(), 1000);
    for p in 4..32 {
        v.assume(&format!("r{p}"), &one, "ts").unwrap();
    }
    assert_eq!(used(&v, "ts"), vec![1000; 8], "32 replicas: every GPU holds its 4");
    // The 33rd replica waits; the node with whole GPUs still takes the pod.
    let out = v.filter(&one, ["ts", "whole"], false);
    assert_eq!(out.passed, vec![1]);
    assert_eq!(out.failed, vec![(0, "not enough free GPU replicas")]);
    assert!(matches!(
        v.assume("r32", &one, "ts"),
        Err(AssumeError::NoLongerFits { .. })
    ));
    // One replica leaving frees one quarter, for one replica pod.
    let gpu = v.pod_state("r5").unwrap().2;
    v.remove_pod("r5");
    assert_eq!(v.filter(&one, ["ts"], false).passed, vec![0]);
    let back = v.assume("r32", &one, "ts").unwrap();
    assert_eq!((back.gpus, back.milli), (gpu, 250));

    // The plain node still hands out whole GPUs: 8 and no more.
    for p in 0..8 {
        assert_eq!(v.assume(&format!("w{p}"), &one, "whole").unwrap().milli, 1000);
    }
    assert_eq!(
        v.filter(&one, ["whole"], false).failed,
        vec![(0, "not enough free whole GPUs")]
    );

    // The API showing a replica pod bound (after a restart) counts a quarter.
    let mut fresh = ClusterView::new(ViewConfig::default());
    fresh.upsert_node(time_sliced("ts", None));
    fresh.observe_pod(bound("b", "ts", one.clone(), Some(vec![3])), 0);
    assert_eq!(used(&fresh, "ts"), vec![0, 0, 0, 250, 0, 0, 0, 0]);
    // A node that only lists `nvidia.com/gpu.shared` pods does not serve
    // them here: the replicas are under `nvidia.com/gpu`.
    assert_eq!(
        fresh.filter(&ask(GpuAsk::Shared(1)), ["ts"], false).unresolvable,
        vec![(0, "node advertises no nvidia.com/gpu.shared")]
    );
}

#[test]
fn several_replicas_of_time_sliced_nvidia_gpu_go_on_one_gpu() {
    // `nvidia.com/gpu: k` on a time-sliced node gets k replicas (with the
    // device plugin's `failRequestsGreaterThanOne` it is refused at
    // admission, a flag the extender cannot see). Booked like
    // `nvidia.com/gpu.shared: k`: k quarters of one GPU; more than the 4
    // replicas of one GPU can never fit here.
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(time_sliced("ts", None));
    v.upsert_node(node("whole", &[("nvidia.com/gpu", 8)], &[], None));
    let a = v.assume("two", &ask(GpuAsk::Whole(2)), "ts").unwrap();
    assert_eq!((a.gpus.len(), a.milli), (1, 500));
    assert_eq!(v.assume("four", &ask(GpuAsk::Whole(4)), "ts").unwrap().milli, 1000);
    let out = v.filter(&ask(GpuAsk::Whole(8)), ["ts", "whole"], false);
    assert_eq!(out.passed, vec![1]);
    assert_eq!(out.unresolvable.len(), 1);
    assert!(out.unresolvable[0].1.contains("time-sliced"), "{out:?}");
    assert!(matches!(
        v.assume("eight", &ask(GpuAsk::Whole(8)), "ts"),
        Err(AssumeError::NoLongerFits { .. })
    ));
    // The whole node gives the 8-GPU pod 8 whole GPUs.
    assert_eq!(
        v.assume("eight", &ask(GpuAsk::Whole(8)), "whole").unwrap().gpus.len(),
        8
    );
}

#[test]
fn replicated_nvidia_gpu_is_told_from_renamed_replicas_and_whole_gpus() {
    let mut v = ClusterView::new(ViewConfig::default());
    let one = ask(GpuAsk::Whole(1));
    // Renamed (`renameByDefault: true`): GFD keeps the replicas label, the
    // replicas are `nvidia.com/gpu.shared`; the 6 unshared GPUs stay whole.
    v.upsert_node(node(
        "renamed",
        &[("nvidia.com/gpu", 6), ("nvidia.com/gpu.shared", 8)],
        &[
            ("nvidia.com/gpu.count", "8"),
            ("nvidia.com/gpu.replicas", "4"),
            ("nvidia.com/gpu.sharing-strategy", "time-slicing"),
        ],
        None,
    ));
    assert_eq!(v.assume("w", &one, "renamed").unwrap().milli, 1000);
    assert_eq!(v.assume("s", &ask(GpuAsk::Shared(1)), "renamed").unwrap().milli, 250);
    // More `nvidia.com/gpu` than GPUs (no product label): MPS replicas.
    v.upsert_node(node(
        "mps",
        &[("nvidia.com/gpu", 16)],
        &[
            ("nvidia.com/gpu.count", "8"),
            ("nvidia.com/gpu.sharing-strategy", "mps"),
        ],
        None,
    ));
    assert_eq!(v.gpu_left("mps").unwrap().len(), 8);
    assert_eq!(v.assume("m", &one, "mps").unwrap().milli, 500);
    // Only the product label and the replicas: 24 / 3 = 8 GPUs, and three
    // replicas of a third fit on one GPU.
    v.upsert_node(node(
        "three",
        &[("nvidia.com/gpu", 24)],
        &[
            ("nvidia.com/gpu.replicas", "3"),
            ("nvidia.com/gpu.product", "Tesla-T4-SHARED"),
        ],
        None,
    ));
    assert_eq!(v.gpu_left("three").unwrap().len(), 8);
    for p in 0..3 {
        let a = v.assume(&format!("t{p}"), &ask(GpuAsk::Whole(3)), "three");
        assert_eq!(a.map(|a| a.milli), Ok(1000), "t{p}");
    }
    let mut thirds = ClusterView::new(ViewConfig::default());
    thirds.upsert_node(node(
        "three",
        &[("nvidia.com/gpu", 3)],
        &[
            ("nvidia.com/gpu.replicas", "3"),
            ("nvidia.com/gpu.product", "Tesla-T4-SHARED"),
        ],
        None,
    ));
    for p in 0..3 {
        assert!(
            thirds.assume(&format!("t{p}"), &one, "three").is_ok(),
            "replica {p} of 3"
        );
    }
    // A node that stops time-slicing serves whole GPUs again; its pod's
    // replica is re-counted as the whole GPU it now is.
    v.upsert_node(node(
        "mps",
        &[("nvidia.com/gpu", 8)],
        &[("nvidia.com/gpu.count", "8")],
        None,
    ));
    assert_eq!(used(&v, "mps").iter().filter(|&&m| m == 1000).count(), 1);
    assert_eq!(v.filter(&ask(GpuAsk::Whole(7)), ["mps"], false).passed, vec![0]);
    assert_eq!(v.filter(&ask(GpuAsk::Whole(8)), ["mps"], false).failed.len(), 1);
}

#[test]
fn gangs_are_not_planned_onto_time_sliced_nodes() {
    let mut v = dgx_cluster(2);
    v.upsert_node(time_sliced("dgx-ts", Some(profile("dgx-h100"))));
    assert_eq!(v.gpu_left("dgx-ts").unwrap().len(), 8);
    // Three members of 8 GPUs: the time-sliced DGX has no whole GPU.
    match v.gang_filter(&spec(3, 8), "a", None, 0).unwrap() {
        GangFilter::Never(r) => assert!(r.contains("ns/job"), "{r}"),
        other => panic!("{other:?}"),
    }
    let nodes: Vec<String> = (0..2)
        .map(|m| slot_node(v.gang_filter(&spec(2, 8), &format!("m{m}"), Some(m), 0).unwrap()).0)
        .collect();
    assert!(nodes.iter().all(|n| n != "dgx-ts"), "{nodes:?}");
    // Replica pods still go to the time-sliced DGX.
    assert_eq!(v.assume("r", &ask(GpuAsk::Whole(1)), "dgx-ts").unwrap().milli, 250);
}

#[test]
fn a_member_binding_after_its_slot_expired_stays_in_its_gang() {
    let mut v = dgx_cluster(8);
    let s = spec(4, 8);
    let eight = ask(GpuAsk::Whole(8));
    let first: Vec<(String, usize)> = (0..4)
        .map(|m| slot_node(v.gang_filter(&s, &format!("m{m}"), Some(m), 0).unwrap()))
        .collect();
    let a0 = v.assume("m0", &eight, &first[0].0).unwrap();
    let plan = a0.plan.clone().unwrap().0;
    // The reservation expires between m1's filter and its bind.
    v.expire(1500);
    assert!(v.reservation("ns/job").is_none());
    let a1 = v.assume("m1", &eight, &first[1].0).unwrap();
    assert_eq!(a1.plan, Some((plan.clone(), 1)), "bound as slot 1 of its plan");
    assert_eq!(a1.gpus, plan.slots[1].gpus);
    assert_eq!(v.gang_members_placed("ns/job"), 2);
    assert_eq!(v.slot_of("m1"), Some(("ns/job".into(), 1, first[1].0.clone())));

    // The next member re-plans around both: two slots, not three.
    let (n2, slot2) = slot_node(v.gang_filter(&s, "m2", Some(2), 1600).unwrap());
    assert_eq!(slot2, 2);
    let r = v.reservation("ns/job").unwrap().clone();
    assert_eq!(r.plan.slots[..2], plan.slots[..2]);
    assert_eq!(r.claimed[..2], [Some("m0".to_string()), Some("m1".to_string())]);
    assert_eq!(r.held, vec![false, false, true, true]);
    assert_within_gang(&v, "ns/job", 4);
    let busy = |v: &ClusterView| -> usize { v.node_names().iter().map(|n| 8 - v.free_gpus(n).unwrap().len()).sum() };
    assert_eq!(busy(&v), 32, "2 members and 2 held slots of 8 GPUs");
    let (n3, _) = slot_node(v.gang_filter(&s, "m3", Some(3), 1600).unwrap());
    v.assume("m2", &eight, &n2).unwrap();
    v.assume("m3", &eight, &n3).unwrap();
    assert_eq!(v.gang_members_placed("ns/job"), 4);
    assert_eq!(v.gang_filter(&s, "m4", None, 1700).unwrap(), GangFilter::Plain);

    // A restarted extender reads m1's annotation (the expired plan, slot 1)
    // and counts it as a member too.
    let mut fresh = dgx_cluster(8);
    fresh.observe_pod(seen_bound("m0", &first[0].0, &a0), 1800);
    fresh.observe_pod(seen_bound("m1", &first[1].0, &a1), 1800);
    assert_eq!(fresh.gang_members_placed("ns/job"), 2);
    assert_eq!(fresh.slot_of("m1").map(|(_, s, _)| s), Some(1));
}

#[test]
fn a_late_member_takes_a_slot_of_the_new_plan() {
    let mut v = dgx_cluster(8);
    let s = spec(4, 8);
    let eight = ask(GpuAsk::Whole(8));
    let first: Vec<(String, usize)> = (0..4)
        .map(|m| slot_node(v.gang_filter(&s, &format!("m{m}"), Some(m), 0).unwrap()))
        .collect();
    v.assume("m0", &eight, &first[0].0).unwrap();
    // Expired, and m2 (filtered again) re-planned the gang without m1.
    slot_node(v.gang_filter(&s, "m2", Some(2), 1500).unwrap());
    let r = v.reservation("ns/job").unwrap().clone();
    assert_eq!(r.held, vec![false, true, true, true]);
    // m1 binds late on its old node: it fills the new plan's slot there
    // instead of adding a fifth member.
    let free_on = |r: &Reservation, node: &str| {
        (0..r.claimed.len()).find(|&s| r.claimed[s].is_none() && r.held[s] && r.plan.slots[s].node == node)
    };
    let expect = free_on(&r, &first[1].0).expect("the re-plan reuses m1's node");
    let a1 = v.assume("m1", &eight, &first[1].0).unwrap();
    assert_eq!(a1.plan, Some((r.plan.clone(), expect)));
    assert_eq!(v.gang_members_placed("ns/job"), 2);
    assert_within_gang(&v, "ns/job", 4);
    // m3, also late, on a node outside the new plan is refused: filtered
    // again, it goes to the plan's last free slot.
    let outside = v
        .node_names()
        .into_iter()
        .find(|n| r.plan.slots.iter().all(|s| &s.node != n))
        .unwrap();
    match v.assume("m3", &eight, &outside) {
        Err(AssumeError::Replanned { gang, slot_node, .. }) => {
            assert_eq!(gang, "ns/job");
            assert!(r.plan.slots.iter().any(|s| s.node == slot_node));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(v.free_gpus(&outside).unwrap().len(), 8);
    let (n3, _) = slot_node(v.gang_filter(&s, "m3", Some(3), 1600).unwrap());
    v.assume("m3", &eight, &n3).unwrap();
    assert_eq!(v.gang_members_placed("ns/job"), 3);
    assert_within_gang(&v, "ns/job", 4);
}

#[test]
fn time_sliced_nodes_score_as_replicas() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(node("whole", &[("nvidia.com/gpu", 8)], &[], None));
    v.upsert_node(time_sliced("sliced", None));
    v.upsert_node(time_sliced("sliced-used", None));
    // A quarter of one GPU taken on `sliced-used`.
    v.assume("r0", &ask(GpuAsk::Whole(1)), "sliced-used").unwrap();
    v.refresh(0);
    // Two GPUs: a node with whole GPUs first, time-sliced ones last.
    let two = v.score(&ask(GpuAsk::Whole(2)), ["whole", "sliced"]);
    assert_eq!(two, vec![("whole".to_string(), 10), ("sliced".to_string(), 0)]);
    // One replica packs beside the one already there, not on an idle node.
    let one = v.score(&ask(GpuAsk::Whole(1)), ["sliced", "sliced-used"]);
    assert!(one[1].1 > one[0].1, "{one:?}");
}

#[test]
fn a_mislabelled_node_does_not_take_the_topology_from_the_others() {
    let mut v = dgx_cluster(4);
    // tier-1 without tier-0: this node's labels do not parse.
    v.upsert_node(node(
        "dgx-bad",
        &[("nvidia.com/gpu", 8)],
        &[("fabric.topograph.run/tier-1", "spine0")],
        Some(profile("dgx-h100")),
    ));
    let problems = v.fabric_problems().to_vec();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "dgx-bad");
    assert!(problems[0].1.contains("tier-0"), "{}", problems[0].1);
    // The others keep their leaf: a gang that requires one leaf is planned.
    let s = GangSpec {
        required: Some("tier-0".into()),
        ..spec(2, 8)
    };
    match v.gang_filter(&s, "m0", Some(0), 0).unwrap() {
        GangFilter::Slot { node, .. } => assert!(node.starts_with("dgx") && node != "dgx-bad", "{node}"),
        other => panic!("{other:?}"),
    }
    let res = v.reservation("ns/job").expect("reserved");
    assert!(res.plan.slots.iter().all(|s| s.node != "dgx-bad"));
}

#[test]
fn pods_keep_their_gpus_by_index_when_the_layout_changes() {
    // Shared: GPUs 0..=6 full, a pod assumed onto GPU 7, then GPU 7 leaves
    // (the device plugin republishes 7 GPUs): no panic, nothing lost.
    let shared = |count: &str, replicas: i64| {
        node(
            "s",
            &[("nvidia.com/gpu.shared", replicas)],
            &[("nvidia.com/gpu.count", count), ("nvidia.com/gpu.replicas", "4")],
            None,
        )
    };
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(shared("8", 32));
    for g in 0..7u32 {
        v.observe_pod(
            bound(&format!("full{g}"), "s", ask(GpuAsk::Shared(4)), Some(vec![g])),
            0,
        );
    }
    let a = v.assume("late", &ask(GpuAsk::Shared(1)), "s").unwrap();
    assert_eq!(a.gpus, vec![7]);
    v.observe_pod(bound("late", "s", ask(GpuAsk::Shared(1)), None), 0);
    v.upsert_node(shared("7", 28));
    assert_eq!(v.pod_count(), 8);
    assert!(
        v.gpu_left("s").unwrap().iter().all(|&(_, l)| l == 0),
        "{:?}",
        v.gpu_left("s")
    );
    assert!(v.filter(&ask(GpuAsk::Shared(1)), ["s"], false).passed.is_empty());

    // Whole GPUs with a topology: GPU 3 disappears; pods on GPUs 5 and 6
    // stay on 5 and 6 (not shifted onto 6 and 7), so 4 and 7 are what is free.
    let full = profile("dgx-h100");
    let mut seven = (*full).clone();
    seven.gpus.retain(|g| g.index != 3);
    let seven = Arc::new(seven);
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(node("d", &[("nvidia.com/gpu", 8)], &[], Some(full)));
    let taken = |v: &mut ClusterView, uid: &str| v.assume(uid, &ask(GpuAsk::Whole(1)), "d").unwrap().gpus;
    let mut first = Vec::new();
    for k in 0..7 {
        first.extend(taken(&mut v, &format!("p{k}")));
    }
    // Free the ones that are not 5 and 6.
    for (k, g) in first.iter().enumerate() {
        if *g != 5 && *g != 6 {
            v.unassume(&format!("p{k}"));
        }
    }
    let mut free = v.free_gpus("d").unwrap();
    free.sort_unstable();
    assert_eq!(free, vec![0, 1, 2, 3, 4, 7], "{first:?}");
    v.upsert_node(node("d", &[("nvidia.com/gpu", 7)], &[], Some(seven)));
    let mut free = v.free_gpus("d").unwrap();
    free.sort_unstable();
    assert_eq!(free, vec![0, 1, 2, 4, 7]);
    // And the same after the node leaves the view and comes back.
    let back = v.nodes[0].input.clone();
    v.remove_node("d");
    v.upsert_node(back);
    let mut free = v.free_gpus("d").unwrap();
    free.sort_unstable();
    assert_eq!(free, vec![0, 1, 2, 4, 7]);
}

#[test]
fn a_failed_bind_that_cannot_be_held_again_still_refreshes_the_node() {
    let mut v = dgx_cluster(1);
    let s = spec(2, 4);
    let GangFilter::Slot { node, .. } = v.gang_filter(&s, "a", Some(0), 0).unwrap() else {
        panic!("planned")
    };
    v.assume("a", &ask(GpuAsk::Whole(4)), &node).unwrap();
    // One GPU turns unhealthy: 7 advertised, same layout.
    let mut n = v.nodes[0].input.clone();
    n.allocatable.insert("nvidia.com/gpu".into(), 7);
    v.upsert_node(n);
    // The bind fails: the GPUs go back, but 7 - 4 held < 4, so the slot
    // cannot be held again. The node's record must still be current (debug
    // builds compare it on every filter).
    v.unassume("a");
    let out = v.filter(&ask(GpuAsk::Whole(1)), [node.as_str()], false);
    assert_eq!(out.passed, vec![0]);
}

#[test]
fn a_deleted_member_frees_its_slot_for_the_replacement() {
    let mut v = dgx_cluster(6);
    let s = spec(3, 8);
    let eight = ask(GpuAsk::Whole(8));
    let mut nodes = Vec::new();
    for m in 0..3 {
        let GangFilter::Slot { node, .. } = v.gang_filter(&s, &format!("w{m}"), Some(m), 0).unwrap() else {
            panic!("planned")
        };
        v.assume(&format!("w{m}"), &eight, &node).unwrap();
        nodes.push(node);
    }
    // w1 is deleted while the reservation stands; the Job controller
    // recreates it under a new UID.
    v.remove_pod("w1");
    assert_eq!(
        v.free_gpus(&nodes[1]).map(|g| g.len()),
        Some(0),
        "held for the replacement"
    );
    match v.gang_filter(&s, "w1-new", Some(1), 10).unwrap() {
        GangFilter::Slot { node, .. } => assert_eq!(node, nodes[1]),
        other => panic!("the replacement must take the vacated slot, got {other:?}"),
    }
    v.assume("w1-new", &eight, &nodes[1]).unwrap();
    assert_eq!(v.gang_members_placed("ns/job"), 3);
}
