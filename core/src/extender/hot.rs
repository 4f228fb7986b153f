//! The few facts per node that the filter's feasibility check and the score
//! memo read, packed into one small record per node and kept in a dense
//! array beside the nodes. A filter over thousands of nodes then scans
//! cache-resident memory instead of each node's heap-allocated state.
//!
//! The record is derived ([`Hot::of`]) and refreshed after every change to a
//! node (`ClusterView::refresh_frag`); debug builds re-derive it on every
//! filter and compare, so a stale record fails the tests.

use super::ask::{GpuAsk, PodAsk};
use super::names::hash;
use super::view::{NodeState, Verdict};
use crate::packing::MILLI;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Hot {
    /// Positions with a whole GPU free (not reserved, not MIG).
    pub free: u64,
    /// Fingerprint of everything the packing score reads from the node.
    pub state: u64,
    /// Whole GPUs the node advertises and has not handed out.
    pub whole_left: u32,
    /// Whole GPUs the pod could ever get here (advertised, not MIG).
    pub whole_usable: u32,
    /// Replicas not handed out: `nvidia.com/gpu.shared`, or `nvidia.com/gpu`
    /// where that counts replicas (`gpu_replicated`).
    pub shared_left: u32,
    pub replicas_per_gpu: u32,
    /// `nvidia.com/gpu` counts time-slicing/MPS replicas, not GPUs.
    pub gpu_replicated: bool,
    /// Most milli left on one GPU a shared pod may use.
    pub max_share: u16,
    /// Most non-MIG GPUs on one NUMA node.
    pub numa_capacity: u16,
    pub unschedulable: bool,
    /// More GPUs than the view tracks: every GPU ask is refused.
    pub too_many_gpus: bool,
    /// MIG resources (the view's bits) the node offers at all, and those
    /// with at least one device free.
    pub mig_offered: u64,
    pub mig_free: u64,
    /// A pod's positions here are unknown (its write-back is overdue, or
    /// another's took its GPUs): scored lowest for whole and shared asks.
    pub uncertain: bool,
}

impl Hot {
    pub fn of(n: &NodeState) -> Hot {
        let usable = !n.reserved & !n.mig_gpus;
        let max_share = n
            .left
            .iter()
            .enumerate()
            .filter(|&(p, _)| usable & (1 << p) != 0)
            .map(|(_, &l)| l)
            .max()
            .unwrap_or(0);
        let (mut mig_offered, mut mig_free) = (0, 0);
        for (bit, resource, alloc) in &n.mig_offer {
            if *alloc > 0 {
                mig_offered |= bit;
            }
            if *alloc > n.mig_used.get(resource).copied().unwrap_or(0) {
                mig_free |= bit;
            }
        }
        Hot {
            mig_offered,
            mig_free,
            free: n.free_mask(),
            state: fingerprint(n),
            whole_left: n.whole_alloc.saturating_sub(n.whole_used),
            whole_usable: n.whole_alloc.min(n.ids.len() as u32 - n.mig_gpus.count_ones()),
            shared_left: n.shared_alloc.saturating_sub(n.shared_used),
            replicas_per_gpu: n.replicas_per_gpu,
            gpu_replicated: n.gpu_replicated,
            max_share,
            numa_capacity: u16::try_from(n.single_numa_capacity()).unwrap_or(u16::MAX),
            unschedulable: n.input.unschedulable,
            too_many_gpus: n.too_many_gpus,
            uncertain: n.unknown > 0,
        }
    }
}

/// Milli of one GPU that `replicas` of `per_gpu` take, if one GPU has them.
/// Rounded down, so that `per_gpu` single replicas always fit on one GPU
/// (rounding up, 3 replicas of 334 would overflow a GPU and lose one).
pub(crate) fn share_milli(per_gpu: u32, replicas: u32) -> Option<u16> {
    if per_gpu == 0 || replicas > per_gpu {
        return None;
    }
    let m = u64::from(replicas) * u64::from(MILLI) / u64::from(per_gpu);
    Some((m as u16).max(1))
}

