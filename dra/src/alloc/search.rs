//! The bounded depth-first search behind [`super::Allocator::allocate`].

use std::collections::BTreeMap;

use super::capacity;
use super::state::{AllocatedDevice, DeviceId, Taken};
use super::{AllocError, Allocation, Allocator, Outcome};
use crate::claim::{AllocationMode, ClaimSpec, ConstraintKind, SubRequest};
use crate::device::{AttrValue, Device, Pool, TaintEffect};
use crate::names::ATTR_NVLINK_ISLAND;

/// A device that matches a subrequest, with what it would consume.
#[derive(Debug, Clone)]
struct Candidate {
    pool: usize,
    device: usize,
    consumed: BTreeMap<String, crate::quantity::Quantity>,
}

struct Alternative<'c> {
    sub: &'c SubRequest,
    candidates: Vec<Candidate>,
}

pub(super) struct Search<'a, 'c> {
    alloc: &'c Allocator<'a>,
    claim: &'c ClaimSpec,
    requests: Vec<Vec<Alternative<'c>>>,
    initial: &'c Taken,
    work: Taken,
    picks: Vec<(AllocatedDevice, usize, usize)>,
    steps: u64,
}

enum Stop {
    GaveUp,
}

impl<'a, 'c> Search<'a, 'c> {
    pub(super) fn new(alloc: &'c Allocator<'a>, claim: &'c ClaimSpec, taken: &'c Taken) -> Result<Self, AllocError> {
        let mut requests = Vec::new();
        for r in &claim.requests {
            let mut alts = Vec::new();
            for sub in &r.alternatives {
                let class = alloc.classes.get(&sub.class).ok_or_else(|| AllocError::UnknownClass {
                    request: sub.name.clone(),
                    class: sub.class.clone(),
                })?;
                let mut candidates = Vec::new();
                for (pi, pool) in alloc.pools.iter().enumerate() {
                    for (di, device) in pool.devices.iter().enumerate() {
                        if !selected(
                            alloc,
                            &sub.name,
                            pool,
                            device,
                            class.selectors.iter().chain(&sub.selectors),
                        )? {
                            continue;
                        }
                        if !tolerated(sub, device) {
                            continue;
                        }
                        if let Ok(consumed) = capacity::for_request(device, &sub.capacity) {
                            candidates.push(Candidate {
                                pool: pi,
                                device: di,
                                consumed,
                            });
                        }
                    }
                }
                let mut alt = Alternative { sub, candidates };
                order(alloc, &mut alt, taken);
                alts.push(alt);
            }
            requests.push(alts);
        }
        Ok(Search {
            alloc,
            claim,
            requests,
            initial: taken,
            work: taken.clone(),
            picks: Vec::new(),
            steps: 0,
        })
    }

    pub(super) fn run(mut self) -> Result<Outcome, AllocError> {
        match self.request(0) {
            Err(Stop::GaveUp) => Ok(Outcome::GaveUp { steps: self.steps }),
            Ok(true) => {
                let mut consumed_counters: BTreeMap<(String, String), BTreeMap<String, _>> = BTreeMap::new();
                for (a, pi, di) in &self.picks {
                    let (pool, device) = (&self.alloc.pools[*pi], &self.alloc.pools[*pi].devices[*di]);
                    if a.admin_access {
                        continue;
                    }
                    for c in &device.consumes_counters {
                        let e = consumed_counters
                            .entry((pool.name.clone(), c.counter_set.clone()))
                            .or_default();
                        for (k, v) in &c.counters {
                            let sum = e
                                .get(k)
                                .and_then(|s: &crate::quantity::Quantity| s.checked_add(v))
                                .unwrap_or_else(|| v.clone());
                            e.insert(k.clone(), sum);
                        }
                    }
                }
                Ok(Outcome::Allocated(Allocation {
                    devices: self.picks.into_iter().map(|p| p.0).collect(),
                    consumed_counters,
                }))
            }
            Ok(false) => Ok(self.explain()),
        }
    }

