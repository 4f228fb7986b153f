//! The DRA driver's own config file (`--config FILE`): what a node
//! publishes. Parsed strictly: an unknown field or a bad value is an error
//! naming the field.

use serde::Deserialize;

use crate::names::DEFAULT_DRIVER;
use crate::quantity::Quantity;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraConfig {
    /// Driver name; `gpu.nvidia.com` so NVIDIA's classes and claims work.
    pub driver_name: String,
    /// Publish every (profile, placement) of MIG-capable GPUs as a
    /// partitionable device, created at Prepare.
    pub dynamic_mig: bool,
    pub sharing: Option<SharingConfig>,
}

/// Whole GPUs published as shareable devices (consumable capacity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharingConfig {
    /// How many claims may share one GPU (the `shares` capacity).
    pub shares: u32,
    /// The memory a claim gets when it names none; memory / shares if unset.
    pub memory_per_share: Option<Quantity>,
    /// GPU indices to share; every non-MIG GPU if empty.
    pub gpus: Vec<u32>,
}

impl Default for DraConfig {
    fn default() -> Self {
        DraConfig {
            driver_name: DEFAULT_DRIVER.to_owned(),
            dynamic_mig: true,
            sharing: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("DRA driver config: {0}")]
pub struct DraConfigError(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    version: String,
    #[serde(default)]
    driver_name: Option<String>,
    #[serde(default)]
    dynamic_mig: Option<bool>,
    #[serde(default)]
    sharing: Option<RawSharing>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSharing {
    shares: u32,
    #[serde(default)]
    memory_per_share: Option<String>,
    #[serde(default)]
    gpus: Vec<u32>,
}

/// Most shares per GPU: the device plugin's replica bound.
pub const MAX_SHARES: u32 = 64;

impl DraConfig {
    pub fn from_yaml(text: &str) -> Result<DraConfig, DraConfigError> {
        if text.len() > 64 * 1024 {
            return Err(DraConfigError(format!(
                "{} bytes, more than the 64 KiB limit",
                text.len()
            )));
        }
        let raw: RawConfig = railyard_core::yaml::from_yaml("", text).map_err(|e| match e {
            railyard_core::yaml::ConfigError::Parse { path, message, .. } => {
                DraConfigError(format!("{path}: {message}"))
            }
            other => DraConfigError(other.to_string()),
        })?;
        if raw.version != "v1" {
            return Err(DraConfigError(format!(
                "version: {:?} is not supported, expected \"v1\"",
                raw.version
            )));
        }
        let driver_name = raw.driver_name.unwrap_or_else(|| DEFAULT_DRIVER.to_owned());
        if !crate::names::is_dns_subdomain(&driver_name, 63) {
            return Err(DraConfigError(format!(
                "driverName: {driver_name:?} is not a lower-case DNS subdomain of at most 63 characters"
            )));
        }
        let sharing = match raw.sharing {
            None => None,
            Some(s) => {
                if s.shares == 0 || s.shares > MAX_SHARES {
                    return Err(DraConfigError(format!(
                        "sharing.shares: {} is outside 1..={MAX_SHARES}",
                        s.shares
                    )));
                }
                let memory_per_share = match s.memory_per_share {
                    None => None,
                    Some(text) => {
                        let q = Quantity::parse(&text)
                            .map_err(|e| DraConfigError(format!("sharing.memoryPerShare: {e}")))?;
                        if q.sign() <= 0 || q.as_i64().is_none() {
                            return Err(DraConfigError(format!(
                                "sharing.memoryPerShare: {text:?} is not a positive whole number of bytes"
                            )));
                        }
                        Some(q)
                    }
                };
                Some(SharingConfig {
                    shares: s.shares,
                    memory_per_share,
                    gpus: s.gpus,
                })
            }
        };
        Ok(DraConfig {
            driver_name,
            dynamic_mig: raw.dynamic_mig.unwrap_or(true),
            sharing,
        })
    }
}
