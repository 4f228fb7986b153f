use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::comm::tests::{fabric, machines};
use crate::fabric::Fabric;
use crate::topology::NodeTopology;

fn setup() -> (Fabric, BTreeMap<String, NodeTopology>) {
    (fabric(), machines())
}

fn idx<M: crate::fabric::MachineLookup + ?Sized>(c: &GangCluster<'_, M>, name: &str) -> usize {
    c.node_index(name).unwrap_or_else(|| panic!("no node {name}"))
}

/// Takes every GPU of the named nodes.
fn take_nodes<M: crate::fabric::MachineLookup + ?Sized>(c: &GangCluster<'_, M>, free: &mut FreeState, names: &[&str]) {
    for n in names {
        let i = idx(c, n);
        let gpus = free.free_gpus(c, i);
        free.take(c, i, &gpus).expect("take");
    }
}

fn placed(d: Decision) -> GangPlan {
    match d {
        Decision::Place(p) => p,
        Decision::Wait(w) => panic!("expected a placement, got {w:?}"),
    }
}

fn waited(d: Decision) -> NoFit {
    match d {
        Decision::Wait(w) => w,
        Decision::Place(p) => panic!("expected to wait, got {p:?}"),
    }
}

/// Members per node, in rank order of first appearance.
fn per_node(p: &GangPlan) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for m in &p.members {
        match out.last_mut() {
            Some((n, c)) if *n == m.node => *c += m.gpus.len(),
            _ => out.push((m.node.clone(), m.gpus.len())),
        }
    }
    out
}

const DGX: [&str; 8] = ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3"];

#[test]
fn pcie_boxes_get_three_of_four_gpus_per_node() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    take_nodes(&c, &mut free, &DGX);
    let p = placed(c.plan(&Gang::new(12, 1), &free).expect("plan"));
    assert_eq!(
        per_node(&p),
        vec![("p0".into(), 3), ("p1".into(), 3), ("p2".into(), 3), ("p3".into(), 3)]
    );
    assert_eq!(p.scope, Level::Tier(0));
    // Four per node would have fit on three boxes but estimates worse.
    assert!(p.estimate.host_contention == 1.0);
}

#[test]
fn nvswitch_boxes_get_full_nodes() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let free = FreeState::all_free(&c);
    let p = placed(c.plan(&Gang::new(16, 1), &free).expect("plan"));
    assert_eq!(p.nodes, 2);
    assert!(per_node(&p).iter().all(|(_, n)| *n == 8));
    assert_eq!(p.scope, Level::Tier(0));
    assert!((370.0..=385.0).contains(&p.estimate.busbw_gbps));
}

#[test]
fn a_gang_that_fits_one_node_stays_on_one_node() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let free = FreeState::all_free(&c);
    let p = placed(c.plan(&Gang::new(2, 4), &free).expect("plan"));
    assert_eq!(p.nodes, 1);
    assert_eq!(p.scope, Level::Node);
    assert_eq!(p.members[0].gpus, vec![0, 1, 2, 3]);
    assert_eq!(p.members[1].gpus, vec![4, 5, 6, 7]);
}

#[test]
fn a_gang_waits_rather_than_split_or_start_partially() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    take_nodes(&c, &mut free, &["a0", "a1", "b0"]);
    // 5 full DGX nodes are free; 6 × 8 must wait, whole, and could run on an empty cluster.
    let w = waited(c.plan(&Gang::new(6, 8), &free).expect("plan"));
    assert!(w.fits_empty);
    assert!(matches!(w.reason, NoFitReason::Fragmented { need: 6, fit: 5 }), "{w:?}");
    // 4 × 8 inside one leaf group: each unit has 2 or 3 free nodes, so wait.
    let mut leaf = Gang::new(4, 8);
    leaf.required = Some(Level::Tier(0));
    let w = waited(c.plan(&leaf, &free).expect("plan"));
    assert!(w.fits_empty);
    assert!(
        matches!(w.reason, NoFitReason::NoDomain { need: 4, best: 3, .. }),
        "{w:?}"
    );
    // Without the requirement it spans both units.
    let p = placed(c.plan(&Gang::new(4, 8), &free).expect("plan"));
    assert_eq!(p.scope, Level::Tier(2));
    // 9 × 8 never fits: only 8 nodes have 8 GPUs.
    let w = waited(c.plan(&Gang::new(9, 8), &FreeState::all_free(&c)).expect("plan"));
    assert!(!w.fits_empty);
    let w = waited(c.plan(&Gang::new(1, 16), &free).expect("plan"));
    assert_eq!(
        w,
        NoFit {
            reason: NoFitReason::MemberTooBig {
                gpus_per_member: 16,
                largest_node: 8
            },
            fits_empty: false
        }
    );
}

