//! What one allocation consumes of a device's capacity, with the request
//! policy's defaults, valid values and ranges, as the scheduler rounds
//! (KEP-5075).

use std::collections::BTreeMap;

use crate::device::{Capacity, Device, ValidValues};
use crate::quantity::Quantity;

/// Why a device cannot serve a request's capacity ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityMismatch(pub String);

/// The amount of `cap` one allocation consumes when `requested` is asked
/// (None: the request names no amount of it).
pub fn consumed(name: &str, cap: &Capacity, requested: Option<&Quantity>) -> Result<Quantity, CapacityMismatch> {
    let too_big = |v: &Quantity| CapacityMismatch(format!("{name}: {v} is more than the device's {}", cap.value));
    let Some(policy) = &cap.request_policy else {
        return match requested {
            Some(r) if *r > cap.value => Err(too_big(r)),
            Some(r) => Ok(r.clone()),
            None => Ok(cap.value.clone()),
        };
    };
    let Some(r) = requested else {
        return Ok(policy.default.clone().unwrap_or_else(|| cap.value.clone()));
    };
    let v = match &policy.valid {
        None => r.clone(),
        Some(ValidValues::Values(values)) => values
            .iter()
            .find(|v| *v >= r)
            .cloned()
            .ok_or_else(|| CapacityMismatch(format!("{name}: {r} is above every valid value")))?,
        Some(ValidValues::Range { min, max, step }) => {
            let v = if r <= min {
                min.clone()
            } else if let Some(step) = step {
                let over = r.checked_sub(min).ok_or_else(|| too_big(r))?;
                let k = over.div_ceil(step).ok_or_else(|| too_big(r))?;
                step.checked_mul(k)
                    .and_then(|s| min.checked_add(&s))
                    .ok_or_else(|| too_big(r))?
            } else {
                r.clone()
            };
            if max.as_ref().is_some_and(|m| v > *m) {
                return Err(CapacityMismatch(format!("{name}: {r} is above the valid range's max")));
            }
            v
        }
    };
    if v > cap.value {
        return Err(too_big(&v));
    }
    Ok(v)
}

/// What an allocation of `device` for a request asking `requests`
/// consumes (shareable devices), or whether it fits at all (others: each
/// asked amount must be at most the device's).
pub fn for_request(
    device: &Device,
    requests: &BTreeMap<String, Quantity>,
) -> Result<BTreeMap<String, Quantity>, CapacityMismatch> {
    for name in requests.keys() {
        if !device.capacity.contains_key(name) {
            return Err(CapacityMismatch(format!("device has no capacity {name}")));
        }
    }
    let mut out = BTreeMap::new();
    for (name, cap) in &device.capacity {
        let r = requests.get(name);
        if device.allow_multiple_allocations {
            out.insert(name.clone(), consumed(name, cap, r)?);
        } else if let Some(r) = r.filter(|r| **r > cap.value) {
            return Err(CapacityMismatch(format!(
                "{name}: {r} is more than the device's {}",
                cap.value
            )));
        }
    }
    Ok(out)
}
