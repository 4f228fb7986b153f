//! The placement policies compared by `railyard-bench gang`, over one shared
//! cluster state. Baselines are re-implemented here from their public
//! descriptions; Railyard is `railyard_core::gang`.

use std::collections::BTreeMap;

use railyard_core::fabric::MachineLookup;
use railyard_core::gang::{Decision, FreeState, Gang, GangCluster, Level};

/// GPUs of one member: node index and GPU indices.
pub type Member = (usize, Vec<u32>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    /// kube-scheduler's default scoring, pod by pod: NodeResourcesFit
    /// LeastAllocated (+ BalancedAllocation, equal for GPU-only requests),
    /// first node on ties; the device plugin hands out the first free GPUs.
    KubeDefault,
    /// Best fit pod by pod: the node left with the fewest free GPUs.
    BestFit,
    /// Kueue Topology-Aware Scheduling: the whole gang at once inside one
    /// domain of the required / preferred level (default: the leaf group),
    /// BestFit over domains, children taken largest first with the last one
    /// best-fit; first free GPUs on each node.
    KueueTas,
    /// Volcano network-topology-aware scheduling over HyperNodes: tiers tried
    /// lowest first (gradient), among hypernodes that fit the most allocated
    /// (binpack), then each pod on the most allocated node that fits; gang
    /// committed all or nothing; first free GPUs.
    VolcanoHyperNode,
    /// `railyard_core::gang::GangCluster::plan`.
    Railyard,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 5] = [
        PolicyKind::KubeDefault,
        PolicyKind::BestFit,
        PolicyKind::KueueTas,
        PolicyKind::VolcanoHyperNode,
        PolicyKind::Railyard,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::KubeDefault => "kube-default",
            PolicyKind::BestFit => "bestfit",
            PolicyKind::KueueTas => "kueue-tas",
            PolicyKind::VolcanoHyperNode => "volcano-hn",
            PolicyKind::Railyard => "railyard",
        }
    }

    pub fn from_name(s: &str) -> Option<PolicyKind> {
        PolicyKind::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Places pods one at a time, so a gang can be partly placed.
    pub fn pod_by_pod(self) -> bool {
        matches!(self, PolicyKind::KubeDefault | PolicyKind::BestFit)
    }
}

/// The cluster state the simulator keeps: whole free GPUs, and fractional
/// pods sharing GPUs (a shared GPU is not free).
#[derive(Debug, Clone)]
pub struct World {
    pub free: FreeState,
    /// (node, GPU) → milli-GPU in use by fractional pods.
    pub shared: BTreeMap<(usize, u32), u32>,
}

fn first_free<M: MachineLookup + ?Sized>(c: &GangCluster<'_, M>, w: &World, n: usize, k: u32) -> Vec<u32> {
    w.free.free_gpus(c, n).into_iter().take(k as usize).collect()
}

/// One pod of `k` whole GPUs, for the pod-by-pod policies (and single-GPU
/// background pods of every policy).
pub fn place_pod<M: MachineLookup + ?Sized>(
    p: PolicyKind,
    c: &GangCluster<'_, M>,
    w: &World,
    k: u32,
) -> Option<Member> {
    let fits = (0..c.len()).filter(|&n| w.free.free_count(n) >= k);
    let n = match p {
        PolicyKind::KubeDefault => {
            // LeastAllocated: the largest free share; ties to the first node.
            fits.max_by(|&a, &b| {
                let fa = f64::from(w.free.free_count(a)) / c.node_gpus(a).map_or(1, |g| g.len().max(1)) as f64;
                let fb = f64::from(w.free.free_count(b)) / c.node_gpus(b).map_or(1, |g| g.len().max(1)) as f64;
                fa.total_cmp(&fb).then(b.cmp(&a))
            })?
        }
        PolicyKind::BestFit | PolicyKind::KueueTas | PolicyKind::VolcanoHyperNode => {
            fits.min_by_key(|&n| (w.free.free_count(n), n))?
        }
        PolicyKind::Railyard => {
            let d = c.plan(&Gang::new(1, k), &w.free).ok()?;
            return match d {
                Decision::Place(plan) => plan.members.into_iter().next().map(|m| (m.node_index, m.gpus)),
                Decision::Wait(_) => None,
            };
        }
    };
    Some((n, first_free(c, w, n, k)))
}