#[test]
fn min_members_lets_an_elastic_gang_start_smaller() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    take_nodes(&c, &mut free, &["a0", "a1", "b0", "b1", "b2"]);
    let mut g = Gang::new(4, 8);
    g.min_members = 2;
    // a2, a3 and b3 are free: three of four members start, across units.
    let p = placed(c.plan(&g, &free).expect("plan"));
    assert_eq!(p.members.len(), 3);
    assert_eq!(p.scope, Level::Tier(2));
    // Kept inside one unit, two start.
    g.required = Some(Level::Tier(0));
    let p = placed(c.plan(&g, &free).expect("plan"));
    assert_eq!(p.members.len(), 2);
    assert_eq!(p.scope, Level::Tier(0));
}

#[test]
fn small_gangs_fill_fragments_before_breaking_clean_nodes_and_groups() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    let a2 = idx(&c, "a2");
    free.take(&c, a2, &[0, 1, 2, 3]).expect("take");
    let p = placed(c.plan(&Gang::new(1, 4), &free).expect("plan"));
    assert_eq!(p.members[0].node, "a2");
    // Two full nodes: the fragmented unit (a) keeps unit b clean.
    let p = placed(c.plan(&Gang::new(2, 8), &free).expect("plan"));
    let nodes: BTreeSet<String> = p.members.iter().map(|m| m.node.clone()).collect();
    assert!(nodes.iter().all(|n| n.starts_with('a')), "{nodes:?}");
}

#[test]
fn rails_follow_the_first_node() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    take_nodes(
        &c,
        &mut free,
        &["a2", "a3", "b0", "b1", "b2", "b3", "p0", "p1", "p2", "p3"],
    );
    free.take(&c, idx(&c, "a0"), &[0, 1, 2, 3]).expect("take");
    free.take(&c, idx(&c, "a1"), &[6, 7]).expect("take");
    let p = placed(c.plan(&Gang::new(2, 4), &free).expect("plan"));
    assert_eq!(p.members[0].node, "a0");
    assert_eq!(p.members[0].gpus, vec![4, 5, 6, 7]);
    assert_eq!(p.members[1].node, "a1");
    assert!(
        p.members[1].gpus.contains(&4) && p.members[1].gpus.contains(&5),
        "{p:?}"
    );
    // Two mismatched NIC pairs on each of the ring's two legs.
    assert_eq!(p.estimate.rail_mismatches, 4);
}

#[test]
fn preferred_level_is_kept_when_it_can_be() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    take_nodes(&c, &mut free, &["a0"]);
    let mut g = Gang::new(3, 8);
    g.preferred = Some(Level::Tier(0));
    let p = placed(c.plan(&g, &free).expect("plan"));
    assert_eq!(p.scope, Level::Tier(0));
}

