//! Choosing k free GPUs of one node: NVLink bandwidth first, then GPUs that
//! share a PCIe switch with a free NIC, then one NUMA node.
//!
//! Picking the k GPUs with the most pairwise NVLink bandwidth is the densest
//! k-subgraph problem (NP-hard in general), so: exhaustive search while the
//! number of subsets is at most [`EXACT_SEARCH_MAX_SUBSETS`] (every 8-GPU
//! node, 16-GPU nodes for most k), else greedy construction from every seed
//! plus pairwise-swap local search. The heuristic costs O(n²·k) for n
//! candidates (greedy: n seeds × k steps × n O(1) evaluations, plus O(n) gain
//! updates per step) and O(k·n) per swap pass, with at most
//! [`MAX_SWAP_PASSES`] passes; a 72-GPU NVLink domain asking for 36 is a few
//! hundred thousand score evaluations. On NVSwitch systems every pair scores
//! the same NVLink bandwidth, so the tie goes to NIC and NUMA locality.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet};

use super::level::TopologyLevel;
use super::{NodeTopology, TopologyError};

/// Above this many candidate subsets the search switches from exhaustive to
/// the greedy + swap heuristic.
pub const EXACT_SEARCH_MAX_SUBSETS: u64 = 5_000;

/// Local-search passes after the greedy phase; each pass either improves the
/// score strictly or stops, so this only bounds pathological plateaus.
const MAX_SWAP_PASSES: usize = 64;

/// What a request allows besides "any k free GPUs".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Constraints {
    /// NICs free for this request, by name. `None`: every rail NIC (every NIC
    /// when none has a rail), since front-end NICs do not carry collectives.
    pub free_nics: Option<BTreeSet<String>>,
    /// GPUs that must be in the answer (kubelet's `mustIncludeDeviceIDs`).
    pub must_include: BTreeSet<u32>,
    /// All GPUs must come from this NUMA node.
    pub numa_node: Option<u32>,
    /// All GPUs must come from one NUMA node (any).
    pub single_numa: bool,
}

/// How good a GPU set is. Ordered: greater is better, compared field by field
/// in declaration order; for the fields documented "fewer is better" the order
/// is reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Score {
    /// Sum of pairwise NVLink GB/s.
    pub nvlink_gbps: u64,
    /// GPUs that can be matched one-to-one with a free NIC under the same
    /// PCIe switch tree (GPU-NIC traffic never crosses a host bridge).
    pub nic_aligned: u32,
    /// Distinct NUMA nodes (fewer is better).
    pub numa_nodes: u32,
    /// Distinct sockets (fewer is better).
    pub sockets: u32,
    /// GPUs matched with a free NIC on the very same switch (`PIX`).
    pub nic_same_switch: u32,
    /// Sum of pairwise NVML levels (fewer is better): PCIe closeness, which
    /// decides between PCIe-only GPUs.
    pub pcie_distance: u64,
}

