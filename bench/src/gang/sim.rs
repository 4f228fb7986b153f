//! Event-driven simulation of one policy over one workload: arrivals,
//! completions, a best-effort FIFO queue (a job that does not fit does not
//! block the ones behind it), and per-job measurements. A job runs longer
//! when its placement's bandwidth is low ([`run_time`]); schedulers see
//! only the time limits. Railyard's reservation pass is in `backfill.rs`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use railyard_core::comm::estimate;
use railyard_core::fabric::{GpuRef, MachineLookup};
use railyard_core::gang::{Decision, FreeState, Gang, GangCluster, Level, Patience, Reservation};

use super::policies::{Member, PolicyKind, World, place_fraction, place_gang, place_pod};
use super::workload::Job;

/// What happened to one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub gang: bool,
    pub gpus: u32,
    /// GPUs held, a fractional pod as its share of one.
    pub gpu_share: f64,
    pub arrival_s: f64,
    /// The run at full bandwidth (the workload's duration).
    pub duration_s: f64,
    /// The declared time limit.
    pub limit_s: f64,
    pub start_s: Option<f64>,
    /// Start + the run at the placement's bandwidth.
    pub finish_s: Option<f64>,
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
    /// The last arrival: the window allocation and useful GPU-hours cover.
    pub window_s: f64,
    /// Passes that dropped every reservation and planned them anew because
    /// a job ended before its limit.
    pub recomputes: u64,
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
    /// The true communication share `s` of every job: placed at busbw
    /// ratio `r` it runs `duration × ((1 − s) + s / r)` ([`run_time`]),
    /// under every policy. `comm_share` is what Railyard's rule assumes.
    pub job_comm_share: f64,
    /// When a job ends before its limit, drop Railyard's reservations and
    /// plan them again in queue order (Slurm's backfill pass); off: a
    /// reservation stands until its job starts or its start passes.
    pub recompute: bool,
    /// Least simulated time between two such replans, seconds (Slurm's
    /// `bf_interval`, 30 s by default there; 300 s here, see the CLI
    /// flag): early ends inside it are replanned together at the first
    /// pass after it.
    pub backfill_interval_s: f64,
}