#[test]
fn invalid_gangs_and_states_are_errors() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let free = FreeState::all_free(&c);
    assert_eq!(c.plan(&Gang::new(0, 1), &free), Err(GangError::NoMembers));
    assert_eq!(c.plan(&Gang::new(1, 0), &free), Err(GangError::NoGpusPerMember));
    let mut g = Gang::new(2, 1);
    g.min_members = 3;
    assert_eq!(
        c.plan(&g, &free),
        Err(GangError::MinAboveMembers { min: 3, members: 2 })
    );
    let mut s = free.clone();
    assert_eq!(
        s.take(&c, 0, &[9]),
        Err(GangError::UnknownGpu {
            node: "a0".into(),
            gpu: 9
        })
    );
    s.take(&c, 0, &[1]).expect("take");
    assert_eq!(
        s.take(&c, 0, &[2, 1]),
        Err(GangError::GpuNotFree {
            node: "a0".into(),
            gpu: 1
        })
    );
    assert_eq!(s.free_count(0), 7, "a failed take changes nothing");
    assert!(matches!(Level::parse(&f, "spine"), Ok(Level::Tier(1))));
    assert!(matches!(Level::parse(&f, "rack"), Err(GangError::UnknownLevel { .. })));
}

fn state_and_gang() -> impl Strategy<Value = (Vec<u8>, u32, u32, u32)> {
    (
        proptest::collection::vec(any::<u8>(), 12),
        1u32..12,
        prop_oneof![Just(1u32), Just(2), Just(4), Just(8)],
        1u32..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn plans_are_all_or_nothing_without_double_booking_and_ranks_in_node_runs(
        (masks, members, k, min) in state_and_gang()
    ) {
        let (f, m) = setup();
        let c = GangCluster::new(&f, &m).expect("cluster");
        let mut free = FreeState::all_free(&c);
        for (n, mask) in masks.iter().enumerate() {
            let gpus: Vec<u32> = free.free_gpus(&c, n).into_iter().filter(|g| mask & (1 << g) != 0).collect();
            free.take(&c, n, &gpus).expect("take");
        }
        let mut g = Gang::new(members, k);
        g.min_members = min.min(members);
        match c.plan(&g, &free).expect("plan") {
            Decision::Place(p) => {
                prop_assert!(p.members.len() as u32 >= g.min_members && p.members.len() as u32 <= g.members);
                let mut seen = BTreeSet::new();
                for mem in &p.members {
                    prop_assert_eq!(mem.gpus.len() as u32, k);
                    let free_here: BTreeSet<u32> = free.free_gpus(&c, mem.node_index).into_iter().collect();
                    for &gpu in &mem.gpus {
                        prop_assert!(free_here.contains(&gpu), "GPU {} on {} was not free", gpu, mem.node);
                        prop_assert!(seen.insert((mem.node_index, gpu)), "GPU {} on {} booked twice", gpu, mem.node);
                    }
                }
                // Each node's members are one run of consecutive ranks.
                let runs = per_node(&p);
                let distinct: BTreeSet<&String> = runs.iter().map(|(n, _)| n).collect();
                prop_assert_eq!(distinct.len(), runs.len());
                let mut after = free.clone();
                after.apply(&c, &p).expect("apply");
                prop_assert_eq!(after.total_free() + seen.len() as u64, free.total_free());
                // When the whole gang fits somewhere, none is left behind.
                if p.members.len() < g.members as usize {
                    let more = Gang { min_members: p.members.len() as u32 + 1, ..g.clone() };
                    prop_assert!(matches!(c.plan(&more, &free).expect("plan"), Decision::Wait(_)));
                }
            }
            Decision::Wait(w) => {
                let empty = FreeState::all_free(&c);
                let on_empty = c.plan(&g, &empty).expect("plan");
                prop_assert_eq!(w.fits_empty, matches!(on_empty, Decision::Place(_)));
            }
        }
    }
}

#[test]
fn patience_takes_a_good_placement_at_once_and_a_poor_one_only_after_waiting() {
    let p = Patience {
        accept_ratio: 0.95,
        max_wait_s: 600.0,
    };
    assert!(p.accept(370.0, 376.0, 0.0));
    assert!(!p.accept(188.0, 376.0, 599.0));
    assert!(p.accept(188.0, 376.0, 600.0));
    assert!(p.accept(f64::INFINITY, f64::INFINITY, 0.0));
}

/// Takes every GPU of the named nodes and returns them as releases at `at_s`.
fn busy_until<M: crate::fabric::MachineLookup + ?Sized>(
    c: &GangCluster<'_, M>,
    free: &mut FreeState,
    nodes: &[(&str, f64)],
) -> Vec<Release> {
    let mut out = Vec::new();
    for &(n, at_s) in nodes {
        let i = idx(c, n);
        let gpus = free.free_gpus(c, i);
        free.take(c, i, &gpus).expect("take");
        out.push(Release { at_s, node: i, gpus });
    }
    out
}

fn nodes_of(p: &GangPlan) -> BTreeSet<String> {
    p.members.iter().map(|m| m.node.clone()).collect()
}

#[test]
fn a_waiting_gang_reserves_the_unit_that_frees_first() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    let rel = busy_until(&c, &mut free, &[("a0", 100.0), ("a1", 1000.0), ("b0", 50.0)]);
    // Now 4 × 8 only fits across the 2:1 core (half the bandwidth).
    let now = placed(c.plan(&Gang::new(4, 8), &free).expect("plan"));
    assert_eq!(now.scope, Level::Tier(2));
    let best = placed(c.plan(&Gang::new(4, 8), &FreeState::all_free(&c)).expect("plan"));
    let tl = Timeline::new(0.0, free, rel);
    let r = tl
        .earliest(&c, &Gang::new(4, 8), 0.95 * best.estimate.busbw_gbps, 500.0)
        .expect("earliest")
        .expect("a reservation");
    // b0 ends at 50: unit b is whole then; unit a only at 1000.
    assert_eq!(r.start_s, 50.0);
    assert_eq!(r.end_s, 550.0);
    assert_eq!(nodes_of(&r.plan), ["b0", "b1", "b2", "b3"].map(String::from).into());
    // Any placement: now.
    let any = tl
        .earliest(&c, &Gang::new(4, 8), 0.0, 500.0)
        .expect("earliest")
        .expect("fits");
    assert_eq!(any.start_s, 0.0);
    // Never: 9 × 8.
    assert!(tl.earliest(&c, &Gang::new(9, 8), 0.0, 1.0).expect("earliest").is_none());
}

