//! Event-driven simulation of one policy over one workload: arrivals,
//! completions, a best-effort FIFO queue (a job that does not fit does not
//! block the ones behind it), and per-job measurements.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use railyard_core::comm::estimate;
use railyard_core::fabric::{GpuRef, MachineLookup};
use railyard_core::gang::{
    Decision, FreeState, Gang, GangCluster, GangPlan, Level, Patience, Release, Reservation, ReserveDepth, Timeline,
    WaitRule,
};

use super::policies::{Member, PolicyKind, World, place_fraction, place_gang, place_pod};
use super::workload::Job;

/// What happened to one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub gang: bool,
    pub gpus: u32,
    pub arrival_s: f64,
    pub start_s: Option<f64>,
    /// Estimated busbw ÷ the best on an empty cluster (gangs only).
    pub ratio: Option<f64>,
    pub one_leaf: bool,
    pub one_nvl: bool,
    /// Some members held GPUs while others waited.
    pub partial: bool,
    /// Can never run on this cluster (dropped at arrival).
    pub never: bool,
}

#[derive(Debug, Clone)]
pub struct RunResult {
    pub policy: PolicyKind,
    pub seed: u64,
    pub records: Vec<JobRecord>,
    /// (hours, allocated %, running %) every sample step.
    pub curve: Vec<(f64, f64, f64)>,
    /// Time-weighted mean over the arrival window, % of GPUs: held by any
    /// pod, and held by running jobs (not by partial gangs).
    pub alloc_mean: f64,
    pub running_mean: f64,
    /// Partial gangs evicted to break a deadlock.
    pub evictions: u32,
    pub makespan_s: f64,
    pub decide_time: Duration,
    pub decisions: u64,
    /// Bookkeeping errors (taking a busy GPU, freeing a free one): 0 unless
    /// a policy double-books.
    pub errors: u32,
}

/// Simulation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimOptions {
    /// Allocation sample step, seconds.
    pub sample_s: f64,
    /// Railyard starts a gang below this busbw ratio only after waiting
    /// `max_wait_frac` × its duration (the simulator's stand-in for the
    /// expected runtime). `accept_ratio` 0 turns waiting off.
    pub accept_ratio: f64,
    pub max_wait_frac: f64,
    /// Railyard waits by reservation and backfill (`WaitRule`) instead of
    /// `Patience`; see `railyard_core::gang::Timeline`.
    pub reserve: bool,
    /// `WaitRule::comm_share`.
    pub comm_share: f64,
    /// Most gangs larger than one node holding a reservation at once.
    pub max_reservations: usize,
    /// Most jobs that fit on one node holding a reservation at once (0:
    /// the first rule, where single pods never reserve); see `ReserveDepth`.
    pub node_reservations: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            sample_s: 900.0,
            accept_ratio: 0.95,
            max_wait_frac: 0.25,
            reserve: true,
            comm_share: 0.25,
            max_reservations: 8,
            node_reservations: 256,
        }
    }
}

/// Best busbw a gang shape can get on the empty cluster, by (members, k).
pub type BestCache = HashMap<(u32, u32), f64>;

