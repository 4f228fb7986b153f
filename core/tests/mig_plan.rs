//! The MIG planner (issue 14, "Planning"), checked against brute force over
//! every valid layout of one GPU, on every MIG-capable model:
//!
//! - a plan never destroys a busy instance, and changes the MIG mode only on
//!   an idle GPU (the step simulator below refuses anything else);
//! - applying a plan yields the target, or the stated closest layout when
//!   blocked;
//! - no shorter plan exists (minimum over all layouts, and a breadth-first
//!   search over step sequences);
//! - a single-GPU change touches only that GPU;
//! - blocked targets report exactly a smallest set of busy instances whose
//!   release makes the target reachable;
//! - errors name the field and the value.
//!
//! The simulator, the layout enumeration and the matching here are written
//! independently of the planner; validity is `MigLayout::validate`.
#![allow(clippy::unwrap_used)] // test helpers: a broken fixture should fail loudly

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use railyard_core::catalog::{GpuModel, MODELS};
use railyard_core::config::MigPartedConfig;
use railyard_core::machine::MachineProfile;
use railyard_core::mig::{
    GpuGoal, GpuMigState, GpuPlan, InstanceRef, MigFamily, MigInstance, MigLayout, MigStep, MigTarget, Placement,
    PlanError, ProfileKind, WantedInstance, enumerate_maximal_layouts, plan,
};

const KINDS: [ProfileKind; 7] = [
    ProfileKind::G1,
    ProfileKind::G1Me,
    ProfileKind::G1DoubleMem,
    ProfileKind::G2,
    ProfileKind::G3,
    ProfileKind::G4,
    ProfileKind::G7,
];

fn mig_models() -> Vec<&'static GpuModel> {
    let models: Vec<_> = MODELS.iter().filter(|m| m.is_mig_capable()).collect();
    assert!(models.len() >= 5, "every MIG family should have a model");
    models
}

fn family_of(m: &GpuModel) -> MigFamily {
    m.mig.unwrap()
}

/// Every valid layout of one GPU, as bit sets over the 25 candidates.
struct World {
    cands: Vec<MigInstance>,
    valid: Vec<u32>,
    valid_set: HashSet<u32>,
    /// Valid layouts by their count vector.
    by_counts: HashMap<[u8; 7], Vec<u32>>,
    /// Every count vector a valid layout has (the targets a mig-parted config
    /// can name).
    count_vectors: Vec<[u8; 7]>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let cands: Vec<MigInstance> = KINDS
            .iter()
            .flat_map(|&kind| {
                kind.spec()
                    .placements
                    .iter()
                    .map(move |&placement| MigInstance { kind, placement })
            })
            .collect();
        assert_eq!(cands.len(), 25);
        let mut valid = Vec::new();
        fn walk(cands: &[MigInstance], from: usize, mask: u32, out: &mut Vec<u32>) {
            out.push(mask);
            for c in from..cands.len() {
                let next = mask | 1 << c;
                let layout = MigLayout::new(MigFamily::A100_40gb, insts_of(cands, next));
                if layout.validate().is_ok() {
                    walk(cands, c + 1, next, out);
                }
            }
        }
        walk(&cands, 0, 0, &mut valid);
        assert_eq!(valid.len(), 2319, "the bound the planner documents");
        let valid_set: HashSet<u32> = valid.iter().copied().collect();
        let mut by_counts: HashMap<[u8; 7], Vec<u32>> = HashMap::new();
        for &m in &valid {
            by_counts.entry(counts(&cands, m)).or_default().push(m);
        }
        let mut cv: Vec<[u8; 7]> = by_counts.keys().copied().collect();
        cv.sort();
        World {
            cands,
            valid,
            valid_set,
            by_counts,
            count_vectors: cv,
        }
    })
}

fn insts_of(cands: &[MigInstance], mask: u32) -> Vec<MigInstance> {
    (0..cands.len())
        .filter(|c| mask & 1 << c != 0)
        .map(|c| cands[c])
        .collect()
}

/// In canonical order (by placement), as plans report them.
fn insts(mask: u32) -> Vec<MigInstance> {
    let mut out = insts_of(&world().cands, mask);
    out.sort_by_key(|i| (i.placement, i.kind));
    out
}

fn mask(instances: &[MigInstance]) -> u32 {
    let w = world();
    instances.iter().fold(0, |m, i| {
        m | 1
            << w.cands
                .iter()
                .position(|c| c == i)
                .unwrap_or_else(|| panic!("not a candidate: {i:?}"))
    })
}

fn counts(cands: &[MigInstance], mask: u32) -> [u8; 7] {
    let mut out = [0; 7];
    for i in insts_of(cands, mask) {
        out[i.kind as usize] += 1;
    }
    out
}

