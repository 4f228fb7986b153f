//! MIG-partitioned GPUs for the packing model: a fractional request gets the
//! smallest MIG profile whose compute share covers its `gpu_milli`, placed
//! with `core::mig`'s geometry.
//!
//! Profile geometry is the same for every MIG family, so the reachable
//! layouts of one GPU are enumerated once into a table of states with their
//! transitions; a GPU's state is then a `u16` and every query is O(1).

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::mig::{MigFamily, MigInstance, MigLayout, ProfileKind};

use super::state::MILLI;

/// Profiles a fractional pod may get, smallest first. `1g` with media
/// engines and `1g` with double memory are left out: `1g` covers the same
/// compute share with less memory.
pub const SHARE_KINDS: [ProfileKind; 5] = [
    ProfileKind::G1,
    ProfileKind::G2,
    ProfileKind::G3,
    ProfileKind::G4,
    ProfileKind::G7,
];

/// The smallest profile whose compute share (slices / 7) covers `gpu_milli`.
pub fn profile_for_milli(gpu_milli: u16) -> Option<ProfileKind> {
    let slices = (gpu_milli as u32 * 7).div_ceil(MILLI as u32);
    SHARE_KINDS
        .into_iter()
        .find(|k| k.spec().compute_slices as u32 >= slices.max(1))
}

fn kind_index(kind: ProfileKind) -> usize {
    SHARE_KINDS.iter().position(|&k| k == kind).unwrap_or(0)
}

#[derive(Debug)]
struct StateInfo {
    layout: MigLayout,
    used_compute: u8,
    next: [Option<u16>; SHARE_KINDS.len()],
    /// Bit `i`: an instance of `SHARE_KINDS[i]` can still be added.
    addable: u8,
}

/// Every layout reachable from an empty GPU by adding share profiles with
/// the placement rule below.
#[derive(Debug)]
pub struct MigTable {
    states: Vec<StateInfo>,
}

impl MigTable {
    fn build() -> MigTable {
        // Geometry is family-independent; the family only names profiles.
        let family = MigFamily::A100_80gb;
        let mut index: HashMap<Vec<MigInstance>, u16> = HashMap::new();
        let mut layouts: Vec<MigLayout> = vec![MigLayout::empty(family)];
        index.insert(Vec::new(), 0);
        let mut states: Vec<StateInfo> = Vec::new();
        let mut i = 0;
        while i < layouts.len() {
            let layout = layouts[i].clone();
            let mut next = [None; SHARE_KINDS.len()];
            let mut addable = 0u8;
            for (k, &kind) in SHARE_KINDS.iter().enumerate() {
                // Among legal placements keep the one that leaves the most
                // profiles addable, so small instances don't block big ones.
                let mut best: Option<(u32, MigLayout)> = None;
                for &placement in kind.spec().placements {
                    let inst = MigInstance { kind, placement };
                    if !layout.can_add(inst) {
                        continue;
                    }
                    let mut cand = layout.clone();
                    cand.instances.push(inst);
                    let cand = cand.canonical();
                    let room = addable_count(&cand);
                    if best.as_ref().is_none_or(|(r, _)| room > *r) {
                        best = Some((room, cand));
                    }
                }
                if let Some((_, cand)) = best {
                    addable |= 1 << k;
                    let id = match index.get(&cand.instances) {
                        Some(&id) => id,
                        None => {
                            let id = layouts.len() as u16;
                            index.insert(cand.instances.clone(), id);
                            layouts.push(cand);
                            id
                        }
                    };
                    next[k] = Some(id);
                }
            }
            let used_compute = layout.instances.iter().map(|i| i.kind.spec().compute_slices).sum();
            states.push(StateInfo {
                layout,
                used_compute,
                next,
                addable,
            });
            i += 1;
        }
        MigTable { states }
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

fn addable_count(layout: &MigLayout) -> u32 {
    SHARE_KINDS
        .iter()
        .map(|&kind| {
            kind.spec()
                .placements
                .iter()
                .filter(|&&placement| layout.can_add(MigInstance { kind, placement }))
                .count() as u32
        })
        .sum()
}

/// The shared transition table.
pub fn table() -> &'static MigTable {
    static TABLE: OnceLock<MigTable> = OnceLock::new();
    TABLE.get_or_init(MigTable::build)
}

/// One MIG-enabled GPU: a state in [`table`], or taken whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MigGpu {
    state: u16,
    whole: bool,
}

