//! Railyard's reservation and backfill pass (`--railyard-wait reserve`),
//! on `railyard_core::gang::{Timeline, WaitRule, ReserveDepth}`: what the
//! simulator knows of the future comes from time limits only.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use railyard_core::fabric::MachineLookup;
use railyard_core::gang::{Decision, FreeState, GangPlan, Release, Reservation, ReserveDepth, Timeline, WaitRule};

use super::policies::{Member, World, place_fraction, place_pod};
use super::sim::{BestCache, Sim};

impl<M: MachineLookup + ?Sized> Sim<'_, '_, M> {
    /// What running jobs give back and when, as far as the scheduler
    /// knows: their GPUs at their start + limit (now, for a job slowed past
    /// its limit: it may end any moment), a shared GPU when its last
    /// fractional pod's limit ends.
    fn releases(&self, t: f64) -> Vec<Release> {
        let mut out = Vec::new();
        let mut shared: BTreeMap<(usize, u32), f64> = BTreeMap::new();
        for &j in &self.active {
            let Some(s) = self.rec[j].start_s else { continue };
            let end = (s + self.jobs[j].limit()).max(t);
            for (n, gpus) in &self.held[j] {
                out.push(Release {
                    at_s: end,
                    node: *n,
                    gpus: gpus.clone(),
                });
            }
            if let Some(k) = self.frac[j] {
                let e = shared.entry(k).or_insert(end);
                *e = e.max(end);
            }
        }
        out.extend(shared.into_iter().map(|((n, g), at_s)| Release {
            at_s,
            node: n,
            gpus: vec![g],
        }));
        out
    }

    /// Railyard with reservations and backfill. Queued jobs in FIFO order,
    /// each seeing the free GPUs minus those others reserved from before its
    /// end. A gang whose best placement now is below the accept ratio waits
    /// only when `WaitRule` says it finishes sooner on the placement that
    /// running jobs' end times promise; that placement is reserved. A gang
    /// that does not fit at all reserves its earliest placement (the better
    /// one when worth the extra wait), and so does a job that fits on one
    /// node (a single pod, fractional ones on a whole GPU) and cannot start.
    /// At most `max_reservations` multi-node gangs and `node_reservations`
    /// one-node jobs hold one at once (`ReserveDepth`).
    ///
    /// Every length here is a time limit, never a duration. A reservation
    /// stands until its gang starts, until its start passes, or until a job
    /// ends before its limit (`SimOptions::recompute`: the caller drops
    /// them all and this pass makes them again in queue order).
    pub(super) fn pass_reserve(&mut self, t: f64, freed: bool, best: &BestCache) {
        let c = self.c;
        let mut tl = Timeline::new(t, self.w.free.clone(), self.releases(t));
        let mut reserved = std::mem::take(&mut self.reserved);
        for (j, r) in &reserved {
            tl.reserve(*j as u64, r.clone());
        }
        let rule = WaitRule {
            comm_share: self.opts.comm_share,
        };
        let queue = std::mem::take(&mut self.queue);
        let mut keep = Vec::with_capacity(queue.len());
        // Per shape and set of reservations in the way: capacity only
        // shrinks during a pass, so a shape that failed fails again.
        let mut failed: HashMap<(u32, u32, Option<String>, Vec<u64>), u32> = HashMap::new();
        for j in queue {
            let job = &self.jobs[j];
            let fresh = self.rec[j].arrival_s >= t;
            if !(freed || fresh) {
                keep.push(j);
                continue;
            }
            let end = t + job.limit();
            let owner = Some(j as u64);
            let mut reserved_at = reserved.iter().find(|(o, _)| *o == j).map(|(_, r)| r.start_s);
            if reserved_at.is_some_and(|at| at < t) {
                // Its time came and went (the GPUs were not all free): plan anew.
                tl.cancel(j as u64);
                reserved.retain(|(o, _)| *o != j);
                reserved_at = None;
            }
            let has_reservation = reserved_at.is_some();
            let in_way: Vec<u64> = tl
                .reservations()
                .filter(|(o, r)| Some(*o) != owner && r.start_s < end)
                .map(|(o, _)| o)
                .collect();
            let key = (job.gpus_per_member, job.gpu_milli, job.required.clone(), in_way);
            let known_full = failed.get(&key).is_some_and(|&m| job.members >= m);
            let started = Instant::now();
            let placed = if known_full {
                None
            } else {
                let visible = tl.visible(c, end, owner);
                self.place_visible(j, &visible, &tl, end)
            };
            let nothing = placed.is_none();
            let depth = ReserveDepth {
                gangs: self.opts.max_reservations,
                one_node: self.opts.node_reservations,
            };
            // Only asked of jobs that cannot start now: it scans the reservations.
            let may_reserve = || {
                let others = reserved.iter().filter(|(o, _)| *o != j).map(|(o, _)| self.one_node(*o));
                depth.allows(self.one_node(j), job.members, others)
            };
            let outcome = match placed {
                Some(Placed::Fraction(n, g, new)) => {
                    if new && tl.took(c, n, &[g], end).is_err() {
                        self.errors += 1;
                    }
                    Outcome::Start(Vec::new(), Some((n, g)))
                }
                Some(Placed::Members(m)) => Outcome::Start(m, None),
                Some(Placed::Gang(plan)) => {
                    self.gang_choice(j, t, Some(plan), &tl, reserved_at, may_reserve(), rule, best)
                }
                None if !has_reservation && may_reserve() => self.gang_choice(j, t, None, &tl, None, true, rule, best),
                None => Outcome::Wait,
            };
            self.decide += started.elapsed();
            self.decisions += 1;
            if nothing && !known_full {
                let m = failed.entry(key).or_insert(u32::MAX);
                *m = (*m).min(job.members);
            }
            match outcome {
                Outcome::Start(members, frac) => {
                    if has_reservation {
                        tl.cancel(j as u64);
                        reserved.retain(|(o, _)| *o != j);
                    }
                    for (n, gpus) in &members {
                        if tl.took(c, *n, gpus, end).is_err() {
                            self.errors += 1;
                        }
                    }
                    if let Some((n, g)) = frac {
                        self.join_shared(j, n, g);
                    } else {
                        self.take(j, members);
                    }
                    self.start(j, t, best);
                }
                Outcome::Reserve(r) => {
                    tl.reserve(j as u64, r.clone());
                    reserved.push((j, r));
                    keep.push(j);
                }
                Outcome::Wait => keep.push(j),
            }
        }
        self.queue = keep;
        self.reserved = reserved;
    }