/// A fractional pod: a shared GPU with room, else a new GPU. kube-default
/// spreads (emptiest node); the others pack (tightest shared GPU first).
pub fn place_fraction<M: MachineLookup + ?Sized>(
    p: PolicyKind,
    c: &GangCluster<'_, M>,
    w: &World,
    milli: u32,
) -> Option<(usize, u32)> {
    let room = |used: u32| 1000 - used.min(1000);
    if p == PolicyKind::KubeDefault {
        let (n, gpus) = place_pod(p, c, w, 1).or_else(|| {
            // Only shared GPUs left: the first one with room.
            w.shared
                .iter()
                .find(|(_, u)| room(**u) >= milli)
                .map(|(&(n, g), _)| (n, vec![g]))
        })?;
        let on_node = w
            .shared
            .iter()
            .find(|((sn, _), u)| *sn == n && room(**u) >= milli)
            .map(|(&(_, g), _)| g);
        return Some((n, on_node.or(gpus.first().copied())?));
    }
    let tight = w
        .shared
        .iter()
        .filter(|(_, u)| room(**u) >= milli)
        .min_by_key(|&(&(n, g), &u)| (room(u), n, g))
        .map(|(&k, _)| k);
    if tight.is_some() {
        return tight;
    }
    let (n, gpus) = place_pod(p, c, w, 1)?;
    Some((n, *gpus.first()?))
}

/// A whole gang at once (the gang-aware policies), members in rank order.
pub fn place_gang<M: MachineLookup + ?Sized>(
    p: PolicyKind,
    c: &GangCluster<'_, M>,
    w: &World,
    gang: &Gang,
) -> Option<Vec<Member>> {
    match p {
        PolicyKind::Railyard => match c.plan(gang, &w.free).ok()? {
            Decision::Place(plan) => Some(plan.members.into_iter().map(|m| (m.node_index, m.gpus)).collect()),
            Decision::Wait(_) => None,
        },
        PolicyKind::KueueTas => kueue(c, w, gang),
        PolicyKind::VolcanoHyperNode => volcano(c, w, gang),
        PolicyKind::KubeDefault | PolicyKind::BestFit => None,
    }
}

fn tiers<M: MachineLookup + ?Sized>(c: &GangCluster<'_, M>) -> usize {
    c.fabric().tiers().len()
}

/// Domains of tier `t`: node lists by group id.
fn domains<M: MachineLookup + ?Sized>(c: &GangCluster<'_, M>, nodes: &[usize], t: usize) -> Vec<Vec<usize>> {
    let mut by: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for &n in nodes {
        by.entry(c.group_at(t, n).unwrap_or(0)).or_default().push(n);
    }
    by.into_values().collect()
}

fn kueue<M: MachineLookup + ?Sized>(c: &GangCluster<'_, M>, w: &World, gang: &Gang) -> Option<Vec<Member>> {
    let k = gang.gpus_per_member;
    let need = gang.members;
    let cap = |n: usize| w.free.free_count(n) / k;
    let all: Vec<usize> = (0..c.len()).collect();
    let top = tiers(c);
    let (start, required) = match (gang.required, gang.preferred) {
        (Some(Level::Tier(t)), _) => (t, true),
        (Some(_), _) => (0, true),
        (None, Some(Level::Tier(t))) => (t, false),
        (None, _) => (0, false),
    };
    // Lowest level from the requested one up; one domain that fits, BestFit.
    let mut chosen: Option<(usize, Vec<usize>)> = None;
    for t in start..=top {
        let doms = if t == top {
            vec![all.clone()]
        } else {
            domains(c, &all, t)
        };
        let best = doms
            .into_iter()
            .map(|d| (d.iter().map(|&n| cap(n)).sum::<u32>(), d))
            .filter(|(cp, _)| *cp >= need)
            .min_by_key(|(cp, d)| (*cp, d.first().copied()));
        if let Some((_, d)) = best {
            chosen = Some((t, d));
            break;
        }
        if required {
            return None;
        }
    }
    let (t, dom) = chosen?;
    let mut per_node = Vec::new();
    descend(c, &dom, t.checked_sub(1), need, &cap, &mut per_node)?;
    per_node.sort_unstable();
    let mut out = Vec::new();
    for (n, m) in per_node {
        let gpus = first_free(c, w, n, m * k);
        out.extend(gpus.chunks(k as usize).map(|g| (n, g.to_vec())));
    }
    Some(out)
}

