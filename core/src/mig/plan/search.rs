//! The per-GPU search behind [`plan`](super::plan): layouts as bit sets over
//! the 25 (profile kind, placement) candidates, and a branch-and-bound walk
//! over them. See the parent module for the objective and the bound.

use std::sync::OnceLock;

use crate::mig::profiles::{ALL_KINDS, ProfileKind};
use crate::mig::{COMPUTE_SLICES, MigInstance, Placement};

/// A target resolved against the GPU's model: per kind, the candidates the
/// target places and how many it leaves to the planner.
#[derive(Debug, Clone, Default)]
pub(super) struct Wanted {
    pub(super) placed: u32,
    pub(super) unplaced: [u8; KINDS],
    pub(super) total: [u8; KINDS],
}

impl Wanted {
    pub(super) fn len(&self) -> usize {
        self.total.iter().map(|&n| n as usize).sum()
    }
}

pub(super) const KINDS: usize = ALL_KINDS.len();

/// The search visits kinds largest first: big instances constrain most, so
/// dead branches are cut early.
const ORDER: [usize; KINDS] = [6, 5, 4, 3, 2, 1, 0];

/// One (profile kind, placement) pair; a layout is a set of them, a `u32`.
#[derive(Debug, Clone, Copy)]
struct Cand {
    kind: ProfileKind,
    placement: Placement,
    mem: u8,
    compute: u8,
}

#[derive(Debug)]
pub(super) struct Geometry {
    cands: Vec<Cand>,
    /// Candidates of each kind: `first..first + len`.
    kind_range: [(usize, usize); KINDS],
    pub(super) kind_mask: [u32; KINDS],
}

pub(super) fn geometry() -> &'static Geometry {
    static GEO: OnceLock<Geometry> = OnceLock::new();
    GEO.get_or_init(|| {
        let mut cands = Vec::new();
        let mut kind_range = [(0, 0); KINDS];
        let mut kind_mask = [0u32; KINDS];
        for kind in ALL_KINDS {
            let spec = kind.spec();
            kind_range[kind as usize] = (cands.len(), spec.placements.len());
            for &placement in spec.placements {
                kind_mask[kind as usize] |= 1 << cands.len();
                cands.push(Cand {
                    kind,
                    placement,
                    mem: placement.mask(),
                    compute: spec.compute_slices,
                });
            }
        }
        Geometry {
            cands,
            kind_range,
            kind_mask,
        }
    })
}

impl Geometry {
    pub(super) fn index_of(&self, inst: MigInstance) -> Option<usize> {
        let (first, len) = self.kind_range[inst.kind as usize];
        (first..first + len).find(|&c| self.cands[c].placement == inst.placement)
    }

    /// Instances of a validated layout as a mask.
    pub(super) fn mask_of(&self, instances: &[MigInstance]) -> u32 {
        instances
            .iter()
            .filter_map(|&i| self.index_of(i))
            .fold(0, |m, c| m | 1 << c)
    }

    /// Instances of a mask, in canonical order (by placement).
    pub(super) fn instances(&self, mask: u32) -> Vec<MigInstance> {
        let mut out: Vec<MigInstance> = bits(mask)
            .map(|c| MigInstance {
                kind: self.cands[c].kind,
                placement: self.cands[c].placement,
            })
            .collect();
        out.sort_by_key(|i| (i.placement, i.kind));
        out
    }

    /// The tie key: per memory slice, the instance starting there (smaller
    /// code first), or 255 if none.
    fn tie_key(&self, mask: u32) -> [u8; 8] {
        let mut key = [u8::MAX; 8];
        for c in bits(mask) {
            let cand = &self.cands[c];
            if let Some(k) = key.get_mut(cand.placement.start as usize) {
                *k = cand.placement.size * KINDS as u8 + cand.kind as u8;
            }
        }
        key
    }
}

fn bits(mask: u32) -> impl Iterator<Item = usize> {
    (0..32).filter(move |c| mask & (1u32 << c) != 0)
}

fn ones(x: u32) -> u8 {
    x.count_ones() as u8
}

/// The best layout found, with its score.
#[derive(Debug, Clone, Copy)]
pub(super) struct Best {
    pub(super) f: u32,
    /// Target instances satisfied.
    pub(super) m: u8,
    busy_kept: u8,
    cost: u8,
}

