//! What is already taken on the pools: exclusive devices, consumed
//! capacity of shareable devices, and consumed shared counters.

use std::collections::{BTreeMap, BTreeSet};

use crate::device::{Device, Pool};
use crate::quantity::Quantity;

/// A device's identity: driver/pool/name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId {
    pub driver: String,
    pub pool: String,
    pub device: String,
}

/// One allocated device of a claim, as `status.allocation.devices.results[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedDevice {
    pub request: String,
    pub id: DeviceId,
    pub admin_access: bool,
    /// For shareable devices: what this allocation consumes of each capacity.
    pub consumed_capacity: BTreeMap<String, Quantity>,
    /// For shareable devices: which share of the device this is (the API's
    /// `shareID`, a UUID unique among the device's current allocations).
    pub share_id: Option<String>,
}

/// Taken resources. Counters are keyed by (driver, pool, set, counter).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Taken {
    pub exclusive: BTreeMap<DeviceId, u32>,
    pub capacity: BTreeMap<(DeviceId, String), Quantity>,
    pub counters: BTreeMap<(String, String, String, String), Quantity>,
    /// Allocations per shareable device (counters are taken by the first).
    pub shared: BTreeMap<DeviceId, u32>,
    /// Share ids in use per shareable device.
    pub share_ids: BTreeMap<DeviceId, BTreeSet<String>>,
}

fn add<K: Ord>(map: &mut BTreeMap<K, Quantity>, key: K, v: &Quantity, sign: i64) {
    // A zero entry is removed, so release restores the map exactly.
    let cur = map.remove(&key);
    let base = cur.unwrap_or_else(|| Quantity::from_i64(0));
    let next = if sign >= 0 {
        base.checked_add(v)
    } else {
        base.checked_sub(v)
    };
    if let Some(n) = next.filter(|n| !n.is_zero()) {
        map.insert(key, n);
    }
}

impl Taken {
    fn counters_of(&mut self, pool: &Pool, device: &Device, sign: i64) {
        for c in &device.consumes_counters {
            for (name, v) in &c.counters {
                let key = (
                    pool.driver.clone(),
                    pool.name.clone(),
                    c.counter_set.clone(),
                    name.clone(),
                );
                add(&mut self.counters, key, v, sign);
            }
        }
    }

    /// Books `a` (on `device` of `pool`); admin-access allocations take
    /// nothing.
    pub fn book(&mut self, pool: &Pool, device: &Device, a: &AllocatedDevice) {
        self.apply(pool, device, a, 1);
    }

    /// Undoes [`Taken::book`].
    pub fn release(&mut self, pool: &Pool, device: &Device, a: &AllocatedDevice) {
        self.apply(pool, device, a, -1);
    }

    fn apply(&mut self, pool: &Pool, device: &Device, a: &AllocatedDevice, sign: i64) {
        if a.admin_access {
            return;
        }
        let first_or_last = if device.allow_multiple_allocations {
            for (name, v) in &a.consumed_capacity {
                add(&mut self.capacity, (a.id.clone(), name.clone()), v, sign);
            }
            if let Some(share) = &a.share_id {
                let ids = self.share_ids.entry(a.id.clone()).or_default();
                if sign > 0 {
                    ids.insert(share.clone());
                } else {
                    ids.remove(share);
                }
                if ids.is_empty() {
                    self.share_ids.remove(&a.id);
                }
            }
            let n = self.shared.entry(a.id.clone()).or_insert(0);
            let edge = if sign > 0 { *n == 0 } else { *n == 1 };
            *n = if sign > 0 { *n + 1 } else { n.saturating_sub(1) };
            if *n == 0 {
                self.shared.remove(&a.id);
            }
            edge
        } else {
            let n = self.exclusive.entry(a.id.clone()).or_insert(0);
            *n = if sign > 0 { *n + 1 } else { n.saturating_sub(1) };
            if *n == 0 {
                self.exclusive.remove(&a.id);
            }
            true
        };
        if first_or_last {
            self.counters_of(pool, device, sign);
        }
    }

    pub fn counter(&self, driver: &str, pool: &str, set: &str, name: &str) -> Quantity {
        self.counters
            .get(&(driver.to_owned(), pool.to_owned(), set.to_owned(), name.to_owned()))
            .cloned()
            .unwrap_or_else(|| Quantity::from_i64(0))
    }

    pub fn capacity_used(&self, id: &DeviceId, name: &str) -> Quantity {
        self.capacity
            .get(&(id.clone(), name.to_owned()))
            .cloned()
            .unwrap_or_else(|| Quantity::from_i64(0))
    }

    pub fn is_exclusive(&self, id: &DeviceId) -> bool {
        self.exclusive.contains_key(id)
    }

    pub fn is_shared_in_use(&self, id: &DeviceId) -> bool {
        self.shared.contains_key(id)
    }

    /// The share id the next allocation of shareable device `id` gets
    /// ([`first_free_share_id`]).
    pub fn next_share_id(&self, id: &DeviceId) -> String {
        first_free_share_id(id, self.share_ids.get(id))
    }
}

/// The first of a fixed sequence of UUIDs derived from the device's identity
/// that is not in `used`. Upstream draws a random UUID; this one is
/// deterministic, so the same inputs give the same allocation, and unique
/// among the device's current shares as the API requires.
pub(super) fn first_free_share_id(id: &DeviceId, used: Option<&BTreeSet<String>>) -> String {
    (0u64..)
        .map(|k| share_uuid(id, k))
        .find(|u| used.is_none_or(|s| !s.contains(u)))
        .unwrap_or_default()
}

/// A version-8 (custom) UUID from FNV-1a over the device id and `k`: stable
/// across runs and builds, unlike std's hasher.
fn share_uuid(id: &DeviceId, k: u64) -> String {
    let fnv = |seed: u64| {
        let mut h = seed;
        for part in [
            id.driver.as_bytes(),
            b"/",
            id.pool.as_bytes(),
            b"/",
            id.device.as_bytes(),
            b"#",
        ]
        .into_iter()
        .chain(std::iter::once(&k.to_be_bytes()[..]))
        {
            for b in part {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    };
    let hi = fnv(0xcbf2_9ce4_8422_2325);
    let lo = fnv(0x6c62_272e_07bb_0142);
    let hi = (hi & !0xf000) | 0x8000; // version 8
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC 9562 variant
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}