/// A target in kinds: per entry a kind and maybe a start.
type Entry = (ProfileKind, Option<u8>);
type Entries = Vec<Entry>;

#[derive(Debug, Clone)]
enum Goal {
    Disabled,
    Enabled(Entries),
}

fn goal_for(family: MigFamily, goal: &Goal) -> GpuGoal {
    match goal {
        Goal::Disabled => GpuGoal::Disabled,
        Goal::Enabled(entries) => GpuGoal::Enabled(
            entries
                .iter()
                .map(|&(k, start)| WantedInstance {
                    profile: family.profile(k).name.to_string(),
                    start,
                })
                .collect(),
        ),
    }
}

fn entries_of_counts(cv: &[u8; 7]) -> Entries {
    KINDS
        .iter()
        .flat_map(|&k| std::iter::repeat_n((k, None), cv[k as usize] as usize))
        .collect()
}

/// The target's counts and the instances it places.
fn demand(entries: &Entries) -> ([u8; 7], u32) {
    let mut want = [0u8; 7];
    let mut placed = Vec::new();
    for &(k, start) in entries {
        want[k as usize] += 1;
        if let Some(s) = start {
            placed.push(MigInstance::at(k, s));
        }
    }
    (want, mask(&placed))
}

/// Exactly the target's instances: same counts, placed entries in place.
fn satisfies(mask: u32, entries: &Entries) -> bool {
    let (want, placed) = demand(entries);
    mask & placed == placed && counts(&world().cands, mask) == want
}

/// Every valid layout that satisfies the target.
fn exact_layouts(entries: &Entries) -> Vec<u32> {
    let (want, placed) = demand(entries);
    world()
        .by_counts
        .get(&want)
        .map(|v| v.iter().copied().filter(|&f| f & placed == placed).collect())
        .unwrap_or_default()
}

/// Largest matching of layout instances to target entries in which every
/// non-busy instance is matched; `None` if no such matching exists (the
/// layout then holds an idle instance the target does not want). Kuhn's
/// algorithm: matched instances stay matched, so idle ones go first.
fn matching(mask: u32, busy: u32, entries: &Entries) -> Option<usize> {
    let left = insts(mask);
    let fits =
        |i: &MigInstance, e: &(ProfileKind, Option<u8>)| i.kind == e.0 && e.1.is_none_or(|s| s == i.placement.start);
    let mut owner: Vec<Option<usize>> = vec![None; entries.len()];
    fn augment(
        l: usize,
        left: &[MigInstance],
        entries: &Entries,
        owner: &mut Vec<Option<usize>>,
        seen: &mut Vec<bool>,
        fits: &dyn Fn(&MigInstance, &Entry) -> bool,
    ) -> bool {
        for r in 0..entries.len() {
            if !seen[r] && fits(&left[l], &entries[r]) {
                seen[r] = true;
                if owner[r].is_none_or(|o| augment(o, left, entries, owner, seen, fits)) {
                    owner[r] = Some(l);
                    return true;
                }
            }
        }
        false
    }
    let busy_insts = insts(busy);
    let (idle, held): (Vec<usize>, Vec<usize>) = (0..left.len()).partition(|&l| !busy_insts.contains(&left[l]));
    let mut n = 0;
    for l in idle {
        let mut seen = vec![false; entries.len()];
        if !augment(l, &left, entries, &mut owner, &mut seen, &fits) {
            return None;
        }
        n += 1;
    }
    for l in held {
        let mut seen = vec![false; entries.len()];
        if augment(l, &left, entries, &mut owner, &mut seen, &fits) {
            n += 1;
        }
    }
    Some(n)
}