pub fn best_busbw<M: MachineLookup + ?Sized>(c: &GangCluster<'_, M>, members: u32, k: u32) -> Option<f64> {
    match c.plan(&Gang::new(members, k), &FreeState::all_free(c)).ok()? {
        Decision::Place(p) => Some(p.estimate.busbw_gbps),
        Decision::Wait(_) => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// Finishes sort first at equal times, so their GPUs are free for arrivals.
    Finish,
    Arrive,
}

#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
struct T(f64);
impl Eq for T {}
#[allow(clippy::derive_ord_xor_partial_ord)]
impl Ord for T {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

struct Sim<'a, 'c, M: MachineLookup + ?Sized> {
    c: &'a GangCluster<'c, M>,
    jobs: &'a [Job],
    policy: PolicyKind,
    w: World,
    held: Vec<Vec<Member>>,
    frac: Vec<Option<(usize, u32)>>,
    rec: Vec<JobRecord>,
    queue: Vec<usize>,
    events: BinaryHeap<Reverse<(T, Ev, usize)>>,
    running: usize,
    decide: Duration,
    decisions: u64,
    errors: u32,
    opts: SimOptions,
    /// Railyard's reservations from the last full pass, by job.
    reserved: Vec<(usize, Reservation)>,
    /// GPUs of the largest node: a job of at most this many fits on one node.
    node_gpus: u32,
    /// Jobs holding GPUs (running, or partial gangs), in index order: the
    /// per-event sums visit these, not every job of the run.
    active: BTreeSet<usize>,
}

/// Simulates `policy` over `jobs` (sorted by arrival) on cluster `c`.
pub fn simulate<M: MachineLookup + ?Sized>(
    c: &GangCluster<'_, M>,
    jobs: &[Job],
    policy: PolicyKind,
    seed: u64,
    best: &BestCache,
    opts: &SimOptions,
) -> RunResult {
    let sample_s = opts.sample_s;
    let mut s = Sim {
        c,
        jobs,
        policy,
        w: World {
            free: FreeState::all_free(c),
            shared: BTreeMap::new(),
        },
        held: vec![Vec::new(); jobs.len()],
        frac: vec![None; jobs.len()],
        rec: jobs
            .iter()
            .map(|j| JobRecord {
                gang: j.is_gang(),
                gpus: j.gpus(),
                arrival_s: j.arrival_s,
                start_s: None,
                ratio: None,
                one_leaf: false,
                one_nvl: false,
                partial: false,
                never: false,
            })
            .collect(),
        queue: Vec::new(),
        events: jobs
            .iter()
            .enumerate()
            .map(|(i, j)| Reverse((T(j.arrival_s), Ev::Arrive, i)))
            .collect(),
        running: 0,
        decide: Duration::ZERO,
        decisions: 0,
        errors: 0,
        opts: *opts,
        reserved: Vec::new(),
        node_gpus: (0..c.len())
            .filter_map(|n| c.node_gpus(n).map(|g| g.len() as u32))
            .max()
            .unwrap_or(0),
        active: BTreeSet::new(),
    };
    let total = c.total_gpus() as f64;
    let window = jobs.iter().map(|j| j.arrival_s).fold(0.0, f64::max);
    let (mut area_alloc, mut area_run, mut last_t) = (0.0, 0.0, 0.0);
    let mut curve = Vec::new();
    let mut next_sample = 0.0;
    let mut evictions = 0;
    let mut makespan: f64 = 0.0;
    while let Some(Reverse((T(t), _, _))) = s.events.peek().copied() {
        let (alloc, run) = s.usage();
        while next_sample <= t {
            curve.push((next_sample / 3600.0, alloc / total * 100.0, run / total * 100.0));
            next_sample += sample_s;
        }
        let upto = t.min(window);
        if upto > last_t {
            area_alloc += alloc * (upto - last_t);
            area_run += run * (upto - last_t);
            last_t = upto;
        }
        let mut freed = false;
        let mut arrived = Vec::new();
        while let Some(Reverse((T(te), ev, j))) = s.events.peek().copied() {
            if te > t {
                break;
            }
            s.events.pop();
            match ev {
                Ev::Finish => {
                    s.release(j);
                    s.running -= 1;
                    freed = true;
                    makespan = makespan.max(t);
                }
                Ev::Arrive => arrived.push(j),
            }
        }
        for j in arrived {
            if s.never_fits(j, best) {
                s.rec[j].never = true;
            } else {
                s.queue.push(j);
            }
        }
        s.pass(t, freed, best);
        // Nothing running and nothing can start: partial gangs hold each
        // other's GPUs. Evict the newest partial gang and try again.
        // Each partial gang is evicted at most once per deadlock, newest first.
        let mut evicted = Vec::new();
        while s.running == 0 && !s.queue.is_empty() {
            let Some(&victim) = s
                .queue
                .iter()
                .rev()
                .find(|&&j| !s.held[j].is_empty() && !evicted.contains(&j))
            else {
                break;
            };
            s.release(victim);
            evicted.push(victim);
            evictions += 1;
            s.pass(t, true, best);
        }
    }
    RunResult {
        policy,
        seed,
        records: s.rec,
        curve,
        alloc_mean: if window > 0.0 {
            area_alloc / window / total * 100.0
        } else {
            0.0
        },
        running_mean: if window > 0.0 {
            area_run / window / total * 100.0
        } else {
            0.0
        },
        evictions,
        makespan_s: makespan,
        decide_time: s.decide,
        decisions: s.decisions,
        errors: s.errors,
    }
}

impl<M: MachineLookup + ?Sized> Sim<'_, '_, M> {
    /// GPUs held by any pod, and by running jobs.
    fn usage(&self) -> (f64, f64) {
        let frac: f64 = self.w.shared.values().map(|&m| f64::from(m) / 1000.0).sum();
        let mut all = frac;
        let mut run = frac;
        for &j in &self.active {
            let g: usize = self.held[j].iter().map(|m| m.1.len()).sum();
            all += g as f64;
            if self.rec[j].start_s.is_some() {
                run += g as f64;
            }
        }
        (all, run)
    }

    fn gang(&self, j: usize) -> Gang {
        let job = &self.jobs[j];
        let level = |s: &Option<String>| s.as_deref().and_then(|l| Level::parse(self.c.fabric(), l).ok());
        Gang {
            members: job.members,
            gpus_per_member: job.gpus_per_member,
            min_members: job.min_members,
            required: level(&job.required),
            preferred: level(&job.preferred),
        }
    }

    fn never_fits(&self, j: usize, best: &BestCache) -> bool {
        let job = &self.jobs[j];
        if job.is_fractional() {
            return false;
        }
        if job.gpus() > 1 {
            return !best.contains_key(&(job.members, job.gpus_per_member));
        }
        u64::from(job.gpus()) > self.c.total_gpus()
    }

    fn release(&mut self, j: usize) {
        for (n, gpus) in std::mem::take(&mut self.held[j]) {
            if self.w.free.release(self.c, n, &gpus).is_err() {
                self.errors += 1;
            }
        }
        if let Some((n, g)) = self.frac[j].take() {
            let milli = self.jobs[j].gpu_milli;
            if let Some(u) = self.w.shared.get_mut(&(n, g)) {
                *u = u.saturating_sub(milli);
                if *u == 0 {
                    self.w.shared.remove(&(n, g));
                    if self.w.free.release(self.c, n, &[g]).is_err() {
                        self.errors += 1;
                    }
                }
            }
        }
        self.active.remove(&j);
    }

    fn start(&mut self, j: usize, t: f64, best: &BestCache) {
        self.rec[j].start_s = Some(t);
        self.running += 1;
        self.events
            .push(Reverse((T(t + self.jobs[j].duration_s), Ev::Finish, j)));
        if !self.rec[j].gang {
            return;
        }
        let c = self.c;
        let names: Vec<&str> = self.held[j]
            .iter()
            .map(|(n, _)| c.node_name(*n).unwrap_or_default())
            .collect();
        let ranks: Vec<GpuRef<'_>> = self.held[j]
            .iter()
            .zip(&names)
            .flat_map(|((_, gpus), name)| gpus.iter().map(move |&g| GpuRef::new(name, g)))
            .collect();
        let job = &self.jobs[j];
        if let (Ok(e), Some(b)) = (
            estimate(c.fabric(), c.machines(), &ranks),
            best.get(&(job.members, job.gpus_per_member)),
        ) {
            self.rec[j].ratio = Some(if e.busbw_gbps.is_infinite() && b.is_infinite() {
                1.0
            } else {
                e.busbw_gbps / b
            });
        }
        let nodes: Vec<usize> = self.held[j].iter().map(|m| m.0).collect();
        let first = nodes[0];
        self.rec[j].one_leaf = nodes.iter().all(|&n| c.group_at(0, n) == c.group_at(0, first));
        let dom = |n: usize| c.fabric().nodes()[n].domain;
        self.rec[j].one_nvl =
            nodes.iter().all(|&n| n == first) || (dom(first).is_some() && nodes.iter().all(|&n| dom(n) == dom(first)));
    }

    fn take(&mut self, j: usize, members: Vec<Member>) {
        for (n, gpus) in &members {
            if self.w.free.take(self.c, *n, gpus).is_err() {
                self.errors += 1;
            }
        }
        self.held[j].extend(members);
        self.active.insert(j);
    }

    /// Tries queued jobs in order. After an arrival only the new jobs are
    /// tried (nothing was freed); after a completion, all of them.
    fn pass(&mut self, t: f64, freed: bool, best: &BestCache) {
        if self.policy == PolicyKind::Railyard && self.opts.reserve && self.opts.accept_ratio > 0.0 {
            self.pass_reserve(t, freed, best);
            return;
        }
        let queue = std::mem::take(&mut self.queue);
        let mut keep = Vec::with_capacity(queue.len());
        // Capacity only shrinks during a pass: a shape that failed fails again.
        let mut failed: HashMap<(u32, u32, Option<String>), u32> = HashMap::new();
        for j in queue {
            let job = &self.jobs[j];
            let fresh = self.rec[j].arrival_s >= t;
            if !(freed || fresh) || self.w.free.total_free() == 0 && !job.is_fractional() {
                keep.push(j);
                continue;
            }
            let key = (job.gpus_per_member, job.gpu_milli, job.required.clone());
            if failed.get(&key).is_some_and(|&m| job.members >= m) {
                keep.push(j);
                continue;
            }
            let started = Instant::now();
            let (done, capacity) = self.try_place(j, t, best);
            self.decide += started.elapsed();
            self.decisions += 1;
            if done {
                self.start(j, t, best);
            } else {
                if capacity {
                    let m = failed.entry(key).or_insert(u32::MAX);
                    *m = (*m).min(self.jobs[j].members);
                }
                keep.push(j);
            }
        }
        self.queue = keep;
    }

    /// Places what it can of job `j`: (can start, failed for lack of
    /// capacity rather than by choice).
    fn try_place(&mut self, j: usize, t: f64, best: &BestCache) -> (bool, bool) {
        let job = &self.jobs[j];
        let (c, p) = (self.c, self.policy);
        if job.is_fractional() {
            let milli = job.gpu_milli;
            let Some((n, g)) = place_fraction(p, c, &self.w, milli) else {
                return (false, true);
            };
            if !self.w.shared.contains_key(&(n, g)) && self.w.free.take(c, n, &[g]).is_err() {
                self.errors += 1;
            }
            *self.w.shared.entry((n, g)).or_insert(0) += milli;
            self.frac[j] = Some((n, g));
            self.active.insert(j);
            return (true, false);
        }
        if job.members == 1 || p.pod_by_pod() {
            let k = job.gpus_per_member;
            while self.held[j].len() < job.members as usize {
                let Some(m) = place_pod(p, c, &self.w, k) else {
                    if !self.held[j].is_empty() {
                        self.rec[j].partial = true;
                    }
                    return (false, true);
                };
                self.take(j, vec![m]);
            }
            return (true, false);
        }
        let gang = self.gang(j);
        if p == PolicyKind::Railyard && self.opts.accept_ratio > 0.0 {
            let Ok(Decision::Place(plan)) = c.plan(&gang, &self.w.free) else {
                return (false, true);
            };
            let patience = Patience {
                accept_ratio: self.opts.accept_ratio,
                max_wait_s: self.opts.max_wait_frac * job.duration_s,
            };
            let b = best
                .get(&(job.members, job.gpus_per_member))
                .copied()
                .unwrap_or(plan.estimate.busbw_gbps);
            if !patience.accept(plan.estimate.busbw_gbps, b, t - job.arrival_s) {
                return (false, false);
            }
            self.take(j, plan.members.into_iter().map(|m| (m.node_index, m.gpus)).collect());
            return (true, false);
        }
        match place_gang(p, c, &self.w, &gang) {
            Some(members) => {
                self.take(j, members);
                (true, false)
            }
            None => (false, true),
        }
    }
}

impl<M: MachineLookup + ?Sized> Sim<'_, '_, M> {
    /// What running jobs give back and when: their GPUs at their end, a
    /// shared GPU when its last fractional pod ends.
    fn releases(&self) -> Vec<Release> {
        let mut out = Vec::new();
        let mut shared: BTreeMap<(usize, u32), f64> = BTreeMap::new();
        for &j in &self.active {
            let Some(s) = self.rec[j].start_s else { continue };
            let end = s + self.jobs[j].duration_s;
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
    /// A reservation stands until its gang starts: with exact durations a
    /// later look could not find an earlier one (nothing ends sooner than
    /// predicted, and backfilled jobs avoid reserved GPUs). A scheduler
    /// working from time limits would recompute them as jobs end early.
    fn pass_reserve(&mut self, t: f64, freed: bool, best: &BestCache) {
        let c = self.c;
        let mut tl = Timeline::new(t, self.w.free.clone(), self.releases());
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
            let end = t + job.duration_s;
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
                        let milli = self.jobs[j].gpu_milli;
                        if !self.w.shared.contains_key(&(n, g)) && self.w.free.take(c, n, &[g]).is_err() {
                            self.errors += 1;
                        }
                        *self.w.shared.entry((n, g)).or_insert(0) += milli;
                        self.frac[j] = Some((n, g));
                        self.active.insert(j);
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
        if let Some(p) = now.clone() {
            if r_now >= accept {
                return start_now(p);
            }
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
        let good = tl.earliest(c, &gang, want, job.duration_s).ok().flatten();
        let d = job.duration_s;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gang::cli::load_machines;
    use crate::gang::workload::{Mix, generate};
    use railyard_core::fabric::Fabric;

    #[test]
    fn every_policy_runs_without_double_booking_and_railyard_never_splits_a_gang() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("configs/clusters/dgx-h100-4pod128.yaml")).expect("cluster");
        let fabric = Fabric::from_yaml(&text).expect("fabric");
        let machines = load_machines(&root.join("configs/machines")).expect("machines");
        let c = GangCluster::new(&fabric, &machines).expect("cluster");
        let mix = Mix {
            gangs: 60,
            load: 0.9,
            background: 0.15,
            capacity_gpus: c.total_gpus(),
        };
        let jobs = generate(&mix, 1);
        let mut best = BestCache::new();
        for j in jobs.iter().filter(|j| j.is_gang()) {
            if let Some(b) = best_busbw(&c, j.members, j.gpus_per_member) {
                best.insert((j.members, j.gpus_per_member), b);
            }
        }
        for p in PolicyKind::ALL {
            let r = simulate(&c, &jobs, p, 1, &best, &SimOptions::default());
            assert_eq!(r.errors, 0, "{p:?}");
            let started = r.records.iter().filter(|x| x.start_s.is_some()).count();
            assert!(
                started + r.records.iter().filter(|x| x.never).count() == jobs.len(),
                "{p:?}: all jobs finish"
            );
            if p == PolicyKind::Railyard {
                assert_eq!(r.records.iter().filter(|x| x.partial).count(), 0);
                assert!(r.records.iter().filter_map(|x| x.ratio).all(|x| x <= 1.0 + 1e-9));
            }
        }
    }

    fn dgx128() -> (Fabric, BTreeMap<String, railyard_core::topology::NodeTopology>) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("configs/clusters/dgx-h100-4pod128.yaml")).expect("cluster");
        let fabric = Fabric::from_yaml(&text).expect("fabric");
        (fabric, load_machines(&root.join("configs/machines")).expect("machines"))
    }

    fn whole(arrival_s: f64, duration_s: f64, members: u32) -> Job {
        Job {
            arrival_s,
            duration_s,
            members,
            gpus_per_member: 8,
            gpu_milli: 1000,
            min_members: members,
            required: None,
            preferred: None,
        }
    }

    /// Every node busy with an 8-GPU pod: the first ends at 100 s, pod i at
    /// 1,000 + 10 i s. Then a one-node job (8 GPUs, 5,000 s) arrives at 1 s
    /// and a 16-node gang at 2 s. Returns (the one-node job's start, the
    /// gang's start, the gang's busbw ratio).
    fn small_job_then_gang(node_reservations: usize) -> (f64, f64, f64) {
        let (fabric, machines) = dgx128();
        let c = GangCluster::new(&fabric, &machines).expect("cluster");
        let mut jobs: Vec<Job> = (0..c.len())
            .map(|i| {
                whole(
                    i as f64 * 1e-3,
                    if i == 0 { 100.0 } else { 1000.0 + 10.0 * i as f64 },
                    1,
                )
            })
            .collect();
        jobs.push(whole(1.0, 5000.0, 1));
        jobs.push(whole(2.0, 1000.0, 16));
        let mut best = BestCache::new();
        for shape in [(1, 8), (16, 8)] {
            best.insert(shape, best_busbw(&c, shape.0, shape.1).expect("fits"));
        }
        let opts = SimOptions {
            node_reservations,
            ..SimOptions::default()
        };
        let r = simulate(&c, &jobs, PolicyKind::Railyard, 1, &best, &opts);
        assert_eq!(r.errors, 0);
        let n = jobs.len();
        let (small, gang) = (&r.records[n - 2], &r.records[n - 1]);
        (
            small.start_s.expect("small job starts"),
            gang.start_s.expect("gang starts"),
            gang.ratio.expect("gang ratio"),
        )
    }

    #[test]
    fn a_one_node_job_keeps_its_place_ahead_of_a_later_gang() {
        // First rule: the one-node job cannot reserve; the gang, arriving
        // after it, reserves 16 nodes of the unit that frees first, the
        // node free at 100 s among them, and the job (which would still run
        // then) waits for a node outside the reservation.
        let (small_old, gang_old, ratio_old) = small_job_then_gang(0);
        // New rule: the job reserves the node that frees first and starts
        // at 100 s; the gang plans around it, one release later, as good.
        let (small_new, gang_new, ratio_new) = small_job_then_gang(SimOptions::default().node_reservations);
        assert_eq!(small_new, 100.0);
        assert!(small_old > 1000.0 && small_old > gang_old, "{small_old} vs {gang_old}");
        assert_eq!((ratio_old, ratio_new), (1.0, 1.0));
        // The next node to free (pod 16's, 1,160 s): what the job got before.
        assert!(gang_new - gang_old < 11.0, "{gang_new} vs {gang_old}");
        assert_eq!(gang_new, small_old);
    }
}
