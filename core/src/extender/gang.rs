//! Gangs in the extender: the first member to be filtered plans the whole
//! gang with [`crate::gang`] and reserves every member's node and GPUs;
//! later members are matched to a slot and filtered to its node. A plan is
//! recorded on each bound member (see `PlanRecord`), so an extender that
//! restarts rebuilds the reservation from the API.
//!
//! A reservation that expires releases only what no pod filled. The next
//! member's filter re-plans the gang around the members already placed
//! (bound or assumed): they keep their nodes, GPUs and slots, the planner
//! places only the missing ones near them, and the new plan lists every slot,
//! so the members bound under the new plan carry the whole gang in their
//! annotations. A member that claimed a slot but binds only after the
//! reservation expired keeps its gang and slot (a lapsed claim), so the
//! re-plan counts it instead of planning a slot for it again.
//!
//! Nodes whose `nvidia.com/gpu` counts time-sliced replicas are left out of
//! the planner's fabric: they have no whole GPUs for members.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ask::{GPU_PRODUCT_LABEL, GpuAsk, PodAsk};
use super::products::GpuProducts;
use super::view::{ClusterView, PodRecord, PodState, first_bits};
use super::writeback::Placement;
use crate::fabric::{Fabric, LabelOptions};
use crate::gang::{Decision, FreeState, Gang, GangCluster, GangError, Level, MemberPlacement};
use crate::packing::MILLI;

/// A gang as the API describes it (PodGroup `minMember`, Workload gang
/// `minCount`), with the members' GPU size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GangSpec {
    /// `<namespace>/<name>`.
    pub id: String,
    pub min_members: u32,
    pub gpus_per_member: u32,
    /// Topology level names (`leaf`, `nvlink`, `tier-1`, …) the gang must or
    /// should stay within.
    pub required: Option<String>,
    pub preferred: Option<String>,
    /// The members' `spec.nodeSelector`, and the GPU products their node
    /// selector and affinity allow. kube-scheduler keeps a member off every
    /// other node, so a plan with a slot there would never fill.
    pub node_selector: BTreeMap<String, String>,
    pub products: GpuProducts,
}

impl GangSpec {
    /// Whether kube-scheduler would let a member onto a node with `labels`.
    pub fn admits(&self, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.products.allows(labels.get(GPU_PRODUCT_LABEL).map(String::as_str))
    }
}

/// One member's planned place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRecord {
    pub node: String,
    pub gpus: Vec<u32>,
}

/// A gang plan as recorded in pod annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub gang: String,
    /// Unix ms after which unfilled slots are released and re-planned.
    pub expires_ms: u64,
    /// In rank order.
    pub slots: Vec<SlotRecord>,
}

/// A live reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub plan: PlanRecord,
    /// Pod UID that claimed each slot.
    pub claimed: Vec<Option<String>>,
    /// Slot whose GPUs the reservation holds (not yet a pod's).
    pub held: Vec<bool>,
}

/// What the filter does with a gang member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GangFilter {
    /// Only this node.
    Slot { node: String, slot: usize },
    /// The gang does not fit now; every member waits.
    Wait(String),
    /// The gang can never fit.
    Never(String),
    /// Every slot is taken (a member beyond `minMember`): schedule as a
    /// plain pod.
    Plain,
}

/// A gang member's claim on a slot that was released before the member
/// bound (see `ClusterView::assume`).
#[derive(Debug, Clone)]
pub(crate) struct Lapsed {
    pub gang: String,
    pub slot: usize,
    /// The released plan (shared by its members' entries).
    pub plan: Arc<PlanRecord>,
}

/// Lapsed claims are kept this long after their plan expired (at least the
/// reservation TTL): a bind follows its filter within seconds.
const LAPSED_KEEP_MS: u64 = 600_000;
/// At most this many lapsed claims (pods deleted while pending whose
/// deletion was missed would otherwise accumulate).
const LAPSED_MAX: usize = 100_000;