/// Applies steps as a backend would, refusing what the hardware or the
/// safety rules forbid. Also checks that each GPU's steps are contiguous and
/// that no destroy follows a create on a GPU.
fn simulate<'a>(
    states: &[GpuMigState],
    busy: &[InstanceRef],
    steps: impl IntoIterator<Item = &'a MigStep>,
) -> Result<BTreeMap<u32, GpuMigState>, String> {
    let mut out: BTreeMap<u32, GpuMigState> = states.iter().map(|s| (s.index, s.clone())).collect();
    let mut done: Vec<u32> = Vec::new();
    let mut created: HashSet<u32> = HashSet::new();
    for step in steps {
        let gpu = step.gpu();
        if done.last() != Some(&gpu) {
            if done.contains(&gpu) {
                return Err(format!("{step}: GPU {gpu}'s steps are not contiguous"));
            }
            done.push(gpu);
        }
        let s = out.get_mut(&gpu).ok_or(format!("{step}: no such GPU"))?;
        match *step {
            MigStep::SetMigMode { enabled, .. } => {
                if s.family.is_none() {
                    return Err(format!("{step}: not MIG-capable"));
                }
                if !s.instances.is_empty() {
                    return Err(format!("{step}: instances exist"));
                }
                if s.mig_enabled == enabled {
                    return Err(format!("{step}: mode already set"));
                }
                s.mig_enabled = enabled;
            }
            MigStep::Destroy { profile, placement, .. } => {
                let i = MigInstance {
                    kind: profile.kind,
                    placement,
                };
                if created.contains(&gpu) {
                    return Err(format!("{step}: destroy after a create"));
                }
                if busy.contains(&InstanceRef { gpu, instance: i }) {
                    return Err(format!("{step}: BUSY instance destroyed"));
                }
                let at = s
                    .instances
                    .iter()
                    .position(|x| *x == i)
                    .ok_or(format!("{step}: absent"))?;
                s.instances.remove(at);
            }
            MigStep::Create { profile, placement, .. } => {
                if !s.mig_enabled {
                    return Err(format!("{step}: MIG is off"));
                }
                if Some(profile.family) != s.family {
                    return Err(format!("{step}: profile of {:?}", profile.family));
                }
                created.insert(gpu);
                s.instances.push(MigInstance {
                    kind: profile.kind,
                    placement,
                });
                s.layout().unwrap().validate().map_err(|e| format!("{step}: {e}"))?;
            }
        }
    }
    for s in out.values_mut() {
        s.instances.sort_by_key(|i| (i.placement, i.kind));
    }
    Ok(out)
}

fn ones(x: u32) -> usize {
    x.count_ones() as usize
}

/// Everything the issue asks of one GPU's plan, against brute force.
fn check_gpu(state: &GpuMigState, busy: u32, goal: &Goal, gp: &GpuPlan) {
    let w = world();
    let ctx = || {
        format!(
            "{:?} {:?} busy {:?} goal {goal:?}\nplan {gp:#?}",
            state.family,
            state.instances,
            insts(busy)
        )
    };
    let refs: Vec<InstanceRef> = insts(busy)
        .into_iter()
        .map(|instance| InstanceRef {
            gpu: state.index,
            instance,
        })
        .collect();
    let after = simulate(std::slice::from_ref(state), &refs, &gp.steps).unwrap_or_else(|e| panic!("{e}\n{}", ctx()));
    assert_eq!(after[&state.index], gp.result, "simulated result differs\n{}", ctx());
    assert!(gp.steps.iter().all(|s| s.gpu() == state.index));
    let cur = mask(&state.instances);
    let res = mask(&gp.result.instances);
    assert_eq!(res & busy, busy, "a busy instance is gone\n{}", ctx());
    let modes = gp
        .steps
        .iter()
        .filter(|s| matches!(s, MigStep::SetMigMode { .. }))
        .count();

    let entries = match goal {
        Goal::Disabled => {
            if !state.mig_enabled {
                assert!(gp.steps.is_empty(), "{}", ctx());
            } else if busy == 0 {
                assert!(!gp.result.mig_enabled && gp.result.instances.is_empty(), "{}", ctx());
                assert_eq!(gp.steps.len(), ones(cur) + 1, "{}", ctx());
            } else {
                assert_eq!(
                    gp.blocked_by,
                    refs,
                    "MIG off is blocked by every busy instance\n{}",
                    ctx()
                );
                assert!(gp.result.mig_enabled && modes == 0, "{}", ctx());
                assert_eq!(res, busy, "{}", ctx());
            }
            return;
        }
        Goal::Enabled(e) => e,
    };
    assert!(gp.result.mig_enabled);
    assert_eq!(
        modes,
        usize::from(!state.mig_enabled),
        "mode change only when needed\n{}",
        ctx()
    );
    assert_eq!(gp.wanted, entries.len());

    let exact = exact_layouts(entries);
    assert!(!exact.is_empty(), "fixture targets are satisfiable");
    let reachable: Vec<u32> = exact.iter().copied().filter(|&f| f & busy == busy).collect();
    if let Some(best) = reachable.iter().map(|&f| ones(f ^ cur)).min() {
        assert!(!gp.is_blocked(), "reachable but reported blocked\n{}", ctx());
        assert!(satisfies(res, entries), "target not reached\n{}", ctx());
        assert_eq!(gp.changes(), best, "not the fewest steps\n{}", ctx());
        assert_eq!(gp.satisfied, entries.len());
        return;
    }

    // Blocked: exactly a smallest set of busy instances to free.
    assert!(gp.is_blocked(), "unreachable but not blocked\n{}", ctx());
    let blockers = mask(&gp.blocked_by.iter().map(|b| b.instance).collect::<Vec<_>>());
    assert!(gp.blocked_by.iter().all(|b| b.gpu == state.index));
    assert_eq!(blockers & busy, blockers, "a blocker that is not busy\n{}", ctx());
    let fewest = exact.iter().map(|&f| ones(busy & !f)).min().unwrap();
    assert_eq!(ones(blockers), fewest, "not a smallest blocking set\n{}", ctx());
    let kept = busy & !blockers;
    assert!(
        exact.iter().any(|&f| f & kept == kept),
        "freeing the blockers does not suffice\n{}",
        ctx()
    );

    // Closest: keeps the busy ones, only target instances otherwise, most
    // satisfied, then fewest steps.
    let (want, _) = demand(entries);
    let closest: Vec<(usize, usize)> = w
        .valid
        .iter()
        .filter(|&&f| f & busy == busy)
        // Cheap necessary condition before the matching: no more idle
        // instances of a kind than the target has entries of it.
        .filter(|&&f| counts(&w.cands, f & !busy).iter().zip(want).all(|(&n, m)| n <= m))
        .filter_map(|&f| matching(f, busy, entries).map(|m| (m, ones(f ^ cur))))
        .collect();
    let most = closest.iter().map(|c| c.0).max().unwrap();
    let fewest_steps = closest.iter().filter(|c| c.0 == most).map(|c| c.1).min().unwrap();
    assert_eq!(gp.satisfied, most, "not the closest layout\n{}", ctx());
    assert_eq!(
        matching(res, busy, entries),
        Some(most),
        "result is not what it claims\n{}",
        ctx()
    );
    assert_eq!(
        gp.changes(),
        fewest_steps,
        "closest layout not in fewest steps\n{}",
        ctx()
    );
}