    fn request(&mut self, ri: usize) -> Result<bool, Stop> {
        if ri == self.requests.len() {
            return Ok(true);
        }
        for ai in 0..self.requests[ri].len() {
            let alt = &self.requests[ri][ai];
            let found = match alt.sub.mode {
                AllocationMode::ExactCount(n) => self.choose(ri, ai, n as usize, 0)?,
                AllocationMode::All => self.all(ri, ai)?,
            };
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn choose(&mut self, ri: usize, ai: usize, need: usize, start: usize) -> Result<bool, Stop> {
        if need == 0 {
            return self.request(ri + 1);
        }
        let len = self.requests[ri][ai].candidates.len();
        for ci in start..len {
            if len - ci < need {
                break;
            }
            if self.try_pick(ri, ai, ci)? {
                if self.choose(ri, ai, need - 1, ci + 1)? {
                    return Ok(true);
                }
                self.unpick();
            }
        }
        Ok(false)
    }

    fn all(&mut self, ri: usize, ai: usize) -> Result<bool, Stop> {
        let len = self.requests[ri][ai].candidates.len();
        if len == 0 {
            return Ok(false);
        }
        for ci in 0..len {
            if !self.try_pick(ri, ai, ci)? {
                for _ in 0..ci {
                    self.unpick();
                }
                return Ok(false);
            }
        }
        if self.request(ri + 1)? {
            return Ok(true);
        }
        for _ in 0..len {
            self.unpick();
        }
        Ok(false)
    }

    /// Books candidate `ci` if it is free and keeps the constraints.
    fn try_pick(&mut self, ri: usize, ai: usize, ci: usize) -> Result<bool, Stop> {
        self.steps += 1;
        if self.steps > self.alloc.max_steps {
            return Err(Stop::GaveUp);
        }
        let alt = &self.requests[ri][ai];
        let c = &alt.candidates[ci];
        let pool = &self.alloc.pools[c.pool];
        let device = &pool.devices[c.device];
        let id = DeviceId {
            driver: pool.driver.clone(),
            pool: pool.name.clone(),
            device: device.name.clone(),
        };
        if self.picks.iter().any(|(p, _, _)| p.id == id) {
            return Ok(false);
        }
        if !alt.sub.admin_access && blocked(pool, device, &c.consumed, &id, &self.work).is_some() {
            return Ok(false);
        }
        if !self.constraints_ok(&alt.sub.name, pool, device) {
            return Ok(false);
        }
        let a = AllocatedDevice {
            request: alt.sub.name.clone(),
            id,
            admin_access: alt.sub.admin_access,
            consumed_capacity: if device.allow_multiple_allocations {
                c.consumed.clone()
            } else {
                BTreeMap::new()
            },
            share_id: None,
        };
        self.work.book(pool, device, &a);
        self.picks.push((a, c.pool, c.device));
        Ok(true)
    }

    fn unpick(&mut self) {
        if let Some((a, pi, di)) = self.picks.pop() {
            let pool = &self.alloc.pools[pi];
            self.work.release(pool, &pool.devices[di], &a);
        }
    }

    fn constraints_ok(&self, request: &str, pool: &Pool, device: &Device) -> bool {
        for c in self.claim.constraints.iter().filter(|c| c.applies_to(request)) {
            let (name, distinct) = match &c.kind {
                ConstraintKind::MatchAttribute(n) => (n, false),
                ConstraintKind::DistinctAttribute(n) => (n, true),
            };
            let Some(v) = device.attribute(&pool.driver, name) else {
                return false;
            };
            for (p, pi, di) in &self.picks {
                if !c.applies_to(&p.request) {
                    continue;
                }
                let other_pool = &self.alloc.pools[*pi];
                let other = other_pool.devices[*di].attribute(&other_pool.driver, name);
                if distinct == (other == Some(v)) {
                    return false;
                }
            }
        }
        true
    }

    /// The first request that cannot be met alone, or the constraints.
    fn explain(&self) -> Outcome {
        for (ri, alts) in self.requests.iter().enumerate() {
            let mut reasons = Vec::new();
            let mut all_short = true;
            for alt in alts {
                let need = match alt.sub.mode {
                    AllocationMode::ExactCount(n) => n as usize,
                    AllocationMode::All => alt.candidates.len().max(1),
                };
                let mut why: BTreeMap<&str, usize> = BTreeMap::new();
                let mut free = 0;
                for c in &alt.candidates {
                    let pool = &self.alloc.pools[c.pool];
                    let device = &pool.devices[c.device];
                    let id = DeviceId {
                        driver: pool.driver.clone(),
                        pool: pool.name.clone(),
                        device: device.name.clone(),
                    };
                    match blocked(pool, device, &c.consumed, &id, self.initial).filter(|_| !alt.sub.admin_access) {
                        None => free += 1,
                        Some(r) => *why.entry(r).or_insert(0) += 1,
                    }
                }
                let short = free < need || (alt.sub.mode == AllocationMode::All && free < alt.candidates.len());
                all_short &= short;
                let mut text = format!(
                    "{}: needs {} device(s) of class {}; {} match the class, selectors and capacity, {} free",
                    alt.sub.name,
                    match alt.sub.mode {
                        AllocationMode::ExactCount(n) => n.to_string(),
                        AllocationMode::All => "all matching".into(),
                    },
                    alt.sub.class,
                    alt.candidates.len(),
                    free
                );
                for (r, n) in why {
                    text.push_str(&format!(", {n} {r}"));
                }
                reasons.push(text);
            }
            if all_short {
                return Outcome::Unsatisfiable {
                    request: self.claim.requests[ri].name.clone(),
                    reason: reasons.join("; "),
                };
            }
        }
        Outcome::Unsatisfiable {
            request: self.claim.requests.first().map(|r| r.name.clone()).unwrap_or_default(),
            reason: "every request has free devices, but no combination of them meets the claim's constraints together"
                .into(),
        }
    }
}

fn selected<'s>(
    alloc: &Allocator<'_>,
    request: &str,
    pool: &Pool,
    device: &Device,
    mut selectors: impl Iterator<Item = &'s String>,
) -> Result<bool, AllocError> {
    // One view of the device serves the class's and the request's selectors.
    let view = crate::cel::CelDevice::new(&pool.driver, device);
    selectors.try_fold(true, |ok, expr| {
        if !ok {
            return Ok(false);
        }
        let sel = alloc.selectors.get(expr).map_err(|source| AllocError::Selector {
            request: request.to_owned(),
            source,
        })?;
        sel.matches_device(&view).map_err(|source| AllocError::Selector {
            request: request.to_owned(),
            source,
        })
    })
}

fn tolerated(sub: &SubRequest, device: &Device) -> bool {
    device
        .taints
        .iter()
        .filter(|t| t.effect != TaintEffect::None)
        .all(|t| sub.tolerations.iter().any(|tol| tol.tolerates(t)))
}

/// Why `device` cannot be booked now, or None if it can.
fn blocked(
    pool: &Pool,
    device: &Device,
    consumed: &BTreeMap<String, crate::quantity::Quantity>,
    id: &DeviceId,
    taken: &Taken,
) -> Option<&'static str> {
    if device.allow_multiple_allocations {
        for (name, v) in consumed {
            let cap = &device.capacity.get(name)?.value;
            if taken
                .capacity_used(id, name)
                .checked_add(v)
                .is_none_or(|sum| sum > *cap)
            {
                return Some("without enough capacity left");
            }
        }
        if taken.is_shared_in_use(id) {
            return None;
        }
    } else if taken.is_exclusive(id) {
        return Some("allocated to other claims");
    }
    for c in &device.consumes_counters {
        let set = pool.counter_sets.iter().find(|s| s.name == c.counter_set)?;
        for (name, v) in &c.counters {
            let Some(total) = set.counters.get(name) else {
                return Some("consuming an unknown counter");
            };
            let used = taken.counter(&pool.driver, &pool.name, &c.counter_set, name);
            if used.checked_add(v).is_none_or(|sum| sum > *total) {
                return Some("blocked by shared counters (their GPU or MIG placement is in use)");
            }
        }
    }
    None
}

