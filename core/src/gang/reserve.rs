//! Reservations and backfill for gangs that wait (the EASY-backfill idea of
//! Slurm's `sched/backfill` and Kueue's/Volcano's reservations): a waiting
//! gang is given the placement it will get at the earliest time running
//! jobs free enough GPUs, and later jobs may start on those GPUs only if
//! they end before that time. Jobs elsewhere start as usual.
//!
//! The expected free times come from running jobs' end times. A simulator
//! knows durations exactly; a real scheduler uses the jobs' time limits,
//! which end no earlier, so its reservations start no later than planned
//! (a job that ends early only frees GPUs sooner) but may be pessimistic.
//!
//! Finding the earliest time is a binary search over the releases in time
//! order (planning O(log releases) times), not an exhaustive search. It
//! assumes that freeing more GPUs does not make the planner's best answer
//! worse, which holds for capacity and, up to the planner's tie-breaks,
//! for bandwidth.

use super::cluster::{FreeState, GangCluster};
use super::{Decision, Gang, GangError, GangPlan};
use crate::fabric::MachineLookup;

/// GPUs a running job gives back at `at_s`.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub at_s: f64,
    pub node: usize,
    pub gpus: Vec<u32>,
}

/// A waiting gang's placement from `start_s`, held until `end_s`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub start_s: f64,
    pub end_s: f64,
    pub plan: GangPlan,
}

impl Reservation {
    /// True when a job holding `gpus` of `node` until `end_s` would delay
    /// this reservation (it uses a reserved GPU past the reserved start).
    pub fn conflicts(&self, node: usize, gpus: &[u32], end_s: f64) -> bool {
        end_s > self.start_s
            && self
                .plan
                .members
                .iter()
                .any(|m| m.node_index == node && m.gpus.iter().any(|g| gpus.contains(g)))
    }
}

/// When a gang should wait for a better placement: when it would finish
/// sooner by waiting. A gang whose all-reduce takes `comm_share` of a step
/// at full bandwidth runs `(1 − s) + s / ratio` times as long at a busbw
/// `ratio` of its best; waiting `wait_s` for `later` instead of starting at
/// `now` pays off when `duration × (slowdown(now) − slowdown(later)) >
/// wait_s`. The same inequality, times the gang's GPUs, compares the GPU
/// time the slower placement wastes with the GPU time the wait leaves idle
/// at worst (backfill fills part of it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitRule {
    pub comm_share: f64,
}

impl WaitRule {
    /// Run time at busbw `ratio` ÷ run time at the best busbw (∞ at 0).
    pub fn slowdown(&self, ratio: f64) -> f64 {
        let s = self.comm_share.clamp(0.0, 1.0);
        if ratio <= 0.0 || ratio.is_nan() {
            return f64::INFINITY;
        }
        (1.0 - s) + s / ratio.min(1.0)
    }

    /// True when waiting `wait_s` for a placement at busbw ratio `later`
    /// finishes a job of `duration_s` sooner than starting now at `now`.
    pub fn worth_waiting(&self, now: f64, later: f64, wait_s: f64, duration_s: f64) -> bool {
        let (a, b) = (self.slowdown(now), self.slowdown(later));
        if a.is_infinite() {
            return b.is_finite();
        }
        duration_s * (a - b) > wait_s
    }
}

/// Who may hold a reservation: at most `gangs` gangs larger than one node
/// and at most `one_node` jobs that fit on one node (a single pod, whole or
/// fractional GPUs, or a gang of up to one node's GPUs) at once, counted
/// apart (Slurm's backfill depth, per class).
///
/// A job that may not reserve waits behind every job that may: the GPUs
/// that free first go to the reservations, and it gets only what no
/// reservation wants before it would end. With reservations for multi-node
/// gangs alone, 8-GPU jobs waited longer than 512-GPU gangs. A one-node
/// reservation holds one node (or one GPU) and drains nothing else, so many
/// can stand; with them one-node jobs keep their place in the FIFO queue.
/// `one_node` 0 is the first rule: single pods never reserve and one-node
/// gangs count against `gangs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveDepth {
    pub gangs: usize,
    pub one_node: usize,
}

impl ReserveDepth {
    /// True when a job of `members` pods that fits on one node
    /// (`one_node`) may make a reservation now. `standing` lists the
    /// reservations held by others, each as whether its owner fits on one
    /// node.
    pub fn allows(&self, one_node: bool, members: u32, standing: impl Iterator<Item = bool>) -> bool {
        if self.one_node == 0 {
            // The first rule: gangs of several pods, one depth for all.
            return members > 1 && standing.count() < self.gangs;
        }
        let limit = if one_node { self.one_node } else { self.gangs };
        standing.filter(|&o| o == one_node).count() < limit
    }
}

/// The cluster's future as far as running jobs tell it: the free GPUs now,
/// the GPUs each running job gives back and when, and the reservations
/// already made (their GPUs count as busy from now until their end).
#[derive(Debug, Clone)]
pub struct Timeline {
    now_s: f64,
    free: FreeState,
    /// Sorted by time.
    releases: Vec<Release>,
    /// With their owners' ids.
    reservations: Vec<(u64, Reservation)>,
}

