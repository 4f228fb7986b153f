//! The search's working copy of what is taken, indexed by position rather
//! than by name: a candidate try then looks up and books without building a
//! single string. Built once per [`super::Allocator::allocate`] from the
//! caller's [`Taken`]; the caller's copy is never modified.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::state::{DeviceId, Taken, first_free_share_id};
use crate::device::{Device, Pool};
use crate::quantity::Quantity;

/// A device by position: (pool, device) indexes into the allocator's pools.
pub(super) type At = (usize, usize);

/// What one device consumes as (flat counter index, amount in nano-units);
/// `None` when it names a counter set or counter its pool does not publish,
/// or an amount past [`nanos`]' range.
type Consumption = Option<Vec<(usize, i128)>>;

/// `q` exactly, in units of 10⁻⁹ (a quantity's finest scale): counters are
/// compared and summed as integers in the search. Covers ±1.7·10²⁹ units.
fn nanos(q: &Quantity) -> Option<i128> {
    let (mantissa, scale) = q.mantissa_scale();
    let shift = u32::try_from(scale.checked_add(9)?).ok()?;
    10i128.checked_pow(shift).and_then(|p| mantissa.checked_mul(p))
}

/// Counter sets, counters and device consumption of the pools, by index.
#[derive(Debug)]
pub(super) struct Index<'p> {
    /// Total of each counter in nano-units, flat over every pool's counter
    /// sets; a total past the range counts as unlimited.
    total: Vec<i128>,
    /// Per pool, per device; an unknown counter makes the device
    /// unallocatable, as upstream.
    consumes: Vec<Vec<Consumption>>,
    /// Per pool, per device: its first counter set, flat over all pools.
    set_of: Vec<Vec<Option<usize>>>,
    /// Per counter set: the devices (of its pool) consuming from it.
    members: Vec<Vec<usize>>,
    /// (pool, set name, counter name) → flat counter index.
    counter_at: HashMap<(usize, &'p str, &'p str), usize>,
}

impl<'p> Index<'p> {
    pub(super) fn new(pools: &'p [Pool]) -> Index<'p> {
        let mut total = Vec::new();
        let mut counter_at = HashMap::new();
        let mut set_at: HashMap<(usize, &str), usize> = HashMap::new();
        for (pi, pool) in pools.iter().enumerate() {
            for set in &pool.counter_sets {
                let next = set_at.len();
                set_at.entry((pi, set.name.as_str())).or_insert(next);
                for (name, v) in &set.counters {
                    counter_at.insert((pi, set.name.as_str(), name.as_str()), total.len());
                    total.push(nanos(v).unwrap_or(i128::MAX));
                }
            }
        }
        let mut members = vec![Vec::new(); set_at.len()];
        let mut consumes = Vec::with_capacity(pools.len());
        let mut set_of = Vec::with_capacity(pools.len());
        for (pi, pool) in pools.iter().enumerate() {
            let mut pool_consumes = Vec::with_capacity(pool.devices.len());
            let mut pool_sets = Vec::with_capacity(pool.devices.len());
            for (di, d) in pool.devices.iter().enumerate() {
                let first = d
                    .consumes_counters
                    .first()
                    .and_then(|c| set_at.get(&(pi, c.counter_set.as_str())).copied());
                if let Some(s) = first {
                    members[s].push(di);
                }
                pool_sets.push(first);
                pool_consumes.push(
                    d.consumes_counters
                        .iter()
                        .flat_map(|c| c.counters.iter().map(move |(name, v)| (&c.counter_set, name, v)))
                        .map(|(set, name, v)| {
                            let i = *counter_at.get(&(pi, set.as_str(), name.as_str()))?;
                            Some((i, nanos(v)?))
                        })
                        .collect::<Option<Vec<_>>>(),
                );
            }
            consumes.push(pool_consumes);
            set_of.push(pool_sets);
        }
        Index {
            total,
            consumes,
            set_of,
            members,
            counter_at,
        }
    }

    /// The other devices that share `at`'s first counter set.
    pub(super) fn set_members(&self, at: At) -> impl Iterator<Item = usize> + '_ {
        self.set_of[at.0][at.1]
            .into_iter()
            .flat_map(|s| self.members[s].iter().copied())
            .filter(move |&d| d != at.1)
    }
}

/// Why a device cannot be booked now.
pub(super) type Blocked = &'static str;

/// What is taken, by position.
#[derive(Debug, Clone)]
pub(super) struct State {
    /// Used amount of each counter, in nano-units.
    used: Vec<i128>,
    exclusive: Vec<Vec<u32>>,
    shared: Vec<Vec<u32>>,
    capacity: BTreeMap<At, BTreeMap<String, Quantity>>,
    share_ids: BTreeMap<At, BTreeSet<String>>,
}