/// Sorts `alt.candidates` into the preference order (module docs).
fn order(alloc: &Allocator<'_>, alt: &mut Alternative<'_>, taken: &Taken) {
    let device = |c: &Candidate| (&alloc.pools[c.pool], &alloc.pools[c.pool].devices[c.device]);
    let id = |pool: &Pool, d: &Device| DeviceId {
        driver: pool.driver.clone(),
        pool: pool.name.clone(),
        device: d.name.clone(),
    };
    let island = |pool: &Pool, d: &Device| match d.attribute(&pool.driver, ATTR_NVLINK_ISLAND) {
        Some(AttrValue::Int(i)) => Some(*i),
        _ => None,
    };
    let need = match alt.sub.mode {
        AllocationMode::ExactCount(n) => n as usize,
        AllocationMode::All => 0,
    };
    let mut free_in_island: BTreeMap<(usize, Option<i64>), usize> = BTreeMap::new();
    for c in &alt.candidates {
        let (pool, d) = device(c);
        if blocked(pool, d, &c.consumed, &id(pool, d), taken).is_none() {
            *free_in_island.entry((c.pool, island(pool, d))).or_insert(0) += 1;
        }
    }
    let mut keyed: Vec<_> = alt
        .candidates
        .drain(..)
        .map(|c| {
            let (pool, d) = device(&c);
            let set_in_use = d.consumes_counters.iter().any(|cc| {
                cc.counters
                    .keys()
                    .any(|k| !taken.counter(&pool.driver, &pool.name, &cc.counter_set, k).is_zero())
            });
            let addable = addable_after(pool, d, taken);
            let group = free_in_island.get(&(c.pool, island(pool, d))).copied().unwrap_or(0);
            let left = d
                .capacity
                .get("memory")
                .filter(|_| d.allow_multiple_allocations)
                .and_then(|cap| cap.value.checked_sub(&taken.capacity_used(&id(pool, d), "memory")))
                .and_then(|q| q.as_i64())
                .unwrap_or(0);
            let key = (
                !set_in_use,
                group < need,
                group,
                island(pool, d),
                std::cmp::Reverse(addable),
                left,
                c.pool,
                c.device,
            );
            (key, c)
        })
        .collect();
    keyed.sort_by_key(|k| k.0);
    alt.candidates = keyed.into_iter().map(|(_, c)| c).collect();
}

/// Other devices of the same counter set still bookable once `d` is.
fn addable_after(pool: &Pool, d: &Device, taken: &Taken) -> usize {
    let Some(set) = d.consumes_counters.first().map(|c| &c.counter_set) else {
        return 0;
    };
    let mut after = taken.clone();
    let a = AllocatedDevice {
        request: String::new(),
        id: DeviceId {
            driver: pool.driver.clone(),
            pool: pool.name.clone(),
            device: d.name.clone(),
        },
        admin_access: false,
        consumed_capacity: BTreeMap::new(),
        share_id: None,
    };
    after.book(pool, d, &a);
    pool.devices
        .iter()
        .filter(|o| o.name != d.name && o.consumes_counters.iter().any(|c| &c.counter_set == set))
        .filter(|o| {
            let oid = DeviceId {
                driver: pool.driver.clone(),
                pool: pool.name.clone(),
                device: o.name.clone(),
            };
            blocked(pool, o, &BTreeMap::new(), &oid, &after).is_none()
        })
        .count()
}