impl MigGpu {
    fn info(&self) -> &'static StateInfo {
        &table().states[self.state as usize]
    }

    /// Whether a fractional pod of `gpu_milli` gets an instance here.
    pub fn fits_milli(&self, gpu_milli: u16) -> bool {
        !self.whole && profile_for_milli(gpu_milli).is_some_and(|k| self.info().addable & (1 << kind_index(k)) != 0)
    }

    /// Milli-GPU of compute left: free compute slices × 1000 / 7, rounded.
    pub fn left_milli(&self) -> u16 {
        if self.whole {
            return 0;
        }
        let free = 7 - self.info().used_compute as u32;
        ((free * MILLI as u32 + 3) / 7) as u16
    }

    fn next(&self, gpu_milli: u16) -> Option<MigGpu> {
        if self.whole {
            return None;
        }
        let k = profile_for_milli(gpu_milli)?;
        self.info().next[kind_index(k)].map(|state| MigGpu { state, whole: false })
    }

    /// Milli left after adding an instance for `gpu_milli` (unchanged if it
    /// does not fit).
    pub fn left_after_milli(&self, gpu_milli: u16) -> u16 {
        self.next(gpu_milli).map_or(self.left_milli(), |n| n.left_milli())
    }

    /// Adds the instance; returns the milli left, or `None` if it does not fit.
    pub fn add_milli(&mut self, gpu_milli: u16) -> Option<u16> {
        let n = self.next(gpu_milli)?;
        *self = n;
        Some(n.left_milli())
    }

    /// Marks the GPU as used whole (a whole-GPU pod, MIG disabled or `7g`).
    pub fn take_whole(&mut self) {
        self.whole = true;
    }

    pub fn is_empty(&self) -> bool {
        !self.whole && self.state == 0
    }

    /// The instances on this GPU, named for `family`.
    pub fn layout(&self, family: MigFamily) -> MigLayout {
        MigLayout::new(family, self.info().layout.instances.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_profile_covering_the_share() {
        assert_eq!(profile_for_milli(1), Some(ProfileKind::G1));
        assert_eq!(profile_for_milli(142), Some(ProfileKind::G1));
        assert_eq!(profile_for_milli(143), Some(ProfileKind::G2));
        assert_eq!(profile_for_milli(250), Some(ProfileKind::G2));
        assert_eq!(profile_for_milli(300), Some(ProfileKind::G3));
        assert_eq!(profile_for_milli(500), Some(ProfileKind::G4));
        assert_eq!(profile_for_milli(572), Some(ProfileKind::G7));
        assert_eq!(profile_for_milli(999), Some(ProfileKind::G7));
    }

    #[test]
    fn every_state_is_a_valid_layout() {
        let t = table();
        assert!(t.len() > 10);
        for s in &t.states {
            s.layout.validate().unwrap();
            assert!(s.used_compute <= 7);
        }
    }

    #[test]
    fn seven_1g_then_full() {
        let mut g = MigGpu::default();
        assert_eq!(g.left_milli(), 1000);
        for _ in 0..7 {
            assert!(g.fits_milli(100));
            g.add_milli(100).unwrap();
        }
        assert_eq!(g.left_milli(), 0);
        assert!(!g.fits_milli(100));
        assert_eq!(g.layout(MigFamily::A100_80gb).counts().get("1g.10gb"), Some(&7));
    }

    #[test]
    fn two_3g_leave_a_stranded_slice() {
        let mut g = MigGpu::default();
        g.add_milli(400).unwrap();
        g.add_milli(400).unwrap();
        // 6 of 7 compute slices used, but all 8 memory slices are taken.
        assert_eq!(g.left_milli(), 143);
        assert!(!g.fits_milli(100));
    }

    #[test]
    fn small_instances_keep_room_for_a_4g() {
        let mut g = MigGpu::default();
        g.add_milli(100).unwrap();
        g.add_milli(100).unwrap();
        assert!(g.fits_milli(550 - 50), "a 4g (500 milli) still fits next to two 1g");
    }

    #[test]
    fn whole_gpu_blocks_instances() {
        let mut g = MigGpu::default();
        g.take_whole();
        assert!(!g.fits_milli(100));
        assert_eq!(g.left_milli(), 0);
    }
}