fn plan_one(family: MigFamily, state: &GpuMigState, busy: u32, goal: &Goal) -> GpuPlan {
    let refs: Vec<InstanceRef> = insts(busy)
        .into_iter()
        .map(|instance| InstanceRef {
            gpu: state.index,
            instance,
        })
        .collect();
    let target = MigTarget::default().with(state.index, goal_for(family, goal));
    let p = plan(std::slice::from_ref(state), &refs, &target).unwrap_or_else(|e| panic!("{e}: {state:?} {goal:?}"));
    assert_eq!(p.gpus.len(), 1);
    p.gpus.into_iter().next().unwrap()
}

fn on(index: u32, family: MigFamily, instances: Vec<MigInstance>) -> GpuMigState {
    GpuMigState::new(index, Some(family), true, instances)
}

fn maximal_masks(family: MigFamily) -> Vec<u32> {
    let mut out: Vec<u32> = enumerate_maximal_layouts(family)
        .iter()
        .map(|l| mask(&l.instances))
        .collect();
    out.push(0);
    out
}

/// Every maximal layout (and the empty one) to every count vector a config
/// can name, nothing busy: 240 x 128 cases. The geometry is the same on every
/// model (checked first), so the cases are dealt round-robin to the models:
/// each model gets a share with its own profile names, together they cover
/// every case.
#[test]
fn exhaustive_every_layout_to_every_count_target() {
    let w = world();
    let models = mig_models();
    let currents = maximal_masks(MigFamily::A100_40gb);
    assert_eq!(currents.len(), 240);
    for model in &models {
        assert_eq!(maximal_masks(family_of(model)), currents, "{}", model.name);
    }
    let mut case = 0usize;
    for &cur in &currents {
        for cv in &w.count_vectors {
            let family = family_of(models[case % models.len()]);
            case += 1;
            let state = on(0, family, insts(cur));
            let goal = Goal::Enabled(entries_of_counts(cv));
            let gp = plan_one(family, &state, 0, &goal);
            assert!(!gp.is_blocked());
            check_gpu(&state, 0, &goal, &gp);
        }
    }
    assert_eq!(case, 240 * 128);
}

/// Busy instances, exhaustively over layouts and targets: every maximal
/// layout to every count vector (240 x 128), each case with one busy set,
/// cycling through "all instances busy" and each single instance busy.
/// Cases are dealt round-robin to the models as above.
#[test]
fn exhaustive_busy_instances_block_exactly_and_survive() {
    let w = world();
    let models = mig_models();
    let mut case = 0usize;
    let mut blocked = 0usize;
    for &cur in &maximal_masks(MigFamily::A100_40gb) {
        let list = insts(cur);
        for cv in &w.count_vectors {
            let family = family_of(models[case % models.len()]);
            let pick = case % (list.len() + 1);
            case += 1;
            let busy = if pick == list.len() { cur } else { mask(&[list[pick]]) };
            let state = on(3, family, list.clone());
            let goal = Goal::Enabled(entries_of_counts(cv));
            let gp = plan_one(family, &state, busy, &goal);
            blocked += usize::from(gp.is_blocked());
            check_gpu(&state, busy, &goal, &gp);
        }
    }
    assert!(blocked > 1000 && blocked < case, "{blocked} of {case} blocked");
}