impl State {
    /// `taken` as seen by these pools; entries for other pools are ignored.
    pub(super) fn new(index: &Index<'_>, pools: &[Pool], taken: &Taken) -> State {
        let mut s = State {
            used: vec![0; index.total.len()],
            exclusive: pools.iter().map(|p| vec![0; p.devices.len()]).collect(),
            shared: pools.iter().map(|p| vec![0; p.devices.len()]).collect(),
            capacity: BTreeMap::new(),
            share_ids: BTreeMap::new(),
        };
        if taken == &Taken::default() {
            return s;
        }
        let pool_at: HashMap<(&str, &str), usize> = pools
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.driver.as_str(), p.name.as_str()), i))
            .collect();
        let device_at: Vec<HashMap<&str, usize>> = pools
            .iter()
            .map(|p| {
                p.devices
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (d.name.as_str(), i))
                    .collect()
            })
            .collect();
        let find = |id: &DeviceId| {
            let pi = *pool_at.get(&(id.driver.as_str(), id.pool.as_str()))?;
            Some((pi, *device_at[pi].get(id.device.as_str())?))
        };
        for (id, n) in &taken.exclusive {
            if let Some((pi, di)) = find(id) {
                s.exclusive[pi][di] += n;
            }
        }
        for (id, n) in &taken.shared {
            if let Some((pi, di)) = find(id) {
                s.shared[pi][di] += n;
            }
        }
        for ((id, name), v) in &taken.capacity {
            if let Some(at) = find(id) {
                s.capacity.entry(at).or_default().insert(name.clone(), v.clone());
            }
        }
        for (id, ids) in &taken.share_ids {
            if let Some(at) = find(id) {
                s.share_ids.insert(at, ids.clone());
            }
        }
        for ((driver, pool, set, name), v) in &taken.counters {
            let Some(&pi) = pool_at.get(&(driver.as_str(), pool.as_str())) else {
                continue;
            };
            if let Some(&i) = index.counter_at.get(&(pi, set.as_str(), name.as_str())) {
                s.used[i] = nanos(v).unwrap_or(i128::MAX);
            }
        }
        s
    }

    fn capacity_used(&self, at: At, name: &str) -> Option<&Quantity> {
        self.capacity.get(&at).and_then(|m| m.get(name))
    }

    /// Memory left on a shareable device (0 for others).
    pub(super) fn memory_left(&self, device: &Device, at: At) -> i64 {
        let Some(cap) = device
            .capacity
            .get("memory")
            .filter(|_| device.allow_multiple_allocations)
        else {
            return 0;
        };
        let used = self
            .capacity_used(at, "memory")
            .cloned()
            .unwrap_or_else(|| Quantity::from_i64(0));
        cap.value.checked_sub(&used).and_then(|q| q.as_i64()).unwrap_or(0)
    }

    /// Whether any counter `at` consumes is already partly used.
    pub(super) fn set_in_use(&self, index: &Index<'_>, at: At) -> bool {
        index.consumes[at.0][at.1]
            .iter()
            .flatten()
            .any(|(i, _)| self.used[*i] != 0)
    }

    /// Why `device` (at `at`) cannot take an allocation consuming
    /// `consumed` of its capacity, or None if it can.
    pub(super) fn blocked(
        &self,
        index: &Index<'_>,
        device: &Device,
        at: At,
        consumed: &BTreeMap<String, Quantity>,
    ) -> Option<Blocked> {
        if device.allow_multiple_allocations {
            for (name, v) in consumed {
                let Some(cap) = device.capacity.get(name) else {
                    return Some("without that capacity");
                };
                let fits = match self.capacity_used(at, name) {
                    None => *v <= cap.value,
                    Some(u) => u.checked_add(v).is_some_and(|sum| sum <= cap.value),
                };
                if !fits {
                    return Some("without enough capacity left");
                }
            }
            if self.shared[at.0][at.1] > 0 {
                return None;
            }
        } else if self.exclusive[at.0][at.1] > 0 {
            return Some("allocated to other claims");
        }
        let Some(consumes) = &index.consumes[at.0][at.1] else {
            return Some("consuming a counter its pool does not publish, or one out of range");
        };
        for (i, v) in consumes {
            if self.used[*i].checked_add(*v).is_none_or(|sum| sum > index.total[*i]) {
                return Some("blocked by shared counters (their GPU or MIG placement is in use)");
            }
        }
        None
    }

    /// The share id the next allocation of shareable `at` gets.
    pub(super) fn next_share_id(&self, id: &DeviceId, at: At) -> String {
        first_free_share_id(id, self.share_ids.get(&at))
    }

    /// Books (`sign` 1) or releases (-1) one allocation of `device`;
    /// counters of a shareable device go with its first allocation.
    pub(super) fn apply(
        &mut self,
        index: &Index<'_>,
        device: &Device,
        at: At,
        consumed: &BTreeMap<String, Quantity>,
        share_id: Option<&str>,
        sign: i64,
    ) {
        let edge = if device.allow_multiple_allocations {
            let caps = self.capacity.entry(at).or_default();
            for (name, v) in consumed {
                let cur = caps.remove(name).unwrap_or_else(|| Quantity::from_i64(0));
                let next = if sign > 0 {
                    cur.checked_add(v)
                } else {
                    cur.checked_sub(v)
                };
                if let Some(n) = next.filter(|n| !n.is_zero()) {
                    caps.insert(name.clone(), n);
                }
            }
            if caps.is_empty() {
                self.capacity.remove(&at);
            }
            if let Some(share) = share_id {
                let ids = self.share_ids.entry(at).or_default();
                if sign > 0 {
                    ids.insert(share.to_owned());
                } else {
                    ids.remove(share);
                }
                if ids.is_empty() {
                    self.share_ids.remove(&at);
                }
            }
            bump(&mut self.shared[at.0][at.1], sign)
        } else {
            bump(&mut self.exclusive[at.0][at.1], sign)
        };
        if edge && let Some(consumes) = &index.consumes[at.0][at.1] {
            for (i, v) in consumes {
                // Booked amounts passed `blocked`, so they stay in range.
                self.used[*i] = if sign > 0 {
                    self.used[*i].saturating_add(*v)
                } else {
                    self.used[*i].saturating_sub(*v)
                };
            }
        }
    }
}

/// Counts one allocation in or out; true when the count leaves or
/// reaches zero (the allocation that takes or frees the counters).
fn bump(n: &mut u32, sign: i64) -> bool {
    if sign > 0 {
        *n += 1;
        *n == 1
    } else {
        *n = n.saturating_sub(1);
        *n == 0
    }
}
