//! The view follows the device plugin's write-backs (what kubelet gave) and
//! bounds how long it waits for them.

use std::collections::BTreeMap;

use super::tests::{ask, bound, node, profile};
use super::*;

/// 4 GPUs of 4 replicas each (250 milli a replica).
fn shared_node(name: &str) -> NodeInput {
    node(
        name,
        &[("nvidia.com/gpu.shared", 16)],
        &[("nvidia.com/gpu.count", "4"), ("nvidia.com/gpu.replicas", "4")],
        None,
    )
}

fn written(mut obs: PodObservation, gpus: &[u32]) -> PodObservation {
    obs.allocated = Some(gpus.to_vec());
    obs
}

/// Binds `uid` as the extender does (assume, then the API shows it with
/// the decision); returns the decided GPUs.
fn bind(v: &mut ClusterView, uid: &str, a: &PodAsk, node: &str, now: u64) -> Vec<u32> {
    let d = v.assume(uid, a, node).expect("fits").gpus;
    assert_eq!(
        v.observe_pod(bound(uid, node, a.clone(), Some(d.clone())), now),
        WriteBack::Unchanged
    );
    v.assert_books();
    d
}

/// Kubelet's write-back for a bound pod.
fn write_back(v: &mut ClusterView, uid: &str, a: &PodAsk, node: &str, decided: &[u32], gpus: &[u32]) -> WriteBack {
    let out = v.observe_pod(written(bound(uid, node, a.clone(), Some(decided.to_vec())), gpus), 0);
    v.assert_books();
    out
}

/// The view matches `actual` (pod → GPUs, milli per GPU) on `node`.
fn assert_matches(v: &ClusterView, node: &str, actual: &BTreeMap<&str, (Vec<u32>, u16)>) {
    let mut left: BTreeMap<u32, u16> = v
        .gpu_left(node)
        .expect("node")
        .into_iter()
        .map(|(g, _)| (g, 1000))
        .collect();
    for (uid, (gpus, milli)) in actual {
        let (n, _, at) = v.pod_state(uid).expect("pod");
        assert_eq!((n.as_str(), &at), (node, gpus), "{uid}");
        assert_eq!(v.placement(uid), Some(Placement::Actual), "{uid}");
        for g in gpus {
            *left.get_mut(g).expect("GPU") -= milli;
        }
    }
    let want: Vec<(u32, u16)> = left.iter().map(|(&g, &l)| (g, l)).collect();
    assert_eq!(v.gpu_left(node).expect("node"), want, "{node}");
    let free: Vec<u32> = left.iter().filter(|(_, l)| **l == 1000).map(|(&g, _)| g).collect();
    assert_eq!(v.free_gpus(node).expect("node"), free, "{node}");
}

fn drift(out: WriteBack) -> bool {
    match out {
        WriteBack::Applied { drift, .. } => drift,
        other => panic!("not applied: {other:?}"),
    }
}

fn displaced(out: WriteBack) -> u32 {
    match out {
        WriteBack::Applied { displaced, .. } => displaced,
        other => panic!("not applied: {other:?}"),
    }
}