fn arb_goal() -> impl Strategy<Value = (usize, u8, bool)> {
    // (target layout, which entries keep their placement, MIG off instead)
    (0..2319usize, any::<u8>(), prop::bool::weighted(0.1))
}

fn make_goal(layout: usize, placed: u8, disabled: bool) -> Goal {
    if disabled {
        return Goal::Disabled;
    }
    let mut list = insts(world().valid[layout]);
    // Vary the entry order too, so placed and unplaced entries interleave.
    let turn = placed as usize % list.len().max(1);
    list.rotate_left(turn);
    Goal::Enabled(
        list.iter()
            .enumerate()
            .map(|(i, inst)| (inst.kind, (placed & 1 << i != 0).then_some(inst.placement.start)))
            .collect(),
    )
}

fn arb_case() -> impl Strategy<Value = (MigFamily, GpuMigState, u32, Goal)> {
    let models = mig_models();
    (
        0..models.len(),
        0..2319usize,
        any::<u8>(),
        prop::bool::weighted(0.15),
        arb_goal(),
    )
        .prop_map(move |(m, cur, busy_pick, off, (t, placed, disabled))| {
            let family = family_of(models[m]);
            let cur_mask = if off { 0 } else { world().valid[cur] };
            let state = GpuMigState::new(0, Some(family), !off, insts(cur_mask));
            let busy = insts(cur_mask)
                .iter()
                .enumerate()
                .filter(|(i, _)| busy_pick & 1 << i != 0)
                .fold(0, |b, (_, inst)| b | mask(&[*inst]));
            (family, state, busy, make_goal(t, placed, disabled))
        })
}

