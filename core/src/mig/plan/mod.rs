//! Planning a MIG layout change (issue 14): from the instances each GPU has
//! now, the ones in use, and a target per GPU, the ordered steps that reach
//! the target, at explicit placements, without touching a busy instance.
//! Pure: no I/O, no clock, no randomness.
//!
//! # What [`plan`] guarantees
//!
//! Per targeted GPU (GPUs are independent; a GPU absent from the target gets
//! no steps and no [`GpuPlan`]):
//!
//! - It never destroys a busy instance, and changes the MIG mode only on a GPU
//!   with no busy instance, and only when the target's mode differs.
//! - Every step names its placement: the planner picks the starts so that the
//!   whole target fits (the driver's own choice can block a later profile).
//! - Among all layouts that satisfy the target it picks one with the fewest
//!   destroy + create steps. Each step adds or removes one instance, so that
//!   is the layout sharing the most instances (same profile, same placement)
//!   with the current one: every current instance the target can use stays
//!   where it is.
//! - Destroys come before creates, so the slices are free; creates go largest
//!   first. Since every subset of a valid layout is valid, every intermediate
//!   layout is valid too.
//!
//! A layout *satisfies* a target when it holds exactly the target's instances:
//! the same number of each profile, and every instance the target places at
//! its start.
//!
//! # Blocked targets
//!
//! A target is *blocked* when no layout satisfying it keeps every busy
//! instance. Then [`GpuPlan::blocked_by`] lists a smallest set of busy
//! instances that must be freed (go idle) for the target to become reachable;
//! exactly those, nothing else. When several smallest sets exist, the one whose
//! target layout needs the fewest steps wins, then the tie rule below.
//! A target of MIG off is blocked by every busy instance of the GPU.
//!
//! The plan then leads to the *closest reachable layout*: among the valid
//! layouts that keep every busy instance and otherwise hold only instances the
//! target asks for, one that satisfies the most target instances (a maximum
//! matching of layout instances to target entries, [`GpuPlan::satisfied`]),
//! ties by fewest steps, then the tie rule. Idle instances the target does not
//! want are destroyed on the way, as the target itself would. The MIG mode
//! does not change while blocked. Whether to apply this partial plan or wait
//! is the caller's choice; re-planning once the blockers are idle completes
//! the target.
//!
//! Tie rule (so plans are deterministic): compare the layouts slice by slice
//! from memory slice 0; at the first slice where they differ, the layout with
//! an instance starting there wins (the smaller one, then the lower profile
//! kind, if both have one). In short, instances start as low as they can.
//!
//! # Bound
//!
//! Geometry is the same on every MIG model: 25 (profile, placement)
//! candidates and 2,319 valid layouts of one GPU, counting the empty one (the
//! unit tests recount both). Each search is a depth-first walk over those
//! candidates, one profile kind at a time with branch and bound; every
//! complete layout it reaches is a distinct valid layout, so a search
//! evaluates at most 2,319 layouts, about 60,000 partial ones (26 candidate
//! positions × 2,319), each in a few bit operations on a `u32`. A GPU needs at
//! most two searches (the target, then the closest layout if blocked), so a
//! plan costs O(GPUs) with that constant, independent of what is busy.

mod search;

use std::collections::BTreeMap;
use std::fmt;

use self::search::{Best, Geometry, Search, Wanted, geometry};
use super::profiles::{ALL_KINDS, MigFamily, MigProfile, ProfileKind};
use super::{COMPUTE_SLICES, LayoutError, MigInstance, MigLayout, Placement};
use crate::config::mig_parted::GpuTarget;
use crate::machine::MachineProfile;

/// One GPU as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuMigState {
    pub index: u32,
    /// `None`: the GPU is not MIG-capable (it can only be a target of MIG off).
    pub family: Option<MigFamily>,
    pub mig_enabled: bool,
    /// GPU instances; empty when MIG is off.
    pub instances: Vec<MigInstance>,
}

