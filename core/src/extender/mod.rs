//! Decisions of Railyard's kube-scheduler extender, free of I/O.
//!
//! The extender binary translates Kubernetes objects into the inputs here
//! ([`NodeInput`], [`PodAsk`], [`PodObservation`], [`GangSpec`]) and the
//! answers back into extender v1 JSON. Everything that decides lives here:
//!
//! - [`ClusterView`]: per-node, per-GPU state in milli-GPU (a GPU is 1000),
//!   MIG devices per profile, the pods placed or *assumed* (bound by the
//!   extender but not yet seen in the API), and gang reservations. Applying
//!   the same observation twice is a no-op, so the view can be rebuilt from
//!   the API at any time.
//! - [`ClusterView::filter`]: per-node GPU feasibility — whole GPUs, MIG
//!   profiles, and for a shared request one single GPU with enough share
//!   left (a node whose total fits but no one GPU does is rejected) — and
//!   single-NUMA placement when the pod asks for it. A node whose
//!   `nvidia.com/gpu` counts time-slicing/MPS replicas (sharing without
//!   `renameByDefault`) serves `nvidia.com/gpu: k` as k replicas of one GPU,
//!   never as whole GPUs, and takes no gang members.
//! - [`ClusterView::score`]: the bench's Railyard packing score for shared
//!   and single-GPU pods, best fit for MIG pods, `core::topology` for
//!   multi-GPU pods; mapped to 0..=10.
//! - Gangs ([`ClusterView::gang_filter`]): the first member plans the whole
//!   gang with [`crate::gang`] and reserves every member's node and GPUs;
//!   members are then filtered to their planned node. A gang that does not
//!   fit now waits with the planner's reason; one that cannot fit even on an
//!   empty cluster is unresolvable. Reservations expire and are re-planned.
//! - [`ClusterView::assume`]: the device choice for a bind, re-checked under
//!   the caller's lock so two quick binds never take the same GPU. A gang
//!   member whose reservation expired between its filter and its bind is
//!   still placed as a member of its gang.
//! - Write-backs ([`PodObservation::allocated`]): the view follows the GPUs
//!   kubelet actually gave, and bounds how long it waits for them (see
//!   `writeback`).

mod ask;
mod gang;
mod hot;
mod names;
mod products;
mod score;
mod view;
mod writeback;

#[cfg(test)]
mod constrained_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod untrusted_tests;
#[cfg(test)]
mod writeback_tests;

pub use ask::{
    AskError, GPU_COUNT_LABEL, GPU_PRODUCT_LABEL, GPU_REPLICAS_LABEL, GPU_RESOURCE, GPU_SHARING_STRATEGY_LABEL, GpuAsk,
    MAX_DEVICES_PER_POD, MIG_RESOURCE_PREFIX, PodAsk, SHARED_RESOURCE, SINGLE_NUMA_ANNOTATION,
};
pub use gang::{GangFilter, GangSpec, PlanRecord, Reservation, SlotRecord};
pub use products::{GpuProducts, MAX_PRODUCT_TERMS, MAX_PRODUCT_VALUES, Requirement};
pub use score::ScoreConfig;
pub use view::{
    AssumeError, Assumed, ClusterView, FilterOutcome, MAX_NODE_GPUS, NodeInput, PodObservation, PodState,
    TOO_MANY_GPUS, Verdict, ViewConfig,
};
pub use writeback::{Placement, WriteBack, WriteBackCounts, WriteBackKind};

/// Extender scores are 0..=10 (`MaxExtenderPriority`).
pub const MAX_SCORE: i64 = 10;