/// Fewest steps by breadth-first search over step sequences: destroy an idle
/// instance or create one, every intermediate layout valid.
fn bfs(cur: u32, busy: u32, done: impl Fn(u32) -> bool) -> Option<usize> {
    let w = world();
    let mut dist: HashMap<u32, usize> = HashMap::from([(cur, 0)]);
    let mut queue = VecDeque::from([cur]);
    while let Some(s) = queue.pop_front() {
        let d = dist[&s];
        if done(s) {
            return Some(d);
        }
        for c in 0..w.cands.len() {
            let bit = 1u32 << c;
            let next = s ^ bit;
            if bit & busy != 0 || !w.valid_set.contains(&next) || dist.contains_key(&next) {
                continue;
            }
            dist.insert(next, d + 1);
            queue.push_back(next);
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random layouts, busy sets, MIG modes and partly placed targets.
    #[test]
    fn plans_are_safe_reach_the_target_and_are_shortest((family, state, busy, goal) in arb_case()) {
        let gp = plan_one(family, &state, busy, &goal);
        check_gpu(&state, busy, &goal, &gp);
    }

    /// No shorter step sequence exists: BFS over the actual steps agrees with
    /// the plan's length, for reachable and for blocked targets.
    #[test]
    fn no_shorter_step_sequence_exists((family, state, busy, goal) in arb_case()) {
        let Goal::Enabled(entries) = &goal else { return Ok(()) };
        let gp = plan_one(family, &state, busy, &goal);
        let cur = mask(&state.instances);
        if gp.is_blocked() {
            prop_assert_eq!(bfs(cur, busy, |f| satisfies(f, entries)), None);
            let most = gp.satisfied;
            let d = bfs(cur, busy, |f| matching(f, busy, entries) == Some(most));
            prop_assert_eq!(d, Some(gp.changes()));
        } else {
            prop_assert_eq!(bfs(cur, busy, |f| satisfies(f, entries)), Some(gp.changes()));
        }
    }

    /// Eight GPUs; all but one get a target their current layout already
    /// satisfies (or none at all): only that one GPU gets steps, and its plan
    /// is the one it gets alone.
    #[test]
    fn a_single_gpu_change_touches_only_that_gpu(
        layouts in prop::collection::vec((0..2319usize, any::<u8>(), 0..3u8), 8),
        changed in 0..8u32,
        model in 0..7usize,
        (t, placed, disabled) in arb_goal(),
    ) {
        let models = mig_models();
        let family = family_of(models[model % models.len()]);
        let w = world();
        let mut states = Vec::new();
        let mut busy = Vec::new();
        let mut target = MigTarget::default();
        for (i, &(l, busy_pick, how)) in layouts.iter().enumerate() {
            let i = i as u32;
            let list = insts(w.valid[l]);
            for (j, inst) in list.iter().enumerate() {
                if busy_pick & 1 << j != 0 {
                    busy.push(InstanceRef { gpu: i, instance: *inst });
                }
            }
            // Unchanged GPUs: the same counts, the same placements, or absent.
            let same = match how {
                0 => Some(Goal::Enabled(list.iter().map(|x| (x.kind, None)).collect())),
                1 => Some(Goal::Enabled(list.iter().map(|x| (x.kind, Some(x.placement.start))).collect())),
                _ => None,
            };
            states.push(on(i, family, list));
            if i != changed
                && let Some(g) = same {
                    target = target.with(i, goal_for(family, &g));
                }
        }
        let goal = make_goal(t, placed, disabled);
        target = target.with(changed, goal_for(family, &goal));
        let p = plan(&states, &busy, &target).unwrap();
        prop_assert!(p.steps().all(|s| s.gpu() == changed));
        for g in &p.gpus {
            if g.gpu != changed {
                prop_assert!(g.steps.is_empty() && !g.is_blocked());
                prop_assert_eq!(&g.result, &states[g.gpu as usize]);
            }
        }
        let own_busy: Vec<InstanceRef> = busy.iter().copied().filter(|b| b.gpu == changed).collect();
        let alone = plan(
            &states[changed as usize..=changed as usize],
            &own_busy,
            &MigTarget::default().with(changed, goal_for(family, &goal)),
        )
        .unwrap();
        prop_assert_eq!(p.gpu(changed), alone.gpu(changed));
        let bmask = mask(&own_busy.iter().map(|b| b.instance).collect::<Vec<_>>());
        check_gpu(&states[changed as usize], bmask, &goal, p.gpu(changed).unwrap());
    }
}

/// The user guide's 3-2-1-1 example: the driver's own starts can leave no
/// room for the 3g; the planner places everything itself.
#[test]
fn places_the_whole_target_itself() {
    for model in mig_models() {
        let family = family_of(model);
        let state = GpuMigState::new(0, Some(family), false, vec![]);
        let goal = Goal::Enabled(vec![
            (ProfileKind::G1, None),
            (ProfileKind::G1, None),
            (ProfileKind::G2, None),
            (ProfileKind::G3, None),
        ]);
        let gp = plan_one(family, &state, 0, &goal);
        check_gpu(&state, 0, &goal, &gp);
        assert_eq!(gp.steps[0], MigStep::SetMigMode { gpu: 0, enabled: true });
        assert_eq!(gp.steps.len(), 5);
        // Largest first, each at an explicit start; the 3g must go to 4
        // (at 0 it leaves room for the 2g and only one 1g).
        let MigStep::Create { profile, placement, .. } = gp.steps[1] else {
            panic!("{:?}", gp.steps)
        };
        assert_eq!((profile.kind, placement.start), (ProfileKind::G3, 4));
    }
}

#[test]
fn keeps_busy_and_reusable_instances_in_place() {
    // Seven 1g.10gb on an H100, the one at 3 busy, to all-balanced
    // (2 x 1g, 2g, 3g): 3g@4 and 2g@0 fit around it, 1g@2 stays too.
    let family = MigFamily::H100_80gb;
    let g1 = |s| MigInstance {
        kind: ProfileKind::G1,
        placement: Placement { start: s, size: 1 },
    };
    let state = on(2, family, (0..7).map(g1).collect());
    let busy = vec![InstanceRef {
        gpu: 2,
        instance: g1(3),
    }];
    let target = MigTarget::default().with(
        2,
        GpuGoal::Enabled(
            ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]
                .into_iter()
                .map(WantedInstance::anywhere)
                .collect(),
        ),
    );
    let p = plan(std::slice::from_ref(&state), &busy, &target).unwrap();
    let shown: Vec<String> = p.steps().map(|s| s.to_string()).collect();
    assert_eq!(
        shown,
        [
            "GPU 2: destroy 1g.10gb@0 (0:1)",
            "GPU 2: destroy 1g.10gb@1 (1:1)",
            "GPU 2: destroy 1g.10gb@4 (4:1)",
            "GPU 2: destroy 1g.10gb@5 (5:1)",
            "GPU 2: destroy 1g.10gb@6 (6:1)",
            "GPU 2: create 3g.40gb@4 (4:4)",
            "GPU 2: create 2g.20gb@0 (0:2)",
        ]
    );
    assert!(!p.is_blocked());

    // Now the 7g: blocked by exactly the busy 1g; the closest layout keeps
    // it alone (nothing of the target fits), destroying the idle ones.
    let target = MigTarget::default().with(2, GpuGoal::Enabled(vec![WantedInstance::anywhere("7g.80gb")]));
    let p = plan(std::slice::from_ref(&state), &busy, &target).unwrap();
    assert_eq!(p.blocked_by().copied().collect::<Vec<_>>(), busy);
    let g = p.gpu(2).unwrap();
    assert_eq!(g.result.instances, vec![g1(3)]);
    assert_eq!((g.satisfied, g.wanted, g.changes()), (0, 1, 6));
    assert_eq!(
        p.to_string().lines().last().unwrap(),
        "GPU 2: blocked by GPU 2 instance 1g.10gb@3; closest reachable layout satisfies 0 of 1 target instances"
    );
}

#[test]
fn mode_changes_only_when_needed_and_only_when_idle() {
    let family = MigFamily::A100_80gb;
    let g7 = MigInstance {
        kind: ProfileKind::G7,
        placement: Placement { start: 0, size: 8 },
    };
    let states = vec![
        on(0, family, vec![g7]),
        on(1, family, vec![g7]),
        GpuMigState::new(2, Some(family), false, vec![]),
        GpuMigState::new(3, None, false, vec![]), // not MIG-capable
        on(4, family, vec![]),
    ];
    let busy = vec![InstanceRef { gpu: 1, instance: g7 }];
    let target = MigTarget::default()
        .with(0, GpuGoal::Disabled)
        .with(1, GpuGoal::Disabled)
        .with(2, GpuGoal::Disabled)
        .with(3, GpuGoal::Disabled)
        .with(4, GpuGoal::Enabled(vec![]));
    let p = plan(&states, &busy, &target).unwrap();
    let shown: Vec<String> = p.steps().map(|s| s.to_string()).collect();
    assert_eq!(shown, ["GPU 0: destroy 7g.80gb@0 (0:8)", "GPU 0: disable MIG"]);
    assert_eq!(p.gpu(1).unwrap().blocked_by, busy);
    assert!(p.gpu(1).unwrap().result.mig_enabled);
    let after = simulate(&states, &busy, p.steps()).unwrap();
    for g in &p.gpus {
        assert_eq!(after[&g.gpu], g.result);
    }
}

fn shipped_config() -> MigPartedConfig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    MigPartedConfig::from_yaml(&fs::read_to_string(dir.join("mig-parted/config.yaml")).unwrap()).unwrap()
}