impl GpuMigState {
    pub fn new(index: u32, family: Option<MigFamily>, mig_enabled: bool, instances: Vec<MigInstance>) -> Self {
        GpuMigState {
            index,
            family,
            mig_enabled,
            instances,
        }
    }

    /// The instances as a [`MigLayout`], when the GPU is MIG-capable.
    pub fn layout(&self) -> Option<MigLayout> {
        self.family.map(|f| MigLayout::new(f, self.instances.clone()))
    }

    /// Every GPU of a machine profile as it starts (`mig_enabled`,
    /// `mig_instances`), e.g. for planning without a GPU.
    pub fn from_machine(machine: &MachineProfile) -> Result<Vec<GpuMigState>, PlanError> {
        machine
            .gpus
            .iter()
            .map(|g| {
                let family = machine.gpu_model(g).mig_family();
                let instances = match (family, g.mig_enabled) {
                    (_, false) => Vec::new(),
                    (None, true) => return Err(PlanError::MigOnNotCapable { gpu: g.index }),
                    (Some(_), true) => {
                        machine
                            .mig_layout(g)
                            .map_err(|source| PlanError::InvalidCurrent { gpu: g.index, source })?
                            .instances
                    }
                };
                Ok(GpuMigState::new(g.index, family, g.mig_enabled, instances))
            })
            .collect()
    }
}

/// One instance on one GPU, as the busy set names it and as blockers are
/// reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceRef {
    pub gpu: u32,
    pub instance: MigInstance,
}

impl InstanceRef {
    /// `GPU 2 instance 1g.10gb@3`, with the model's profile name.
    pub fn describe(&self, family: MigFamily) -> String {
        format!(
            "GPU {} instance {}@{}",
            self.gpu,
            family.profile(self.instance.kind).name,
            self.instance.placement.start
        )
    }
}

/// One instance a target asks for: a profile name of the GPU's model
/// (`3g.40gb`, `1g.10gb+me`, `mig-1g.10gb.me`), at a given start or anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedInstance {
    pub profile: String,
    /// Memory-slice start; `None` lets the planner choose.
    pub start: Option<u8>,
}

impl WantedInstance {
    pub fn anywhere(profile: impl Into<String>) -> Self {
        WantedInstance {
            profile: profile.into(),
            start: None,
        }
    }

    pub fn at(profile: impl Into<String>, start: u8) -> Self {
        WantedInstance {
            profile: profile.into(),
            start: Some(start),
        }
    }
}

/// What one GPU should look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuGoal {
    /// MIG mode off, so no instances.
    Disabled,
    /// MIG mode on with exactly these instances (none: `all-enabled`).
    Enabled(Vec<WantedInstance>),
}

/// The target per GPU index. GPUs not listed are left as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigTarget {
    pub gpus: BTreeMap<u32, GpuGoal>,
}

impl MigTarget {
    /// Adds or replaces the goal of one GPU.
    pub fn with(mut self, gpu: u32, goal: GpuGoal) -> Self {
        self.gpus.insert(gpu, goal);
        self
    }

    /// From a resolved mig-parted config
    /// ([`MigPartedConfig::targets`](crate::config::MigPartedConfig::targets)).
    /// mig-parted's configs give profile counts only, so the placements its
    /// packing chose are dropped and the planner picks its own.
    pub fn from_mig_parted(targets: &BTreeMap<u32, GpuTarget>) -> Self {
        let gpus = targets
            .iter()
            .filter_map(|(&gpu, t)| {
                let goal = match t {
                    GpuTarget::Untouched => return None,
                    GpuTarget::MigDisabled => GpuGoal::Disabled,
                    GpuTarget::MigEnabled(layout) => {
                        let mut kinds: Vec<ProfileKind> = layout.instances.iter().map(|i| i.kind).collect();
                        kinds.sort();
                        GpuGoal::Enabled(
                            kinds
                                .into_iter()
                                .map(|k| WantedInstance::anywhere(layout.family.profile(k).name))
                                .collect(),
                        )
                    }
                };
                Some((gpu, goal))
            })
            .collect();
        MigTarget { gpus }
    }
}