    /// Whether job `j` fits on one node (see `ReserveDepth`).
    fn one_node(&self, j: usize) -> bool {
        self.jobs[j].gpus() <= self.node_gpus
    }

    /// Where job `j` would go now on `visible`, without taking anything.
    fn place_visible(&self, j: usize, visible: &FreeState, tl: &Timeline, end: f64) -> Option<Placed> {
        let job = &self.jobs[j];
        let (c, p) = (self.c, self.policy);
        if job.is_fractional() {
            // Joining a shared GPU keeps it busy until this pod ends: not on
            // a GPU reserved from before then.
            let owner = j as u64;
            let mut w = World {
                free: visible.clone(),
                shared: self.w.shared.clone(),
            };
            // One pass over the reservations, not one per shared GPU: with
            // one-node jobs reserving, hundreds may stand.
            for (_, r) in tl.reservations().filter(|(o, r)| *o != owner && r.start_s < end) {
                for m in &r.plan.members {
                    for g in &m.gpus {
                        w.shared.remove(&(m.node_index, *g));
                    }
                }
            }
            let (n, g) = place_fraction(p, c, &w, job.gpu_milli)?;
            // A shared GPU is not free in `visible`; a new one must be.
            let new = !self.w.shared.contains_key(&(n, g));
            return Some(Placed::Fraction(n, g, new));
        }
        if job.members == 1 {
            let w = World {
                free: visible.clone(),
                shared: BTreeMap::new(),
            };
            return place_pod(p, c, &w, job.gpus_per_member).map(|m| Placed::Members(vec![m]));
        }
        match c.plan(&self.gang(j), visible).ok()? {
            Decision::Place(plan) => Some(Placed::Gang(plan)),
            Decision::Wait(_) => None,
        }
    }

    /// Start gang `j` now on `now`, or reserve a later placement.
    #[allow(clippy::too_many_arguments)]
    fn gang_choice(
        &self,
        j: usize,
        t: f64,
        now: Option<GangPlan>,
        tl: &Timeline,
        reserved_at: Option<f64>,
        may_reserve: bool,
        rule: WaitRule,
        best: &BestCache,
    ) -> Outcome {
        let job = &self.jobs[j];
        let c = self.c;
        let b = best.get(&(job.members, job.gpus_per_member)).copied();
        let ratio = |busbw: f64| match b {
            Some(b) if b.is_finite() && b > 0.0 => (busbw / b).min(1.0),
            _ => 1.0,
        };
        let accept = self.opts.accept_ratio;
        let r_now = now.as_ref().map_or(0.0, |p| ratio(p.estimate.busbw_gbps));
        let start_now =
            |p: GangPlan| Outcome::Start(p.members.into_iter().map(|m| (m.node_index, m.gpus)).collect(), None);
        if let Some(p) = now.clone()
            && r_now >= accept
        {
            return start_now(p);
        }
        if let Some(at) = reserved_at {
            // Its reservation stands; it starts when the time comes (on the
            // reserved GPUs or anything as good).
            return if at <= t {
                now.map_or(Outcome::Wait, start_now)
            } else {
                Outcome::Wait
            };
        }
        if !may_reserve {
            return now.map_or(Outcome::Wait, start_now);
        }
        let gang = self.gang(j);
        let want = b.map_or(0.0, |b| if b.is_finite() { accept * b } else { f64::INFINITY });
        // The limit stands in for the duration: the scheduler knows no other.
        let d = job.limit();
        let good = tl.earliest(c, &gang, want, d).ok().flatten();
        match (now, good) {
            (Some(p), Some(g)) => {
                if rule.worth_waiting(r_now, ratio(g.plan.estimate.busbw_gbps), g.start_s - t, d) {
                    Outcome::Reserve(g)
                } else {
                    start_now(p)
                }
            }
            (Some(p), None) => start_now(p),
            (None, good) => {
                let fit = tl.earliest(c, &gang, 0.0, d).ok().flatten();
                match (fit, good) {
                    (Some(f), Some(g)) => {
                        let (rf, rg) = (ratio(f.plan.estimate.busbw_gbps), ratio(g.plan.estimate.busbw_gbps));
                        if f.start_s < g.start_s && !rule.worth_waiting(rf, rg, g.start_s - f.start_s, d) {
                            Outcome::Reserve(f)
                        } else {
                            Outcome::Reserve(g)
                        }
                    }
                    (Some(f), None) => Outcome::Reserve(f),
                    (None, Some(g)) => Outcome::Reserve(g),
                    (None, None) => Outcome::Wait,
                }
            }
        }
    }
}

/// Where a job would go now.
enum Placed {
    /// Fractional pod: node, GPU, whether the GPU is newly shared.
    Fraction(usize, u32, bool),
    /// Single pod.
    Members(Vec<Member>),
    Gang(GangPlan),
}

enum Outcome {
    Start(Vec<Member>, Option<(usize, u32)>),
    Reserve(Reservation),
    Wait,
}
