//! What a pod asks of GPUs, from its resource totals.

use super::products::GpuProducts;

/// Whole GPUs (NVIDIA's name).
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// Time-sliced or MPS replicas under `renameByDefault`.
pub const SHARED_RESOURCE: &str = "nvidia.com/gpu.shared";
/// `nvidia.com/mig-<profile>` (mixed strategy).
pub const MIG_RESOURCE_PREFIX: &str = "nvidia.com/mig-";
/// GPU Feature Discovery: replicas per GPU.
pub const GPU_REPLICAS_LABEL: &str = "nvidia.com/gpu.replicas";
/// GPU Feature Discovery: physical GPUs on the node.
pub const GPU_COUNT_LABEL: &str = "nvidia.com/gpu.count";
/// GPU Feature Discovery: `none`, `time-slicing` or `mps`.
pub const GPU_SHARING_STRATEGY_LABEL: &str = "nvidia.com/gpu.sharing-strategy";
/// GPU Feature Discovery: the model, suffixed `-SHARED` when `nvidia.com/gpu`
/// itself is replicated (sharing without renaming).
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";
/// Pod annotation: `"true"` asks for every GPU on one NUMA node.
pub const SINGLE_NUMA_ANNOTATION: &str = "railyard.dev/single-numa";

/// The GPU part of a pod's request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GpuAsk {
    None,
    /// `nvidia.com/gpu: n`: whole GPUs, except on a node whose
    /// `nvidia.com/gpu` counts time-slicing/MPS replicas, where it is `n`
    /// replicas (see `NodeState::effective`).
    Whole(u32),
    /// `nvidia.com/gpu.shared: n` replicas, all on one GPU.
    Shared(u32),
    /// `nvidia.com/mig-<profile>: n`.
    Mig {
        resource: String,
        count: u32,
    },
}

/// A pod's request as the extender uses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodAsk {
    pub gpu: GpuAsk,
    pub single_numa: bool,
    /// Effective CPU request (millicores) and memory (MiB), for packing.
    pub cpu_milli: u32,
    pub memory_mib: u32,
    /// The GPU products its node selector and affinity allow (for the
    /// packing mix; kube-scheduler enforces them).
    pub products: GpuProducts,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    #[error("the pod asks for both {a} and {b}; Railyard places one kind of GPU resource per pod")]
    Mixed { a: String, b: String },
    #[error("{resource}: {value} is not a valid device count")]
    BadCount { resource: String, value: i64 },
    /// A resource value as the pod spells it, and why it is refused.
    #[error("{resource}: {value:?} {reason}")]
    BadQuantity {
        resource: String,
        value: String,
        reason: String,
    },
}

/// Most devices of one kind a pod may ask for.
pub const MAX_DEVICES_PER_POD: u32 = 4096;

impl PodAsk {
    /// From the pod's effective extended-resource totals (name, count).
    /// Unknown resources are ignored; zero counts are absent.
    pub fn from_resources<'a>(
        resources: impl IntoIterator<Item = (&'a str, i64)>,
        cpu_milli: u32,
        memory_mib: u32,
        single_numa: bool,
    ) -> Result<PodAsk, AskError> {
        let mut gpu = GpuAsk::None;
        let mut seen: Option<String> = None;
        for (name, value) in resources {
            let kind = if name == GPU_RESOURCE {
                0
            } else if name == SHARED_RESOURCE {
                1
            } else if name.starts_with(MIG_RESOURCE_PREFIX) {
                2
            } else {
                continue;
            };
            if value == 0 {
                continue;
            }
            let count = u32::try_from(value)
                .ok()
                .filter(|&c| c <= MAX_DEVICES_PER_POD)
                .ok_or_else(|| AskError::BadCount {
                    resource: name.to_string(),
                    value,
                })?;
            if let Some(a) = &seen {
                return Err(AskError::Mixed {
                    a: a.clone(),
                    b: name.to_string(),
                });
            }
            seen = Some(name.to_string());
            gpu = match kind {
                0 => GpuAsk::Whole(count),
                1 => GpuAsk::Shared(count),
                _ => GpuAsk::Mig {
                    resource: name.to_string(),
                    count,
                },
            };
        }
        Ok(PodAsk {
            gpu,
            single_numa,
            cpu_milli,
            memory_mib,
            products: GpuProducts::ANY,
        })
    }

    pub fn wants_gpu(&self) -> bool {
        !matches!(self.gpu, GpuAsk::None)
    }
}