fn shipped_machine(name: &str) -> MachineProfile {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/machines");
    MachineProfile::from_yaml(&fs::read_to_string(dir.join(format!("{name}.yaml"))).unwrap()).unwrap()
}

/// Every named config of the shipped mig-parted file, from the DGX H100 MIG
/// profile as it starts: applying the plan gives the config's counts, and
/// planning again from there gives no steps.
#[test]
fn shipped_mig_parted_configs_plan_and_converge() {
    let cfg = shipped_config();
    for machine in ["dgx-h100-mig", "dgx-h100", "dgx-a100"] {
        let m = shipped_machine(machine);
        let states = GpuMigState::from_machine(&m).unwrap();
        for name in cfg.names() {
            let Ok(resolved) = cfg.targets(name, &m) else { continue };
            let target = MigTarget::from_mig_parted(&resolved);
            let p = plan(&states, &[], &target).unwrap_or_else(|e| panic!("{machine} {name}: {e}"));
            assert!(!p.is_blocked());
            let after = simulate(&states, &[], p.steps()).unwrap_or_else(|e| panic!("{machine} {name}: {e}"));
            for (gpu, t) in &resolved {
                use railyard_core::config::mig_parted::GpuTarget;
                let s = &after[gpu];
                match t {
                    GpuTarget::Untouched => {
                        let mut before = states[*gpu as usize].clone();
                        before.instances.sort_by_key(|i| (i.placement, i.kind));
                        assert_eq!(s, &before);
                    }
                    GpuTarget::MigDisabled => assert!(!s.mig_enabled || s.family.is_none()),
                    GpuTarget::MigEnabled(l) => {
                        assert!(s.mig_enabled);
                        assert_eq!(s.layout().unwrap().counts(), l.counts(), "{machine} {name} GPU {gpu}");
                    }
                }
            }
            let again: Vec<GpuMigState> = after.into_values().collect();
            let p2 = plan(&again, &[], &target).unwrap();
            assert_eq!(p2.steps().count(), 0, "{machine} {name}: not idempotent: {p2}");
        }
    }
}

fn h100(index: u32, instances: Vec<MigInstance>) -> GpuMigState {
    on(index, MigFamily::H100_80gb, instances)
}

fn err(current: &[GpuMigState], busy: &[InstanceRef], target: &MigTarget) -> String {
    plan(current, busy, target).unwrap_err().to_string()
}