/// One operation on one GPU. Creates always carry an explicit placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigStep {
    SetMigMode {
        gpu: u32,
        enabled: bool,
    },
    Destroy {
        gpu: u32,
        profile: MigProfile,
        placement: Placement,
    },
    Create {
        gpu: u32,
        profile: MigProfile,
        placement: Placement,
    },
}

impl MigStep {
    pub fn gpu(&self) -> u32 {
        match *self {
            MigStep::SetMigMode { gpu, .. } | MigStep::Destroy { gpu, .. } | MigStep::Create { gpu, .. } => gpu,
        }
    }

    /// The instance a destroy or create acts on.
    pub fn instance(&self) -> Option<MigInstance> {
        match *self {
            MigStep::SetMigMode { .. } => None,
            MigStep::Destroy { profile, placement, .. } | MigStep::Create { profile, placement, .. } => {
                Some(MigInstance {
                    kind: profile.kind,
                    placement,
                })
            }
        }
    }
}

impl fmt::Display for MigStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigStep::SetMigMode { gpu, enabled } => {
                write!(f, "GPU {gpu}: {} MIG", if *enabled { "enable" } else { "disable" })
            }
            MigStep::Destroy {
                gpu,
                profile,
                placement,
            } => {
                write!(
                    f,
                    "GPU {gpu}: destroy {}@{} ({placement})",
                    profile.name, placement.start
                )
            }
            MigStep::Create {
                gpu,
                profile,
                placement,
            } => {
                write!(
                    f,
                    "GPU {gpu}: create {}@{} ({placement})",
                    profile.name, placement.start
                )
            }
        }
    }
}

/// The plan for one targeted GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuPlan {
    pub gpu: u32,
    pub family: Option<MigFamily>,
    /// In order; destroys before creates.
    pub steps: Vec<MigStep>,
    /// The GPU after the steps: the target, or the closest reachable layout
    /// when blocked. Instances in canonical order.
    pub result: GpuMigState,
    /// Busy instances that must go idle before the target can be reached;
    /// empty when the steps reach it.
    pub blocked_by: Vec<InstanceRef>,
    /// Target instances the result satisfies, and how many the target has.
    pub satisfied: usize,
    pub wanted: usize,
}

impl GpuPlan {
    pub fn is_blocked(&self) -> bool {
        !self.blocked_by.is_empty()
    }

    /// Destroy and create steps (what the planner minimises).
    pub fn changes(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| !matches!(s, MigStep::SetMigMode { .. }))
            .count()
    }
}

/// Per-GPU plans, by GPU index, for the GPUs the target names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub gpus: Vec<GpuPlan>,
}

impl Plan {
    /// Every step, GPU by GPU.
    pub fn steps(&self) -> impl Iterator<Item = &MigStep> {
        self.gpus.iter().flat_map(|g| g.steps.iter())
    }

    pub fn is_blocked(&self) -> bool {
        self.gpus.iter().any(GpuPlan::is_blocked)
    }

    pub fn blocked_by(&self) -> impl Iterator<Item = &InstanceRef> {
        self.gpus.iter().flat_map(|g| g.blocked_by.iter())
    }

    pub fn gpu(&self, index: u32) -> Option<&GpuPlan> {
        self.gpus.iter().find(|g| g.gpu == index)
    }

    /// Destroy and create steps over all GPUs.
    pub fn changes(&self) -> usize {
        self.gpus.iter().map(GpuPlan::changes).sum()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for g in &self.gpus {
            for s in &g.steps {
                writeln!(f, "{s}")?;
            }
            if let (Some(family), true) = (g.family, g.is_blocked()) {
                let who: Vec<String> = g.blocked_by.iter().map(|b| b.describe(family)).collect();
                writeln!(
                    f,
                    "GPU {}: blocked by {}; closest reachable layout satisfies {} of {} target instances",
                    g.gpu,
                    who.join(", "),
                    g.satisfied,
                    g.wanted
                )?;
            }
        }
        Ok(())
    }
}

