//! A ResourceClaim as the API holds it → what this node must prepare for
//! it. The claim object is untrusted input: its UID must be the one kubelet
//! asked for, it must be allocated, and only this driver's results in this
//! node's pool are taken, each naming a device the node publishes.

use k8s_openapi::api::resource::v1 as api;
use railyard_dra::device::{AttrValue, Pool};
use railyard_dra::opaque::{ConfigEntry, ConfigSource, DeviceConfig, DeviceKind, effective_config, parse_config};
use railyard_dra::quantity::Quantity;

use crate::cdi::ClaimId;

/// One allocated device to prepare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDevice {
    pub request: String,
    pub device: String,
    pub kind: DeviceKind,
    pub share_id: Option<String>,
    /// The memory this claim consumed of a shared GPU, bytes.
    pub memory_bytes: Option<i64>,
    /// The class or claim config that applies, if any.
    pub config: Option<DeviceConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPlan {
    pub claim: ClaimId,
    pub devices: Vec<PlannedDevice>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("claim {claim}: metadata.uid is {actual:?}, kubelet asked for {wanted:?} (the claim was recreated)")]
    UidMismatch {
        claim: String,
        actual: String,
        wanted: String,
    },
    #[error("claim {0}: status.allocation is not set (the claim is not allocated)")]
    NotAllocated(String),
    #[error("claim {claim}: {path}: device {device:?} is not published by this node")]
    UnknownDevice {
        claim: String,
        path: String,
        device: String,
    },
    #[error("claim {claim}: {path}: {message}")]
    BadField {
        claim: String,
        path: String,
        message: String,
    },
}

/// The devices of `obj` this node prepares for `want`.
pub fn plan_claim(obj: &api::ResourceClaim, want: &ClaimId, pool: &Pool) -> Result<ClaimPlan, ResolveError> {
    let who = format!("{}/{}", want.namespace, want.name);
    let actual = obj.metadata.uid.clone().unwrap_or_default();
    if actual != want.uid {
        return Err(ResolveError::UidMismatch {
            claim: who,
            actual,
            wanted: want.uid.clone(),
        });
    }
    let allocation = obj
        .status
        .as_ref()
        .and_then(|s| s.allocation.as_ref())
        .ok_or_else(|| ResolveError::NotAllocated(who.clone()))?;
    let Some(devices) = allocation.devices.as_ref() else {
        return Ok(ClaimPlan {
            claim: want.clone(),
            devices: Vec::new(),
        });
    };
    let configs = config_entries(&who, devices.config.as_deref().unwrap_or_default())?;
    let mut planned = Vec::new();
    for (i, r) in devices.results.iter().flatten().enumerate() {
        if r.driver != pool.driver || r.pool != pool.name {
            continue;
        }
        let path = format!("status.allocation.devices.results[{i}]");
        let Some(device) = pool.devices.iter().find(|d| d.name == r.device) else {
            return Err(ResolveError::UnknownDevice {
                claim: who,
                path: format!("{path}.device"),
                device: r.device.clone(),
            });
        };
        let kind = match device.attributes.get("type") {
            Some(AttrValue::String(t)) if t == "mig" => DeviceKind::Mig,
            _ => DeviceKind::Gpu,
        };
        let memory_bytes = match r.consumed_capacity.as_ref().and_then(|c| c.get("memory")) {
            None => None,
            Some(q) => {
                Some(
                    Quantity::parse(&q.0)
                        .ok()
                        .and_then(|q| q.as_i64())
                        .ok_or_else(|| ResolveError::BadField {
                            claim: who.clone(),
                            path: format!("{path}.consumedCapacity[memory]"),
                            message: format!("{:?} is not a whole number of bytes", q.0),
                        })?,
                )
            }
        };
        planned.push(PlannedDevice {
            request: r.request.clone(),
            device: r.device.clone(),
            kind,
            share_id: r.share_id.clone(),
            memory_bytes,
            config: effective_config(&configs, &pool.driver, &r.request, kind).cloned(),
        });
    }
    Ok(ClaimPlan {
        claim: want.clone(),
        devices: planned,
    })
}