/// A member of a gang that is placed (assumed or bound).
#[derive(Debug)]
struct PlacedMember {
    uid: String,
    slot: usize,
    node: String,
    gpus: Vec<u32>,
}

/// Label injected into the planner's copy of node labels.
const MACHINE_LABEL: &str = "railyard.dev/machine";

impl ClusterView {
    /// The reservation of a gang, if any.
    pub fn reservation(&self, gang: &str) -> Option<&Reservation> {
        self.gangs.get(gang)
    }

    pub fn reservations(&self) -> impl Iterator<Item = (&String, &Reservation)> {
        self.gangs.iter()
    }

    /// Members of `gang` placed now (assumed or bound).
    pub fn gang_members_placed(&self, gang: &str) -> u32 {
        self.pods
            .values()
            .filter(|r| r.gang.as_ref().is_some_and(|(g, _)| g == gang))
            .count() as u32
    }

    pub(crate) fn claimed_slot(&self, uid: &str) -> Option<(String, usize)> {
        self.gangs.iter().find_map(|(g, r)| {
            r.claimed
                .iter()
                .position(|c| c.as_deref() == Some(uid))
                .map(|s| (g.clone(), s))
        })
    }

    /// Decides for one member of `spec`: its slot (planning and reserving
    /// the whole gang if there is no reservation yet), or why all wait.
    /// `rank`: the member's preferred slot (its index in the job), if known.
    pub fn gang_filter(
        &mut self,
        spec: &GangSpec,
        uid: &str,
        rank: Option<u32>,
        now_ms: u64,
    ) -> Result<GangFilter, GangError> {
        self.expire(now_ms);
        if let Some(r) = self.pods.get(uid) {
            return Ok(GangFilter::Slot {
                node: r.node.clone(),
                slot: r.gang.as_ref().map_or(0, |(_, s)| *s),
            });
        }
        // Filtered again: it claims a slot of the current plan (or waits)
        // rather than binding into its released one.
        self.lapsed.remove(uid);
        if !self.gangs.contains_key(&spec.id) {
            let placed = self.placed_members(&spec.id);
            if placed.len() >= spec.min_members as usize {
                return Ok(GangFilter::Plain);
            }
            match self.plan_gang(spec, placed, now_ms)? {
                Ok(()) => {}
                Err(wait) => return Ok(wait),
            }
        }
        let Some(res) = self.gangs.get_mut(&spec.id) else {
            return Ok(GangFilter::Plain);
        };
        if let Some(s) = res.claimed.iter().position(|c| c.as_deref() == Some(uid)) {
            return Ok(GangFilter::Slot {
                node: res.plan.slots[s].node.clone(),
                slot: s,
            });
        }
        let free = |s: usize| res.claimed[s].is_none() && res.held[s];
        let slot = rank
            .map(|r| r as usize)
            .filter(|&r| r < res.claimed.len() && free(r))
            .or_else(|| (0..res.claimed.len()).find(|&s| free(s)));
        let Some(s) = slot else { return Ok(GangFilter::Plain) };
        res.claimed[s] = Some(uid.to_string());
        self.generation += 1;
        Ok(GangFilter::Slot {
            node: res.plan.slots[s].node.clone(),
            slot: s,
        })
    }