/// Why a plan could not be made. Each names the input field and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("current: GPU {gpu} is listed more than once")]
    DuplicateGpu { gpu: u32 },
    #[error("current GPU {gpu}: MIG mode is off but {count} instances are listed")]
    InstancesWithMigOff { gpu: u32, count: usize },
    #[error("current GPU {gpu}: MIG mode is on but the GPU is not MIG-capable")]
    MigOnNotCapable { gpu: u32 },
    #[error("current GPU {gpu}: {source}")]
    InvalidCurrent { gpu: u32, source: LayoutError },
    #[error("busy[{index}]: GPU {gpu} is not present; GPUs: {present}")]
    BusyGpuNotPresent { index: usize, gpu: u32, present: String },
    #[error("busy[{index}]: GPU {gpu} has no instance {instance}; it has: {existing}")]
    BusyNotPresent {
        index: usize,
        gpu: u32,
        instance: String,
        existing: String,
    },
    #[error("target: GPU {gpu} is not present; GPUs: {present}")]
    TargetGpuNotPresent { gpu: u32, present: String },
    #[error("target GPU {gpu}: MIG mode on requested but the GPU is not MIG-capable")]
    NotMigCapable { gpu: u32 },
    #[error("target GPU {gpu} instance {index}: unknown MIG profile {profile:?} for {family:?}; it has: {available}")]
    UnknownProfile {
        gpu: u32,
        index: usize,
        profile: String,
        family: MigFamily,
        available: String,
    },
    #[error("target GPU {gpu}: {source}")]
    InvalidTarget { gpu: u32, source: LayoutError },
}

/// Plans the change from `current` to `target`, keeping every instance in
/// `busy`. See the module documentation for what the plan guarantees.
pub fn plan(current: &[GpuMigState], busy: &[InstanceRef], target: &MigTarget) -> Result<Plan, PlanError> {
    let geo = geometry();
    let mut by_index: BTreeMap<u32, &GpuMigState> = BTreeMap::new();
    for g in current {
        if by_index.insert(g.index, g).is_some() {
            return Err(PlanError::DuplicateGpu { gpu: g.index });
        }
        check_current(g)?;
    }
    let present = || by_index.keys().map(u32::to_string).collect::<Vec<_>>().join(", ");

    // Busy instances as a candidate mask per GPU.
    let mut busy_masks: BTreeMap<u32, u32> = BTreeMap::new();
    for (index, b) in busy.iter().enumerate() {
        let g = by_index.get(&b.gpu).ok_or_else(|| PlanError::BusyGpuNotPresent {
            index,
            gpu: b.gpu,
            present: present(),
        })?;
        if !g.instances.contains(&b.instance) {
            let name = |i: &MigInstance| match g.family {
                Some(f) => format!("{}@{}", f.profile(i.kind).name, i.placement.start),
                None => format!("{:?}@{}", i.kind, i.placement.start),
            };
            return Err(PlanError::BusyNotPresent {
                index,
                gpu: b.gpu,
                instance: name(&b.instance),
                existing: format!("[{}]", g.instances.iter().map(name).collect::<Vec<_>>().join(", ")),
            });
        }
        // Present in a validated layout, so it is a legal candidate.
        if let Some(c) = geo.index_of(b.instance) {
            *busy_masks.entry(b.gpu).or_insert(0) |= 1 << c;
        }
    }

    let mut gpus = Vec::with_capacity(target.gpus.len());
    for (&index, goal) in &target.gpus {
        let state = by_index.get(&index).ok_or_else(|| PlanError::TargetGpuNotPresent {
            gpu: index,
            present: present(),
        })?;
        let busy = busy_masks.get(&index).copied().unwrap_or(0);
        gpus.push(plan_gpu(geo, state, busy, goal)?);
    }
    Ok(Plan { gpus })
}