/// Whole and shared pods whose write-backs differ from the decisions, two
/// of them landing on GPUs the view had booked for another pod: the view
/// ends with every pod on the GPUs kubelet gave, nothing counted twice.
#[test]
fn mixed_pods_end_on_the_gpus_kubelet_gave() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(node("d", &[("nvidia.com/gpu", 8)], &[], Some(profile("dgx-h100"))));
    v.upsert_node(shared_node("s"));
    let (two, one, four) = (ask(GpuAsk::Whole(2)), ask(GpuAsk::Whole(1)), ask(GpuAsk::Whole(4)));
    let da = bind(&mut v, "a", &two, "d", 0);
    let db = bind(&mut v, "b", &one, "d", 0);
    let dc = bind(&mut v, "c", &four, "d", 0);
    let all: Vec<u32> = (0..8).collect();
    let spare: Vec<u32> = all
        .iter()
        .copied()
        .filter(|g| !da.contains(g) && !db.contains(g) && !dc.contains(g))
        .collect();
    assert_eq!(spare.len(), 1, "{da:?} {db:?} {dc:?}");
    // The plugin's own rule: a on the spare GPU and b's, b on a's first, c
    // on a's second and three of its own.
    let mut aa = vec![spare[0], db[0]];
    aa.sort_unstable();
    let ab = vec![da[0]];
    let mut ac = vec![da[1], dc[0], dc[1], dc[2]];
    ac.sort_unstable();
    // b lands on a's decided GPU: a's positions are unknown until its own
    // write-back.
    let out = write_back(&mut v, "b", &one, "d", &db, &ab);
    assert!(drift(out));
    assert_eq!(displaced(out), 1);
    assert_eq!(v.placement("a"), Some(Placement::Unknown));
    assert_eq!(v.writeback_counts().unknown_pods, 1);
    // c lands on a's guessed GPU: a moves again, still unknown.
    let out = write_back(&mut v, "c", &four, "d", &dc, &ac);
    assert_eq!(displaced(out), 1);
    assert_eq!(v.placement("a"), Some(Placement::Unknown));
    let out = write_back(&mut v, "a", &two, "d", &da, &aa);
    assert_eq!((drift(out), displaced(out)), (true, 0));
    assert_eq!(v.writeback_counts().unknown_pods, 0);
    let whole = BTreeMap::from([("a", (aa, 1000)), ("b", (ab, 1000)), ("c", (ac, 1000))]);
    assert_matches(&v, "d", &whole);

    // Shared: r (a whole GPU of replicas) lands where p and q were booked.
    let (half, quarter, full) = (ask(GpuAsk::Shared(2)), ask(GpuAsk::Shared(1)), ask(GpuAsk::Shared(4)));
    let dp = bind(&mut v, "p", &half, "s", 0);
    let dq = bind(&mut v, "q", &quarter, "s", 0);
    let dr = bind(&mut v, "r", &full, "s", 0);
    assert_ne!(dr, dp);
    let out = write_back(&mut v, "r", &full, "s", &dr, &dp);
    assert!(drift(out));
    assert_eq!(displaced(out), if dq == dp { 2 } else { 1 });
    assert_eq!(v.placement("p"), Some(Placement::Unknown));
    // p got r's GPU (a swap); q the lowest GPU that is neither.
    let aq = (0..4).find(|g| *g != dp[0] && *g != dr[0]).expect("a GPU");
    assert!(drift(write_back(&mut v, "p", &half, "s", &dp, &dr)));
    write_back(&mut v, "q", &quarter, "s", &dq, &[aq]);
    assert_eq!(v.writeback_counts().unknown_pods, 0);
    let shared = BTreeMap::from([("p", (dr, 500)), ("q", (vec![aq], 250)), ("r", (dp, 1000))]);
    assert_matches(&v, "s", &shared);
    // The whole-GPU node is untouched by all this.
    assert_matches(&v, "d", &whole);
    let c = v.writeback_counts();
    assert_eq!((c.unknown_pods, c.unknown_nodes, c.writeback_nodes), (0, 0, 2));
}

/// The same write-back again (a resync, a status update) changes nothing
/// and is not counted again.
#[test]
fn a_write_back_applies_once() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(shared_node("s"));
    let half = ask(GpuAsk::Shared(2));
    let d = bind(&mut v, "p", &half, "s", 0);
    let other = (d[0] + 1) % 4;
    assert!(drift(write_back(&mut v, "p", &half, "s", &d, &[other])));
    let g = v.generation();
    assert_eq!(write_back(&mut v, "p", &half, "s", &d, &[other]), WriteBack::Unchanged);
    assert_eq!(v.generation(), g);
    // A write-back equal to the decision is applied, without drift.
    let e = bind(&mut v, "q", &half, "s", 0);
    assert!(!drift(write_back(&mut v, "q", &half, "s", &e, &e)));
    assert_eq!(v.placement("q"), Some(Placement::Actual));
}

/// A gang slot held on the GPU kubelet gave a plain pod moves to the GPU
/// that pod was decided on, and the member gets the moved slot.
#[test]
fn a_held_gang_slot_moves_off_kubelets_gpu() {
    let mut v = ClusterView::new(ViewConfig::default());
    for i in 0..2 {
        v.upsert_node(node(
            &format!("dgx{i}"),
            &[("nvidia.com/gpu", 8)],
            &[("fabric.topograph.run/tier-0", "leaf0")],
            Some(profile("dgx-h100")),
        ));
    }
    let spec = GangSpec {
        id: "ns/job".into(),
        min_members: 2,
        gpus_per_member: 2,
        required: None,
        preferred: None,
        ..GangSpec::default()
    };
    let GangFilter::Slot { node: at, slot } = v.gang_filter(&spec, "m0", Some(0), 0).expect("plans") else {
        panic!("no slot");
    };
    let held = v.reservation("ns/job").expect("reserved").plan.slots[slot].gpus.clone();
    let one = ask(GpuAsk::Whole(1));
    let d = bind(&mut v, "p", &one, &at, 0);
    assert!(!held.contains(&d[0]));
    let out = write_back(&mut v, "p", &one, &at, &d, &held[..1]);
    assert_eq!((drift(out), displaced(out)), (true, 0));
    let moved = v.reservation("ns/job").expect("still reserved").plan.slots[slot]
        .gpus
        .clone();
    let mut want = vec![d[0], held[1]];
    want.sort_unstable();
    assert_eq!(moved, want);
    assert_eq!(v.pod_state("p").expect("pod").2, held[..1].to_vec());
    let a = v.assume("m0", &ask(GpuAsk::Whole(2)), &at).expect("member binds");
    assert_eq!(a.gpus, want);
    assert_eq!(a.plan.expect("plan").0.slots[slot].gpus, want);
    v.assert_books();
}

