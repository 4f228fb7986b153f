//! What a node publishes, in domain terms: devices with attributes,
//! capacities and counter consumption, grouped into one pool per node with
//! its shared counter sets. Conversion to and from the `resource.k8s.io/v1`
//! objects is in [`crate::api`]; slicing a pool under the API's limits is in
//! [`crate::slices`].

use std::collections::BTreeMap;

use crate::quantity::Quantity;

/// A device attribute value (`DeviceAttribute`: exactly one of int, bool,
/// string, version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    Int(i64),
    Bool(bool),
    String(String),
    /// A semver 2.0.0 string; CEL sees it as a semver value.
    Version(String),
}

/// `requestPolicy` of a consumable capacity (KEP-5075).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestPolicy {
    /// Consumed when a request names no amount of this capacity.
    pub default: Option<Quantity>,
    pub valid: Option<ValidValues>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidValues {
    /// Allowed amounts, ascending (≤ 10); a request is rounded up to the
    /// next one.
    Values(Vec<Quantity>),
    /// `min + k × step` up to `max`; a request is rounded up to the next
    /// step.
    Range {
        min: Quantity,
        max: Option<Quantity>,
        step: Option<Quantity>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    pub value: Quantity,
    pub request_policy: Option<RequestPolicy>,
}

impl Capacity {
    pub fn fixed(value: Quantity) -> Capacity {
        Capacity {
            value,
            request_policy: None,
        }
    }
}

/// `consumesCounters[]` entry: amounts taken from one shared counter set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterConsumption {
    pub counter_set: String,
    pub counters: BTreeMap<String, Quantity>,
}

/// A `sharedCounters[]` entry of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSet {
    pub name: String,
    pub counters: BTreeMap<String, Quantity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaintEffect {
    None,
    NoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::None => "None",
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }

    /// The API's spelling; an unknown effect is treated as `None`, as the
    /// scheduler does.
    pub fn from_api(s: &str) -> TaintEffect {
        match s {
            "NoSchedule" => TaintEffect::NoSchedule,
            "NoExecute" => TaintEffect::NoExecute,
            _ => TaintEffect::None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

/// One published device. Attribute and capacity names are as published:
/// unqualified names belong to the driver's domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Device {
    pub name: String,
    pub attributes: BTreeMap<String, AttrValue>,
    pub capacity: BTreeMap<String, Capacity>,
    pub consumes_counters: Vec<CounterConsumption>,
    pub allow_multiple_allocations: bool,
    pub taints: Vec<Taint>,
}

impl Device {
    /// The attribute under its fully-qualified name `domain/id`, resolving
    /// unqualified published names to `driver`'s domain.
    pub fn attribute(&self, driver: &str, qualified: &str) -> Option<&AttrValue> {
        let (domain, id) = split_qualified(driver, qualified);
        self.attributes
            .iter()
            .find_map(|(k, v)| (split_qualified(driver, k) == (domain, id)).then_some(v))
    }

    /// Attribute and capacity entries together, the quantity the API caps
    /// at 32 per device.
    pub fn attribute_and_capacity_count(&self) -> usize {
        self.attributes.len() + self.capacity.len()
    }
}

/// `domain/id` → `(domain, id)`; a name without a domain is `driver`'s.
pub fn split_qualified<'a>(driver: &'a str, name: &'a str) -> (&'a str, &'a str) {
    match name.split_once('/') {
        Some((domain, id)) => (domain, id),
        None => (driver, name),
    }
}

/// Everything one driver publishes for one node: one pool named after the
/// node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub driver: String,
    pub name: String,
    pub node_name: String,
    pub counter_sets: Vec<CounterSet>,
    pub devices: Vec<Device>,
}
