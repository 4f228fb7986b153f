//! Choosing nodes inside one scope: down the switch tree, the fewest
//! children at every level (largest first), the last child best-fit, and a
//! fragmented child before a clean one of the same size. Kueue's TAS
//! "BestFit" does the same over its levels; here it is one step of the
//! planner, whose candidates the cost model then ranks.

use std::cmp::Reverse;

use super::cluster::{FreeState, GangCluster};
use crate::fabric::MachineLookup;

struct Child {
    nodes: Vec<usize>,
    cap: u32,
    clean: bool,
    free: u32,
    first: usize,
}

/// Members per node for `need` members over `nodes`, where node n holds at
/// most `cap(n)`; children at `child_tier` (nodes when `None`). In tree
/// order: nodes of one group are consecutive. `None` when they do not fit.
pub(crate) fn select<M: MachineLookup + ?Sized>(
    c: &GangCluster<'_, M>,
    free: &FreeState,
    nodes: &[usize],
    child_tier: Option<usize>,
    need: u32,
    cap: &dyn Fn(usize) -> u32,
) -> Option<Vec<(usize, u32)>> {
    let mut children: Vec<Child> = Vec::new();
    match child_tier {
        Some(t) => {
            // Group ids are dense per tier; keep first-seen order.
            let mut slot: Vec<(u32, usize)> = Vec::new();
            for &n in nodes {
                let g = c.group_of[t][n];
                let i = match slot.iter().find(|(id, _)| *id == g) {
                    Some(&(_, i)) => i,
                    None => {
                        slot.push((g, children.len()));
                        children.push(Child {
                            nodes: Vec::new(),
                            cap: 0,
                            clean: true,
                            free: 0,
                            first: n,
                        });
                        children.len() - 1
                    }
                };
                let ch = &mut children[i];
                ch.nodes.push(n);
                ch.cap += cap(n);
                ch.clean &= free.is_clean(c, n);
                ch.free += free.free_count(n);
            }
        }
        None => {
            for &n in nodes {
                children.push(Child {
                    nodes: vec![n],
                    cap: cap(n),
                    clean: free.is_clean(c, n),
                    free: free.free_count(n),
                    first: n,
                });
            }
        }
    }
    children.retain(|ch| ch.cap > 0);
    if children.iter().map(|ch| u64::from(ch.cap)).sum::<u64>() < u64::from(need) {
        return None;
    }
    children.sort_by_key(|ch| (Reverse(ch.cap), ch.clean, ch.first));
    let mut chosen: Vec<(usize, u32)> = Vec::new();
    let mut remaining = need;
    let mut i = 0;
    while remaining > 0 && i < children.len() {
        if children[i].cap >= remaining {
            // The tail goes to the tightest child that holds it.
            let best = (i..children.len())
                .filter(|&j| children[j].cap >= remaining)
                .min_by_key(|&j| (children[j].cap, children[j].clean, children[j].free, children[j].first))?;
            chosen.push((best, remaining));
            remaining = 0;
        } else {
            chosen.push((i, children[i].cap));
            remaining -= children[i].cap;
            i += 1;
        }
    }
    if remaining > 0 {
        return None;
    }
    // Keep groups in tree order so consecutive ranks stay close.
    chosen.sort_by_key(|&(j, _)| children[j].first);
    let mut out = Vec::new();
    for (j, m) in chosen {
        let ch = &children[j];
        match child_tier {
            Some(t) => out.extend(select(c, free, &ch.nodes, t.checked_sub(1), m, cap)?),
            None => out.push((ch.nodes[0], m)),
        }
    }
    Some(out)
}