/// Write-backs that do not fit the pod or the node are ignored.
#[test]
fn invalid_write_backs_are_ignored() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(node("d", &[("nvidia.com/gpu", 8)], &[], Some(profile("dgx-h100"))));
    v.upsert_node(shared_node("s"));
    let two = ask(GpuAsk::Whole(2));
    let d = bind(&mut v, "a", &two, "d", 0);
    for bad in [vec![], vec![0], vec![0, 1, 2], vec![0, 0], vec![0, 99]] {
        assert_eq!(
            write_back(&mut v, "a", &two, "d", &d, &bad),
            WriteBack::Invalid,
            "{bad:?}"
        );
        assert_eq!(v.pod_state("a").expect("pod").2, d);
    }
    let half = ask(GpuAsk::Shared(2));
    let e = bind(&mut v, "p", &half, "s", 0);
    // Two replicas span at most two GPUs.
    assert_eq!(write_back(&mut v, "p", &half, "s", &e, &[0, 1, 2]), WriteBack::Invalid);
    let mig = ask(GpuAsk::Mig {
        resource: "nvidia.com/mig-1g.10gb".into(),
        count: 1,
    });
    v.upsert_node(node("m", &[("nvidia.com/mig-1g.10gb", 7)], &[], None));
    v.observe_pod(bound("g", "m", mig.clone(), None), 0);
    assert_eq!(write_back(&mut v, "g", &mig, "m", &[], &[0]), WriteBack::Invalid);
    assert_eq!(v.writeback_counts().writeback_nodes, 0);
}

/// Replicas spread over several GPUs (`distributed`) are booked on one of
/// them: the decided one if kubelet used it, else the lowest.
#[test]
fn spread_replicas_are_booked_on_one_of_their_gpus() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(shared_node("s"));
    let half = ask(GpuAsk::Shared(2));
    let d = bind(&mut v, "p", &half, "s", 0);
    let other = (d[0] + 1) % 4;
    let mut spread = vec![d[0], other];
    spread.sort_unstable();
    assert!(drift(write_back(&mut v, "p", &half, "s", &d, &spread)));
    assert_eq!(v.pod_state("p").expect("pod").2, d);
    let e = bind(&mut v, "q", &half, "s", 0);
    let mut elsewhere: Vec<u32> = (0..4).filter(|g| *g != e[0]).take(2).collect();
    elsewhere.sort_unstable();
    write_back(&mut v, "q", &half, "s", &e, &elsewhere);
    assert_eq!(v.pod_state("q").expect("pod").2, vec![elsewhere[0]]);
}

/// A pod seen with its write-back before its node (a restart's lists in
/// either order) goes on kubelet's GPUs when the node comes.
#[test]
fn a_write_back_seen_before_its_node() {
    let mut v = ClusterView::new(ViewConfig::default());
    let one = ask(GpuAsk::Whole(1));
    let two = ask(GpuAsk::Whole(2));
    // b was decided on a's GPUs; kubelet gave them the other way round.
    let out = v.observe_pod(written(bound("a", "d", two.clone(), Some(vec![2, 3])), &[0, 1]), 0);
    assert!(drift(out));
    v.observe_pod(written(bound("b", "d", one.clone(), Some(vec![0])), &[2]), 0);
    v.observe_pod(bound("c", "d", one.clone(), Some(vec![1])), 0);
    v.upsert_node(node("d", &[("nvidia.com/gpu", 4)], &[], None));
    v.assert_books();
    assert_eq!(v.pod_state("a").expect("a").2, vec![0, 1]);
    assert_eq!(v.pod_state("b").expect("b").2, vec![2]);
    // c's decision collides with a write-back: it is placed first-free.
    assert_eq!(v.pod_state("c").expect("c").2, vec![3]);
    assert_eq!(v.writeback_counts().writeback_nodes, 1);
}

