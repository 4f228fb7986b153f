//! The bounded depth-first search behind [`super::Allocator::allocate`].

use std::collections::BTreeMap;

use super::dense::{At, Index, State};
use super::order::order;
use super::state::{AllocatedDevice, DeviceId, Taken};
use super::{AllocError, Allocation, Allocator, Outcome, capacity};
use crate::claim::{AllocationMode, ClaimSpec, ConstraintKind, SubRequest};
use crate::device::{Device, Pool, TaintEffect};
use crate::quantity::Quantity;

/// A device that matches a subrequest, with what it would consume.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub(super) at: At,
    pub(super) consumed: BTreeMap<String, Quantity>,
}

pub(super) struct Alternative<'c> {
    pub(super) sub: &'c SubRequest,
    pub(super) candidates: Vec<Candidate>,
}

/// One booked device: its result and where it is.
struct Pick {
    result: AllocatedDevice,
    at: At,
    consumed: BTreeMap<String, Quantity>,
}

pub(super) struct Search<'a, 'c> {
    alloc: &'c Allocator<'a>,
    claim: &'c ClaimSpec,
    requests: Vec<Vec<Alternative<'c>>>,
    index: &'c Index<'a>,
    /// What is taken: the caller's state plus the current picks.
    work: State,
    picks: Vec<Pick>,
    steps: u64,
}

enum Stop {
    GaveUp,
}

impl<'a, 'c> Search<'a, 'c> {
    pub(super) fn new(alloc: &'c Allocator<'a>, claim: &'c ClaimSpec, taken: &Taken) -> Result<Self, AllocError> {
        let index = alloc.index();
        let mut work = State::new(index, alloc.pools, taken);
        let mut requests = Vec::new();
        for r in &claim.requests {
            let mut alts = Vec::new();
            for sub in &r.alternatives {
                let class = alloc.classes.get(&sub.class).ok_or_else(|| AllocError::UnknownClass {
                    request: sub.name.clone(),
                    class: sub.class.clone(),
                })?;
                let mut candidates = Vec::new();
                for at in alloc.select(&sub.name, class.selectors.iter().chain(&sub.selectors))? {
                    let device = alloc.at(at).1;
                    if !tolerated(sub, device) {
                        continue;
                    }
                    if let Ok(consumed) = capacity::for_request(device, &sub.capacity) {
                        candidates.push(Candidate { at, consumed });
                    }
                }
                let mut alt = Alternative { sub, candidates };
                order(alloc, index, &mut work, &mut alt);
                alts.push(alt);
            }
            requests.push(alts);
        }
        Ok(Search {
            alloc,
            claim,
            requests,
            index,
            work,
            picks: Vec::new(),
            steps: 0,
        })
    }

    pub(super) fn run(mut self) -> Result<Outcome, AllocError> {
        match self.request(0) {
            Err(Stop::GaveUp) => Ok(Outcome::GaveUp { steps: self.steps }),
            Ok(true) => {
                let mut consumed_counters: BTreeMap<(String, String), BTreeMap<String, _>> = BTreeMap::new();
                for p in &self.picks {
                    let (pool, device) = self.alloc.at(p.at);
                    if p.result.admin_access {
                        continue;
                    }
                    for c in &device.consumes_counters {
                        let e = consumed_counters
                            .entry((pool.name.clone(), c.counter_set.clone()))
                            .or_default();
                        for (k, v) in &c.counters {
                            let sum = e
                                .get(k)
                                .and_then(|s: &Quantity| s.checked_add(v))
                                .unwrap_or_else(|| v.clone());
                            e.insert(k.clone(), sum);
                        }
                    }
                }
                Ok(Outcome::Allocated(Allocation {
                    devices: self.picks.into_iter().map(|p| p.result).collect(),
                    consumed_counters,
                }))
            }
            Ok(false) => {
                debug_assert!(self.picks.is_empty(), "a failed search releases its picks");
                Ok(self.explain())
            }
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
        let (pool, device) = self.alloc.at(c.at);
        if self.picks.iter().any(|p| p.at == c.at) {
            return Ok(false);
        }
        if !alt.sub.admin_access && self.work.blocked(self.index, device, c.at, &c.consumed).is_some() {
            return Ok(false);
        }
        if !self.constraints_ok(&alt.sub.name, pool, device) {
            return Ok(false);
        }
        let id = DeviceId {
            driver: pool.driver.clone(),
            pool: pool.name.clone(),
            device: device.name.clone(),
        };
        let share_id = device
            .allow_multiple_allocations
            .then(|| self.work.next_share_id(&id, c.at));
        let result = AllocatedDevice {
            request: alt.sub.name.clone(),
            id,
            admin_access: alt.sub.admin_access,
            consumed_capacity: if device.allow_multiple_allocations {
                c.consumed.clone()
            } else {
                BTreeMap::new()
            },
            share_id,
        };
        if !result.admin_access {
            let share = result.share_id.as_deref();
            self.work.apply(self.index, device, c.at, &c.consumed, share, 1);
        }
        self.picks.push(Pick {
            at: c.at,
            consumed: c.consumed.clone(),
            result,
        });
        Ok(true)
    }

    fn unpick(&mut self) {
        if let Some(p) = self.picks.pop()
            && !p.result.admin_access
        {
            let (_, device) = self.alloc.at(p.at);
            let share = p.result.share_id.as_deref();
            self.work.apply(self.index, device, p.at, &p.consumed, share, -1);
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
            for p in &self.picks {
                if !c.applies_to(&p.result.request) {
                    continue;
                }
                let (other_pool, other) = self.alloc.at(p.at);
                let other = other.attribute(&other_pool.driver, name);
                if distinct == (other == Some(v)) {
                    return false;
                }
            }
        }
        true
    }

    /// The first request that cannot be met alone, or the constraints.
    /// Called once the search has failed and so has released every pick:
    /// `work` is the caller's state again.
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
                    let (_, device) = self.alloc.at(c.at);
                    match (self.work.blocked(self.index, device, c.at, &c.consumed)).filter(|_| !alt.sub.admin_access) {
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

fn tolerated(sub: &SubRequest, device: &Device) -> bool {
    device
        .taints
        .iter()
        .filter(|t| t.effect != TaintEffect::None)
        .all(|t| sub.tolerations.iter().any(|tol| tol.tolerates(t)))
}
