//! Layouts of GPU instances on one GPU: validation, counting, enumeration and
//! packing a profile count vector into placements.
//!
//! Searches here are over one GPU's 8 memory slices (at most 25 candidate
//! placements), so they are bounded by a constant, not by cluster size.

use std::collections::BTreeMap;
use std::fmt;

use super::profiles::{ALL_KINDS, MigFamily, ProfileKind};
use super::{COMPUTE_SLICES, Placement};

/// One GPU instance: a profile at a placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MigInstance {
    pub kind: ProfileKind,
    pub placement: Placement,
}

impl MigInstance {
    /// `kind` starting at memory slice `start`, with the kind's size.
    pub fn at(kind: ProfileKind, start: u8) -> MigInstance {
        MigInstance {
            kind,
            placement: Placement {
                start,
                size: kind.spec().memory_slices,
            },
        }
    }
}

/// The GPU instances on one GPU of a given MIG family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigLayout {
    pub family: MigFamily,
    pub instances: Vec<MigInstance>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("instance {index} ({profile} at {placement}): start {start} is not a legal placement; legal: {legal}")]
    IllegalPlacement {
        index: usize,
        profile: String,
        placement: Placement,
        start: u8,
        legal: String,
    },
    #[error(
        "instance {index} ({profile} at {placement}) overlaps instance {other} ({other_profile} at {other_placement})"
    )]
    Overlap {
        index: usize,
        profile: String,
        placement: Placement,
        other: usize,
        other_profile: String,
        other_placement: Placement,
    },
    #[error("instance {index} ({profile}): more than {max} instances of {profile} on one GPU")]
    CountExceeded { index: usize, profile: String, max: u8 },
    #[error("instance {index} ({profile}): layout needs {used} compute slices, the GPU has {available}")]
    ComputeExceeded {
        index: usize,
        profile: String,
        used: u8,
        available: u8,
    },
    #[error("MIG profile {profile:?} does not exist on {family:?}; it has: {available}")]
    UnknownProfile {
        profile: String,
        family: MigFamily,
        available: String,
    },
    #[error("{requested} does not fit on one {family:?} GPU")]
    DoesNotFit { requested: String, family: MigFamily },
}

impl MigLayout {
    pub fn new(family: MigFamily, instances: Vec<MigInstance>) -> Self {
        MigLayout { family, instances }
    }

    pub fn empty(family: MigFamily) -> Self {
        MigLayout {
            family,
            instances: Vec::new(),
        }
    }

    fn name(&self, kind: ProfileKind) -> String {
        self.family.profile(kind).name.to_string()
    }