#[test]
fn backfill_uses_reserved_gpus_only_for_jobs_that_end_before_the_reservation() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    let rel = busy_until(
        &c,
        &mut free,
        &[
            ("a0", 100.0),
            ("a1", 1000.0),
            ("a2", 2000.0),
            ("a3", 2000.0),
            ("b0", 50.0),
        ],
    );
    let mut tl = Timeline::new(0.0, free, rel);
    let r = tl
        .earliest(&c, &Gang::new(4, 8), 1.0, 500.0)
        .expect("earliest")
        .expect("a reservation");
    assert_eq!((r.start_s, nodes_of(&r.plan).len()), (50.0, 4));
    let b1 = idx(&c, "b1");
    assert!(r.conflicts(b1, &[0], 60.0));
    assert!(!r.conflicts(b1, &[0], 40.0));
    assert!(!r.conflicts(idx(&c, "a2"), &[0], 1e9));
    tl.reserve(1, r.clone());
    // A short 8-GPU job backfills into the gap on unit b: it ends at 30.
    let short = placed(c.plan(&Gang::new(1, 8), &tl.visible(&c, 30.0, None)).expect("plan"));
    assert!(short.members[0].node.starts_with('b'), "{short:?}");
    assert!(!r.conflicts(short.members[0].node_index, &short.members[0].gpus, 30.0));
    tl.took(&c, short.members[0].node_index, &short.members[0].gpus, 30.0)
        .expect("took");
    // A long one (ends at 100, after the reserved start) may not use unit b
    // and no other DGX node is free: it waits.
    let w = waited(c.plan(&Gang::new(1, 8), &tl.visible(&c, 100.0, None)).expect("plan"));
    assert!(w.fits_empty);
    // The owner itself sees its reserved GPUs.
    let other = ["b1", "b2", "b3"]
        .map(|n| idx(&c, n))
        .into_iter()
        .find(|&i| i != short.members[0].node_index)
        .expect("another b node");
    assert_eq!(tl.visible(&c, 100.0, None).free_count(other), 0);
    assert_eq!(tl.visible(&c, 100.0, Some(1)).free_count(other), 8);
    tl.cancel(1);
    assert_eq!(tl.visible(&c, 100.0, None).free_count(other), 8);
}

