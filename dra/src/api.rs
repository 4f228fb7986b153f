//! Domain ↔ `resource.k8s.io/v1` objects (k8s-openapi types), at the edge.
//! Objects from the API are untrusted: conversion checks what the domain
//! relies on and names the field and value it refuses.

use std::collections::BTreeMap;

use k8s_openapi::api::resource::v1 as api;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::device::{
    AttrValue, Capacity, CounterConsumption, CounterSet, Device, Pool, RequestPolicy, Taint, TaintEffect, ValidValues,
};
use crate::quantity::Quantity;
use crate::slices::{self, ServerVersion, SliceContent, SliceError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ApiError {
    pub path: String,
    pub message: String,
}

fn q(v: &Quantity) -> ApiQuantity {
    ApiQuantity(v.to_string())
}

pub(crate) fn parse_q(path: &str, v: &ApiQuantity) -> Result<Quantity, ApiError> {
    Quantity::parse(&v.0).map_err(|e| ApiError {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn counters(c: &BTreeMap<String, Quantity>) -> BTreeMap<String, api::Counter> {
    c.iter()
        .map(|(k, v)| (k.clone(), api::Counter { value: q(v) }))
        .collect()
}

fn device_to_api(d: &Device) -> api::Device {
    let attributes = d
        .attributes
        .iter()
        .map(|(k, v)| {
            let mut a = api::DeviceAttribute::default();
            match v {
                AttrValue::Int(i) => a.int = Some(*i),
                AttrValue::Bool(b) => a.bool = Some(*b),
                AttrValue::String(s) => a.string = Some(s.clone()),
                AttrValue::Version(s) => a.version = Some(s.clone()),
            }
            (k.clone(), a)
        })
        .collect();
    let capacity = d
        .capacity
        .iter()
        .map(|(k, c)| {
            let request_policy = c.request_policy.as_ref().map(|p| {
                let mut r = api::CapacityRequestPolicy {
                    default: p.default.as_ref().map(q),
                    ..Default::default()
                };
                match &p.valid {
                    Some(ValidValues::Values(v)) => r.valid_values = Some(v.iter().map(q).collect()),
                    Some(ValidValues::Range { min, max, step }) => {
                        r.valid_range = Some(api::CapacityRequestPolicyRange {
                            min: q(min),
                            max: max.as_ref().map(q),
                            step: step.as_ref().map(q),
                        })
                    }
                    None => {}
                }
                r
            });
            (
                k.clone(),
                api::DeviceCapacity {
                    value: q(&c.value),
                    request_policy,
                },
            )
        })
        .collect();
    api::Device {
        name: d.name.clone(),
        attributes: Some(attributes).filter(|a: &BTreeMap<_, _>| !a.is_empty()),
        capacity: Some(capacity).filter(|c: &BTreeMap<_, _>| !c.is_empty()),
        consumes_counters: Some(
            d.consumes_counters
                .iter()
                .map(|c| api::DeviceCounterConsumption {
                    counter_set: c.counter_set.clone(),
                    counters: counters(&c.counters),
                })
                .collect(),
        )
        .filter(|c: &Vec<_>| !c.is_empty()),
        allow_multiple_allocations: d.allow_multiple_allocations.then_some(true),
        taints: Some(
            d.taints
                .iter()
                .map(|t| api::DeviceTaint {
                    key: t.key.clone(),
                    value: t.value.clone(),
                    effect: t.effect.as_str().to_owned(),
                    time_added: None,
                })
                .collect(),
        )
        .filter(|t: &Vec<_>| !t.is_empty()),
        ..Default::default()
    }
}

/// The slices `pool` is published as, generation `generation`. Names are
/// `<node>-<driver>-<i>`, stable for a given layout.
pub fn pool_to_slices(
    pool: &Pool,
    version: ServerVersion,
    generation: i64,
) -> Result<Vec<api::ResourceSlice>, SliceError> {
    let contents = slices::layout(pool, version)?;
    let count = i64::try_from(contents.len()).unwrap_or(i64::MAX);
    Ok(contents
        .iter()
        .enumerate()
        .map(|(i, c)| slice(pool, c, i, count, generation))
        .collect())
}

fn slice(pool: &Pool, c: &SliceContent, i: usize, count: i64, generation: i64) -> api::ResourceSlice {
    api::ResourceSlice {
        metadata: ObjectMeta {
            name: Some(format!("{}-{}-{i}", pool.node_name, pool.driver)),
            ..Default::default()
        },
        spec: api::ResourceSliceSpec {
            driver: pool.driver.clone(),
            pool: api::ResourcePool {
                name: pool.name.clone(),
                generation,
                resource_slice_count: count,
            },
            node_name: Some(pool.node_name.clone()),
            devices: Some(c.devices.iter().map(device_to_api).collect()).filter(|d: &Vec<_>| !d.is_empty()),
            shared_counters: Some(
                c.counter_sets
                    .iter()
                    .map(|s| api::CounterSet {
                        name: s.name.clone(),
                        counters: counters(&s.counters),
                    })
                    .collect(),
            )
            .filter(|s: &Vec<_>| !s.is_empty()),
            ..Default::default()
        },
    }
}

fn counters_from(path: &str, c: &BTreeMap<String, api::Counter>) -> Result<BTreeMap<String, Quantity>, ApiError> {
    c.iter()
        .map(|(k, v)| Ok((k.clone(), parse_q(&format!("{path}[{k}].value"), &v.value)?)))
        .collect()
}

fn attr_from(path: &str, a: &api::DeviceAttribute) -> Result<AttrValue, ApiError> {
    match (a.int, a.bool, &a.string, &a.version) {
        (Some(i), None, None, None) => Ok(AttrValue::Int(i)),
        (None, Some(b), None, None) => Ok(AttrValue::Bool(b)),
        (None, None, Some(s), None) => Ok(AttrValue::String(s.clone())),
        (None, None, None, Some(v)) => Ok(AttrValue::Version(v.clone())),
        _ => Err(ApiError {
            path: path.to_owned(),
            message: "must set exactly one of int, bool, string, version".into(),
        }),
    }
}

/// Reads one device of a slice.
pub fn device_from_api(path: &str, d: &api::Device) -> Result<Device, ApiError> {
    let mut out = Device {
        name: d.name.clone(),
        allow_multiple_allocations: d.allow_multiple_allocations.unwrap_or(false),
        ..Device::default()
    };
    for (k, a) in d.attributes.iter().flatten() {
        out.attributes
            .insert(k.clone(), attr_from(&format!("{path}.attributes[{k}]"), a)?);
    }
    for (k, c) in d.capacity.iter().flatten() {
        let p = format!("{path}.capacity[{k}]");
        let request_policy = match &c.request_policy {
            None => None,
            Some(r) => {
                let default = r
                    .default
                    .as_ref()
                    .map(|v| parse_q(&format!("{p}.requestPolicy.default"), v))
                    .transpose()?;
                let valid = match (&r.valid_values, &r.valid_range) {
                    (Some(v), None) => Some(ValidValues::Values(
                        v.iter()
                            .enumerate()
                            .map(|(i, v)| parse_q(&format!("{p}.requestPolicy.validValues[{i}]"), v))
                            .collect::<Result<_, _>>()?,
                    )),
                    (None, Some(r)) => Some(ValidValues::Range {
                        min: parse_q(&format!("{p}.requestPolicy.validRange.min"), &r.min)?,
                        max: r
                            .max
                            .as_ref()
                            .map(|v| parse_q(&format!("{p}.requestPolicy.validRange.max"), v))
                            .transpose()?,
                        step: r
                            .step
                            .as_ref()
                            .map(|v| parse_q(&format!("{p}.requestPolicy.validRange.step"), v))
                            .transpose()?,
                    }),
                    (None, None) => None,
                    (Some(_), Some(_)) => {
                        return Err(ApiError {
                            path: format!("{p}.requestPolicy"),
                            message: "validValues and validRange are exclusive".into(),
                        });
                    }
                };
                Some(RequestPolicy { default, valid })
            }
        };
        out.capacity.insert(
            k.clone(),
            Capacity {
                value: parse_q(&format!("{p}.value"), &c.value)?,
                request_policy,
            },
        );
    }
    for (i, c) in d.consumes_counters.iter().flatten().enumerate() {
        let p = format!("{path}.consumesCounters[{i}]");
        out.consumes_counters.push(CounterConsumption {
            counter_set: c.counter_set.clone(),
            counters: counters_from(&format!("{p}.counters"), &c.counters)?,
        });
    }
    for t in d.taints.iter().flatten() {
        out.taints.push(Taint {
            key: t.key.clone(),
            value: t.value.clone(),
            effect: TaintEffect::from_api(&t.effect),
        });
    }
    Ok(out)
}

/// Reassembles the pools in `slices` (highest generation of each pool
/// only, as consumers must), keyed by (driver, pool name).
pub fn pools_from_slices(slices: &[api::ResourceSlice]) -> Result<Vec<Pool>, ApiError> {
    let mut newest: BTreeMap<(String, String), i64> = BTreeMap::new();
    for s in slices {
        let key = (s.spec.driver.clone(), s.spec.pool.name.clone());
        let g = newest.entry(key).or_insert(s.spec.pool.generation);
        *g = (*g).max(s.spec.pool.generation);
    }
    let mut pools: BTreeMap<(String, String), Pool> = BTreeMap::new();
    for (i, s) in slices.iter().enumerate() {
        let key = (s.spec.driver.clone(), s.spec.pool.name.clone());
        if newest.get(&key) != Some(&s.spec.pool.generation) {
            continue;
        }
        let pool = pools.entry(key).or_insert_with(|| Pool {
            driver: s.spec.driver.clone(),
            name: s.spec.pool.name.clone(),
            node_name: s.spec.node_name.clone().unwrap_or_default(),
            counter_sets: Vec::new(),
            devices: Vec::new(),
        });
        for (j, c) in s.spec.shared_counters.iter().flatten().enumerate() {
            pool.counter_sets.push(CounterSet {
                name: c.name.clone(),
                counters: counters_from(&format!("slices[{i}].spec.sharedCounters[{j}].counters"), &c.counters)?,
            });
        }
        for (j, d) in s.spec.devices.iter().flatten().enumerate() {
            pool.devices
                .push(device_from_api(&format!("slices[{i}].spec.devices[{j}]"), d)?);
        }
    }
    Ok(pools.into_values().collect())
}
