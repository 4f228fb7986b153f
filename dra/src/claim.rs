//! Claims and DeviceClasses in domain terms, read from the
//! `resource.k8s.io/v1` objects users write. Everything from the API is
//! checked here, with the field path in each error.

use std::collections::BTreeMap;

use k8s_openapi::api::resource::v1 as api;

use crate::api::{ApiError, parse_q};
use crate::device::TaintEffect;
use crate::names::is_dns_label;
use crate::quantity::Quantity;

/// API limits on a claim (PROTOCOLS §4.2).
pub const MAX_REQUESTS: usize = 32;
pub const MAX_SELECTORS: usize = 32;
pub const MAX_SUBREQUESTS: usize = 8;
pub const MAX_CONSTRAINTS: usize = 32;
pub const MAX_TOLERATIONS: usize = 16;
/// Devices one request may ask for: the API caps a claim's results at 32.
pub const MAX_RESULTS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocationMode {
    ExactCount(u32),
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    pub key: Option<String>,
    pub exists: bool,
    pub value: Option<String>,
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    pub fn tolerates(&self, taint: &crate::device::Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        match &self.key {
            None => self.exists,
            Some(k) if *k != taint.key => false,
            Some(_) => self.exists || self.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        }
    }
}

/// One way to satisfy a request: `exactly`, or one `firstAvailable` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRequest {
    /// `<request>` or `<request>/<subrequest>`, as results name it.
    pub name: String,
    pub class: String,
    pub selectors: Vec<String>,
    pub mode: AllocationMode,
    pub admin_access: bool,
    pub tolerations: Vec<Toleration>,
    pub capacity: BTreeMap<String, Quantity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub name: String,
    /// Tried in order; `exactly` is a single alternative.
    pub alternatives: Vec<SubRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintKind {
    MatchAttribute(String),
    DistinctAttribute(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// Request names it applies to; empty = all.
    pub requests: Vec<String>,
    pub kind: ConstraintKind,
}

impl Constraint {
    pub fn applies_to(&self, request: &str) -> bool {
        let base = request.split('/').next().unwrap_or(request);
        self.requests.is_empty() || self.requests.iter().any(|r| r == request || r == base)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimSpec {
    pub requests: Vec<Request>,
    pub constraints: Vec<Constraint>,
    /// `spec.devices.config[]` as written (applied by the node plugin).
    pub config: Vec<api::DeviceClaimConfiguration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceClass {
    pub name: String,
    pub selectors: Vec<String>,
    pub extended_resource_name: Option<String>,
    pub config: Vec<api::DeviceClassConfiguration>,
}

fn err(path: String, message: impl Into<String>) -> ApiError {
    ApiError {
        path,
        message: message.into(),
    }
}

fn selectors(path: &str, s: &Option<Vec<api::DeviceSelector>>) -> Result<Vec<String>, ApiError> {
    let s = s.as_deref().unwrap_or_default();
    if s.len() > MAX_SELECTORS {
        return Err(err(
            path.to_owned(),
            format!("{} selectors, more than {MAX_SELECTORS}", s.len()),
        ));
    }
    s.iter()
        .enumerate()
        .map(|(i, s)| {
            s.cel
                .as_ref()
                .map(|c| c.expression.clone())
                .ok_or_else(|| err(format!("{path}[{i}].cel"), "required"))
        })
        .collect()
}

fn tolerations(path: &str, t: &Option<Vec<api::DeviceToleration>>) -> Result<Vec<Toleration>, ApiError> {
    let t = t.as_deref().unwrap_or_default();
    if t.len() > MAX_TOLERATIONS {
        return Err(err(
            path.to_owned(),
            format!("{} tolerations, more than {MAX_TOLERATIONS}", t.len()),
        ));
    }
    t.iter()
        .enumerate()
        .map(|(i, t)| {
            let exists = match t.operator.as_deref() {
                None | Some("Equal") => false,
                Some("Exists") => true,
                Some(o) => {
                    return Err(err(
                        format!("{path}[{i}].operator"),
                        format!("{o:?} is not Equal or Exists"),
                    ));
                }
            };
            let effect = match t.effect.as_deref() {
                None | Some("") => None,
                Some("NoSchedule") => Some(TaintEffect::NoSchedule),
                Some("NoExecute") => Some(TaintEffect::NoExecute),
                Some(e) => {
                    return Err(err(
                        format!("{path}[{i}].effect"),
                        format!("{e:?} is not NoSchedule or NoExecute"),
                    ));
                }
            };
            Ok(Toleration {
                key: t.key.clone().filter(|k| !k.is_empty()),
                exists,
                value: t.value.clone(),
                effect,
            })
        })
        .collect()
}

fn mode(path: &str, mode: &Option<String>, count: Option<i64>) -> Result<AllocationMode, ApiError> {
    match mode.as_deref() {
        None | Some("ExactCount") => {
            let c = count.unwrap_or(1);
            if c < 1 || c > MAX_RESULTS as i64 {
                return Err(err(
                    format!("{path}.count"),
                    format!("{c} is outside 1..={MAX_RESULTS}"),
                ));
            }
            Ok(AllocationMode::ExactCount(c as u32))
        }
        Some("All") if count.is_some() => Err(err(format!("{path}.count"), "must not be set with allocationMode All")),
        Some("All") => Ok(AllocationMode::All),
        Some(m) => Err(err(
            format!("{path}.allocationMode"),
            format!("{m:?} is not ExactCount or All"),
        )),
    }
}

fn capacity(path: &str, c: &Option<api::CapacityRequirements>) -> Result<BTreeMap<String, Quantity>, ApiError> {
    let mut out = BTreeMap::new();
    for (k, v) in c.as_ref().and_then(|c| c.requests.as_ref()).into_iter().flatten() {
        let q = parse_q(&format!("{path}.requests[{k}]"), v)?;
        if q.sign() < 0 {
            return Err(err(format!("{path}.requests[{k}]"), format!("{} is negative", v.0)));
        }
        out.insert(k.clone(), q);
    }
    Ok(out)
}

impl ClaimSpec {
    /// Reads `spec` (of a ResourceClaim, or `spec.spec` of a template);
    /// `path` prefixes error paths (e.g. `spec`).
    pub fn from_api(path: &str, spec: &api::ResourceClaimSpec) -> Result<ClaimSpec, ApiError> {
        let devices = spec.devices.clone().unwrap_or_default();
        let path = format!("{path}.devices");
        let raw = devices.requests.unwrap_or_default();
        if raw.len() > MAX_REQUESTS {
            return Err(err(
                format!("{path}.requests"),
                format!("{} requests, more than {MAX_REQUESTS}", raw.len()),
            ));
        }
        let mut requests = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let p = format!("{path}.requests[{i}]");
            if !is_dns_label(&r.name) {
                return Err(err(format!("{p}.name"), format!("{:?} is not a DNS label", r.name)));
            }
            if requests.iter().any(|q: &Request| q.name == r.name) {
                return Err(err(format!("{p}.name"), format!("{:?} is used twice", r.name)));
            }
            let alternatives = match (&r.exactly, &r.first_available) {
                (Some(e), None) => {
                    let p = format!("{p}.exactly");
                    vec![SubRequest {
                        name: r.name.clone(),
                        class: e.device_class_name.clone(),
                        selectors: selectors(&format!("{p}.selectors"), &e.selectors)?,
                        mode: mode(&p, &e.allocation_mode, e.count)?,
                        admin_access: e.admin_access.unwrap_or(false),
                        tolerations: tolerations(&format!("{p}.tolerations"), &e.tolerations)?,
                        capacity: capacity(&format!("{p}.capacity"), &e.capacity)?,
                    }]
                }
                (None, Some(subs)) => {
                    if subs.is_empty() || subs.len() > MAX_SUBREQUESTS {
                        return Err(err(
                            format!("{p}.firstAvailable"),
                            format!("{} entries, expected 1..={MAX_SUBREQUESTS}", subs.len()),
                        ));
                    }
                    subs.iter()
                        .enumerate()
                        .map(|(j, s)| {
                            let p = format!("{p}.firstAvailable[{j}]");
                            if !is_dns_label(&s.name) {
                                return Err(err(format!("{p}.name"), format!("{:?} is not a DNS label", s.name)));
                            }
                            Ok(SubRequest {
                                name: format!("{}/{}", r.name, s.name),
                                class: s.device_class_name.clone(),
                                selectors: selectors(&format!("{p}.selectors"), &s.selectors)?,
                                mode: mode(&p, &s.allocation_mode, s.count)?,
                                admin_access: false,
                                tolerations: tolerations(&format!("{p}.tolerations"), &s.tolerations)?,
                                capacity: capacity(&format!("{p}.capacity"), &s.capacity)?,
                            })
                        })
                        .collect::<Result<_, _>>()?
                }
                _ => return Err(err(p, "exactly one of exactly and firstAvailable must be set")),
            };
            requests.push(Request {
                name: r.name.clone(),
                alternatives,
            });
        }
        let raw = devices.constraints.unwrap_or_default();
        if raw.len() > MAX_CONSTRAINTS {
            return Err(err(
                format!("{path}.constraints"),
                format!("{} constraints, more than {MAX_CONSTRAINTS}", raw.len()),
            ));
        }
        let mut constraints = Vec::new();
        for (i, c) in raw.iter().enumerate() {
            let p = format!("{path}.constraints[{i}]");
            let kind = match (&c.match_attribute, &c.distinct_attribute) {
                (Some(a), None) => ConstraintKind::MatchAttribute(fully_qualified(&format!("{p}.matchAttribute"), a)?),
                (None, Some(a)) => {
                    ConstraintKind::DistinctAttribute(fully_qualified(&format!("{p}.distinctAttribute"), a)?)
                }
                _ => {
                    return Err(err(
                        p,
                        "exactly one of matchAttribute and distinctAttribute must be set",
                    ));
                }
            };
            let names = c.requests.clone().unwrap_or_default();
            for (j, n) in names.iter().enumerate() {
                let base = n.split('/').next().unwrap_or(n);
                if !requests.iter().any(|r| r.name == base) {
                    return Err(err(
                        format!("{p}.requests[{j}]"),
                        format!("{n:?} names no request of this claim"),
                    ));
                }
            }
            constraints.push(Constraint { requests: names, kind });
        }
        Ok(ClaimSpec {
            requests,
            constraints,
            config: devices.config.unwrap_or_default(),
        })
    }
}

fn fully_qualified(path: &str, name: &str) -> Result<String, ApiError> {
    match name.split_once('/') {
        Some((d, id)) if !d.is_empty() && !id.is_empty() => Ok(name.to_owned()),
        _ => Err(err(
            path.to_owned(),
            format!("{name:?} must be fully qualified (domain/id)"),
        )),
    }
}

impl DeviceClass {
    pub fn from_api(c: &api::DeviceClass) -> Result<DeviceClass, ApiError> {
        let name = c
            .metadata
            .name
            .clone()
            .ok_or_else(|| err("metadata.name".into(), "required"))?;
        Ok(DeviceClass {
            selectors: selectors("spec.selectors", &c.spec.selectors)?,
            extended_resource_name: c.spec.extended_resource_name.clone(),
            config: c.spec.config.clone().unwrap_or_default(),
            name,
        })
    }
}