impl Score {
    fn key(&self) -> (u64, u32, Reverse<u32>, Reverse<u32>, u32, Reverse<u64>) {
        (
            self.nvlink_gbps,
            self.nic_aligned,
            Reverse(self.numa_nodes),
            Reverse(self.sockets),
            self.nic_same_switch,
            Reverse(self.pcie_distance),
        )
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl NodeTopology {
    /// The best `k` GPUs out of `free` under `constraints`, ascending. Ties
    /// go to the lexicographically smallest index list, so the answer is
    /// deterministic.
    pub fn best_gpus(
        &self,
        k: usize,
        free: &BTreeSet<u32>,
        constraints: &Constraints,
    ) -> Result<Vec<u32>, TopologyError> {
        let free_pos = free
            .iter()
            .map(|&g| self.gpu_pos(g))
            .collect::<Result<BTreeSet<usize>, _>>()?;
        let mut must = BTreeSet::new();
        for &g in &constraints.must_include {
            let p = self.gpu_pos(g)?;
            if !free_pos.contains(&p) {
                return Err(TopologyError::MustIncludeNotFree { gpu: g });
            }
            must.insert(p);
        }
        if must.len() > k {
            return Err(TopologyError::MustIncludeTooMany { count: must.len(), k });
        }
        if k > free_pos.len() {
            return Err(TopologyError::NotEnoughFree {
                k,
                free: free_pos.len(),
            });
        }
        let ctx = Ctx::new(self, &constraints.free_nics)?;
        if k == 0 {
            return Ok(Vec::new());
        }

        let on = |numa: u32| -> Vec<usize> {
            free_pos
                .iter()
                .copied()
                .filter(|&p| self.gpus[p].pos.numa == numa)
                .collect()
        };
        let best = if let Some(numa) = constraints.numa_node {
            if !self.numa_socket.contains_key(&numa) {
                return Err(TopologyError::NoSuchNumaNode { numa });
            }
            if let Some(&p) = must.iter().find(|&&p| self.gpus[p].pos.numa != numa) {
                let g = &self.gpus[p];
                return Err(TopologyError::MustIncludeOffNuma {
                    gpu: g.index,
                    gpu_numa: g.pos.numa,
                    numa,
                });
            }
            let cands = on(numa);
            if cands.len() < k {
                return Err(TopologyError::NumaNodeTooSmall {
                    numa,
                    free: cands.len(),
                    k,
                });
            }
            ctx.search(&cands, &must, k)
        } else if constraints.single_numa {
            let mut best: Option<(Score, Vec<usize>)> = None;
            for &numa in self.numa_socket.keys() {
                let cands = on(numa);
                if cands.len() >= k && must.iter().all(|p| cands.contains(p)) {
                    best = better(best, ctx.search(&cands, &must, k));
                }
            }
            best.ok_or(TopologyError::NoSingleNumaFit { k })?
        } else {
            let cands: Vec<usize> = free_pos.iter().copied().collect();
            ctx.search(&cands, &must, k)
        };
        Ok(best.1.iter().map(|&p| self.gpus[p].index).collect())
    }

    /// The score [`best_gpus`](Self::best_gpus) gives a GPU set, for
    /// comparing placements.
    pub fn score(&self, gpus: &[u32], constraints: &Constraints) -> Result<Score, TopologyError> {
        let ctx = Ctx::new(self, &constraints.free_nics)?;
        let mut st = State::new(&ctx);
        for &g in gpus {
            let p = self.gpu_pos(g)?;
            if st.in_set[p] {
                return Err(TopologyError::RepeatedGpu { gpu: g });
            }
            st.add(p);
        }
        Ok(st.score())
    }

    /// The heuristic on its own, for tests that compare it with exhaustive
    /// search.
    #[cfg(test)]
    pub(crate) fn best_gpus_heuristic(
        &self,
        k: usize,
        free: &BTreeSet<u32>,
        constraints: &Constraints,
    ) -> Result<Vec<u32>, TopologyError> {
        let ctx = Ctx::new(self, &constraints.free_nics)?;
        let cands = free.iter().map(|&g| self.gpu_pos(g)).collect::<Result<Vec<_>, _>>()?;
        let must = constraints
            .must_include
            .iter()
            .map(|&g| self.gpu_pos(g))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let (_, best) = ctx.heuristic(&cands, &must, k);
        Ok(best.iter().map(|&p| self.gpus[p].index).collect())
    }
}

/// Keeps the better of two candidates: higher score, then smaller index list
/// (dense ids sort like GPU indices).
fn better(a: Option<(Score, Vec<usize>)>, b: (Score, Vec<usize>)) -> Option<(Score, Vec<usize>)> {
    match a {
        Some(a) if (a.0, Reverse(&a.1)) >= (b.0, Reverse(&b.1)) => Some(a),
        _ => Some(b),
    }
}

/// Per-query data: where each GPU is, in dense ids, and the free NICs per
/// switch.
struct Ctx<'a> {
    topo: &'a NodeTopology,
    /// Per GPU: topmost switch, leaf switch, dense NUMA id, dense socket id.
    tree: Vec<Option<usize>>,
    leaf: Vec<Option<usize>>,
    numa: Vec<usize>,
    socket: Vec<usize>,
    /// Free NICs per switch (indexed by switch table id).
    free_nics_tree: BTreeMap<usize, u32>,
    free_nics_leaf: BTreeMap<usize, u32>,
    n_numa: usize,
    n_sockets: usize,
}

impl<'a> Ctx<'a> {
    fn new(topo: &'a NodeTopology, free_nics: &Option<BTreeSet<String>>) -> Result<Self, TopologyError> {
        let chosen: Vec<usize> = match free_nics {
            Some(names) => names.iter().map(|n| topo.nic_pos(n)).collect::<Result<_, _>>()?,
            None => {
                let rails: Vec<usize> = (0..topo.nics.len()).filter(|&i| topo.nics[i].rail.is_some()).collect();
                if rails.is_empty() {
                    (0..topo.nics.len()).collect()
                } else {
                    rails
                }
            }
        };
        let mut free_nics_tree = BTreeMap::new();
        let mut free_nics_leaf = BTreeMap::new();
        for i in chosen {
            let pos = &topo.nics[i].pos;
            if let Some(t) = pos.tree() {
                *free_nics_tree.entry(t).or_insert(0) += 1;
            }
            if let Some(l) = pos.leaf() {
                *free_nics_leaf.entry(l).or_insert(0) += 1;
            }
        }
        let numa_ids: Vec<u32> = topo.numa_socket.keys().copied().collect();
        let socket_ids: Vec<u32> = topo
            .numa_socket
            .values()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let dense = |ids: &[u32], v: u32| ids.binary_search(&v).unwrap_or(0);
        Ok(Ctx {
            topo,
            tree: topo.gpus.iter().map(|g| g.pos.tree()).collect(),
            leaf: topo.gpus.iter().map(|g| g.pos.leaf()).collect(),
            numa: topo.gpus.iter().map(|g| dense(&numa_ids, g.pos.numa)).collect(),
            socket: topo.gpus.iter().map(|g| dense(&socket_ids, g.socket)).collect(),
            free_nics_tree,
            free_nics_leaf,
            n_numa: numa_ids.len().max(1),
            n_sockets: socket_ids.len().max(1),
        })
    }