fn check_current(g: &GpuMigState) -> Result<(), PlanError> {
    if !g.mig_enabled && !g.instances.is_empty() {
        return Err(PlanError::InstancesWithMigOff {
            gpu: g.index,
            count: g.instances.len(),
        });
    }
    match g.layout() {
        None if g.mig_enabled => Err(PlanError::MigOnNotCapable { gpu: g.index }),
        None => Ok(()),
        Some(l) => l
            .validate()
            .map_err(|source| PlanError::InvalidCurrent { gpu: g.index, source }),
    }
}

fn plan_gpu(geo: &Geometry, state: &GpuMigState, busy: u32, goal: &GpuGoal) -> Result<GpuPlan, PlanError> {
    let gpu = state.index;
    let cur = geo.mask_of(&state.instances);
    let GpuGoal::Enabled(items) = goal else {
        return Ok(plan_disable(geo, state, cur, busy));
    };
    let family = state.family.ok_or(PlanError::NotMigCapable { gpu })?;
    let want = resolve(geo, gpu, family, items)?;

    let mut target = Search::new(geo, cur, busy, &want, false);
    target.run();
    let Some(exact) = target.best else {
        return Err(PlanError::InvalidTarget {
            gpu,
            source: LayoutError::DoesNotFit {
                requested: describe_wanted(family, &want),
                family,
            },
        });
    };
    let (layout, blocked) = if busy & !exact.f == 0 {
        (exact, 0)
    } else {
        let mut closest = Search::new(geo, cur, busy, &want, true);
        closest.run();
        // Keeping only the busy instances is always valid, so this is found.
        (closest.best.unwrap_or(Best::of(busy, 0, cur, busy)), busy & !exact.f)
    };

    let mut steps = Vec::new();
    // A mode change only on an idle GPU: with MIG off there are no instances.
    if !state.mig_enabled {
        steps.push(MigStep::SetMigMode { gpu, enabled: true });
    }
    push_changes(geo, gpu, family, cur, layout.f, &mut steps);
    Ok(GpuPlan {
        gpu,
        family: Some(family),
        steps,
        result: GpuMigState::new(gpu, Some(family), true, geo.instances(layout.f)),
        blocked_by: refs(geo, gpu, blocked),
        satisfied: layout.m as usize,
        wanted: want.len(),
    })
}

fn plan_disable(geo: &Geometry, state: &GpuMigState, cur: u32, busy: u32) -> GpuPlan {
    let gpu = state.index;
    let mut steps = Vec::new();
    let mut result = state.clone();
    if let (Some(family), true) = (state.family, state.mig_enabled) {
        push_changes(geo, gpu, family, cur, busy, &mut steps);
        result.instances = geo.instances(busy);
        if busy == 0 {
            steps.push(MigStep::SetMigMode { gpu, enabled: false });
            result.mig_enabled = false;
        }
    }
    GpuPlan {
        gpu,
        family: state.family,
        steps,
        result,
        blocked_by: refs(geo, gpu, busy),
        satisfied: 0,
        wanted: 0,
    }
}

/// Destroys (lowest start first), then creates (largest first, as
/// `nvidia-smi` orders them; any order works with explicit placements).
fn push_changes(geo: &Geometry, gpu: u32, family: MigFamily, from: u32, to: u32, steps: &mut Vec<MigStep>) {
    let mut gone = geo.instances(from & !to);
    gone.sort_by_key(|i| i.placement);
    steps.extend(gone.into_iter().map(|i| MigStep::Destroy {
        gpu,
        profile: family.profile(i.kind),
        placement: i.placement,
    }));
    let mut new = geo.instances(to & !from);
    new.sort_by_key(|i| {
        let s = i.kind.spec();
        (std::cmp::Reverse((s.memory_slices, s.compute_slices)), i.placement)
    });
    steps.extend(new.into_iter().map(|i| MigStep::Create {
        gpu,
        profile: family.profile(i.kind),
        placement: i.placement,
    }));
}

