//! Following what kubelet actually gave. The device plugin picks the
//! devices (kubelet's GetPreferredAllocation sees no pod), so a pod may get
//! other GPUs than the extender decided. It writes them back on the pod
//! (`railyard.dev/allocated-gpus`), and the view moves the pod there.
//!
//! - **Reconcile.** A valid write-back moves the pod's booking to kubelet's
//!   GPUs. Other pods booked there (their own decisions were not followed
//!   either) are displaced: re-placed first-free (preferring the GPUs the
//!   moved pod left) and marked [`Placement::Unknown`] until their own
//!   write-back arrives. A gang hold on those GPUs moves to other free GPUs
//!   of the node, or the reservation is released and re-planned. Totals
//!   (`whole_used`, `shared_used`) never change: only positions move.
//! - **Validity.** Indices the node has (none MIG-partitioned), exactly the
//!   pod's whole-GPU count, or 1 to the pod's replicas for a shared ask. A
//!   shared pod whose replicas were spread over several GPUs (NVIDIA's
//!   `distributed` policy) is booked on one of them, whole: the decided GPU
//!   if it is among them, else the lowest; the view's model keeps a shared
//!   pod on one GPU.
//! - **Bounded wait.** A pod seen bound with a decision waits
//!   `writeback_timeout_ms` for its write-back; on a node that has written
//!   back before, it then turns [`Placement::Unknown`]: still counted where
//!   it was booked, but its node scores lowest for whole and shared asks
//!   (`Hot::uncertain`) until the write-back arrives. Nodes that never wrote
//!   back (NVIDIA's plugin) are not affected.

use super::ask::GpuAsk;
use super::view::{ClusterView, PodRecord};
use crate::packing::MILLI;

/// How far a pod's booked positions are known to match kubelet's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Assumed, or bound without a decision: no write-back awaited.
    Fresh,
    /// Bound with a decision; its write-back is awaited until this unix ms.
    Awaiting(u64),
    /// The wait ended on a node not known to write back: as decided.
    Decided,
    /// From the pod's write-back.
    Actual,
    /// Not trusted: the write-back is overdue on a node that writes back,
    /// or another pod's write-back took its GPUs. Counted in the node's
    /// totals, booked where it was or first-free.
    Unknown,
}

/// Which kind of device a write-back was for (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBackKind {
    /// Whole GPUs.
    Whole,
    /// Time-sliced or MPS replicas (on one GPU in the view).
    Shared,
}

impl WriteBackKind {
    pub fn label(self) -> &'static str {
        match self {
            WriteBackKind::Whole => "whole",
            WriteBackKind::Shared => "shared",
        }
    }
}

/// What one pod observation's write-back did to the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBack {
    /// None carried, or the view already had it.
    Unchanged,
    /// The pod is now booked on kubelet's GPUs. `drift`: they differ from
    /// the decision recorded on the pod; `displaced`: other pods whose
    /// booked GPUs they were.
    Applied {
        kind: WriteBackKind,
        drift: bool,
        displaced: u32,
    },
    /// Not valid for the pod's node or ask: ignored.
    Invalid,
}

/// Pods and nodes by write-back state, for gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteBackCounts {
    /// Pods whose positions are unknown.
    pub unknown_pods: u64,
    /// Nodes with at least one such pod (scored lowest for GPU asks).
    pub unknown_nodes: u64,
    /// Nodes known to write back.
    pub writeback_nodes: u64,
}

fn same_set(a: &[u32], b: &[u32]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    a.dedup();
    b.sort_unstable();
    b.dedup();
    a == b
}

/// The one GPU a shared pod is booked on: the decided one if kubelet's
/// replicas include it, else the lowest index.
fn shared_gpu(decided: Option<&[u32]>, allocated: &[u32]) -> Option<u32> {
    match decided {
        Some([d]) if allocated.contains(d) => Some(*d),
        _ => allocated.iter().copied().min(),
    }
}

impl ClusterView {
    /// After a pod observation: its write-back, if any, and its wait.
    pub(crate) fn after_observe(
        &mut self,
        uid: &str,
        decided: Option<&[u32]>,
        allocated: Option<&[u32]>,
        now_ms: u64,
    ) -> WriteBack {
        let out = allocated.map_or(WriteBack::Unchanged, |a| self.reconcile(uid, decided, a));
        // Only a pod still `Fresh` starts waiting (an invalid write-back
        // counts as none).
        self.await_writeback(uid, decided.is_some(), now_ms);
        out
    }

