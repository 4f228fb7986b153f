//! Names and limits shared by NVIDIA's driver and the `resource.k8s.io/v1`
//! API (PROTOCOLS §4, §12).

pub const DEFAULT_DRIVER: &str = "gpu.nvidia.com";
/// Kubernetes' standard attribute domain.
pub const K8S_DOMAIN: &str = "resource.kubernetes.io";
pub const ATTR_PCI_BUS_ID: &str = "resource.kubernetes.io/pciBusID";
pub const ATTR_PCIE_ROOT: &str = "resource.kubernetes.io/pcieRoot";
pub const ATTR_NUMA_NODE: &str = "resource.kubernetes.io/numaNode";
/// Railyard's topology attributes (documented in the crate README).
pub const ATTR_NVLINK_ISLAND: &str = "railyard.dev/nvlinkIsland";
pub const ATTR_RAIL: &str = "railyard.dev/rail";

/// API limits (`resource.k8s.io/v1`, 1.34–1.36).
pub mod limits {
    pub const DEVICES_PER_SLICE: usize = 128;
    /// When any device in the slice uses taints or consumes counters.
    pub const DEVICES_PER_SLICE_WITH_COUNTERS: usize = 64;
    pub const COUNTER_SETS_PER_SLICE: usize = 8;
    pub const COUNTERS_PER_SET: usize = 32;
    /// 1.34: counters in a slice (beside its devices), all sets together.
    pub const COUNTERS_PER_SLICE_1_34: usize = 32;
    pub const ATTRIBUTES_AND_CAPACITIES_PER_DEVICE: usize = 32;
    pub const CONSUMES_COUNTERS_PER_DEVICE: usize = 2;
    pub const TAINTS_PER_DEVICE: usize = 16;
    pub const STRING_ATTRIBUTE_LEN: usize = 64;
}

/// A lower-case RFC 1123 DNS subdomain of at most `max` characters.
pub fn is_dns_subdomain(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.split('.').all(is_dns_label)
}

/// A lower-case RFC 1123 DNS label (≤ 63).
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}