fn config_entries(who: &str, configs: &[api::DeviceAllocationConfiguration]) -> Result<Vec<ConfigEntry>, ResolveError> {
    let mut out = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let path = format!("status.allocation.devices.config[{i}]");
        let Some(opaque) = &c.opaque else { continue };
        let source = match c.source.as_str() {
            "FromClass" => ConfigSource::FromClass,
            "FromClaim" => ConfigSource::FromClaim,
            other => {
                return Err(ResolveError::BadField {
                    claim: who.to_owned(),
                    path: format!("{path}.source"),
                    message: format!("{other:?} is neither FromClass nor FromClaim"),
                });
            }
        };
        // Configs for other drivers are theirs to read.
        if opaque.driver.is_empty() {
            continue;
        }
        let config = match parse_config(&format!("{path}.opaque.parameters"), &opaque.parameters.0) {
            Ok(c) => c,
            Err(e) if opaque.driver != railyard_dra::names::DEFAULT_DRIVER => {
                tracing::debug!(driver = %opaque.driver, error = %e.message, "config of another driver skipped");
                continue;
            }
            Err(e) => {
                return Err(ResolveError::BadField {
                    claim: who.to_owned(),
                    path: e.path,
                    message: e.message,
                });
            }
        };
        out.push(ConfigEntry {
            source,
            requests: c.requests.clone().unwrap_or_default(),
            driver: opaque.driver.clone(),
            config,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use railyard_dra::device::Device;
    use serde_json::json;

    fn pool() -> Pool {
        let dev = |name: &str, t: &str| Device {
            name: name.into(),
            attributes: [("type".to_string(), AttrValue::String(t.into()))].into(),
            ..Device::default()
        };
        Pool {
            driver: "gpu.nvidia.com".into(),
            name: "node-a".into(),
            node_name: "node-a".into(),
            counter_sets: Vec::new(),
            devices: vec![dev("gpu-0", "gpu"), dev("gpu-1-mig-1g10gb-19-0", "mig")],
        }
    }

    fn want() -> ClaimId {
        ClaimId {
            uid: "u1".into(),
            namespace: "ml".into(),
            name: "c".into(),
        }
    }

    fn claim(status: serde_json::Value) -> api::ResourceClaim {
        serde_json::from_value(json!({
            "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
            "metadata": {"name": "c", "namespace": "ml", "uid": "u1"},
            "spec": {"devices": {"requests": []}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn takes_only_this_drivers_results_in_this_pool_with_their_config() {
        let obj = claim(json!({"allocation": {"devices": {
            "results": [
                {"request": "gpu", "driver": "gpu.nvidia.com", "pool": "node-a", "device": "gpu-0",
                 "shareID": "6f2a0c2e-0000-4000-8000-000000000001", "consumedCapacity": {"memory": "10Gi"}},
                {"request": "mig", "driver": "gpu.nvidia.com", "pool": "node-a", "device": "gpu-1-mig-1g10gb-19-0"},
                {"request": "nic", "driver": "net.example.com", "pool": "node-a", "device": "eth0"},
                {"request": "gpu", "driver": "gpu.nvidia.com", "pool": "node-b", "device": "gpu-0"}
            ],
            "config": [
                {"source": "FromClaim", "requests": ["gpu"], "opaque": {"driver": "gpu.nvidia.com", "parameters": {
                    "apiVersion": "resource.nvidia.com/v1beta1", "kind": "GpuConfig",
                    "sharing": {"strategy": "TimeSlicing", "timeSlicingConfig": {"interval": "Long"}}}}},
                {"source": "FromClaim", "opaque": {"driver": "net.example.com", "parameters": {"mtu": 9000}}}
            ]
        }}}));
        let plan = plan_claim(&obj, &want(), &pool()).unwrap();
        assert_eq!(plan.devices.len(), 2);
        let gpu = &plan.devices[0];
        assert_eq!((gpu.device.as_str(), gpu.kind), ("gpu-0", DeviceKind::Gpu));
        assert_eq!(gpu.memory_bytes, Some(10 << 30));
        assert!(gpu.share_id.is_some());
        assert!(gpu.config.as_ref().unwrap().sharing.is_some());
        assert_eq!(plan.devices[1].kind, DeviceKind::Mig);
        assert_eq!(plan.devices[1].config, None, "the GPU config names request gpu only");
    }

    #[test]
    fn refuses_recreated_unallocated_and_unknown() {
        let mut obj = claim(json!({}));
        let e = plan_claim(&obj, &want(), &pool()).unwrap_err().to_string();
        assert!(e.contains("ml/c") && e.contains("not allocated"), "{e}");
        obj.metadata.uid = Some("u0".into());
        let e = plan_claim(&obj, &want(), &pool()).unwrap_err().to_string();
        assert!(e.contains("\"u0\"") && e.contains("\"u1\""), "{e}");
        let obj = claim(json!({"allocation": {"devices": {"results": [
            {"request": "gpu", "driver": "gpu.nvidia.com", "pool": "node-a", "device": "gpu-9"}]}}}));
        let e = plan_claim(&obj, &want(), &pool()).unwrap_err().to_string();
        assert!(e.contains("results[0].device") && e.contains("gpu-9"), "{e}");
        let obj = claim(json!({"allocation": {"devices": {"results": [
            {"request": "gpu", "driver": "gpu.nvidia.com", "pool": "node-a", "device": "gpu-0",
             "consumedCapacity": {"memory": "1.5"}}]}}}));
        let e = plan_claim(&obj, &want(), &pool()).unwrap_err().to_string();
        assert!(e.contains("consumedCapacity[memory]"), "{e}");
    }
}