    fn await_writeback(&mut self, uid: &str, decided: bool, now_ms: u64) {
        let timeout = self.cfg.writeback_timeout_ms;
        let Some(r) = self.pods.get_mut(uid) else { return };
        let positional = matches!(r.ask.gpu, GpuAsk::Whole(_) | GpuAsk::Shared(_));
        if timeout == 0 || !decided || !positional || r.placement != Placement::Fresh {
            return;
        }
        let deadline = now_ms.saturating_add(timeout);
        r.placement = Placement::Awaiting(deadline);
        self.awaiting.insert((deadline, uid.to_string()));
    }

    /// Moves pod `uid` to the GPUs kubelet gave (`allocated`, GPU indices).
    fn reconcile(&mut self, uid: &str, decided: Option<&[u32]>, allocated: &[u32]) -> WriteBack {
        let Some(r) = self.pods.get(uid) else {
            return WriteBack::Unchanged;
        };
        let drift = decided.is_some_and(|d| !same_set(d, allocated));
        let Some(i) = self.by_name.get(&r.node).copied().filter(|_| r.applied) else {
            return self.reconcile_later(uid, decided, allocated, drift);
        };
        let n = &self.nodes[i];
        let Some(m) = n
            .positions(allocated)
            .filter(|m| m.count_ones() as usize == allocated.len())
        else {
            return WriteBack::Invalid;
        };
        if m == 0 || m & n.mig_gpus != 0 {
            return WriteBack::Invalid;
        }
        let (target, milli, kind) = match n.effective(&r.ask).gpu {
            GpuAsk::Whole(k) if m.count_ones() == k => (m, MILLI, WriteBackKind::Whole),
            GpuAsk::Shared(rep) if m.count_ones() <= rep => {
                let one = shared_gpu(decided, allocated).and_then(|g| n.positions(&[g]));
                let Some(one) = one else { return WriteBack::Invalid };
                (one, n.share_milli(rep).unwrap_or(MILLI), WriteBackKind::Shared)
            }
            _ => return WriteBack::Invalid,
        };
        if r.placement == Placement::Actual && r.mask == target && r.milli == milli {
            return WriteBack::Unchanged;
        }
        let Some(mut r) = self.pods.remove(uid) else {
            return WriteBack::Unchanged;
        };
        self.forget_placement(Some(i), uid, &r);
        let old = r.mask;
        self.nodes[i].give_back(&r.ask, r.mask, r.milli);
        let holds = self.unhold_on(i, target);
        let displaced = self.clear_for(i, uid, target, milli);
        let n = &mut self.nodes[i];
        n.take(&r.ask, target, milli);
        n.writes_back = true;
        r.mask = target;
        r.milli = milli;
        r.placement = Placement::Actual;
        self.pods.insert(uid.to_string(), r);
        let avoid = displaced.iter().fold(0, |a, (_, m)| a | m);
        for (gang, slot, mask) in holds {
            self.rehold(i, &gang, slot, mask & !target, mask.count_ones(), old, avoid);
        }
        for (d, was) in &displaced {
            self.replace(i, d, *was, old);
        }
        self.refresh_frag(i);
        self.generation += 1;
        WriteBack::Applied {
            kind,
            drift,
            displaced: displaced.len() as u32,
        }
    }

    /// A write-back for a pod whose node is not in the view (yet): kept as
    /// its positions, checked against the node when it comes.
    fn reconcile_later(&mut self, uid: &str, decided: Option<&[u32]>, allocated: &[u32], drift: bool) -> WriteBack {
        let Some(r) = self.pods.get_mut(uid) else {
            return WriteBack::Unchanged;
        };
        let (gpus, kind) = match r.ask.gpu {
            GpuAsk::Whole(_) => {
                let mut g = allocated.to_vec();
                g.sort_unstable();
                (g, WriteBackKind::Whole)
            }
            GpuAsk::Shared(_) => (
                shared_gpu(decided, allocated).into_iter().collect(),
                WriteBackKind::Shared,
            ),
            _ => return WriteBack::Invalid,
        };
        if r.placement == Placement::Actual && r.hint.as_ref() == Some(&gpus) {
            return WriteBack::Unchanged;
        }
        if let Placement::Awaiting(d) = r.placement {
            self.awaiting.remove(&(d, uid.to_string()));
        }
        r.hint = Some(gpus);
        r.placement = Placement::Actual;
        WriteBack::Applied {
            kind,
            drift,
            displaced: 0,
        }
    }