    /// Checks the layout against the hardware rules, reporting the first
    /// offending instance (in the order given) and why.
    pub fn validate(&self) -> Result<(), LayoutError> {
        let mut counts = [0u8; ALL_KINDS.len()];
        let mut compute = 0u8;
        for (index, inst) in self.instances.iter().enumerate() {
            let spec = inst.kind.spec();
            if !spec.placements.contains(&inst.placement) {
                return Err(LayoutError::IllegalPlacement {
                    index,
                    profile: self.name(inst.kind),
                    placement: inst.placement,
                    start: inst.placement.start,
                    legal: spec
                        .placements
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            if let Some((other, o)) = self.instances[..index]
                .iter()
                .enumerate()
                .find(|(_, o)| o.placement.overlaps(inst.placement))
            {
                return Err(LayoutError::Overlap {
                    index,
                    profile: self.name(inst.kind),
                    placement: inst.placement,
                    other,
                    other_profile: self.name(o.kind),
                    other_placement: o.placement,
                });
            }
            counts[inst.kind as usize] += 1;
            if counts[inst.kind as usize] > spec.max_count {
                return Err(LayoutError::CountExceeded {
                    index,
                    profile: self.name(inst.kind),
                    max: spec.max_count,
                });
            }
            compute += spec.compute_slices;
            if compute > COMPUTE_SLICES {
                return Err(LayoutError::ComputeExceeded {
                    index,
                    profile: self.name(inst.kind),
                    used: compute,
                    available: COMPUTE_SLICES,
                });
            }
        }
        Ok(())
    }

    /// Memory slices in use, as a bit mask.
    pub fn used_mask(&self) -> u8 {
        self.instances.iter().fold(0, |m, i| m | i.placement.mask())
    }

    /// Whether `inst` could be added without breaking a rule.
    pub fn can_add(&self, inst: MigInstance) -> bool {
        let mut next = self.clone();
        next.instances.push(inst);
        next.validate().is_ok()
    }

    /// Instances per profile name, e.g. `{"1g.5gb": 3, "2g.10gb": 2}`.
    pub fn counts(&self) -> BTreeMap<&'static str, u32> {
        let mut out = BTreeMap::new();
        for i in &self.instances {
            *out.entry(self.family.profile(i.kind).name).or_insert(0) += 1;
        }
        out
    }

    /// Sorted by placement, so equal layouts compare equal.
    pub fn canonical(mut self) -> Self {
        self.instances.sort_by_key(|i| (i.placement, i.kind));
        self
    }

    /// Finds placements for a profile count vector (as mig-parted's
    /// `mig-devices` gives it). Larger instances are placed first, mirroring
    /// how `nvidia-smi` creates them, and the search backtracks if that fails.
    pub fn pack(family: MigFamily, wanted: &[(ProfileKind, u32)]) -> Result<MigLayout, LayoutError> {
        let mut kinds: Vec<ProfileKind> = Vec::new();
        for &(kind, n) in wanted {
            let max = kind.spec().max_count as u32;
            if n > max {
                return Err(LayoutError::CountExceeded {
                    index: 0,
                    profile: family.profile(kind).name.into(),
                    max: kind.spec().max_count,
                });
            }
            kinds.extend(std::iter::repeat_n(kind, n as usize));
        }
        kinds.sort_by_key(|k| std::cmp::Reverse((k.spec().memory_slices, k.spec().compute_slices)));
        let mut layout = MigLayout::empty(family);
        if place_all(&mut layout, &kinds) {
            Ok(layout.canonical())
        } else {
            let requested = wanted
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| format!("{n}x{}", family.profile(*k).name))
                .collect::<Vec<_>>()
                .join(" + ");
            Err(LayoutError::DoesNotFit { requested, family })
        }
    }
}

fn place_all(layout: &mut MigLayout, rest: &[ProfileKind]) -> bool {
    let Some((&kind, tail)) = rest.split_first() else {
        return true;
    };
    for &placement in kind.spec().placements {
        let inst = MigInstance { kind, placement };
        if layout.can_add(inst) {
            layout.instances.push(inst);
            if place_all(layout, tail) {
                return true;
            }
            layout.instances.pop();
        }
    }
    false
}

impl fmt::Display for MigLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .instances
            .iter()
            .map(|i| format!("{}@{}", self.family.profile(i.kind).name, i.placement))
            .collect();
        write!(f, "[{}]", parts.join(", "))
    }
}

fn candidates() -> Vec<MigInstance> {
    ALL_KINDS
        .iter()
        .flat_map(|&kind| {
            kind.spec()
                .placements
                .iter()
                .map(move |&placement| MigInstance { kind, placement })
        })
        .collect()
}

/// Every valid layout to which no further instance can be added, in
/// canonical form and sorted. Includes layouts with a `+me` instance.
pub fn enumerate_maximal_layouts(family: MigFamily) -> Vec<MigLayout> {
    let cands = candidates();
    let mut out = Vec::new();
    let mut current = MigLayout::empty(family);
    walk(&cands, 0, &mut current, &mut out);
    out.sort_by(|a, b| a.instances.cmp(&b.instances));
    out
}