fn refs(geo: &Geometry, gpu: u32, mask: u32) -> Vec<InstanceRef> {
    geo.instances(mask)
        .into_iter()
        .map(|instance| InstanceRef { gpu, instance })
        .collect()
}

fn resolve(geo: &Geometry, gpu: u32, family: MigFamily, items: &[WantedInstance]) -> Result<Wanted, PlanError> {
    let invalid = |source| PlanError::InvalidTarget { gpu, source };
    let mut kinds = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let p = family
            .profile_by_name(&item.profile)
            .ok_or_else(|| PlanError::UnknownProfile {
                gpu,
                index,
                profile: item.profile.clone(),
                family,
                available: family.profile_names().join(", "),
            })?;
        kinds.push(p.kind);
    }

    // Placed entries first, through the layout validator for its messages;
    // its indices count placed entries only, so map them back.
    let placed_at: Vec<usize> = (0..items.len()).filter(|&i| items[i].start.is_some()).collect();
    let placed = MigLayout::new(
        family,
        placed_at
            .iter()
            .map(|&i| MigInstance::at(kinds[i], items[i].start.unwrap_or(0)))
            .collect(),
    );
    placed.validate().map_err(|e| invalid(renumber(e, &placed_at)))?;

    let mut want = Wanted::default();
    let mut compute = 0u8;
    for (index, (item, &kind)) in items.iter().zip(&kinds).enumerate() {
        let k = kind as usize;
        let spec = kind.spec();
        want.total[k] += 1;
        if want.total[k] > spec.max_count {
            return Err(invalid(LayoutError::CountExceeded {
                index,
                profile: family.profile(kind).name.to_string(),
                max: spec.max_count,
            }));
        }
        compute += spec.compute_slices;
        if compute > COMPUTE_SLICES {
            return Err(invalid(LayoutError::ComputeExceeded {
                index,
                profile: family.profile(kind).name.to_string(),
                used: compute,
                available: COMPUTE_SLICES,
            }));
        }
        match item.start {
            None => want.unplaced[k] += 1,
            Some(start) => {
                let inst = MigInstance::at(kind, start);
                // Validated above, so it is a candidate.
                if let Some(c) = geo.index_of(inst) {
                    want.placed |= 1 << c;
                }
            }
        }
    }
    Ok(want)
}

fn renumber(e: LayoutError, at: &[usize]) -> LayoutError {
    let map = |i: usize| at.get(i).copied().unwrap_or(i);
    match e {
        LayoutError::IllegalPlacement {
            index,
            profile,
            placement,
            start,
            legal,
        } => LayoutError::IllegalPlacement {
            index: map(index),
            profile,
            placement,
            start,
            legal,
        },
        LayoutError::Overlap {
            index,
            profile,
            placement,
            other,
            other_profile,
            other_placement,
        } => LayoutError::Overlap {
            index: map(index),
            profile,
            placement,
            other: map(other),
            other_profile,
            other_placement,
        },
        LayoutError::CountExceeded { index, profile, max } => LayoutError::CountExceeded {
            index: map(index),
            profile,
            max,
        },
        LayoutError::ComputeExceeded {
            index,
            profile,
            used,
            available,
        } => LayoutError::ComputeExceeded {
            index: map(index),
            profile,
            used,
            available,
        },
        other => other,
    }
}

/// `1x3g.40gb@0 + 2x1g.10gb`, for "does not fit".
fn describe_wanted(family: MigFamily, want: &Wanted) -> String {
    let geo = geometry();
    let mut parts = Vec::new();
    for kind in ALL_KINDS.iter().rev() {
        let k = *kind as usize;
        let name = family.profile(*kind).name;
        for i in geo.instances(want.placed & geo.kind_mask[k]) {
            parts.push(format!("1x{name}@{}", i.placement.start));
        }
        if want.unplaced[k] > 0 {
            parts.push(format!("{}x{name}", want.unplaced[k]));
        }
    }
    parts.join(" + ")
}