    /// The planner's fabric over nodes that publish a topology, rebuilt when
    /// labels or topologies change. Labels that do not form a valid fabric
    /// are dropped (every node then stands alone).
    fn fabric(&mut self) -> Arc<Fabric> {
        if let Some((g, f)) = &self.fabric
            && *g == self.fabric_generation
        {
            return f.clone();
        }
        let mut labels: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut bare: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for n in &self.nodes {
            let Some(m) = n.machine.and_then(|m| self.machines.name(m)) else {
                continue;
            };
            // Time-sliced `nvidia.com/gpu` has no whole GPUs for members;
            // a node of more GPUs than the view tracks takes none either.
            if n.gpu_replicated || n.too_many_gpus {
                continue;
            }
            let mut l = n.input.labels.clone();
            l.insert(MACHINE_LABEL.into(), m.to_string());
            bare.insert(
                n.input.name.clone(),
                BTreeMap::from([(MACHINE_LABEL.to_string(), m.to_string())]),
            );
            labels.insert(n.input.name.clone(), l);
        }
        let opts = LabelOptions {
            machine_label: Some(MACHINE_LABEL.into()),
            ..LabelOptions::default()
        };
        // A node whose own labels do not parse plans without topology; the
        // others keep theirs. Only when the labels fail as a whole does
        // every node go without.
        let f = match Fabric::from_labels_lenient(&labels, &opts) {
            Ok((f, skipped)) => {
                self.fabric_problems = skipped.into_iter().map(|(n, e)| (n, e.to_string())).collect();
                Ok(f)
            }
            Err(e) => {
                self.fabric_problems = vec![("*".to_string(), e.to_string())];
                Err(e)
            }
        };
        let f = f
            .or_else(|_| Fabric::from_labels(&bare, &opts))
            .or_else(|_| Fabric::from_labels(&BTreeMap::new(), &opts));
        let f = Arc::new(match f {
            Ok(f) => f,
            Err(_) => return Arc::new(empty_fabric()),
        });
        self.fabric = Some((self.fabric_generation, f.clone()));
        f
    }

    /// Nodes whose topology labels did not parse, with why (they are
    /// planned without topology); `*` when the labels failed as a whole.
    /// Brings the fabric up to date first.
    pub fn fabric_problems(&mut self) -> &[(String, String)] {
        self.fabric();
        &self.fabric_problems
    }

