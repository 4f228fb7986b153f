//! Planning one gang: how many members can start, one node if they fit
//! there, else a few candidate selections per level ranked by the cost model
//! and then by the damage they do.

use std::cmp::Reverse;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use super::cluster::{FreeState, GangCluster, full_mask};
use super::select::select;
use super::{Decision, Gang, GangError, GangPlan, Level, MemberPlacement, NoFit, NoFitReason};
use crate::comm::{CommEstimate, estimate};
use crate::fabric::{GpuRef, MachineLookup};
use crate::topology::Constraints;

/// Candidate selections scored with the cost model per level and variant;
/// the rest are ranked by the cheap proxy only. Keeps planning polynomial
/// and fast while still comparing a few domains.
const EVALUATED_PER_LEVEL: usize = 3;

/// Bus bandwidths within this factor count as equal, so that damage and
/// best fit decide between them.
const BUSBW_TIE: f64 = 0.01;

fn bucket(gbps: f64) -> i64 {
    if gbps.is_infinite() {
        return i64::MAX;
    }
    if gbps <= 0.0 || gbps.is_nan() {
        return i64::MIN;
    }
    (gbps.ln() / BUSBW_TIE.ln_1p()).floor() as i64
}

/// Ranks single-node choices: bandwidth, tightest fit, fragmented and
/// fuller leaf group, node index.
type SingleKey = (Reverse<i64>, u32, bool, u64, usize);

/// Damage a selection does to clean capacity, and how tightly it fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Proxy {
    nodes: usize,
    clean_groups_broken: u32,
    clean_nodes_broken: u32,
    leftover: u64,
}

struct Candidate {
    level_order: usize,
    within_preferred: bool,
    proxy: Proxy,
    selection: Vec<(usize, u32)>,
}

/// Per-plan facts about tier-0 groups.
struct Groups {
    clean: Vec<bool>,
    free: Vec<u64>,
}