/// Why `ask` cannot go on the node now, and whether it never could; `None`
/// when it fits. `node` is consulted only for what the record does not hold
/// (per-NUMA free GPUs, MIG asks for several devices or for a resource
/// without a bit). `mig_bit`: the view's bit for a MIG ask's resource.
pub(crate) fn verdict<'a>(
    h: &Hot,
    ask: &PodAsk,
    mig_bit: Option<u64>,
    node: impl FnOnce() -> &'a NodeState,
) -> Option<Verdict> {
    if h.unschedulable {
        return Some(Verdict::Never("node is unschedulable"));
    }
    if h.too_many_gpus && !matches!(ask.gpu, GpuAsk::None) {
        return Some(Verdict::Never(super::view::TOO_MANY_GPUS));
    }
    match &ask.gpu {
        GpuAsk::None => None,
        // Time-sliced without renaming: the device plugin hands out
        // replicas under `nvidia.com/gpu`, never a whole GPU.
        GpuAsk::Whole(k) if h.gpu_replicated => replicas(
            h,
            *k,
            "nvidia.com/gpu is time-sliced on this node (replicas, not whole GPUs) and one GPU has fewer replicas \
             than the pod asks for",
        ),
        GpuAsk::Whole(k) => {
            let k = *k;
            if h.whole_usable < k {
                return Some(Verdict::Never("node has fewer GPUs than the pod asks for"));
            }
            if ask.single_numa && u32::from(h.numa_capacity) < k {
                return Some(Verdict::Never("no NUMA node of this node has that many GPUs"));
            }
            if h.free.count_ones() < k || h.whole_left < k {
                return Some(Verdict::Wait("not enough free whole GPUs"));
            }
            if ask.single_numa && !node().numa_fits(h.free, k) {
                return Some(Verdict::Wait("no single NUMA node has enough free GPUs"));
            }
            None
        }
        GpuAsk::Shared(_) if h.gpu_replicated => Some(Verdict::Never("node advertises no nvidia.com/gpu.shared")),
        GpuAsk::Shared(r) => replicas(h, *r, "more replicas than one GPU has"),
        GpuAsk::Mig { resource, count } => {
            if let Some(bit) = mig_bit
                && *count == 1
            {
                return if h.mig_offered & bit == 0 {
                    Some(Verdict::Never("node does not offer that MIG profile"))
                } else if h.mig_free & bit == 0 {
                    Some(Verdict::Wait("no free MIG device of that profile"))
                } else {
                    None
                };
            }
            let n = node();
            let total = n.mig_alloc(resource);
            if total < *count {
                return Some(Verdict::Never("node does not offer that MIG profile"));
            }
            let used = n.mig_used.get(resource).copied().unwrap_or(0);
            if total - used.min(total) < *count {
                return Some(Verdict::Wait("no free MIG device of that profile"));
            }
            None
        }
    }
}

/// `r` replicas, all on one GPU: enough replicas left on the node and one
/// GPU with their share free.
fn replicas(h: &Hot, r: u32, too_many: &'static str) -> Option<Verdict> {
    let Some(milli) = share_milli(h.replicas_per_gpu, r) else {
        return Some(if h.replicas_per_gpu == 0 {
            Verdict::Never("node advertises no nvidia.com/gpu.shared")
        } else {
            Verdict::Never(too_many)
        });
    };
    if h.shared_left < r {
        return Some(Verdict::Wait("not enough free GPU replicas"));
    }
    if h.max_share < milli {
        return Some(Verdict::Wait("no single GPU has enough free share"));
    }
    None
}

/// Everything `Scorer::packing` reads from a node, hashed: nodes in the same
/// state score the same, so the memo computes once per state. (A 64-bit
/// collision between two live states, about 1 in 10^9 at 100,000 states,
/// would only swap two scores, never a feasibility answer.)
fn fingerprint(n: &NodeState) -> u64 {
    let mut words: Vec<u8> = Vec::with_capacity(48 + 2 * n.left.len());
    for v in [
        n.input.cpu_milli,
        n.input.memory_mib,
        n.input.cpu_milli.saturating_sub(n.cpu_used),
        n.input.memory_mib.saturating_sub(n.mem_used),
        u64::from(n.replicas_per_gpu),
        u64::from(n.pods.is_empty()),
        n.model.map_or(u64::MAX, |m| u64::from(m.0)),
    ] {
        words.extend_from_slice(&v.to_le_bytes());
    }
    let held = n.reserved | n.mig_gpus;
    for (p, &l) in n.left.iter().enumerate() {
        let l = if held & (1 << p) != 0 { 0 } else { l };
        words.extend_from_slice(&l.to_le_bytes());
    }
    hash(&words)
}