impl Timeline {
    /// `releases` in any order; each must name GPUs busy in `free`.
    pub fn new(now_s: f64, free: FreeState, mut releases: Vec<Release>) -> Self {
        releases.sort_by(|a, b| a.at_s.total_cmp(&b.at_s).then(a.node.cmp(&b.node)));
        Timeline {
            now_s,
            free,
            releases,
            reservations: Vec::new(),
        }
    }

    /// Reservations with their owners' ids, in the order made.
    pub fn reservations(&self) -> impl Iterator<Item = (u64, &Reservation)> {
        self.reservations.iter().map(|(o, r)| (*o, r))
    }

    /// The free GPUs a job running from now until `end_s` may use: the
    /// free ones minus those reserved, by others than `owner`, from a start
    /// before `end_s`.
    pub fn visible<M: MachineLookup + ?Sized>(
        &self,
        c: &GangCluster<'_, M>,
        end_s: f64,
        owner: Option<u64>,
    ) -> FreeState {
        let mut f = self.free.clone();
        let others = self.reservations.iter().filter(|(o, _)| Some(*o) != owner);
        for (_, r) in others.filter(|(_, r)| r.start_s < end_s) {
            for m in &r.plan.members {
                // Reserved GPUs still busy now are not free anyway.
                f.set(c, m.node_index, &m.gpus, true);
            }
        }
        f
    }

    /// Records that GPUs were taken now by a job that ends at `end_s`.
    pub fn took<M: MachineLookup + ?Sized>(
        &mut self,
        c: &GangCluster<'_, M>,
        node: usize,
        gpus: &[u32],
        end_s: f64,
    ) -> Result<(), GangError> {
        self.free.take(c, node, gpus)?;
        self.insert(Release {
            at_s: end_s,
            node,
            gpus: gpus.to_vec(),
        });
        Ok(())
    }

    fn insert(&mut self, r: Release) {
        let at = self.releases.partition_point(|x| x.at_s <= r.at_s);
        self.releases.insert(at, r);
    }

    fn time_of(&self, p: usize) -> f64 {
        if p == 0 {
            self.now_s
        } else {
            self.releases[p - 1].at_s.max(self.now_s)
        }
    }

    /// The free state with `releases[..p]` applied, minus the GPUs of
    /// reservations that have not ended by then.
    fn state_after<M: MachineLookup + ?Sized>(&self, c: &GangCluster<'_, M>, p: usize) -> FreeState {
        let mut f = self.free.clone();
        for r in &self.releases[..p] {
            f.set(c, r.node, &r.gpus, false);
        }
        let t = self.time_of(p);
        for (_, r) in self.reservations.iter().filter(|(_, r)| r.end_s > t) {
            for m in &r.plan.members {
                f.set(c, m.node_index, &m.gpus, true);
            }
        }
        f
    }

    /// The earliest time (now or a release time) at which `gang` can be
    /// placed with an estimated busbw of at least `min_busbw_gbps`, and that
    /// placement, held for `duration_s`; `None` when not even after every
    /// running job ends (reservations made earlier stay in the way).
    pub fn earliest<M: MachineLookup + ?Sized>(
        &self,
        c: &GangCluster<'_, M>,
        gang: &Gang,
        min_busbw_gbps: f64,
        duration_s: f64,
    ) -> Result<Option<Reservation>, GangError> {
        let ok = |p: usize| -> Result<Option<GangPlan>, GangError> {
            let state = self.state_after(c, p);
            Ok(match c.plan(gang, &state)? {
                Decision::Place(plan) if plan.estimate.busbw_gbps >= min_busbw_gbps => Some(plan),
                _ => None,
            })
        };
        let n = self.releases.len();
        let Some(mut best) = ok(n)? else {
            return Ok(None);
        };
        let (mut lo, mut hi) = (0usize, n);
        // Invariant: a plan at `hi`; none below `lo` has been found yet.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match ok(mid)? {
                Some(plan) => {
                    best = plan;
                    hi = mid;
                }
                None => lo = mid + 1,
            }
        }
        // A prefix that splits releases at one instant: the plan stays
        // valid with the rest of them applied too.
        let start_s = self.time_of(hi);
        if best.members.is_empty() {
            return Ok(None);
        }
        Ok(Some(Reservation {
            start_s,
            end_s: start_s + duration_s,
            plan: best,
        }))
    }

    /// Drops `owner`'s reservation (it started, or gave up).
    pub fn cancel(&mut self, owner: u64) {
        self.reservations.retain(|(o, _)| *o != owner);
    }

    /// Holds `r`'s GPUs from now until its end for `owner`: later
    /// reservations plan around it, and jobs that would still run at its
    /// start cannot use them.
    pub fn reserve(&mut self, owner: u64, r: Reservation) {
        // A marker at its end: the time from which its GPUs count again.
        self.insert(Release {
            at_s: r.end_s,
            node: 0,
            gpus: Vec::new(),
        });
        self.reservations.push((owner, r));
    }
}