#[test]
fn a_backfilled_job_does_not_delay_a_recomputed_reservation() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    let rel = busy_until(
        &c,
        &mut free,
        &[
            ("a0", 100.0),
            ("a1", 1000.0),
            ("a2", 2000.0),
            ("a3", 2000.0),
            ("b0", 50.0),
        ],
    );
    let mut tl = Timeline::new(0.0, free.clone(), rel.clone());
    let r = tl
        .earliest(&c, &Gang::new(4, 8), 1.0, 500.0)
        .expect("earliest")
        .expect("r");
    tl.reserve(1, r.clone());
    let short = placed(c.plan(&Gang::new(1, 8), &tl.visible(&c, 30.0, None)).expect("plan"));
    let s = &short.members[0];
    // The cluster after the backfill, seen afresh (as after the next event).
    free.take(&c, s.node_index, &s.gpus).expect("take");
    let mut rel2 = rel;
    rel2.push(Release {
        at_s: 30.0,
        node: s.node_index,
        gpus: s.gpus.clone(),
    });
    let fresh = Timeline::new(0.0, free, rel2);
    let r2 = fresh
        .earliest(&c, &Gang::new(4, 8), 1.0, 500.0)
        .expect("earliest")
        .expect("r2");
    assert_eq!(r2.start_s, r.start_s);
}

#[test]
fn later_reservations_plan_around_earlier_ones_until_they_end() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    let rel = busy_until(&c, &mut free, &[("a0", 100.0), ("a1", 1000.0), ("b0", 50.0)]);
    let best4 = placed(c.plan(&Gang::new(4, 8), &FreeState::all_free(&c)).expect("plan"));
    for (dur, want) in [(1000.0, 100.0), (10.0, 60.0)] {
        let mut tl = Timeline::new(0.0, free.clone(), rel.clone());
        let first = tl
            .earliest(&c, &Gang::new(4, 8), 0.95 * best4.estimate.busbw_gbps, dur)
            .expect("earliest")
            .expect("r");
        assert_eq!(first.start_s, 50.0);
        tl.reserve(1, first);
        // 3 × 8 in one unit: a0 + a2 + a3 at 100, or unit b once the first
        // gang ends at 50 + dur.
        let best3 = placed(c.plan(&Gang::new(3, 8), &FreeState::all_free(&c)).expect("plan"));
        let second = tl
            .earliest(&c, &Gang::new(3, 8), 0.95 * best3.estimate.busbw_gbps, 10.0)
            .expect("earliest")
            .expect("r");
        assert_eq!(second.start_s, want, "first gang runs {dur} s");
    }
}

#[test]
fn waiting_pays_off_only_when_the_job_finishes_sooner() {
    let rule = WaitRule { comm_share: 0.25 };
    // At half the bandwidth a step takes 1.25×: a 100 s job loses 25 s.
    assert!((rule.slowdown(0.5) - 1.25).abs() < 1e-12);
    assert!(rule.worth_waiting(0.5, 1.0, 20.0, 100.0));
    assert!(!rule.worth_waiting(0.5, 1.0, 30.0, 100.0));
    assert!(!rule.worth_waiting(1.0, 1.0, 0.0, 100.0));
    // Not placeable now: any finite wait beats never.
    assert!(rule.worth_waiting(0.0, 0.5, 1e9, 100.0));
    assert!(!WaitRule { comm_share: 0.0 }.worth_waiting(0.5, 1.0, 1.0, 100.0));
}

const ALL: &[u32] = &[0, 1, 2, 3, 4, 5, 6, 7];

/// [`placed`], for tests whose placed members are named `placed`.
fn placed_plan(d: Decision) -> GangPlan {
    placed(d)
}

