//! Parsers for the config formats operators already have: NVIDIA's device
//! plugin config and mig-parted's config, accepted unchanged.

pub mod budget;
pub mod device_plugin;
pub mod mig_defaults;
pub mod mig_parted;

pub use device_plugin::{
    DeviceListStrategy, DevicePluginConfig, MigStrategy, ReplicaDevices, ReplicatedResource, SharingStrategy,
};
pub use mig_defaults::generated_config;
pub use mig_parted::{ConfigGpu, MigConfigEntry, MigPartedConfig};

/// Parses a Kubernetes binary/decimal quantity of bytes (`8Gi`, `512Mi`,
/// `10G`, `1073741824`) into MiB, rounding down.
pub fn quantity_to_mib(q: &str) -> Result<u64, String> {
    let q = q.trim();
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{q}` is not a quantity like 8Gi or 512Mi"))?;
    let bytes_per: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "`{q}`: unknown unit `{unit}` (use Ki, Mi, Gi, Ti, k, M, G or T)"
            ));
        }
    };
    n.checked_mul(bytes_per)
        .map(|b| b >> 20)
        .ok_or_else(|| format!("`{q}` is too large"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quantities() {
        assert_eq!(super::quantity_to_mib("8Gi"), Ok(8192));
        assert_eq!(super::quantity_to_mib("512Mi"), Ok(512));
        assert_eq!(super::quantity_to_mib("10G"), Ok(9536));
        assert!(super::quantity_to_mib("8 GB").is_err());
        assert!(super::quantity_to_mib("lots").is_err());
    }
}