fn walk(cands: &[MigInstance], from: usize, current: &mut MigLayout, out: &mut Vec<MigLayout>) {
    for (i, &c) in cands.iter().enumerate().skip(from) {
        if current.can_add(c) {
            current.instances.push(c);
            walk(cands, i + 1, current, out);
            current.instances.pop();
        }
    }
    // Maximal: no candidate at all (earlier ones included) can be added.
    if !current.instances.is_empty() && !cands.iter().any(|&c| current.can_add(c)) {
        out.push(current.clone().canonical());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mig::MEMORY_SLICES;
    use proptest::prelude::*;

    fn inst(kind: ProfileKind, start: u8) -> MigInstance {
        MigInstance::at(kind, start)
    }

    fn has_layout(all: &[MigLayout], want: &[(ProfileKind, u32)]) -> bool {
        all.iter().any(|l| {
            ALL_KINDS.iter().all(|k| {
                let n = l.instances.iter().filter(|i| i.kind == *k).count() as u32;
                n == want.iter().find(|(w, _)| w == k).map_or(0, |(_, c)| *c)
            })
        })
    }

    #[test]
    fn every_enumerated_layout_validates_and_is_maximal() {
        for family in MigFamily::all() {
            let all = enumerate_maximal_layouts(family);
            assert!(!all.is_empty());
            for l in &all {
                l.validate().unwrap_or_else(|e| panic!("{family:?} {l}: {e}"));
                for c in candidates() {
                    assert!(!l.can_add(c), "{family:?} {l} not maximal, could add {c:?}");
                }
            }
            let mut dedup = all.clone();
            dedup.dedup();
            assert_eq!(dedup.len(), all.len(), "duplicates for {family:?}");
        }
    }

    #[test]
    fn single_profile_maximal_layouts_are_found() {
        use ProfileKind::*;
        for family in MigFamily::all() {
            let all = enumerate_maximal_layouts(family);
            for want in [
                &[(G1, 7)][..],
                &[(G1DoubleMem, 4)],
                &[(G2, 3), (G1, 1)],
                &[(G3, 2)],
                &[(G4, 1), (G3, 1)],
                &[(G4, 1), (G2, 1), (G1, 1)],
                &[(G7, 1)],
                &[(G1Me, 1), (G1, 6)],
            ] {
                assert!(has_layout(&all, want), "{family:?} missing {want:?}");
            }
        }
    }

    #[test]
    fn invalid_layouts_name_the_instance_and_reason() {
        use ProfileKind::*;
        let f = MigFamily::A100_40gb;
        let overlap = MigLayout::new(f, vec![inst(G3, 0), inst(G2, 2)])
            .validate()
            .unwrap_err();
        assert_eq!(
            overlap.to_string(),
            "instance 1 (2g.10gb at 2:2) overlaps instance 0 (3g.20gb at 0:4)"
        );

        let illegal = MigLayout::new(
            f,
            vec![MigInstance {
                kind: G3,
                placement: Placement { start: 2, size: 4 },
            }],
        )
        .validate()
        .unwrap_err();
        assert_eq!(
            illegal.to_string(),
            "instance 0 (3g.20gb at 2:4): start 2 is not a legal placement; legal: 0:4, 4:4"
        );

        let one_g_at_7 = MigLayout::new(
            f,
            vec![MigInstance {
                kind: G1,
                placement: Placement { start: 7, size: 1 },
            }],
        );
        assert!(matches!(
            one_g_at_7.validate(),
            Err(LayoutError::IllegalPlacement { start: 7, .. })
        ));

        let two_me = MigLayout::new(f, vec![inst(G1Me, 0), inst(G1Me, 1)])
            .validate()
            .unwrap_err();
        assert_eq!(
            two_me.to_string(),
            "instance 1 (1g.5gb+me): more than 1 instances of 1g.5gb+me on one GPU"
        );
    }

    #[test]
    fn pack_places_the_mig_parted_example() {
        use ProfileKind::*;
        let l = MigLayout::pack(MigFamily::A100_40gb, &[(G2, 2), (G1, 3)]).unwrap();
        l.validate().unwrap();
        assert_eq!(l.counts(), BTreeMap::from([("1g.5gb", 3), ("2g.10gb", 2)]));
        let err = MigLayout::pack(MigFamily::A100_40gb, &[(G4, 1), (G3, 1), (G1, 1)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "1x4g.20gb + 1x3g.20gb + 1x1g.5gb does not fit on one A100_40gb GPU"
        );
    }

    fn arb_layout() -> impl Strategy<Value = MigLayout> {
        let n = candidates().len();
        (0..5usize, proptest::collection::vec(0..n, 0..8)).prop_map(|(f, idx)| {
            let cands = candidates();
            MigLayout::new(MigFamily::all()[f], idx.into_iter().map(|i| cands[i]).collect())
        })
    }

    proptest! {
        /// The validator and the slice arithmetic agree: a valid layout never
        /// uses a memory slice twice or more than 7 compute slices.
        #[test]
        fn valid_layouts_never_share_slices(l in arb_layout()) {
            if l.validate().is_ok() {
                let mut used = 0u16;
                let mut compute = 0u8;
                for i in &l.instances {
                    let m = i.placement.mask() as u16;
                    prop_assert_eq!(used & m, 0);
                    used |= m;
                    compute += i.kind.spec().compute_slices;
                }
                prop_assert!(compute <= COMPUTE_SLICES);
                prop_assert!(used < (1 << MEMORY_SLICES));
            }
        }

        /// Packing the counts of any valid layout succeeds with the same counts.
        #[test]
        fn pack_reproduces_counts_of_valid_layouts(l in arb_layout()) {
            if l.validate().is_ok() {
                let wanted: Vec<(ProfileKind, u32)> = ALL_KINDS
                    .iter()
                    .map(|k| (*k, l.instances.iter().filter(|i| i.kind == *k).count() as u32))
                    .collect();
                let packed = MigLayout::pack(l.family, &wanted).unwrap();
                prop_assert!(packed.validate().is_ok());
                prop_assert_eq!(packed.counts(), l.counts());
            }
        }
    }
}
