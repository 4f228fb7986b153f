//! The memory watchdog: time-sliced replicas share a GPU's memory with no
//! hardware isolation, so one process past its share makes every neighbour
//! fail. The watchdog attributes each GPU process to its container
//! ([`attribution`]), sums memory per container and device against the
//! shares it was allocated, and after a grace period signals the offender
//! ([`policy`], then [`signal`] with a PID-reuse check).
//!
//! [`policy::Enforcer`] is a pure state machine driven by snapshots with an
//! explicit clock, so every rule is tested without sleeping.
//!
//! [`service::Watchdog`] runs it on a node: GPU processes from a
//! `railyard_gpu::GpuBackend` (MIG processes on their MIG device,
//! [`devices`]), allocations from kubelet's PodResources ([`podresources`]),
//! container names from the runtime's CRI ([`cri`]), and each decision as a
//! log line, a pod Event ([`events`]) and metrics ([`metrics`]).
#![forbid(unsafe_code)]

pub mod attribution;
pub mod cri;
pub mod devices;
pub mod events;
pub mod metrics;
pub mod podresources;
pub mod policy;
pub mod procfs;
pub mod scan;
pub mod service;
pub mod signal;

pub use devices::NodeView;
pub use service::{Watchdog, WatchdogConfig};