/// The run of a job of `duration_s` (at full bandwidth) placed at busbw
/// ratio `ratio` (1 for jobs without all-reduce) when a share `s` of it is
/// communication: `duration × ((1 − s) + s / r)`. Ratios above 1 (a
/// placement the empty-cluster plan missed) count as 1, so no placement
/// runs faster than the workload says.
pub fn run_time(duration_s: f64, ratio: f64, s: f64) -> f64 {
    let s = s.clamp(0.0, 1.0);
    let r = ratio.min(1.0);
    if r <= 0.0 || r.is_nan() {
        // No bandwidth estimate: the communication part at full speed.
        return duration_s;
    }
    duration_s * ((1.0 - s) + s / r)
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
            job_comm_share: 0.25,
            recompute: true,
            backfill_interval_s: 300.0,
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

pub(super) struct Sim<'a, 'c, M: MachineLookup + ?Sized> {
    pub(super) c: &'a GangCluster<'c, M>,
    pub(super) jobs: &'a [Job],
    pub(super) policy: PolicyKind,
    pub(super) w: World,
    pub(super) held: Vec<Vec<Member>>,
    pub(super) frac: Vec<Option<(usize, u32)>>,
    pub(super) rec: Vec<JobRecord>,
    pub(super) queue: Vec<usize>,
    events: BinaryHeap<Reverse<(T, Ev, usize)>>,
    running: usize,
    pub(super) decide: Duration,
    pub(super) decisions: u64,
    pub(super) errors: u32,
    pub(super) opts: SimOptions,
    /// Railyard's reservations from the last full pass, by job.
    pub(super) reserved: Vec<(usize, Reservation)>,
    /// GPUs of the largest node: a job of at most this many fits on one node.
    pub(super) node_gpus: u32,
    /// Jobs holding GPUs (running, or partial gangs), in index order: the
    /// per-event sums visit these, not every job of the run.
    pub(super) active: BTreeSet<usize>,
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
                gpu_share: j.gpu_share(),
                arrival_s: j.arrival_s,
                duration_s: j.duration_s,
                limit_s: j.limit(),
                start_s: None,
                finish_s: None,
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
    let mut recomputes = 0;
    // An early end not yet replanned, and when the last replan was.
    let (mut stale, mut last_replan) = (false, f64::NEG_INFINITY);
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
        let mut early = false;
        let mut arrived = Vec::new();
        while let Some(Reverse((T(te), ev, j))) = s.events.peek().copied() {
            if te > t {
                break;
            }
            s.events.pop();
            match ev {
                Ev::Finish => {
                    // The scheduler expected the GPUs back at the limit.
                    let planned = s.rec[j].start_s.map_or(t, |st| st + s.jobs[j].limit());
                    early |= t < planned - 1e-6;
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
        stale |= early;
        let replan = stale && s.opts.recompute && t - last_replan >= s.opts.backfill_interval_s;
        if replan && !s.reserved.is_empty() {
            // Slurm's backfill pass: the plan came from limits that turned
            // out long, so every reservation is made again, in queue order.
            s.reserved.clear();
            recomputes += 1;
        }
        if replan {
            stale = false;
            last_replan = t;
        }
        // A replan tries the whole queue, as a completion does.
        s.pass(t, freed || replan, best);
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
        window_s: window,
        recomputes,
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

    pub(super) fn gang(&self, j: usize) -> Gang {
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

    pub(super) fn start(&mut self, j: usize, t: f64, best: &BestCache) {
        self.rec[j].start_s = Some(t);
        self.running += 1;
        if self.rec[j].gang {
            self.measure(j, best);
        }
        let run = run_time(
            self.jobs[j].duration_s,
            self.rec[j].ratio.unwrap_or(1.0),
            self.opts.job_comm_share,
        );
        self.rec[j].finish_s = Some(t + run);
        self.events.push(Reverse((T(t + run), Ev::Finish, j)));
    }

    /// Busbw ratio and locality of started gang `j`.
    fn measure(&mut self, j: usize, best: &BestCache) {
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

    /// Fractional job `j` joins GPU `g` of node `n`, taking it from the
    /// free GPUs if it was not shared yet.
    pub(super) fn join_shared(&mut self, j: usize, n: usize, g: u32) {
        if !self.w.shared.contains_key(&(n, g)) && self.w.free.take(self.c, n, &[g]).is_err() {
            self.errors += 1;
        }
        *self.w.shared.entry((n, g)).or_insert(0) += self.jobs[j].gpu_milli;
        self.frac[j] = Some((n, g));
        self.active.insert(j);
    }

    pub(super) fn take(&mut self, j: usize, members: Vec<Member>) {
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
            self.join_shared(j, n, g);
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
                max_wait_s: self.opts.max_wait_frac * job.limit(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gang::cli::load_machines;
    use crate::gang::workload::{Mix, generate};
    use railyard_core::fabric::Fabric;

    #[test]
    fn a_slow_placement_lengthens_the_run_by_its_communication_share() {
        // s = 0.25 at half bandwidth: 0.75 + 0.25 / 0.5 = 1.25 × the duration.
        assert!((run_time(1000.0, 0.5, 0.25) - 1250.0).abs() < 1e-9);
        // Full bandwidth, or no all-reduce share: the duration.
        assert_eq!(run_time(1000.0, 1.0, 0.25), 1000.0);
        assert_eq!(run_time(1000.0, 0.5, 0.0), 1000.0);
        // A ratio above 1 never shortens a run; no estimate keeps it.
        assert_eq!(run_time(1000.0, 1.3, 0.5), 1000.0);
        assert_eq!(run_time(1000.0, 0.0, 0.5), 1000.0);
    }

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
            limit_s: None,
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

    /// Every node busy with an 8-GPU pod (node 0's ends at 100 s, the rest
    /// at `rest_end`, each declaring `rest_limit`), a whole-cluster gang
    /// (1,000 s) at 2 s, then `extra` jobs. Returns the records and the
    /// number of replans.
    fn full_cluster_then(rest_end: f64, rest_limit: f64, extra: &[Job], recompute: bool) -> (Vec<JobRecord>, u64) {
        let (fabric, machines) = dgx128();
        let c = GangCluster::new(&fabric, &machines).expect("cluster");
        let n = c.len();
        let mut jobs: Vec<Job> = (0..n)
            .map(|i| {
                // All at 0 s, so the rest end together (one replan).
                let mut j = whole(0.0, if i == 0 { 100.0 } else { rest_end }, 1);
                j.limit_s = Some(if i == 0 { 100.0 } else { rest_limit });
                j
            })
            .collect();
        jobs.push(whole(2.0, 1000.0, n as u32));
        jobs.extend_from_slice(extra);
        let mut best = BestCache::new();
        for shape in [(1, 8), (n as u32, 8)] {
            best.insert(shape, best_busbw(&c, shape.0, shape.1).expect("fits"));
        }
        let opts = SimOptions {
            recompute,
            ..SimOptions::default()
        };
        let r = simulate(&c, &jobs, PolicyKind::Railyard, 1, &best, &opts);
        assert_eq!(r.errors, 0);
        (r.records, r.recomputes)
    }

    #[test]
    fn backfill_judges_a_job_by_its_limit_not_its_duration() {
        // The gang reserves every node from 1,000 s. A one-node job of 200 s
        // arrives at 3 s; node 0 frees at 100 s. Declaring 200 s it ends
        // before the reservation and backfills at once; declaring 5,000 s
        // (same real duration) it would hold node 0 past 1,000 s, so it
        // waits for the gang. The simulator never looks at its duration.
        let mut honest = whole(3.0, 200.0, 1);
        honest.limit_s = Some(200.0);
        let mut padded = honest.clone();
        padded.limit_s = Some(5000.0);
        let (r, _) = full_cluster_then(1000.0, 1000.0, &[honest], true);
        let gang = r.len() - 2;
        assert_eq!(r[gang + 1].start_s, Some(100.0));
        assert_eq!(r[gang].start_s, Some(1000.0));
        let (r, _) = full_cluster_then(1000.0, 1000.0, &[padded], true);
        assert_eq!(r[gang].start_s, Some(1000.0), "the gang keeps its reservation");
        assert!(r[gang + 1].start_s.expect("runs") >= 2000.0, "{:?}", r[gang + 1]);
    }

    #[test]
    fn an_early_end_replans_the_reservations_that_assumed_the_limits() {
        // The pods on nodes 1.. end at 1,000 s but declared 5,000 s, so the
        // gang's reservation is made for 5,000 s. B (2,000 s, honest)
        // backfills node 0 at 100 s. At 1,000 s the early ends replan: the
        // gang now reserves from B's end (2,100 s), and C (3,000 s), arriving
        // at 1,001 s, may not take its nodes. Without the replan the stale
        // reservation lets C in and the gang waits for C.
        let mut b = whole(3.0, 2000.0, 1);
        b.limit_s = Some(2000.0);
        let mut c = whole(1001.0, 3000.0, 1);
        c.limit_s = Some(3000.0);
        let extra = [b, c];
        let (r, replans) = full_cluster_then(1000.0, 5000.0, &extra, true);
        let gang = r.len() - 3;
        assert_eq!(r[gang + 1].start_s, Some(100.0), "B backfills");
        assert_eq!(r[gang].start_s, Some(2100.0), "the gang starts when B ends");
        assert!(r[gang + 2].start_s.expect("C runs") >= 2100.0 + 1000.0 - 1e-6);
        assert!(replans >= 1);
        let (r, replans) = full_cluster_then(1000.0, 5000.0, &extra, false);
        assert_eq!(replans, 0);
        assert!(r[gang + 2].start_s.expect("C runs") < 1002.0, "{:?}", r[gang + 2]);
        assert!(r[gang].start_s.expect("gang runs") >= 4001.0 - 1e-6, "{:?}", r[gang]);
    }
}