    /// Best k-subset of `cands` containing `must` (`must` ⊆ `cands`,
    /// k ≤ |cands|, both checked by the caller).
    fn search(&self, cands: &[usize], must: &BTreeSet<usize>, k: usize) -> (Score, Vec<usize>) {
        let rest = cands.len().saturating_sub(must.len());
        if binomial(rest as u64, (k - must.len()) as u64) <= EXACT_SEARCH_MAX_SUBSETS {
            self.exhaustive(cands, must, k)
        } else {
            self.heuristic(cands, must, k)
        }
    }

    fn exhaustive(&self, cands: &[usize], must: &BTreeSet<usize>, k: usize) -> (Score, Vec<usize>) {
        let mut st = State::new(self);
        for &p in must {
            st.add(p);
        }
        let rest: Vec<usize> = cands.iter().copied().filter(|p| !must.contains(p)).collect();
        let mut best = None;
        self.extend(&mut st, &rest, 0, k, &mut best);
        best.unwrap_or_else(|| (st.score(), st.sorted()))
    }

    /// Depth-first over combinations of `rest[from..]`.
    fn extend(&self, st: &mut State, rest: &[usize], from: usize, k: usize, best: &mut Option<(Score, Vec<usize>)>) {
        if st.members.len() == k {
            *best = better(best.take(), (st.score(), st.sorted()));
            return;
        }
        let need = k - st.members.len();
        for i in from..rest.len() {
            if rest.len() - i < need {
                break;
            }
            st.add(rest[i]);
            self.extend(st, rest, i + 1, k, best);
            st.remove(rest[i]);
        }
    }

    fn heuristic(&self, cands: &[usize], must: &BTreeSet<usize>, k: usize) -> (Score, Vec<usize>) {
        let mut base = State::new(self);
        for &p in must {
            base.add(p);
        }
        let mut best: Option<(Score, Vec<usize>)> = None;
        let seeds: Vec<Option<usize>> = if must.len() >= k {
            vec![None]
        } else {
            cands.iter().filter(|p| !must.contains(p)).map(|&p| Some(p)).collect()
        };
        for seed in seeds {
            let mut st = base.clone();
            if let Some(s) = seed {
                st.add(s);
            }
            while st.members.len() < k {
                // Lowest index wins ties: candidates are ascending and only a strictly better one replaces.
                let mut pick: Option<(Score, usize)> = None;
                for &c in cands {
                    if !st.in_set[c] {
                        let s = st.score_with(c);
                        if pick.is_none_or(|(ps, _)| s > ps) {
                            pick = Some((s, c));
                        }
                    }
                }
                let Some((_, c)) = pick else { break };
                st.add(c);
            }
            best = better(best, (st.score(), st.sorted()));
        }
        let Some((_, start)) = best else {
            return (base.score(), base.sorted());
        };
        self.improve_by_swaps(cands, must, start)
    }