    /// Members of `gang` placed now (assumed or bound) with their slot,
    /// node and GPUs, by slot then UID.
    fn placed_members(&self, gang: &str) -> Vec<PlacedMember> {
        let mut out: Vec<PlacedMember> = self
            .pods
            .iter()
            .filter_map(|(uid, r)| {
                let (g, slot) = r.gang.as_ref()?;
                if g != gang {
                    return None;
                }
                let gpus = match (r.applied, self.by_name.get(&r.node)) {
                    (true, Some(&i)) => self.nodes[i].indices(r.mask),
                    _ => r.hint.clone().unwrap_or_default(),
                };
                Some(PlacedMember {
                    uid: uid.clone(),
                    slot: *slot,
                    node: r.node.clone(),
                    gpus,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.slot, &a.uid).cmp(&(b.slot, &b.uid)));
        out
    }

    /// Plans the members of `spec` not in `placed` around the placed ones and
    /// reserves them; the placed members keep their nodes and GPUs and
    /// their slots in the new plan. `Err(wait)` when it must wait.
    fn plan_gang(
        &mut self,
        spec: &GangSpec,
        placed: Vec<PlacedMember>,
        now_ms: u64,
    ) -> Result<Result<(), GangFilter>, GangError> {
        let fabric = self.fabric();
        let cluster = GangCluster::new(&fabric, &self.machines)?;
        if cluster.is_empty() {
            return Ok(Err(GangFilter::Never(
                "no node publishes its GPU topology (railyard.dev/gpu-topology); gangs need it".into(),
            )));
        }
        let mut free = FreeState::all_free(&cluster);
        for (ci, fnode) in fabric.nodes().iter().enumerate() {
            let Some(&i) = self.by_name.get(&fnode.name) else {
                continue;
            };
            let n = &self.nodes[i];
            let keep = if n.input.unschedulable || !spec.admits(&n.input.labels) {
                0
            } else {
                n.free_mask() & first_bits(n.free_mask(), n.whole_alloc.saturating_sub(n.whole_used))
            };
            let taken: Vec<u32> = n
                .ids
                .iter()
                .enumerate()
                .filter(|(p, _)| keep & (1 << p) == 0)
                .map(|(_, &g)| g)
                .collect();
            if !taken.is_empty() {
                free.take(&cluster, ci, &taken)?;
            }
        }
        // Placed members on nodes the planner knows stay where they are; one
        // on a node without a topology still holds its slot, but the planner
        // cannot place the others relative to it.
        let fixed: Vec<MemberPlacement> = placed
            .iter()
            .filter(|m| !m.gpus.is_empty())
            .filter_map(|m| {
                Some(MemberPlacement {
                    node_index: cluster.node_index(&m.node)?,
                    node: m.node.clone(),
                    gpus: m.gpus.clone(),
                })
            })
            .collect();
        let unknown = placed.len() - fixed.len();
        let total = spec.min_members as usize;
        let missing = total.saturating_sub(placed.len());
        let parse = |s: &Option<String>| s.as_deref().map(|l| Level::parse(&fabric, l)).transpose();
        let members = (total - unknown) as u32;
        let gang = Gang {
            members,
            gpus_per_member: spec.gpus_per_member,
            min_members: members,
            required: parse(&spec.required)?,
            preferred: parse(&spec.preferred)?,
        };
        let plan = match cluster.plan_around(&gang, &free, &fixed)? {
            Decision::Wait(w) => {
                let mut reason = format!("gang {} waits for {} members", spec.id, missing);
                if !placed.is_empty() {
                    reason += &format!(" beside the {} already placed", placed.len());
                }
                reason += &format!(": {}", w.reason);
                return Ok(Err(if w.fits_empty {
                    GangFilter::Wait(reason)
                } else if placed.is_empty() {
                    GangFilter::Never(format!("{reason}; it would not fit on an empty cluster either"))
                } else {
                    GangFilter::Never(format!(
                        "{reason}; it would not fit either with only its placed members' GPUs in use"
                    ))
                }));
            }
            Decision::Place(plan) => plan,
        };
        drop(cluster);
        // Placed members keep their slot; one whose slot is out of range or
        // taken twice gets a free one (its record follows). New members fill
        // the free slots in rank order.
        let mut slots: Vec<Option<SlotRecord>> = vec![None; total];
        let mut moved = Vec::new();
        for m in placed {
            if m.slot < total && slots[m.slot].is_none() {
                slots[m.slot] = Some(SlotRecord {
                    node: m.node,
                    gpus: m.gpus,
                });
            } else {
                moved.push(m);
            }
        }
        for m in moved {
            let Some(s) = slots.iter().position(Option::is_none) else {
                break;
            };
            if let Some(r) = self.pods.get_mut(&m.uid) {
                r.gang = Some((spec.id.clone(), s));
            }
            slots[s] = Some(SlotRecord {
                node: m.node,
                gpus: m.gpus,
            });
        }
        let mut new = plan.members.into_iter();
        for slot in slots.iter_mut().filter(|s| s.is_none()) {
            let Some(m) = new.next() else { break };
            *slot = Some(SlotRecord {
                node: m.node,
                gpus: m.gpus,
            });
        }
        let Some(slots) = slots.into_iter().collect::<Option<Vec<SlotRecord>>>() else {
            return Ok(Err(GangFilter::Wait(format!(
                "gang {}: the planner placed fewer than the {missing} missing members",
                spec.id
            ))));
        };
        self.reserve(PlanRecord {
            gang: spec.id.clone(),
            expires_ms: now_ms.saturating_add(self.cfg.reservation_ttl_ms),
            slots,
        });
        Ok(Ok(()))
    }

    /// Holds every slot's GPUs that are free now. A slot that a placed member
    /// of the gang already fills (a re-plan, or a restart that saw the
    /// member before this plan) is claimed by it, not held: its GPUs are the
    /// pod's.
    fn reserve(&mut self, plan: PlanRecord) {
        let mut filled: Vec<Option<String>> = vec![None; plan.slots.len()];
        for (uid, r) in &self.pods {
            if let Some((g, s)) = &r.gang
                && *g == plan.gang
                && plan.slots.get(*s).is_some_and(|slot| slot.node == r.node)
                && filled[*s].is_none()
            {
                filled[*s] = Some(uid.clone());
            }
        }
        let mut held = Vec::with_capacity(plan.slots.len());
        for (s, slot) in plan.slots.iter().enumerate() {
            held.push(filled[s].is_none() && self.hold(&slot.node, &slot.gpus));
        }
        self.generation += 1;
        self.gangs.insert(
            plan.gang.clone(),
            Reservation {
                claimed: filled,
                held,
                plan,
            },
        );
    }

    pub(crate) fn hold(&mut self, node: &str, gpus: &[u32]) -> bool {
        let Some(&i) = self.by_name.get(node) else { return false };
        let n = &mut self.nodes[i];
        let Some(mask) = n.positions(gpus) else { return false };
        if mask & !n.free_mask() != 0 || n.whole_alloc.saturating_sub(n.whole_used) < gpus.len() as u32 {
            return false;
        }
        n.reserved |= mask;
        n.whole_used += gpus.len() as u32;
        self.refresh_frag(i);
        true
    }

    pub(crate) fn unhold(&mut self, node: &str, gpus: &[u32]) {
        let Some(&i) = self.by_name.get(node) else { return };
        let n = &mut self.nodes[i];
        let Some(mask) = n.positions(gpus) else { return };
        n.reserved &= !mask;
        n.whole_used = n.whole_used.saturating_sub(gpus.len() as u32);
        self.refresh_frag(i);
    }

    /// Moves a held slot's GPUs to pod `uid`. False when the slot is not held
    /// or the pod does not ask for that many whole GPUs.
    pub(crate) fn fill_slot(
        &mut self,
        gang: &str,
        slot: usize,
        uid: &str,
        ask: &PodAsk,
        node: &str,
        state: PodState,
    ) -> bool {
        let Some(res) = self.gangs.get(gang) else { return false };
        let Some(s) = res.plan.slots.get(slot) else {
            return false;
        };
        if s.node != node || !res.held[slot] || ask.gpu != GpuAsk::Whole(s.gpus.len() as u32) {
            return false;
        }
        if res.claimed[slot].as_deref().is_some_and(|c| c != uid) {
            return false;
        }
        let Some(&i) = self.by_name.get(node) else { return false };
        let Some(mask) = self.nodes[i].positions(&s.gpus) else {
            return false;
        };
        if let Some(res) = self.gangs.get_mut(gang) {
            res.held[slot] = false;
            res.claimed[slot] = Some(uid.to_string());
        }
        let n = &mut self.nodes[i];
        // The reservation counted the GPUs as used; the pod takes them over.
        n.reserved &= !mask;
        n.whole_used = n.whole_used.saturating_sub(mask.count_ones());
        n.take(ask, mask, MILLI);
        n.pods.push(uid.to_string());
        self.pods.insert(
            uid.to_string(),
            PodRecord {
                node: node.to_string(),
                ask: ask.clone(),
                mask,
                milli: MILLI,
                state,
                applied: true,
                hint: None,
                gang: Some((gang.to_string(), slot)),
                placement: Placement::Fresh,
            },
        );
        self.generation += 1;
        true
    }

    /// A member that had claimed `slot` is gone (deleted, finished, moved):
    /// while the reservation stands, the slot is free again for a
    /// replacement pod and its GPUs are held for it, instead of staying
    /// claimed by a pod that no longer exists (the replacement would then
    /// be placed outside the gang's plan).
    pub(crate) fn vacate_slot(&mut self, gang: &str, slot: usize, uid: &str, rehold: bool) {
        let Some(res) = self.gangs.get(gang) else { return };
        if res.claimed.get(slot).and_then(|c| c.as_deref()) != Some(uid) {
            return;
        }
        let Some(s) = res.plan.slots.get(slot).cloned() else {
            return;
        };
        let held = rehold && !res.held[slot] && self.hold(&s.node, &s.gpus);
        if let Some(res) = self.gangs.get_mut(gang) {
            res.claimed[slot] = None;
            res.held[slot] |= held;
        }
    }

    /// A member's binding failed: its GPUs go back to the reservation.
    pub(crate) fn return_to_slot(&mut self, gang: &str, slot: usize, uid: &str) {
        let Some(r) = self.pods.remove(uid) else { return };
        let idx = self.by_name.get(&r.node).copied();
        self.forget_placement(idx, uid, &r);
        if let Some(i) = idx {
            let n = &mut self.nodes[i];
            n.give_back(&r.ask, r.mask, r.milli);
            n.pods.retain(|u| u != uid);
            // `hold` below refreshes only when it succeeds.
            self.refresh_frag(i);
        }
        let gpus = self.gangs.get(gang).and_then(|g| g.plan.slots.get(slot)).cloned();
        if let Some(s) = gpus {
            let ok = self.hold(&s.node, &s.gpus);
            if let Some(res) = self.gangs.get_mut(gang) {
                res.held[slot] = ok;
            }
        }
        self.generation += 1;
    }

    /// Recreates a reservation from a recorded plan (after a restart), unless
    /// one exists or the plan has expired.
    pub(crate) fn rebuild_from_plan(&mut self, plan: &PlanRecord, now_ms: u64) {
        if self.gangs.contains_key(&plan.gang) || plan.expires_ms <= now_ms {
            return;
        }
        // The record is read from the API: it holds GPUs for at most one
        // TTL from now, whatever expiry it claims.
        let mut plan = plan.clone();
        plan.expires_ms = plan.expires_ms.min(now_ms.saturating_add(self.cfg.reservation_ttl_ms));
        self.reserve(plan);
    }

    /// Releases slots of expired reservations that no pod filled; the gang's
    /// remaining members are planned again by the next member's filter.
    pub fn expire(&mut self, now_ms: u64) {
        let expired: Vec<String> = self
            .gangs
            .iter()
            .filter(|(_, r)| r.plan.expires_ms <= now_ms)
            .map(|(g, _)| g.clone())
            .collect();
        for g in expired {
            self.release_reservation(&g);
        }
        if !self.lapsed.is_empty() {
            let keep = self.cfg.reservation_ttl_ms.max(LAPSED_KEEP_MS);
            self.lapsed
                .retain(|_, l| l.plan.expires_ms.saturating_add(keep) > now_ms);
        }
    }

    /// Drops a reservation: held GPUs go free, and members that claimed a
    /// slot but have not bound keep a lapsed claim, so that a late bind
    /// still counts them as members.
    pub(crate) fn release_reservation(&mut self, gang: &str) {
        let Some(res) = self.gangs.remove(gang) else { return };
        for (s, slot) in res.plan.slots.iter().enumerate() {
            if res.held[s] {
                self.unhold(&slot.node, &slot.gpus);
            }
        }
        let plan = Arc::new(res.plan);
        for (slot, uid) in res.claimed.into_iter().enumerate() {
            let Some(uid) = uid else { continue };
            if self.pods.contains_key(&uid) {
                continue;
            }
            if self.lapsed.len() >= LAPSED_MAX {
                self.lapsed.clear();
            }
            self.lapsed.insert(
                uid,
                Lapsed {
                    gang: gang.to_string(),
                    slot,
                    plan: plan.clone(),
                },
            );
        }
        self.generation += 1;
    }

    /// Counts of reservations: (complete, filling).
    pub fn gang_counts(&self) -> (usize, usize) {
        let complete = self.gangs.values().filter(|r| r.held.iter().all(|h| !h)).count();
        (complete, self.gangs.len() - complete)
    }
}

fn empty_fabric() -> Fabric {
    Fabric {
        name: "empty".into(),
        tiers: Vec::new(),
        switches: Vec::new(),
        domains: Vec::new(),
        nodes: Vec::new(),
        by_name: BTreeMap::new(),
    }
}

impl ClusterView {
    /// The gang, slot and node a pod has claimed, if any.
    pub fn slot_of(&self, uid: &str) -> Option<(String, usize, String)> {
        if let Some(r) = self.pods.get(uid)
            && let Some((g, s)) = &r.gang
        {
            return Some((g.clone(), *s, r.node.clone()));
        }
        let (g, s) = self.claimed_slot(uid)?;
        let node = self.gangs.get(&g)?.plan.slots.get(s)?.node.clone();
        Some((g, s, node))
    }
}
