//! Railyard's GPU backend. Node components never call NVML directly; they use
//! a [`GpuBackend`]:
//!
//! - [`NvmlBackend`]: NVML through `nvml-wrapper`, every call on one dedicated
//!   thread so async callers never block; functions the wrapper lacks or gets
//!   wrong are called raw in one small unsafe module (`nvml::raw`);
//! - [`SimBackend`]: the same behaviour in memory from a machine profile
//!   ([`model::SimMachine`]), with injectable processes, memory use, health
//!   events and failures.
//!
//! The fake libnvidia-ml in `railyard-fake-nvml` exports the model through
//! NVML's C ABI, so tests run the real NVML path against the same machine
//! profiles and compare the two backends.
#![deny(unsafe_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use railyard_core::mig::{MigInstance, Placement, ProfileKind};
use tokio::sync::broadcast;

pub mod error;
pub mod health;
pub mod model;
pub mod nvcaps;
pub mod nvml;
pub mod sim;
pub mod sysfs;
pub mod types;

pub use error::{GpuError, Op};
pub use health::{DEFAULT_IGNORED_XIDS, GpuHealth, HealthConfig};
pub use nvml::{NvmlBackend, NvmlConfig};
pub use sim::{InjectedFailure, SimBackend};
pub use types::{
    GpuInfo, GpuProcess, HealthEvent, HealthEventKind, MemoryUsage, MigInfo, MigInstanceInfo, MigMode, Nic,
    NodeInventory, NvLinkInfo, TopologyLevel, UnhealthyReason,
};

/// What a [`GpuBackend`] method returns: a boxed future, so the trait can be
/// used as `Arc<dyn GpuBackend>`.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, GpuError>> + Send + 'a>>;

/// Health events buffered per subscriber before the oldest are dropped.
pub const HEALTH_CHANNEL_CAPACITY: usize = 256;

/// A node's GPUs: inventory, MIG operations, processes and health.
/// GPUs are named by NVML index.
pub trait GpuBackend: Send + Sync + std::fmt::Debug {
    /// GPUs (model, memory, PCI, NUMA, CPU affinity, MIG mode and instances,
    /// NVLink), PCIe levels between GPUs, and NICs.
    fn inventory(&self) -> BackendFuture<'_, NodeInventory>;

    /// Framebuffer memory in use.
    fn memory(&self, gpu: u32) -> BackendFuture<'_, MemoryUsage>;

    /// Processes with a compute context on the GPU or any of its MIG
    /// instances, with their used memory, sorted by pid.
    fn processes(&self, gpu: u32) -> BackendFuture<'_, Vec<GpuProcess>>;

    /// Enables or disables MIG. `InUse` when GPU clients keep the change from
    /// taking effect (it then stays pending); `InUse` too when disabling
    /// with instances present (destroy them first).
    fn set_mig_mode(&self, gpu: u32, enabled: bool) -> BackendFuture<'_, MigMode>;

    /// Every legal placement of a profile (occupied or not).
    fn possible_placements(&self, gpu: u32, kind: ProfileKind) -> BackendFuture<'_, Vec<Placement>>;

    /// GPU instances with their compute instances, by placement.
    fn mig_instances(&self, gpu: u32) -> BackendFuture<'_, Vec<MigInstanceInfo>>;

    /// Creates a GPU instance at the placement and its full compute
    /// instance. An illegal placement is `InvalidArgument`; one that does not
    /// fit is `InsufficientResources`; if the compute instance fails, the GPU
    /// instance is destroyed again.
    fn create_mig_instance(&self, gpu: u32, instance: MigInstance) -> BackendFuture<'_, MigInstanceInfo>;

    /// Destroys a GPU instance's compute instances, then the GPU instance.
    /// `InUse` while processes run in it.
    fn destroy_mig_instance(&self, gpu: u32, gpu_instance_id: u32) -> BackendFuture<'_, ()>;

    /// Health changes from now on: critical XIDs, lost GPUs, recoveries.
    fn subscribe_health(&self) -> broadcast::Receiver<HealthEvent>;

    /// Current health of every GPU.
    fn health(&self) -> BackendFuture<'_, BTreeMap<u32, GpuHealth>>;
}