    /// Steepest-ascent pairwise swaps (one member out, one non-member in)
    /// until no swap improves the score.
    fn improve_by_swaps(&self, cands: &[usize], must: &BTreeSet<usize>, start: Vec<usize>) -> (Score, Vec<usize>) {
        let mut st = State::new(self);
        for &p in &start {
            st.add(p);
        }
        let mut current = (st.score(), st.sorted());
        for _ in 0..MAX_SWAP_PASSES {
            let mut best_swap: Option<(Score, Vec<usize>, usize, usize)> = None;
            for out in st.sorted() {
                if must.contains(&out) {
                    continue;
                }
                st.remove(out);
                for &inn in cands {
                    if inn == out || st.in_set[inn] {
                        continue;
                    }
                    let s = st.score_with(inn);
                    if s < current.0 {
                        continue;
                    }
                    let mut set = st.sorted();
                    let at = set.partition_point(|&x| x < inn);
                    set.insert(at, inn);
                    let improves = (s, Reverse(&set)) > (current.0, Reverse(&current.1));
                    let beats = best_swap
                        .as_ref()
                        .is_none_or(|b| (s, Reverse(&set)) > (b.0, Reverse(&b.1)));
                    if improves && beats {
                        best_swap = Some((s, set, out, inn));
                    }
                }
                st.add(out);
            }
            let Some((s, set, out, inn)) = best_swap else { break };
            st.remove(out);
            st.add(inn);
            current = (s, set);
        }
        current
    }
}

/// A GPU set under construction with everything the score needs kept
/// incrementally: adding or removing a GPU costs O(n), scoring O(1).
#[derive(Clone)]
struct State<'c, 'a> {
    ctx: &'c Ctx<'a>,
    members: Vec<usize>,
    in_set: Vec<bool>,
    /// Per GPU: NVLink GB/s and level sum to the current members.
    nv_gain: Vec<u64>,
    lvl_gain: Vec<u64>,
    nvlink: u64,
    pcie: u64,
    tree_count: BTreeMap<usize, u32>,
    leaf_count: BTreeMap<usize, u32>,
    numa_count: Vec<u32>,
    socket_count: Vec<u32>,
    nic_aligned: u32,
    nic_same_switch: u32,
    numa_nodes: u32,
    sockets: u32,
}

impl<'c, 'a> State<'c, 'a> {
    fn new(ctx: &'c Ctx<'a>) -> Self {
        let n = ctx.topo.gpus.len();
        State {
            ctx,
            members: Vec::new(),
            in_set: vec![false; n],
            nv_gain: vec![0; n],
            lvl_gain: vec![0; n],
            nvlink: 0,
            pcie: 0,
            tree_count: BTreeMap::new(),
            leaf_count: BTreeMap::new(),
            numa_count: vec![0; ctx.n_numa],
            socket_count: vec![0; ctx.n_sockets],
            nic_aligned: 0,
            nic_same_switch: 0,
            numa_nodes: 0,
            sockets: 0,
        }
    }

    fn sorted(&self) -> Vec<usize> {
        let mut v = self.members.clone();
        v.sort_unstable();
        v
    }

    /// Whether one more GPU under switch `s` still finds a free NIC there.
    fn nic_left(count: &BTreeMap<usize, u32>, free: &BTreeMap<usize, u32>, s: Option<usize>) -> bool {
        s.is_some_and(|s| count.get(&s).copied().unwrap_or(0) < free.get(&s).copied().unwrap_or(0))
    }

    fn score(&self) -> Score {
        Score {
            nvlink_gbps: self.nvlink,
            nic_aligned: self.nic_aligned,
            numa_nodes: self.numa_nodes,
            sockets: self.sockets,
            nic_same_switch: self.nic_same_switch,
            pcie_distance: self.pcie,
        }
    }

