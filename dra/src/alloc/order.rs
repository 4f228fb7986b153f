//! The order in which the search tries a subrequest's candidates: the
//! first allocation it finds is the one Railyard prefers.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use railyard_core::topology::Constraints;

use super::Allocator;
use super::dense::{Index, State};
use super::search::{Alternative, Candidate};
use crate::claim::AllocationMode;
use crate::device::AttrValue;
use crate::names::ATTR_NVLINK_ISLAND;

/// Sorts `alt.candidates`, most preferred first:
/// 1. devices whose counter set is already in use (pack partitioned GPUs);
/// 2. an NVLink island with enough free devices for the whole request;
/// 3. for a multi-device request, the GPUs the node's topology ranks best
///    (`NodeTopology::best_gpus`: NVLink bandwidth, then GPU–NIC PCIe
///    alignment, then one NUMA node), where the pool's topology is known;
/// 4. the smallest such island;
/// 5. the MIG placement that leaves the most other placements addable;
/// 6. the shareable device with the least memory left;
/// 7. publish order.
pub(super) fn order(alloc: &Allocator<'_>, index: &Index<'_>, state: &mut State, alt: &mut Alternative<'_>) {
    let island = |c: &Candidate| {
        let (pool, d) = alloc.at(c.at);
        match d.attribute(&pool.driver, ATTR_NVLINK_ISLAND) {
            Some(AttrValue::Int(i)) => Some(*i),
            _ => None,
        }
    };
    let free: Vec<bool> = alt
        .candidates
        .iter()
        .map(|c| state.blocked(index, alloc.at(c.at).1, c.at, &c.consumed).is_none())
        .collect();
    let need = match alt.sub.mode {
        AllocationMode::ExactCount(n) => n as usize,
        AllocationMode::All => 0,
    };
    let mut free_in_island: BTreeMap<(usize, Option<i64>), usize> = BTreeMap::new();
    for (c, _) in alt.candidates.iter().zip(&free).filter(|(_, f)| **f) {
        *free_in_island.entry((c.at.0, island(c))).or_insert(0) += 1;
    }
    let best = if need >= 2 {
        best_by_topology(alloc, alt, need, &free)
    } else {
        BTreeSet::new()
    };
    let mut keyed: Vec<_> = alt
        .candidates
        .drain(..)
        .map(|c| {
            let d = alloc.at(c.at).1;
            let group = free_in_island.get(&(c.at.0, island(&c))).copied().unwrap_or(0);
            let key = (
                !state.set_in_use(index, c.at),
                group < need,
                !best.contains(&c.at),
                group,
                island(&c),
                Reverse(addable_after(alloc, index, state, &c)),
                state.memory_left(d, c.at),
                c.at,
            );
            (key, c)
        })
        .collect();
    keyed.sort_by_key(|k| k.0);
    alt.candidates = keyed.into_iter().map(|(_, c)| c).collect();
}

/// Per pool with a known topology: the `need` free whole GPUs it ranks best.
fn best_by_topology(
    alloc: &Allocator<'_>,
    alt: &Alternative<'_>,
    need: usize,
    free: &[bool],
) -> BTreeSet<(usize, usize)> {
    let mut gpus: BTreeMap<usize, BTreeMap<u32, (usize, usize)>> = BTreeMap::new();
    for (c, _) in alt.candidates.iter().zip(free).filter(|(_, f)| **f) {
        let (pool, d) = alloc.at(c.at);
        if let Some(&gpu) = alloc.topologies.get(&pool.name).and_then(|t| t.gpus.get(&d.name)) {
            gpus.entry(c.at.0).or_default().insert(gpu, c.at);
        }
    }
    let mut best = BTreeSet::new();
    for (pi, by_gpu) in gpus {
        let Some(t) = alloc.topologies.get(&alloc.pools[pi].name) else {
            continue;
        };
        let free: BTreeSet<u32> = by_gpu.keys().copied().collect();
        if free.len() < need {
            continue;
        }
        if let Ok(chosen) = t.topology.best_gpus(need, &free, &Constraints::default()) {
            best.extend(chosen.iter().filter_map(|g| by_gpu.get(g)));
        }
    }
    best
}

/// Other devices of `c`'s counter set still bookable once `c` is: books
/// `c` into `state`, counts, and releases it again.
fn addable_after(alloc: &Allocator<'_>, index: &Index<'_>, state: &mut State, c: &Candidate) -> usize {
    let d = alloc.at(c.at).1;
    if d.consumes_counters.is_empty() {
        return 0;
    }
    let empty = BTreeMap::new();
    state.apply(index, d, c.at, &empty, None, 1);
    let n = index
        .set_members(c.at)
        .filter(|&o| {
            let at = (c.at.0, o);
            state.blocked(index, alloc.at(at).1, at, &empty).is_none()
        })
        .count();
    state.apply(index, d, c.at, &empty, None, -1);
    n
}