/// Members already running on `node` with these GPUs each.
fn running<M: crate::fabric::MachineLookup + ?Sized>(
    c: &GangCluster<'_, M>,
    free: &mut FreeState,
    node: &str,
    members: &[&[u32]],
) -> Vec<MemberPlacement> {
    let i = idx(c, node);
    members
        .iter()
        .map(|g| {
            free.take(c, i, g).expect("take");
            MemberPlacement {
                node_index: i,
                node: node.into(),
                gpus: g.to_vec(),
            }
        })
        .collect()
}

#[test]
fn a_replan_keeps_placed_members_and_puts_the_rest_beside_them() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    // Two members of a 4 × 8 gang run on b0 and b1; a0 and a1 are busy with
    // other work, so each unit has two clean nodes left.
    take_nodes(&c, &mut free, &["a0", "a1"]);
    let mut placed = running(&c, &mut free, "b0", &[ALL]);
    placed.extend(running(&c, &mut free, "b1", &[ALL]));
    // Planned from scratch, the two missing members would go to a2, a3:
    // across the core from the running ones.
    let scratch = placed_plan(c.plan(&Gang::new(2, 8), &free).expect("plan"));
    assert_eq!(nodes_of(&scratch), BTreeSet::from(["a2".to_string(), "a3".to_string()]));
    // Around the placed members they go to b2, b3: one leaf group for all.
    let p = placed_plan(c.plan_around(&Gang::new(4, 8), &free, &placed).expect("plan"));
    assert_eq!(p.members.len(), 2, "only the missing members are planned");
    assert_eq!(nodes_of(&p), BTreeSet::from(["b2".to_string(), "b3".to_string()]));
    assert_eq!(p.scope, Level::Tier(0));
    assert_eq!(p.nodes, 4);
    assert_eq!(p.estimate.max_tier, Some(0));
}

#[test]
fn a_replan_fills_the_placed_members_node_first() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    let placed = running(&c, &mut free, "b2", &[&[0, 1], &[2, 3]]);
    let p = placed_plan(c.plan_around(&Gang::new(4, 2), &free, &placed).expect("plan"));
    assert_eq!(p.scope, Level::Node);
    assert_eq!(p.nodes, 1);
    let gpus: Vec<(String, Vec<u32>)> = p.members.iter().map(|m| (m.node.clone(), m.gpus.clone())).collect();
    assert_eq!(gpus, vec![("b2".into(), vec![4, 5]), ("b2".into(), vec![6, 7])]);
}

#[test]
fn a_replan_waits_for_room_beside_placed_members_or_says_it_never_fits() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut leaf = Gang::new(4, 8);
    leaf.required = Some(Level::Tier(0));

    // a0, a1 run members; a2 has one GPU busy: unit a holds one more member
    // now, unit b is free but the placed members are in unit a.
    let mut free = FreeState::all_free(&c);
    let mut placed = running(&c, &mut free, "a0", &[ALL]);
    placed.extend(running(&c, &mut free, "a1", &[ALL]));
    free.take(&c, idx(&c, "a2"), &[0]).expect("take");
    let w = waited(c.plan_around(&leaf, &free, &placed).expect("plan"));
    assert!(w.fits_empty, "it fits once a2 frees up");
    assert_eq!(
        w.reason,
        NoFitReason::NoRoomNearPlaced {
            level: Level::Tier(0),
            placed: 2,
            need: 2,
            best: 1
        }
    );
    assert!(w.reason.to_string().contains("2 placed members"), "{}", w.reason);
    // From scratch, unit b would take the two: the placed ones would be left
    // in another leaf group.
    let mut two = leaf.clone();
    two.members = 2;
    two.min_members = 2;
    assert!(matches!(c.plan(&two, &free).expect("plan"), Decision::Place(_)));

    // Placed members in two units can never form one leaf group.
    let mut free = FreeState::all_free(&c);
    let mut apart = running(&c, &mut free, "a0", &[ALL]);
    apart.extend(running(&c, &mut free, "b0", &[ALL]));
    let w = waited(c.plan_around(&leaf, &free, &apart).expect("plan"));
    assert_eq!(
        w,
        NoFit {
            reason: NoFitReason::PlacedApart {
                level: Level::Tier(0),
                placed: 2
            },
            fits_empty: false
        }
    );
    // Without the requirement the same members are planned around.
    let p = placed_plan(c.plan_around(&Gang::new(4, 8), &free, &apart).expect("plan"));
    assert_eq!(p.members.len(), 2);

    // 5 × 8 in one unit of 4 nodes with one member placed: never, even
    // though 4 × 8 from scratch fits a unit.
    let mut five = leaf.clone();
    five.members = 5;
    five.min_members = 5;
    let mut free = FreeState::all_free(&c);
    let one = running(&c, &mut free, "a0", &[ALL]);
    let w = waited(c.plan_around(&five, &free, &one).expect("plan"));
    assert!(!w.fits_empty);
    assert!(
        matches!(w.reason, NoFitReason::NoRoomNearPlaced { need: 4, best: 3, .. }),
        "{w:?}"
    );
}