    /// The score with `c` added, without adding it.
    fn score_with(&self, c: usize) -> Score {
        let ctx = self.ctx;
        Score {
            nvlink_gbps: self.nvlink + self.nv_gain[c],
            nic_aligned: self.nic_aligned
                + u32::from(Self::nic_left(&self.tree_count, &ctx.free_nics_tree, ctx.tree[c])),
            numa_nodes: self.numa_nodes + u32::from(self.numa_count[ctx.numa[c]] == 0),
            sockets: self.sockets + u32::from(self.socket_count[ctx.socket[c]] == 0),
            nic_same_switch: self.nic_same_switch
                + u32::from(Self::nic_left(&self.leaf_count, &ctx.free_nics_leaf, ctx.leaf[c])),
            pcie_distance: self.pcie + self.lvl_gain[c],
        }
    }

    fn add(&mut self, c: usize) {
        let ctx = self.ctx;
        if Self::nic_left(&self.tree_count, &ctx.free_nics_tree, ctx.tree[c]) {
            self.nic_aligned += 1;
        }
        if Self::nic_left(&self.leaf_count, &ctx.free_nics_leaf, ctx.leaf[c]) {
            self.nic_same_switch += 1;
        }
        if let Some(t) = ctx.tree[c] {
            *self.tree_count.entry(t).or_insert(0) += 1;
        }
        if let Some(l) = ctx.leaf[c] {
            *self.leaf_count.entry(l).or_insert(0) += 1;
        }
        self.numa_nodes += u32::from(self.numa_count[ctx.numa[c]] == 0);
        self.numa_count[ctx.numa[c]] += 1;
        self.sockets += u32::from(self.socket_count[ctx.socket[c]] == 0);
        self.socket_count[ctx.socket[c]] += 1;
        self.nvlink += self.nv_gain[c];
        self.pcie += self.lvl_gain[c];
        self.bump(c, true);
        self.members.push(c);
        self.in_set[c] = true;
    }

    fn remove(&mut self, c: usize) {
        let ctx = self.ctx;
        let Some(at) = self.members.iter().position(|&m| m == c) else {
            return;
        };
        self.members.swap_remove(at);
        self.in_set[c] = false;
        self.bump(c, false);
        self.nvlink -= self.nv_gain[c];
        self.pcie -= self.lvl_gain[c];
        if let Some(t) = ctx.tree[c]
            && let Some(n) = self.tree_count.get_mut(&t)
        {
            *n -= 1;
        }
        if let Some(l) = ctx.leaf[c]
            && let Some(n) = self.leaf_count.get_mut(&l)
        {
            *n -= 1;
        }
        // After decrementing, a NIC is left exactly when this GPU had used one.
        if Self::nic_left(&self.tree_count, &ctx.free_nics_tree, ctx.tree[c]) {
            self.nic_aligned -= 1;
        }
        if Self::nic_left(&self.leaf_count, &ctx.free_nics_leaf, ctx.leaf[c]) {
            self.nic_same_switch -= 1;
        }
        self.numa_count[ctx.numa[c]] -= 1;
        self.numa_nodes -= u32::from(self.numa_count[ctx.numa[c]] == 0);
        self.socket_count[ctx.socket[c]] -= 1;
        self.sockets -= u32::from(self.socket_count[ctx.socket[c]] == 0);
    }

    /// Adds (or takes back) `c`'s NVLink and level contributions to every GPU's gains.
    fn bump(&mut self, c: usize, add: bool) {
        let topo = self.ctx.topo;
        for j in 0..self.nv_gain.len() {
            if j == c {
                continue;
            }
            let nv = u64::from(topo.nvlink[c][j]);
            let lv = u64::from(level_value(topo.levels[c][j]));
            if add {
                self.nv_gain[j] += nv;
                self.lvl_gain[j] += lv;
            } else {
                self.nv_gain[j] -= nv;
                self.lvl_gain[j] -= lv;
            }
        }
    }
}

impl std::fmt::Debug for State<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("members", &self.members)
            .field("score", &self.score())
            .finish()
    }
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("node", &self.topo.name()).finish()
    }
}

fn level_value(l: TopologyLevel) -> u32 {
    l.nvml_value()
}

/// C(n, k), saturating: only compared with a small bound.
fn binomial(n: u64, k: u64) -> u64 {
    if k > n {
        return 0;
    }
    let k = k.min(n - k);
    let mut r: u64 = 1;
    for i in 0..k {
        // r · (n - i) / (i + 1) stays integral at every step.
        r = r.saturating_mul(n - i) / (i + 1);
        if r > EXACT_SEARCH_MAX_SUBSETS.saturating_mul(1 << 20) {
            return u64::MAX;
        }
    }
    r
}
