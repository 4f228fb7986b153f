//! Placement for fractional, whole-GPU and multi-GPU pods on a cluster
//! described in milli-GPU units, the fragmentation measure of the FGD paper,
//! and the policies compared by `railyard-bench`: Random, DotProd, GPU
//! clustering, GPU packing, best-fit, kube-scheduler's default, FGD and
//! Railyard's own. Pure and deterministic: randomness comes from a seed.

pub mod constraints;
pub mod fragmentation;
pub mod mig;
pub mod policies;
pub mod rng;
pub mod state;

pub use constraints::{ClassMilli, ConstrainedMix, Pressure};
pub use fragmentation::{TaskDistribution, TaskType};
pub use policies::{Policy, PolicyKind};
pub use rng::SplitMix64;
pub use state::{
    Cluster, GpuMask, MAX_GPUS, MILLI, ModelId, ModelMask, ModelTable, Node, NodeSpec, PlaceError, Placement,
    PodRequest,
};