    /// Releases the gang holds on node `i` that overlap `target`: (gang,
    /// slot, the hold's positions).
    fn unhold_on(&mut self, i: usize, target: u64) -> Vec<(String, usize, u64)> {
        let n = &self.nodes[i];
        if n.reserved & target == 0 {
            return Vec::new();
        }
        let mut hit = Vec::new();
        for (g, res) in &self.gangs {
            for (s, slot) in res.plan.slots.iter().enumerate() {
                if let Some(m) = n.positions(&slot.gpus)
                    && res.held[s]
                    && slot.node == n.input.name
                    && m & target != 0
                {
                    hit.push((g.clone(), s, m));
                }
            }
        }
        let name = n.input.name.clone();
        for (g, s, m) in &hit {
            let gpus = self.nodes[i].indices(*m);
            self.unhold(&name, &gpus);
            if let Some(res) = self.gangs.get_mut(g) {
                res.held[*s] = false;
            }
        }
        hit
    }

    /// Holds `k` GPUs for a gang slot whose hold another pod's write-back
    /// broke: its positions in `keep`, then free ones (those `prefer` left
    /// first, those in `avoid` last). The slot's GPUs in the plan follow; a
    /// slot that cannot be held releases the reservation (re-planned by
    /// the next member's filter).
    #[allow(clippy::too_many_arguments)]
    fn rehold(&mut self, i: usize, gang: &str, slot: usize, keep: u64, k: u32, prefer: u64, avoid: u64) {
        if !self.gangs.contains_key(gang) {
            return;
        }
        let n = &self.nodes[i];
        let free = n.free_mask();
        let mut mask = keep & free;
        for pool in [free & prefer, free & !avoid, free] {
            let need = k.saturating_sub(mask.count_ones());
            mask |= super::view::first_bits(pool & !mask, need);
        }
        let (name, gpus) = (n.input.name.clone(), n.indices(mask));
        if mask.count_ones() == k && self.hold(&name, &gpus) {
            if let Some(res) = self.gangs.get_mut(gang)
                && let Some(s) = res.plan.slots.get_mut(slot)
            {
                s.gpus = gpus;
                res.held[slot] = true;
            }
            return;
        }
        self.release_reservation(gang);
    }

    /// Unbooks the other pods on node `i` that stand where a pod of `milli`
    /// per GPU is to go (`target`): guesses before write-backs, by UID,
    /// until it fits. Returns them with their old positions.
    fn clear_for(&mut self, i: usize, uid: &str, target: u64, milli: u16) -> Vec<(String, u64)> {
        let mut cands: Vec<(bool, String)> = self.nodes[i]
            .pods
            .iter()
            .filter(|u| u.as_str() != uid)
            .filter_map(|u| {
                let d = self.pods.get(u)?;
                (d.applied && d.mask & target != 0).then(|| (d.placement == Placement::Actual, u.clone()))
            })
            .collect();
        cands.sort_unstable();
        let mut out = Vec::new();
        for (_, u) in cands {
            let n = &self.nodes[i];
            let fits = (0..n.left.len()).all(|p| target & (1 << p) == 0 || n.left[p] >= milli);
            if fits {
                break;
            }
            let Some(d) = self.pods.get_mut(&u) else { continue };
            let n = &mut self.nodes[i];
            n.give_back(&d.ask, d.mask, d.milli);
            n.unknown -= u32::from(d.placement == Placement::Unknown);
            if let Placement::Awaiting(dl) = d.placement {
                self.awaiting.remove(&(dl, u.clone()));
            }
            d.applied = false;
            out.push((u, d.mask));
        }
        out
    }

    /// Books a displaced pod again, as unknown: its old positions still
    /// free, then those the moved pod left (`vacated`: likely a swap), then
    /// first-free ([`ClusterView::apply_record`] checks and falls back).
    fn replace(&mut self, i: usize, uid: &str, was: u64, vacated: u64) {
        let Some(d) = self.pods.get_mut(uid) else { return };
        let n = &self.nodes[i];
        let free = n.free_mask();
        let guess = match n.effective(&d.ask).gpu {
            GpuAsk::Whole(k) => {
                let mut m = super::view::first_bits(was & free, k);
                for pool in [free & vacated, free] {
                    let need = k.saturating_sub(m.count_ones());
                    m |= super::view::first_bits(pool & !m, need);
                }
                m
            }
            GpuAsk::Shared(_) => {
                let usable = !n.reserved & !n.mig_gpus;
                let fits =
                    |m: u64| m.count_ones() == 1 && m & usable != 0 && n.left[m.trailing_zeros() as usize] >= d.milli;
                [was, vacated].into_iter().find(|&m| fits(m)).unwrap_or(0)
            }
            _ => 0,
        };
        d.hint = Some(n.indices(guess));
        d.placement = Placement::Unknown;
        self.apply_record(uid, i);
    }

