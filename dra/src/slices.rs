//! A pool cut into ResourceSlices under the API's limits, in the layout the
//! server version understands (PROTOCOLS §4.1):
//! - before 1.35 (alpha partitionable devices) a slice holds counter sets
//!   and the devices that consume them together, at most 32 counters and 64
//!   devices per slice;
//! - from 1.35 counter sets live alone in the first slice(s), at most 8 sets
//!   of 32 counters each, and devices follow in their own slices.
//!
//! Devices are at most 128 per slice, or 64 when any device in it consumes
//! counters or carries taints.

use std::fmt;
use std::str::FromStr;

use crate::device::{CounterSet, Device, Pool};
use crate::names::limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServerVersion {
    V1_34,
    V1_35,
    V1_36,
}

impl ServerVersion {
    /// From discovery's `major`/`minor` (`"1"`, `"35+"`); versions after
    /// the newest known one use its layout.
    pub fn from_discovery(major: &str, minor: &str) -> Result<ServerVersion, SliceError> {
        let digits = |s: &str| s.trim_end_matches('+').parse::<u32>().ok();
        match (digits(major), digits(minor)) {
            (Some(1), Some(m)) if m <= 34 => Ok(ServerVersion::V1_34),
            (Some(1), Some(35)) => Ok(ServerVersion::V1_35),
            (Some(1), Some(_)) => Ok(ServerVersion::V1_36),
            _ => Err(SliceError(format!(
                "server version {major}.{minor} is not a Kubernetes 1.x version"
            ))),
        }
    }

    pub fn counters_beside_devices(self) -> bool {
        self < ServerVersion::V1_35
    }
}

impl FromStr for ServerVersion {
    type Err = SliceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (major, minor) = s
            .trim_start_matches('v')
            .split_once('.')
            .ok_or_else(|| SliceError(format!("server version {s:?} is not MAJOR.MINOR (e.g. 1.35)")))?;
        ServerVersion::from_discovery(major, minor)
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServerVersion::V1_34 => "1.34",
            ServerVersion::V1_35 => "1.35",
            ServerVersion::V1_36 => "1.36",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SliceError(pub String);

/// One slice's content.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SliceContent {
    pub counter_sets: Vec<CounterSet>,
    pub devices: Vec<Device>,
}

fn uses_limited_features(d: &Device) -> bool {
    !d.consumes_counters.is_empty() || !d.taints.is_empty()
}

/// Checks one device against the per-device limits.
pub fn check_device(d: &Device) -> Result<(), SliceError> {
    let n = d.attribute_and_capacity_count();
    if n > limits::ATTRIBUTES_AND_CAPACITIES_PER_DEVICE {
        return Err(SliceError(format!(
            "device {}: {n} attributes and capacities, more than {}",
            d.name,
            limits::ATTRIBUTES_AND_CAPACITIES_PER_DEVICE
        )));
    }
    if d.consumes_counters.len() > limits::CONSUMES_COUNTERS_PER_DEVICE {
        return Err(SliceError(format!(
            "device {}: consumes from more than 2 counter sets",
            d.name
        )));
    }
    if let Some(c) = d
        .consumes_counters
        .iter()
        .find(|c| c.counters.len() > limits::COUNTERS_PER_SET)
    {
        return Err(SliceError(format!(
            "device {}: consumes {} counters of {}, more than 32",
            d.name,
            c.counters.len(),
            c.counter_set
        )));
    }
    if d.taints.len() > limits::TAINTS_PER_DEVICE {
        return Err(SliceError(format!(
            "device {}: {} taints, more than 16",
            d.name,
            d.taints.len()
        )));
    }
    Ok(())
}

/// Cuts `pool` into slices for `version`.
pub fn layout(pool: &Pool, version: ServerVersion) -> Result<Vec<SliceContent>, SliceError> {
    for d in &pool.devices {
        check_device(d)?;
    }
    if let Some(s) = pool
        .counter_sets
        .iter()
        .find(|s| s.counters.len() > limits::COUNTERS_PER_SET)
    {
        return Err(SliceError(format!(
            "counter set {}: {} counters, more than 32",
            s.name,
            s.counters.len()
        )));
    }
    let slices = if version.counters_beside_devices() {
        beside(pool)?
    } else {
        separate(pool)
    };
    Ok(if slices.is_empty() {
        vec![SliceContent::default()]
    } else {
        slices
    })
}

fn separate(pool: &Pool) -> Vec<SliceContent> {
    let mut slices: Vec<SliceContent> = pool
        .counter_sets
        .chunks(limits::COUNTER_SETS_PER_SLICE)
        .map(|sets| SliceContent {
            counter_sets: sets.to_vec(),
            devices: Vec::new(),
        })
        .collect();
    let mut current = SliceContent::default();
    for d in &pool.devices {
        let limited = uses_limited_features(d) || current.devices.iter().any(uses_limited_features);
        let cap = if limited {
            limits::DEVICES_PER_SLICE_WITH_COUNTERS
        } else {
            limits::DEVICES_PER_SLICE
        };
        if current.devices.len() >= cap {
            slices.push(std::mem::take(&mut current));
        }
        current.devices.push(d.clone());
    }
    if !current.devices.is_empty() {
        slices.push(current);
    }
    slices
}

/// 1.34: each counter set travels with the devices consuming it; groups are
/// packed greedily in pool order while the slice stays within its limits.
fn beside(pool: &Pool) -> Result<Vec<SliceContent>, SliceError> {
    let mut groups: Vec<SliceContent> = Vec::new();
    let mut free = SliceContent::default();
    for set in &pool.counter_sets {
        groups.push(SliceContent {
            counter_sets: vec![set.clone()],
            devices: Vec::new(),
        });
    }
    for d in &pool.devices {
        match d.consumes_counters.as_slice() {
            [] => free.devices.push(d.clone()),
            [c] => {
                let g = groups
                    .iter_mut()
                    .find(|g| g.counter_sets[0].name == c.counter_set)
                    .ok_or_else(|| {
                        SliceError(format!(
                            "device {} consumes unknown counter set {}",
                            d.name, c.counter_set
                        ))
                    })?;
                g.devices.push(d.clone());
            }
            _ => {
                return Err(SliceError(format!(
                    "device {}: 1.34 slices cannot tie a device to two counter sets",
                    d.name
                )));
            }
        }
    }
    let mut slices: Vec<SliceContent> = Vec::new();
    for g in groups {
        let counters: usize = g.counter_sets[0].counters.len();
        if counters > limits::COUNTERS_PER_SLICE_1_34 || g.devices.len() > limits::DEVICES_PER_SLICE_WITH_COUNTERS {
            return Err(SliceError(format!(
                "counter set {} with {} devices and {counters} counters does not fit one 1.34 slice",
                g.counter_sets[0].name,
                g.devices.len()
            )));
        }
        let fits = slices.last().is_some_and(|s: &SliceContent| {
            let used: usize = s.counter_sets.iter().map(|c| c.counters.len()).sum();
            used + counters <= limits::COUNTERS_PER_SLICE_1_34
                && s.counter_sets.len() < limits::COUNTER_SETS_PER_SLICE
                && s.devices.len() + g.devices.len() <= limits::DEVICES_PER_SLICE_WITH_COUNTERS
        });
        match slices.last_mut() {
            Some(last) if fits => {
                last.counter_sets.extend(g.counter_sets);
                last.devices.extend(g.devices);
            }
            _ => slices.push(g),
        }
    }
    let plain = Pool {
        counter_sets: Vec::new(),
        devices: free.devices,
        ..pool.clone()
    };
    slices.extend(separate(&plain));
    Ok(slices)
}