/// The wait for a write-back is bounded on nodes that write back; nodes
/// that never do (NVIDIA's plugin) are left as they were. A late write-back
/// clears the unknown state.
#[test]
fn an_overdue_write_back_makes_positions_unknown_where_nodes_write_back() {
    let mut v = ClusterView::new(ViewConfig {
        writeback_timeout_ms: 1000,
        ..ViewConfig::default()
    });
    v.upsert_node(shared_node("w"));
    v.upsert_node(shared_node("n"));
    let quarter = ask(GpuAsk::Shared(1));
    // w's plugin writes back (learned from its first write-back).
    v.observe_pod(written(bound("t", "w", quarter.clone(), Some(vec![0])), &[0]), 0);
    assert_eq!(v.writeback_counts().writeback_nodes, 1);
    v.observe_pod(bound("a", "w", quarter.clone(), Some(vec![1])), 100);
    v.observe_pod(bound("b", "n", quarter.clone(), Some(vec![1])), 100);
    v.observe_pod(bound("c", "n", quarter.clone(), Some(vec![0])), 100);
    // No decision (another scheduler's pod): nothing to wait for.
    v.observe_pod(bound("x", "w", quarter.clone(), None), 100);
    assert_eq!(v.placement("a"), Some(Placement::Awaiting(1100)));
    assert_eq!(v.placement("x"), Some(Placement::Fresh));
    v.refresh(1099);
    assert_eq!(v.writeback_counts().unknown_pods, 0);
    let before = v.score(&quarter, ["w", "n"]);
    v.refresh(1100);
    v.assert_books();
    assert_eq!(v.placement("a"), Some(Placement::Unknown));
    assert_eq!(v.placement("b"), Some(Placement::Decided));
    assert_eq!(v.placement("x"), Some(Placement::Fresh));
    let c = v.writeback_counts();
    assert_eq!((c.unknown_pods, c.unknown_nodes), (1, 1));
    // Still counted where it was decided; w is scored lowest for GPU asks.
    assert_eq!(v.pod_state("a").expect("a").2, vec![1]);
    assert_eq!(v.filter(&quarter, ["w"], false).passed, vec![0]);
    assert_eq!(
        v.score(&quarter, ["w", "n"]),
        vec![("w".to_string(), 0), ("n".to_string(), 10)]
    );
    let filtered = v.filter(&ask(GpuAsk::Shared(2)), ["w", "n"], true);
    assert_eq!(filtered.scores, vec![0, 10]);
    // A relist does not restart the wait.
    v.observe_pod(bound("a", "w", quarter.clone(), Some(vec![1])), 5000);
    v.refresh(7000);
    assert_eq!(v.placement("a"), Some(Placement::Unknown));
    assert_eq!(v.placement("b"), Some(Placement::Decided));
    // The late write-back: a is where kubelet put it, w scored as before.
    let out = v.observe_pod(written(bound("a", "w", quarter.clone(), Some(vec![1])), &[1]), 8000);
    assert!(!drift(out));
    v.assert_books();
    assert_eq!(v.placement("a"), Some(Placement::Actual));
    assert_eq!(v.writeback_counts().unknown_pods, 0);
    assert_eq!(v.score(&quarter, ["w", "n"]), before);
    // A pod that leaves while unknown takes its count with it.
    v.observe_pod(bound("e", "w", quarter.clone(), Some(vec![2])), 8000);
    v.refresh(9000);
    assert_eq!(v.writeback_counts().unknown_pods, 1);
    v.remove_pod("e");
    v.assert_books();
    assert_eq!(v.writeback_counts().unknown_pods, 0);
}

/// A timeout of 0 never marks a pod unknown.
#[test]
fn no_timeout_no_wait() {
    let mut v = ClusterView::new(ViewConfig {
        writeback_timeout_ms: 0,
        ..ViewConfig::default()
    });
    v.upsert_node(shared_node("w"));
    let quarter = ask(GpuAsk::Shared(1));
    v.observe_pod(written(bound("t", "w", quarter.clone(), Some(vec![0])), &[0]), 0);
    v.observe_pod(bound("a", "w", quarter, Some(vec![1])), 0);
    v.refresh(u64::MAX);
    assert_eq!(v.placement("a"), Some(Placement::Fresh));
    assert_eq!(v.writeback_counts().unknown_pods, 0);
}

/// A node's layout change keeps write-backs by GPU index; the node keeps
/// what it learned.
#[test]
fn a_node_update_keeps_write_backs() {
    let mut v = ClusterView::new(ViewConfig::default());
    v.upsert_node(shared_node("s"));
    let half = ask(GpuAsk::Shared(2));
    let d = bind(&mut v, "p", &half, "s", 0);
    let other = (d[0] + 1) % 4;
    write_back(&mut v, "p", &half, "s", &d, &[other]);
    let mut changed = shared_node("s");
    changed.labels.insert("team".into(), "a".into());
    v.upsert_node(changed);
    v.assert_books();
    assert_eq!(v.pod_state("p").expect("pod").2, vec![other]);
    assert_eq!(v.placement("p"), Some(Placement::Actual));
    assert_eq!(v.writeback_counts().writeback_nodes, 1);
}