impl Best {
    pub(super) fn of(f: u32, m: u8, cur: u32, busy: u32) -> Self {
        Best {
            f,
            m,
            busy_kept: ones(busy & f),
            cost: ones(cur ^ f),
        }
    }
}

/// A layout under construction.
#[derive(Debug, Clone, Copy, Default)]
struct Partial {
    f: u32,
    mem: u8,
    compute: u8,
    m: u8,
}

/// Counters for the kind being decided.
#[derive(Debug, Clone, Copy, Default)]
struct KindAcc {
    count: u8,
    /// Instances of this kind not at a placed target entry.
    off: u8,
    /// Of those, the ones that are not busy (they must match an unplaced entry).
    off_idle: u8,
}

/// Branch and bound over layouts, maximising (target instances satisfied,
/// busy instances kept), then minimising steps, then the tie key.
///
/// `closest == false`: only layouts that satisfy the target exactly (the
/// target search; keeping busy instances is scored, not forced).
/// `closest == true`: layouts that keep every busy instance and otherwise
/// hold only target instances.
#[derive(Debug)]
pub(super) struct Search<'a> {
    geo: &'a Geometry,
    cur: u32,
    busy: u32,
    forced: u32,
    want: &'a Wanted,
    exact: bool,
    /// Target instances of kinds `ORDER[i..]`, and their candidates.
    rest_wanted: [u8; KINDS + 1],
    rest_mask: [u32; KINDS + 1],
    pub(super) best: Option<Best>,
    #[cfg(test)]
    visited: u32,
}

impl<'a> Search<'a> {
    pub(super) fn new(geo: &'a Geometry, cur: u32, busy: u32, want: &'a Wanted, closest: bool) -> Self {
        let mut rest_wanted = [0; KINDS + 1];
        let mut rest_mask = [0; KINDS + 1];
        for i in (0..KINDS).rev() {
            rest_wanted[i] = rest_wanted[i + 1] + want.total[ORDER[i]];
            rest_mask[i] = rest_mask[i + 1] | geo.kind_mask[ORDER[i]];
        }
        Search {
            geo,
            cur,
            busy,
            forced: if closest { busy } else { 0 },
            want,
            exact: !closest,
            rest_wanted,
            rest_mask,
            best: None,
            #[cfg(test)]
            visited: 0,
        }
    }

    pub(super) fn run(&mut self) {
        self.kinds(0, Partial::default());
    }

    fn kinds(&mut self, ki: usize, p: Partial) {
        #[cfg(test)]
        {
            self.visited += 1;
        }
        if ki == KINDS {
            self.leaf(p);
        } else if !self.pruned(ki, p) {
            let k = ORDER[ki];
            let mask = self.geo.kind_mask[k];
            if self.want.unplaced[k] == 0 && (self.want.placed | self.forced) & mask == 0 {
                // Nothing of this kind can be in the layout: skip its walk.
                self.kinds(ki + 1, p);
            } else {
                self.pick(ki, 0, p, KindAcc::default());
            }
        }
    }

    /// Whether no completion of `p` can beat the best so far: its score
    /// bounds are (all remaining target instances, all remaining busy
    /// instances, steps already fixed by the decided kinds).
    fn pruned(&self, ki: usize, p: Partial) -> bool {
        let Some(b) = self.best else { return false };
        let rest = self.rest_mask[ki];
        let m = p.m + self.rest_wanted[ki];
        let busy = ones(self.busy & p.f) + ones(self.busy & rest);
        let cost = ones((self.cur ^ p.f) & !rest);
        (m, busy) < (b.m, b.busy_kept) || ((m, busy) == (b.m, b.busy_kept) && cost > b.cost)
    }