#[test]
fn replan_inputs_are_checked() {
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    let placed = running(&c, &mut free, "a0", &[&[0, 1, 2, 3], &[4, 5, 6, 7]]);
    assert_eq!(
        c.plan_around(&Gang::new(2, 4), &free, &placed),
        Err(GangError::AllPlaced { placed: 2, members: 2 })
    );
    let ghost = [MemberPlacement {
        node_index: 0,
        node: "zz".into(),
        gpus: vec![0],
    }];
    assert_eq!(
        c.plan_around(&Gang::new(2, 1), &free, &ghost),
        Err(GangError::UnknownNode { node: "zz".into() })
    );
    let bad_gpu = [MemberPlacement {
        node_index: idx(&c, "p0"),
        node: "p0".into(),
        gpus: vec![7],
    }];
    assert_eq!(
        c.plan_around(&Gang::new(2, 1), &free, &bad_gpu),
        Err(GangError::UnknownGpu {
            node: "p0".into(),
            gpu: 7
        })
    );
    // No placed members: the plain planner.
    assert_eq!(
        c.plan_around(&Gang::new(2, 4), &FreeState::all_free(&c), &[]),
        c.plan(&Gang::new(2, 4), &FreeState::all_free(&c))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn a_replan_places_exactly_the_missing_members_on_free_gpus_in_the_required_domain(
        (masks, members, k, _min) in state_and_gang(),
        keep in 1u32..12,
    ) {
        let (f, m) = setup();
        let c = GangCluster::new(&f, &m).expect("cluster");
        let mut free = FreeState::all_free(&c);
        for (n, mask) in masks.iter().enumerate() {
            let gpus: Vec<u32> = free.free_gpus(&c, n).into_iter().filter(|g| mask & (1 << g) != 0).collect();
            free.take(&c, n, &gpus).expect("take");
        }
        let members = members.max(2);
        let Decision::Place(first) = c.plan(&Gang::new(members, k), &free).expect("plan") else {
            return Ok(());
        };
        // The first `keep` members run; the rest of the plan is given back.
        let keep = keep.min(members - 1) as usize;
        let placed = first.members[..keep].to_vec();
        for mem in &placed {
            free.take(&c, mem.node_index, &mem.gpus).expect("take");
        }
        let mut g = Gang::new(members, k);
        g.required = Some(first.scope);
        let p = placed_plan(c.plan_around(&g, &free, &placed).expect("plan"));
        prop_assert_eq!(p.members.len(), members as usize - keep);
        prop_assert!(p.scope.within(first.scope), "{:?} outside {:?}", p.scope, first.scope);
        let mut seen = BTreeSet::new();
        for mem in &p.members {
            prop_assert_eq!(mem.gpus.len() as u32, k);
            let free_here: BTreeSet<u32> = free.free_gpus(&c, mem.node_index).into_iter().collect();
            for &gpu in &mem.gpus {
                prop_assert!(free_here.contains(&gpu), "GPU {} on {} was not free", gpu, mem.node);
                prop_assert!(seen.insert((mem.node_index, gpu)), "GPU {} on {} booked twice", gpu, mem.node);
            }
        }
    }
}

#[test]
fn one_node_jobs_reserve_within_their_own_depth_and_gangs_within_theirs() {
    let depth = ReserveDepth { gangs: 2, one_node: 3 };
    // Two gang reservations stand: a third gang may not reserve, a single
    // 8-GPU pod (or a fractional one) may, and so may a one-node gang.
    let standing = [false, false];
    assert!(!depth.allows(false, 4, standing.into_iter()));
    assert!(depth.allows(true, 1, standing.into_iter()));
    assert!(depth.allows(true, 2, standing.into_iter()));
    // Three one-node reservations fill theirs without touching the gangs'.
    let standing = [true, true, true, false];
    assert!(!depth.allows(true, 1, standing.into_iter()));
    assert!(depth.allows(false, 4, standing.into_iter()));
    // 0 is the first rule: single pods never reserve; gangs of several
    // pods, one-node or not, share one depth.
    let first = ReserveDepth { gangs: 2, one_node: 0 };
    assert!(!first.allows(true, 1, std::iter::empty()));
    assert!(first.allows(true, 2, [false].into_iter()));
    assert!(!first.allows(false, 4, [true, false].into_iter()));
}

#[test]
fn a_single_pod_that_reserves_keeps_the_node_that_frees_first_from_a_later_gang() {
    // The mechanism behind one-node reservations: a reservation made first
    // keeps its node; a gang reserving after it plans around it.
    let (f, m) = setup();
    let c = GangCluster::new(&f, &m).expect("cluster");
    let mut free = FreeState::all_free(&c);
    let rel = busy_until(
        &c,
        &mut free,
        &[
            ("a0", 10.0),
            ("a1", 20.0),
            ("a2", 30.0),
            ("a3", 40.0),
            ("b0", 50.0),
            ("b1", 60.0),
            ("b2", 70.0),
            ("b3", 80.0),
        ],
    );
    let best3 = placed(c.plan(&Gang::new(3, 8), &FreeState::all_free(&c)).expect("plan"));
    let want = 0.95 * best3.estimate.busbw_gbps;
    // Without the pod's reservation the gang takes a0..a2 from 30, and a
    // pod of 8 GPUs running 1,000 s cannot use a0 at 10: it would still run
    // at 30.
    let mut alone = Timeline::new(0.0, free.clone(), rel.clone());
    let g = alone
        .earliest(&c, &Gang::new(3, 8), want, 100.0)
        .expect("earliest")
        .expect("gang");
    assert_eq!(
        (g.start_s, nodes_of(&g.plan)),
        (30.0, ["a0", "a1", "a2"].map(String::from).into())
    );
    alone.reserve(2, g);
    let pod = alone
        .earliest(&c, &Gang::new(1, 8), 0.0, 1000.0)
        .expect("earliest")
        .expect("pod");
    // a0 is the gang's: the pod waits for a3 at 40.
    assert_eq!(
        (pod.start_s, nodes_of(&pod.plan)),
        (40.0, ["a3"].map(String::from).into())
    );
    // With the pod's reservation made first (it arrived first), it gets a0
    // at 10 and the gang plans around it: a1..a3 from 40, as good.
    let mut tl = Timeline::new(0.0, free, rel);
    let pod = tl
        .earliest(&c, &Gang::new(1, 8), 0.0, 1000.0)
        .expect("earliest")
        .expect("pod");
    assert_eq!(
        (pod.start_s, nodes_of(&pod.plan)),
        (10.0, ["a0"].map(String::from).into())
    );
    tl.reserve(1, pod);
    let g = tl
        .earliest(&c, &Gang::new(3, 8), want, 100.0)
        .expect("earliest")
        .expect("gang");
    assert_eq!(
        (g.start_s, nodes_of(&g.plan)),
        (40.0, ["a1", "a2", "a3"].map(String::from).into())
    );
}