    /// A pod record leaves the view (or node `i`'s books): its deadline and
    /// its share of the node's unknown count go with it.
    pub(crate) fn forget_placement(&mut self, i: Option<usize>, uid: &str, r: &PodRecord) {
        if let Placement::Awaiting(d) = r.placement {
            self.awaiting.remove(&(d, uid.to_string()));
        }
        if let Some(i) = i
            && r.applied
            && r.placement == Placement::Unknown
        {
            self.nodes[i].unknown = self.nodes[i].unknown.saturating_sub(1);
        }
    }

    /// Ends the waits due by `now_ms`: unknown on nodes that write back,
    /// as decided elsewhere.
    pub(crate) fn expire_writebacks(&mut self, now_ms: u64) {
        while self.awaiting.first().is_some_and(|(d, _)| *d <= now_ms) {
            let Some((d, uid)) = self.awaiting.pop_first() else {
                break;
            };
            let Some(r) = self.pods.get_mut(&uid) else { continue };
            if r.placement != Placement::Awaiting(d) {
                continue;
            }
            let on = self
                .by_name
                .get(&r.node)
                .copied()
                .filter(|&i| r.applied && self.nodes[i].writes_back);
            let Some(i) = on else {
                r.placement = Placement::Decided;
                continue;
            };
            r.placement = Placement::Unknown;
            self.nodes[i].unknown += 1;
            self.refresh_frag(i);
            self.generation += 1;
        }
    }

    /// A pod's placement state.
    pub fn placement(&self, uid: &str) -> Option<Placement> {
        self.pods.get(uid).map(|r| r.placement)
    }

    /// Pods and nodes by write-back state.
    pub fn writeback_counts(&self) -> WriteBackCounts {
        let mut c = WriteBackCounts::default();
        for n in &self.nodes {
            c.unknown_pods += u64::from(n.unknown);
            c.unknown_nodes += u64::from(n.unknown > 0);
            c.writeback_nodes += u64::from(n.writes_back);
        }
        c
    }

    /// Checks the books (tests): each node's milli left, holds and counts
    /// agree with the pods booked on it, and no GPU is booked twice.
    #[cfg(test)]
    pub(crate) fn assert_books(&self) {
        use super::hot::Hot;
        for (i, n) in self.nodes.iter().enumerate() {
            let name = &n.input.name;
            let mut taken = vec![0i64; n.left.len()];
            let (mut whole, mut unknown) = (0u32, 0u32);
            for (uid, r) in self.pods.iter().filter(|(_, r)| r.node == *name && r.applied) {
                assert!(n.pods.contains(uid), "{name}: {uid} booked but not listed");
                for (p, t) in taken.iter_mut().enumerate() {
                    if r.mask & (1 << p) != 0 {
                        *t += i64::from(r.milli);
                    }
                }
                if let GpuAsk::Whole(k) = r.ask.gpu
                    && !n.gpu_replicated
                {
                    whole += k;
                }
                unknown += u32::from(r.placement == Placement::Unknown);
            }
            let mut held = 0u64;
            for res in self.gangs.values() {
                for (s, slot) in res.plan.slots.iter().enumerate() {
                    if res.held[s] && slot.node == *name {
                        held |= n.positions(&slot.gpus).unwrap_or(0);
                    }
                }
            }
            for (p, &t) in taken.iter().enumerate() {
                let cap = if n.mig_gpus & (1 << p) != 0 {
                    0
                } else {
                    i64::from(MILLI)
                };
                assert_eq!(i64::from(n.left[p]), cap - t, "{name}: GPU position {p} booked {t}");
                assert!(held & (1 << p) == 0 || t == 0, "{name}: held GPU position {p} booked");
            }
            assert_eq!(n.reserved, held, "{name}: holds");
            assert_eq!(n.whole_used, whole + held.count_ones(), "{name}: whole GPUs used");
            assert_eq!(n.unknown, unknown, "{name}: unknown pods");
            assert_eq!(self.hot[i], Hot::of(n), "{name}: hot record");
        }
        for (d, uid) in &self.awaiting {
            assert_eq!(
                self.placement(uid),
                Some(Placement::Awaiting(*d)),
                "{uid}: stale deadline"
            );
        }
    }
}