#[test]
fn errors_name_the_field_and_value() {
    let g3 = |s| MigInstance {
        kind: ProfileKind::G3,
        placement: Placement { start: s, size: 4 },
    };
    let two = vec![h100(0, vec![g3(0)]), h100(1, vec![])];
    let one = |goal| MigTarget::default().with(1, goal);
    let enabled = |list: &[(&str, Option<u8>)]| {
        GpuGoal::Enabled(
            list.iter()
                .map(|&(p, start)| WantedInstance {
                    profile: p.into(),
                    start,
                })
                .collect(),
        )
    };

    assert_eq!(
        err(&two, &[], &one(enabled(&[("1g.5gb", None)]))),
        "target GPU 1 instance 0: unknown MIG profile \"1g.5gb\" for H100_80gb; it has: 1g.10gb, 1g.10gb+me, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb"
    );
    assert_eq!(
        err(&two, &[], &MigTarget::default().with(9, GpuGoal::Disabled)),
        "target: GPU 9 is not present; GPUs: 0, 1"
    );
    assert_eq!(
        err(&two, &[], &one(enabled(&[("1g.10gb", None), ("3g.40gb", Some(2))]))),
        "target GPU 1: instance 1 (3g.40gb at 2:4): start 2 is not a legal placement; legal: 0:4, 4:4"
    );
    assert_eq!(
        err(
            &two,
            &[],
            &one(enabled(&[
                ("1g.10gb", None),
                ("4g.40gb", Some(0)),
                ("2g.20gb", Some(2))
            ]))
        ),
        "target GPU 1: instance 2 (2g.20gb at 2:2) overlaps instance 1 (4g.40gb at 0:4)"
    );
    assert_eq!(
        err(
            &two,
            &[],
            &one(enabled(&[("4g.40gb", None), ("3g.40gb", None), ("1g.10gb", None)]))
        ),
        "target GPU 1: instance 2 (1g.10gb): layout needs 8 compute slices, the GPU has 7"
    );
    assert_eq!(
        err(
            &two,
            &[],
            &one(enabled(&[("1g.10gb+me", None), ("mig-1g.10gb.me", None)]))
        ),
        "target GPU 1: instance 1 (1g.10gb+me): more than 1 instances of 1g.10gb+me on one GPU"
    );
    // Valid counts and compute, but no placement of them fits.
    assert_eq!(
        err(
            &two,
            &[],
            &one(enabled(&[("3g.40gb", None), ("3g.40gb", None), ("1g.10gb", None)]))
        ),
        "target GPU 1: 2x3g.40gb + 1x1g.10gb does not fit on one H100_80gb GPU"
    );
    assert_eq!(
        err(&two, &[], &one(enabled(&[("3g.40gb", Some(0)), ("4g.40gb", None)]))),
        "target GPU 1: 1x4g.40gb + 1x3g.40gb@0 does not fit on one H100_80gb GPU"
    );

    let t4 = vec![GpuMigState::new(0, None, false, vec![])];
    assert_eq!(
        err(&t4, &[], &MigTarget::default().with(0, GpuGoal::Enabled(vec![]))),
        "target GPU 0: MIG mode on requested but the GPU is not MIG-capable"
    );
    assert_eq!(
        err(&[GpuMigState::new(0, None, true, vec![])], &[], &MigTarget::default()),
        "current GPU 0: MIG mode is on but the GPU is not MIG-capable"
    );
    assert_eq!(
        err(&[h100(0, vec![]), h100(0, vec![])], &[], &MigTarget::default()),
        "current: GPU 0 is listed more than once"
    );
    assert_eq!(
        err(
            &[GpuMigState::new(4, Some(MigFamily::H100_80gb), false, vec![g3(0)])],
            &[],
            &MigTarget::default()
        ),
        "current GPU 4: MIG mode is off but 1 instances are listed"
    );
    assert_eq!(
        err(&[h100(0, vec![g3(0), g3(2)])], &[], &MigTarget::default()),
        "current GPU 0: instance 1 (3g.40gb at 2:4): start 2 is not a legal placement; legal: 0:4, 4:4"
    );
    assert_eq!(
        err(
            &two,
            &[InstanceRef {
                gpu: 5,
                instance: g3(0)
            }],
            &MigTarget::default()
        ),
        "busy[0]: GPU 5 is not present; GPUs: 0, 1"
    );
    assert_eq!(
        err(
            &two,
            &[
                InstanceRef {
                    gpu: 0,
                    instance: g3(0)
                },
                InstanceRef {
                    gpu: 0,
                    instance: g3(4)
                }
            ],
            &MigTarget::default()
        ),
        "busy[1]: GPU 0 has no instance 3g.40gb@4; it has: [3g.40gb@0]"
    );
    // Errors are values, never panics, whatever the input.
    assert!(matches!(
        plan(&two, &[], &one(enabled(&[("7g.80gb", Some(200))]))),
        Err(PlanError::InvalidTarget { gpu: 1, .. })
    ));
}