/// Kueue's greedy descent: children by capacity, largest first, the last
/// one the tightest that holds the rest.
fn descend<M: MachineLookup + ?Sized>(
    c: &GangCluster<'_, M>,
    nodes: &[usize],
    tier: Option<usize>,
    need: u32,
    cap: &dyn Fn(usize) -> u32,
    out: &mut Vec<(usize, u32)>,
) -> Option<()> {
    let mut kids: Vec<(u32, Vec<usize>)> = match tier {
        Some(t) => domains(c, nodes, t)
            .into_iter()
            .map(|d| (d.iter().map(|&n| cap(n)).sum(), d))
            .collect(),
        None => nodes.iter().map(|&n| (cap(n), vec![n])).collect(),
    };
    kids.retain(|k| k.0 > 0);
    kids.sort_by_key(|k| (std::cmp::Reverse(k.0), k.1.first().copied()));
    let mut rest = need;
    let mut i = 0;
    while rest > 0 {
        let kid = kids.get(i)?;
        if kid.0 >= rest {
            let j = (i..kids.len())
                .filter(|&j| kids[j].0 >= rest)
                .min_by_key(|&j| kids[j].0)?;
            take(c, &kids[j].1, tier, rest, cap, out)?;
            rest = 0;
        } else {
            take(c, &kid.1, tier, kid.0, cap, out)?;
            rest -= kid.0;
            i += 1;
        }
    }
    Some(())
}

fn take<M: MachineLookup + ?Sized>(
    c: &GangCluster<'_, M>,
    nodes: &[usize],
    tier: Option<usize>,
    m: u32,
    cap: &dyn Fn(usize) -> u32,
    out: &mut Vec<(usize, u32)>,
) -> Option<()> {
    match tier {
        Some(t) => descend(c, nodes, t.checked_sub(1), m, cap, out),
        None => {
            out.push((*nodes.first()?, m));
            Some(())
        }
    }
}

fn volcano<M: MachineLookup + ?Sized>(c: &GangCluster<'_, M>, w: &World, gang: &Gang) -> Option<Vec<Member>> {
    let k = gang.gpus_per_member;
    let need = gang.members;
    let all: Vec<usize> = (0..c.len()).collect();
    let top = tiers(c);
    let highest = match gang.required {
        Some(Level::Tier(t)) => t,
        Some(_) => 0,
        None => top,
    };
    for t in 0..=highest.min(top) {
        let doms = if t == top {
            vec![all.clone()]
        } else {
            domains(c, &all, t)
        };
        // Binpack over hypernodes: the most allocated one that fits.
        let best = doms
            .into_iter()
            .filter(|d| d.iter().map(|&n| w.free.free_count(n) / k).sum::<u32>() >= need)
            .min_by(|a, b| {
                let frac = |d: &Vec<usize>| {
                    let free: u32 = d.iter().map(|&n| w.free.free_count(n)).sum();
                    let total: usize = d.iter().map(|&n| c.node_gpus(n).map_or(0, |g| g.len())).sum();
                    f64::from(free) / total.max(1) as f64
                };
                frac(a).total_cmp(&frac(b)).then(a.first().cmp(&b.first()))
            });
        let Some(dom) = best else { continue };
        // Pods one by one onto the most allocated node that fits.
        let mut left: BTreeMap<usize, u32> = dom.iter().map(|&n| (n, w.free.free_count(n))).collect();
        let mut per_node: Vec<(usize, u32)> = Vec::new();
        for _ in 0..need {
            let (&n, _) = left.iter().filter(|(_, f)| **f >= k).min_by_key(|(n, f)| (**f, **n))?;
            if let Some(f) = left.get_mut(&n) {
                *f -= k;
            }
            match per_node.iter_mut().find(|(x, _)| *x == n) {
                Some((_, m)) => *m += 1,
                None => per_node.push((n, 1)),
            }
        }
        let mut out = Vec::new();
        for (n, m) in per_node {
            let gpus = first_free(c, w, n, m * k);
            out.extend(gpus.chunks(k as usize).map(|g| (n, g.to_vec())));
        }
        return Some(out);
    }
    None
}