impl<M: MachineLookup + ?Sized> GangCluster<'_, M> {
    /// A member needs more GPUs than any node has: it can never fit.
    fn member_too_big(&self, k: u32) -> Option<Decision> {
        let largest = self.nodes.iter().map(|n| n.gpus.len() as u32).max().unwrap_or(0);
        (k > largest).then_some(Decision::Wait(NoFit {
            reason: NoFitReason::MemberTooBig {
                gpus_per_member: k,
                largest_node: largest,
            },
            fits_empty: false,
        }))
    }

    /// Plans `gang` against `free`: every member's node and GPUs, or why it
    /// must wait. Pure: `free` is not changed (apply the plan with
    /// [`FreeState::apply`]).
    pub fn plan(&self, gang: &Gang, free: &FreeState) -> Result<Decision, GangError> {
        validate(gang)?;
        if free.free.len() != self.nodes.len() {
            return Err(GangError::StateSize {
                got: free.free.len(),
                want: self.nodes.len(),
            });
        }
        let k = gang.gpus_per_member;
        if let Some(too_big) = self.member_too_big(k) {
            return Ok(too_big);
        }
        let allowed = gang.required.unwrap_or(Level::Cluster);
        let empty_cap = |n: usize| self.nodes[n].gpus.len() as u32 / k;
        let now_cap = |n: usize| free.free_count(n) / k;
        let fits_empty = self.best_capacity(allowed, &empty_cap) >= gang.min_members;
        let best_now = self.best_capacity(allowed, &now_cap);
        if best_now < gang.min_members {
            let need = u64::from(gang.min_members) * u64::from(k);
            let total = free.total_free();
            let anywhere: u32 = (0..self.nodes.len()).map(now_cap).sum();
            let reason = if total < need {
                NoFitReason::NotEnoughFree { need, free: total }
            } else if let (Some(level), true) = (gang.required, anywhere >= gang.min_members) {
                NoFitReason::NoDomain {
                    level,
                    need: gang.min_members,
                    best: best_now,
                }
            } else {
                NoFitReason::Fragmented {
                    need: gang.min_members,
                    fit: anywhere,
                }
            };
            return Ok(Decision::Wait(NoFit { reason, fits_empty }));
        }
        let target = gang.members.min(best_now);
        let groups = self.tier0_groups(free);

        let single = (0..self.nodes.len()).any(|n| now_cap(n) >= target);
        if single {
            return self.single_node(free, &groups, target, k).map(Decision::Place);
        }
        self.multi_node(gang, free, &groups, target).map(Decision::Place)
    }

    /// Plans the members of `gang` that are not placed yet, around the
    /// `placed` ones (members already running, e.g. when a reservation
    /// expired after some members started). `gang` describes the whole gang:
    /// the placed members count towards `members` and `min_members`, keep
    /// their nodes and GPUs (looked up by node name; busy whether or not
    /// `free` shows them free), and a `required` level must hold placed and
    /// new members in one domain. The new members go where the whole gang
    /// estimates best, which keeps them near the placed ones.
    ///
    /// The plan's `members` are the new members only, at least one and at
    /// most `members - placed.len()`; its estimate, scope and node count are
    /// the whole gang's. In a wait, `fits_empty` means "fits when only the
    /// placed members' GPUs are in use". Without `placed` this is
    /// [`GangCluster::plan`].
    pub fn plan_around(
        &self,
        gang: &Gang,
        free: &FreeState,
        placed: &[MemberPlacement],
    ) -> Result<Decision, GangError> {
        if placed.is_empty() {
            return self.plan(gang, free);
        }
        validate(gang)?;
        if free.free.len() != self.nodes.len() {
            return Err(GangError::StateSize {
                got: free.free.len(),
                want: self.nodes.len(),
            });
        }
        let n_placed = u32::try_from(placed.len()).unwrap_or(u32::MAX);
        if n_placed >= gang.members {
            return Err(GangError::AllPlaced {
                placed: n_placed,
                members: gang.members,
            });
        }
        let mut now = free.clone();
        let mut empty = FreeState::all_free(self);
        let mut fixed: Vec<usize> = Vec::with_capacity(placed.len());
        for m in placed {
            let i = self
                .node_index(&m.node)
                .ok_or_else(|| GangError::UnknownNode { node: m.node.clone() })?;
            now.bits(self, i, &m.gpus)?;
            now.set(self, i, &m.gpus, true);
            empty.set(self, i, &m.gpus, true);
            fixed.push(i);
        }
        fixed.sort_unstable();
        fixed.dedup();

        let k = gang.gpus_per_member;
        if let Some(too_big) = self.member_too_big(k) {
            return Ok(too_big);
        }
        let allowed = gang.required.unwrap_or(Level::Cluster);
        if !self.scope_of(&fixed).within(allowed) {
            return Ok(Decision::Wait(NoFit {
                reason: NoFitReason::PlacedApart {
                    level: allowed,
                    placed: n_placed,
                },
                fits_empty: false,
            }));
        }
        // The allowed domains that hold every placed member, smallest first
        // (the placed members' node itself when they share one).
        let mut scopes: Vec<(Level, &[usize], Option<usize>)> = Vec::new();
        if fixed.len() == 1 {
            scopes.push((Level::Node, &fixed[..], None));
        }
        for s in &self.scopes {
            if s.level.within(allowed) && fixed.iter().all(|n| s.nodes.binary_search(n).is_ok()) {
                scopes.push((s.level, &s.nodes[..], s.child_tier));
            }
        }
        let need = gang.min_members.saturating_sub(n_placed).max(1);
        let most = gang.members - n_placed;
        let capacity = |state: &FreeState| {
            scopes
                .iter()
                .map(|(_, nodes, _)| nodes.iter().map(|&n| state.free_count(n) / k).sum::<u32>())
                .max()
                .unwrap_or(0)
        };
        let fits_empty = capacity(&empty) >= need;
        let best_now = capacity(&now);
        if best_now < need {
            let need_gpus = u64::from(need) * u64::from(k);
            let total = now.total_free();
            let anywhere: u32 = (0..self.nodes.len()).map(|n| now.free_count(n) / k).sum();
            let reason = if total < need_gpus {
                NoFitReason::NotEnoughFree {
                    need: need_gpus,
                    free: total,
                }
            } else if anywhere >= need {
                NoFitReason::NoRoomNearPlaced {
                    level: allowed,
                    placed: n_placed,
                    need,
                    best: best_now,
                }
            } else {
                NoFitReason::Fragmented { need, fit: anywhere }
            };
            return Ok(Decision::Wait(NoFit { reason, fits_empty }));
        }
        let target = most.min(best_now);
        let groups = self.tier0_groups(&now);
        let uncapped = |n: usize| now.free_count(n) / k;
        let capped = |n: usize| uncapped(n).min(self.span_cap(n, k));
        let variants: [&dyn Fn(usize) -> u32; 2] = [&capped, &uncapped];
        let mut tried: BTreeSet<Vec<(usize, u32)>> = BTreeSet::new();
        let mut best: Option<(AroundKey, GangPlan)> = None;
        for &(_, nodes, child_tier) in &scopes {
            let scope_free: u64 = nodes.iter().map(|&n| u64::from(now.free_count(n))).sum();
            for cap in variants {
                // The scope's own choice, and one that first fills the
                // placed members' nodes.
                let plain = select(self, &now, nodes, child_tier, target, cap);
                let near = self.placed_first(&now, nodes, child_tier, &fixed, target, cap);
                for sel in [plain, near].into_iter().flatten() {
                    if !tried.insert(sel.clone()) {
                        continue;
                    }
                    let plan = self.build_around(&now, &sel, k, placed)?;
                    let key = AroundKey {
                        outside_preferred: gang.preferred.is_some_and(|p| !plan.scope.within(p)),
                        busbw: Reverse(bucket(plan.estimate.busbw_gbps)),
                        scope: plan.scope.order(),
                        max_tier: plan.estimate.max_tier,
                        proxy: self.proxy(&now, &groups, &sel, k, scope_free),
                        rail_mismatches: plan.estimate.rail_mismatches,
                        first: sel.first().map_or(0, |s| s.0),
                    };
                    if best.as_ref().is_none_or(|(b, _)| key < *b) {
                        best = Some((key, plan));
                    }
                }
            }
        }
        best.map(|(_, p)| Decision::Place(p)).ok_or(GangError::NodeIndex {
            index: 0,
            nodes: self.nodes.len(),
        })
    }

    /// A selection of `need` members over `nodes` that fills the `fixed`
    /// nodes first (in order), the rest chosen by [`select`] among the
    /// others. `None` when the fixed nodes have no room or the rest does not
    /// fit.
    fn placed_first(
        &self,
        free: &FreeState,
        nodes: &[usize],
        child_tier: Option<usize>,
        fixed: &[usize],
        need: u32,
        cap: &dyn Fn(usize) -> u32,
    ) -> Option<Vec<(usize, u32)>> {
        let mut out = Vec::new();
        let mut left = need;
        for &f in fixed {
            let take = cap(f).min(left);
            if take > 0 {
                out.push((f, take));
                left -= take;
            }
        }
        if out.is_empty() {
            return None;
        }
        if left > 0 {
            let rest: Vec<usize> = nodes
                .iter()
                .copied()
                .filter(|n| fixed.binary_search(n).is_err())
                .collect();
            out.extend(select(self, free, &rest, child_tier, left, cap)?);
        }
        Some(out)
    }

    /// The most members one allowed domain can take under `cap`.
    fn best_capacity(&self, allowed: Level, cap: &dyn Fn(usize) -> u32) -> u32 {
        let single = (0..self.nodes.len()).map(cap).max().unwrap_or(0);
        self.scopes
            .iter()
            .filter(|s| s.level.within(allowed))
            .map(|s| s.nodes.iter().map(|&n| cap(n)).sum::<u32>())
            .fold(single, u32::max)
    }

    fn tier0_groups(&self, free: &FreeState) -> Groups {
        let Some(of) = self.group_of.first() else {
            return Groups {
                clean: vec![true],
                free: vec![free.total_free()],
            };
        };
        let n = of.iter().map(|&g| g as usize + 1).max().unwrap_or(0);
        let mut g = Groups {
            clean: vec![true; n],
            free: vec![0; n],
        };
        for (i, &id) in of.iter().enumerate() {
            g.clean[id as usize] &= free.is_clean(self, i);
            g.free[id as usize] += u64::from(free.free_count(i));
        }
        g
    }

    fn group0(&self, node: usize) -> usize {
        self.group_of.first().map_or(0, |of| of[node] as usize)
    }

    /// All members on one node: the best node by bandwidth, then the tightest
    /// fit, then a node in a fragmented, fuller leaf group.
    fn single_node(&self, free: &FreeState, groups: &Groups, target: u32, k: u32) -> Result<GangPlan, GangError> {
        let need = (target * k) as usize;
        // Nodes with the same machine and free GPUs get the same answer.
        let mut seen: BTreeMap<(&str, u64), (Vec<u32>, CommEstimate)> = BTreeMap::new();
        let mut best: Option<(SingleKey, usize, (&str, u64))> = None;
        for n in 0..self.nodes.len() {
            let count = free.free_count(n);
            if (count as usize) < need {
                continue;
            }
            let info = &self.nodes[n];
            let sig = (self.fabric.nodes()[n].machine.as_str(), free.free[n]);
            let busbw = match seen.entry(sig) {
                Entry::Occupied(o) => o.get().1.busbw_gbps,
                Entry::Vacant(v) => {
                    let set: BTreeSet<u32> = free.free_gpus(self, n).into_iter().collect();
                    let gpus = info.topo.best_gpus(need, &set, &Constraints::default())?;
                    let ranks: Vec<GpuRef<'_>> = gpus.iter().map(|&g| GpuRef::new(info.name, g)).collect();
                    let e = estimate(self.fabric, self.machines, &ranks)?;
                    v.insert((gpus, e)).1.busbw_gbps
                }
            };
            let g = self.group0(n);
            let key = (
                Reverse(bucket(busbw)),
                count - need as u32,
                groups.clean[g],
                groups.free[g],
                n,
            );
            if best.as_ref().is_none_or(|(b, _, _)| key < *b) {
                best = Some((key, n, sig));
            }
        }
        let Some((_, n, sig)) = best else {
            return Err(GangError::NodeIndex {
                index: 0,
                nodes: self.nodes.len(),
            });
        };
        let Some((gpus, e)) = seen.remove(&sig) else {
            return Err(GangError::NodeIndex {
                index: n,
                nodes: self.nodes.len(),
            });
        };
        let name = self.nodes[n].name.to_string();
        let members = gpus
            .chunks(k as usize)
            .map(|c| MemberPlacement {
                node_index: n,
                node: name.clone(),
                gpus: c.to_vec(),
            })
            .collect();
        Ok(GangPlan {
            members,
            estimate: e,
            scope: Level::Node,
            nodes: 1,
        })
    }

    fn multi_node(&self, gang: &Gang, free: &FreeState, groups: &Groups, target: u32) -> Result<GangPlan, GangError> {
        let k = gang.gpus_per_member;
        let allowed = gang.required.unwrap_or(Level::Cluster);
        let uncapped = |n: usize| free.free_count(n) / k;
        let capped = |n: usize| uncapped(n).min(self.span_cap(n, k));
        let variants: [&dyn Fn(usize) -> u32; 2] = [&capped, &uncapped];
        let mut cands: Vec<Vec<Candidate>> = vec![Vec::new(), Vec::new()];
        let mut lowest: Option<usize> = None;
        for s in &self.scopes {
            if !s.level.within(allowed) {
                continue;
            }
            let order = s.level.order();
            // Only the lowest fitting level and the one above it.
            if lowest.is_some_and(|l| order > l.saturating_add(1)) {
                continue;
            }
            for (v, cap) in variants.iter().enumerate() {
                let Some(selection) = select(self, free, &s.nodes, s.child_tier, target, *cap) else {
                    continue;
                };
                if v == 1 && cands[0].iter().any(|c| c.selection == selection) {
                    continue;
                }
                lowest = Some(lowest.map_or(order, |l| l.min(order)));
                let scope_free: u64 = s.nodes.iter().map(|&n| u64::from(free.free_count(n))).sum();
                let proxy = self.proxy(free, groups, &selection, k, scope_free);
                cands[v].push(Candidate {
                    level_order: order,
                    within_preferred: gang.preferred.is_none_or(|p| s.level.within(p)),
                    proxy,
                    selection,
                });
            }
        }
        let mut best: Option<(CandKey, GangPlan)> = None;
        for list in &mut cands {
            list.sort_by_key(|c| {
                (
                    !c.within_preferred,
                    c.level_order,
                    c.proxy,
                    c.selection.first().map(|s| s.0),
                )
            });
            let mut per_level: BTreeMap<usize, usize> = BTreeMap::new();
            for c in list.iter() {
                let seen = per_level.entry(c.level_order).or_insert(0);
                if *seen >= EVALUATED_PER_LEVEL {
                    continue;
                }
                *seen += 1;
                let plan = self.build(free, &c.selection, k)?;
                let key = CandKey {
                    outside_preferred: !c.within_preferred,
                    busbw: Reverse(bucket(plan.estimate.busbw_gbps)),
                    max_tier: plan.estimate.max_tier,
                    proxy: c.proxy,
                    rail_mismatches: plan.estimate.rail_mismatches,
                    first: c.selection.first().map_or(0, |s| s.0),
                };
                if best.as_ref().is_none_or(|(b, _)| key < *b) {
                    best = Some((key, plan));
                }
            }
        }
        best.map(|(_, p)| p).ok_or(GangError::NodeIndex {
            index: 0,
            nodes: self.nodes.len(),
        })
    }

    fn proxy(&self, free: &FreeState, groups: &Groups, sel: &[(usize, u32)], k: u32, scope_free: u64) -> Proxy {
        let mut broken_groups = BTreeSet::new();
        let mut clean_nodes_broken = 0;
        let mut used = 0u64;
        for &(n, m) in sel {
            let take = m * k;
            used += u64::from(take);
            if free.is_clean(self, n) && free.free_count(n) > take {
                clean_nodes_broken += 1;
            }
            let g = self.group0(n);
            if groups.clean[g] {
                broken_groups.insert(g);
            }
        }
        // A clean group the gang fills completely is used, not broken.
        let filled: u32 = broken_groups
            .iter()
            .filter(|&&g| {
                let taken: u64 = sel
                    .iter()
                    .filter(|(n, _)| self.group0(*n) == g)
                    .map(|&(_, m)| u64::from(m * k))
                    .sum();
                taken == groups.free[g]
            })
            .count() as u32;
        Proxy {
            nodes: sel.len(),
            clean_groups_broken: broken_groups.len() as u32 - filled,
            clean_nodes_broken,
            leftover: scope_free - used,
        }
    }

    /// Turns a selection into members: GPUs per node by `best_gpus`,
    /// preferring GPUs on the rails the gang already uses, ranks in order.
    fn build(&self, free: &FreeState, sel: &[(usize, u32)], k: u32) -> Result<GangPlan, GangError> {
        self.build_around(free, sel, k, &[])
    }

    /// [`Self::build`] for a gang whose `placed` members already run: they
    /// seed the rails and count in the estimate, scope and node count; the
    /// plan's members are the new ones only.
    fn build_around(
        &self,
        free: &FreeState,
        sel: &[(usize, u32)],
        k: u32,
        placed: &[MemberPlacement],
    ) -> Result<GangPlan, GangError> {
        let mut rails: BTreeSet<u32> = BTreeSet::new();
        let mut all_nodes: Vec<usize> = Vec::with_capacity(placed.len() + sel.len());
        for m in placed {
            let Some(i) = self.node_index(&m.node) else {
                return Err(GangError::UnknownNode { node: m.node.clone() });
            };
            let topo = self.nodes[i].topo;
            rails.extend(m.gpus.iter().filter_map(|&g| topo.gpu_nic(g).and_then(|c| c.rail)));
            all_nodes.push(i);
        }
        let mut members = Vec::new();
        for &(n, m) in sel {
            let info = &self.nodes[n];
            let set: BTreeSet<u32> = free.free_gpus(self, n).into_iter().collect();
            let mut cons = Constraints::default();
            if !rails.is_empty() {
                let nics: BTreeSet<String> = info
                    .gpus
                    .iter()
                    .filter_map(|&g| info.topo.gpu_nic(g))
                    .filter(|c| c.rail.is_some_and(|r| rails.contains(&r)))
                    .map(|c| c.name.clone())
                    .collect();
                if !nics.is_empty() {
                    cons.free_nics = Some(nics);
                }
            }
            let gpus = info.topo.best_gpus((m * k) as usize, &set, &cons)?;
            rails.extend(gpus.iter().filter_map(|&g| info.topo.gpu_nic(g).and_then(|c| c.rail)));
            for c in gpus.chunks(k as usize) {
                members.push(MemberPlacement {
                    node_index: n,
                    node: info.name.to_string(),
                    gpus: c.to_vec(),
                });
            }
        }
        let ranks: Vec<GpuRef<'_>> = placed
            .iter()
            .chain(&members)
            .flat_map(|m| m.gpus.iter().map(|&g| GpuRef::new(&m.node, g)))
            .collect();
        let e = estimate(self.fabric, self.machines, &ranks)?;
        all_nodes.extend(sel.iter().map(|s| s.0));
        all_nodes.sort_unstable();
        all_nodes.dedup();
        Ok(GangPlan {
            members,
            estimate: e,
            scope: self.scope_of(&all_nodes),
            nodes: all_nodes.len(),
        })
    }

    /// The smallest level one of whose domains holds all `nodes`.
    pub(crate) fn scope_of(&self, nodes: &[usize]) -> Level {
        let Some(&first) = nodes.first() else {
            return Level::Node;
        };
        if nodes.iter().all(|&n| n == first) {
            return Level::Node;
        }
        let dom = |n: usize| self.fabric.nodes()[n].domain;
        if dom(first).is_some() && nodes.iter().all(|&n| dom(n) == dom(first)) {
            return Level::NvlDomain;
        }
        for (t, of) in self.group_of.iter().enumerate() {
            if nodes.iter().all(|&n| of[n] == of[first]) {
                return Level::Tier(t);
            }
        }
        Level::Cluster
    }

    /// True when every GPU of the cluster is free in `free`.
    pub fn is_empty_state(&self, free: &FreeState) -> bool {
        self.nodes
            .iter()
            .zip(&free.free)
            .all(|(n, &m)| m == full_mask(n.gpus.len()))
    }
}

/// Ranks scored candidates; smaller is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct CandKey {
    outside_preferred: bool,
    busbw: Reverse<i64>,
    max_tier: Option<usize>,
    proxy: Proxy,
    rail_mismatches: u32,
    first: usize,
}

/// Ranks plans around placed members; smaller is better. Like [`CandKey`],
/// with the whole gang's scope before the damage proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AroundKey {
    outside_preferred: bool,
    busbw: Reverse<i64>,
    scope: usize,
    max_tier: Option<usize>,
    proxy: Proxy,
    rail_mismatches: u32,
    first: usize,
}

fn validate(g: &Gang) -> Result<(), GangError> {
    if g.members == 0 {
        return Err(GangError::NoMembers);
    }
    if g.gpus_per_member == 0 {
        return Err(GangError::NoGpusPerMember);
    }
    if g.min_members == 0 {
        return Err(GangError::NoMinMembers);
    }
    if g.min_members > g.members {
        return Err(GangError::MinAboveMembers {
            min: g.min_members,
            members: g.members,
        });
    }
    Ok(())
}