    /// Decides candidate `pi` of kind `ORDER[ki]` in or out.
    fn pick(&mut self, ki: usize, pi: usize, p: Partial, acc: KindAcc) {
        let k = ORDER[ki];
        let (first, len) = self.geo.kind_range[k];
        let unplaced = self.want.unplaced[k];
        if pi == len {
            let at_placed = self.want.placed & self.geo.kind_mask[k];
            if self.exact && (p.f & at_placed != at_placed || acc.off != unplaced) {
                return;
            }
            // Instances at a placed entry match it; the others fill the
            // unplaced entries, idle ones first (busy ones may stay unmatched).
            let m = ones(p.f & at_placed) + acc.off.min(unplaced);
            self.kinds(ki + 1, Partial { m: p.m + m, ..p });
            return;
        }
        let c = first + pi;
        if self.exact && acc.off < unplaced {
            // The unplaced entries of this kind need enough free candidates
            // left; without this cut the walk tries every subset.
            let room = (c..first + len)
                .filter(|&r| self.want.placed & 1 << r == 0 && self.geo.cands[r].mem & p.mem == 0)
                .count();
            if (acc.off as usize) + room < unplaced as usize {
                return;
            }
        }
        let bit = 1u32 << c;
        let cand = self.geo.cands[c];
        let forced = self.forced & bit != 0;
        let is_placed = self.want.placed & bit != 0;
        let allowed = forced || is_placed || unplaced > 0;
        if allowed
            && p.mem & cand.mem == 0
            && p.compute + cand.compute <= COMPUTE_SLICES
            && acc.count < cand.kind.spec().max_count
        {
            let mut a = acc;
            a.count += 1;
            if !is_placed {
                a.off += 1;
                if !forced {
                    a.off_idle += 1;
                }
            }
            if a.off_idle <= unplaced {
                let next = Partial {
                    f: p.f | bit,
                    mem: p.mem | cand.mem,
                    compute: p.compute + cand.compute,
                    m: p.m,
                };
                self.pick(ki, pi + 1, next, a);
            }
        }
        // Busy instances (closest search) and placed entries (target search)
        // cannot be left out.
        let must_take = forced || (self.exact && is_placed);
        if !must_take {
            self.pick(ki, pi + 1, p, acc);
        }
    }

    fn leaf(&mut self, p: Partial) {
        let cand = Best::of(p.f, p.m, self.cur, self.busy);
        let better = match self.best {
            None => true,
            Some(b) => {
                let ours = (std::cmp::Reverse(cand.m), std::cmp::Reverse(cand.busy_kept), cand.cost);
                let theirs = (std::cmp::Reverse(b.m), std::cmp::Reverse(b.busy_kept), b.cost);
                ours < theirs || (ours == theirs && self.geo.tie_key(cand.f) < self.geo.tie_key(b.f))
            }
        };
        if better {
            self.best = Some(cand);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mig::{MigFamily, MigLayout};

    #[test]
    fn geometry_has_25_candidates_and_2319_valid_layouts() {
        let geo = geometry();
        assert_eq!(geo.cands.len(), 25);
        // Every subset reachable by adding valid candidates, checked by the
        // layout validator: the bound the module documentation states.
        fn walk(geo: &Geometry, from: usize, l: &mut MigLayout, n: &mut usize) {
            *n += 1;
            for c in from..geo.cands.len() {
                let inst = MigInstance {
                    kind: geo.cands[c].kind,
                    placement: geo.cands[c].placement,
                };
                if l.can_add(inst) {
                    l.instances.push(inst);
                    walk(geo, c + 1, l, n);
                    l.instances.pop();
                }
            }
        }
        let mut n = 0;
        walk(geo, 0, &mut MigLayout::empty(MigFamily::H100_80gb), &mut n);
        assert_eq!(n, 2319);
    }

    #[test]
    fn search_stays_within_the_stated_bound() {
        // An unplaced target that allows the most layouts: 1g+me plus six 1g
        // with nothing current, and the closest search with one busy 1g.
        let geo = geometry();
        let mut want = Wanted::default();
        want.unplaced[ProfileKind::G1 as usize] = 6;
        want.total[ProfileKind::G1 as usize] = 6;
        want.unplaced[ProfileKind::G1Me as usize] = 1;
        want.total[ProfileKind::G1Me as usize] = 1;
        for closest in [false, true] {
            let busy = if closest { 1 << 3 } else { 0 };
            let mut s = Search::new(geo, busy, busy, &want, closest);
            s.run();
            assert!(s.best.is_some());
            assert!(s.visited <= 26 * 2319, "{}", s.visited);
        }
    }

    #[test]
    fn tie_key_prefers_low_starts() {
        let geo = geometry();
        let g1 = |start: usize| 1u32 << start; // G1 candidates are 0..7 by start
        assert!(geo.tie_key(g1(0)) < geo.tie_key(g1(6)));
        assert!(geo.tie_key(g1(0) | g1(1)) < geo.tie_key(g1(0) | g1(2)));
    }
}
