//! [`SimBackend`]: the [`GpuBackend`] over a [`SimMachine`] in memory, with
//! injectable processes, memory use, health events and failures. The bench,
//! the demos and most component tests use it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use railyard_core::machine::MachineProfile;
use railyard_core::mig::{MigInstance, Placement, ProfileKind};
use tokio::sync::broadcast;

use crate::error::{GpuError, Op};
use crate::health::{GpuHealth, HealthConfig, HealthTracker, default_recovery_action};
use crate::model::SimMachine;
use crate::types::{GpuProcess, HealthEvent, MemoryUsage, MigInstanceInfo, MigMode, NodeInventory};
use crate::{BackendFuture, GpuBackend, HEALTH_CHANNEL_CAPACITY};

/// A failure to inject: the next `times` calls of `op` (on `gpu`, or on any
/// GPU) fail with the error NVML return code `code` stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFailure {
    pub op: Op,
    pub gpu: Option<u32>,
    pub code: u32,
    /// `None`: every call until cleared.
    pub times: Option<u32>,
}

#[derive(Debug)]
struct Inner {
    machine: SimMachine,
    failures: Vec<InjectedFailure>,
    tracker: HealthTracker,
}

/// The simulated GPU backend. Cloning shares the same simulated node.
#[derive(Debug, Clone)]
pub struct SimBackend {
    inner: Arc<Mutex<Inner>>,
    health: broadcast::Sender<HealthEvent>,
}

impl SimBackend {
    pub fn new(profile: MachineProfile) -> SimBackend {
        SimBackend::with_health(profile, HealthConfig::default())
    }

    pub fn with_health(profile: MachineProfile, config: HealthConfig) -> SimBackend {
        let gpus: Vec<(u32, String)> = profile.gpus.iter().map(|g| (g.index, g.uuid.clone())).collect();
        let (health, _) = broadcast::channel(HEALTH_CHANNEL_CAPACITY);
        SimBackend {
            inner: Arc::new(Mutex::new(Inner {
                machine: SimMachine::new(profile),
                failures: Vec::new(),
                tracker: HealthTracker::new(config, gpus),
            })),
            health,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the machine unless an injected failure for `op` fires.
    fn with<T>(
        &self,
        op: Op,
        gpu: Option<u32>,
        f: impl FnOnce(&mut SimMachine) -> Result<T, GpuError>,
    ) -> Result<T, GpuError> {
        let mut inner = self.lock();
        let hit = inner
            .failures
            .iter()
            .position(|f| f.op == op && (f.gpu.is_none() || f.gpu == gpu));
        if let Some(i) = hit {
            let code = inner.failures[i].code;
            match &mut inner.failures[i].times {
                Some(1) => {
                    inner.failures.remove(i);
                }
                Some(n) => *n -= 1,
                None => {}
            }
            if let Some(e) = GpuError::from_code(op, code) {
                return Err(e);
            }
        }
        f(&mut inner.machine)
    }

    /// A copy of the simulated machine's state.
    pub fn machine(&self) -> SimMachine {
        self.lock().machine.clone()
    }

    pub fn inject_failure(&self, failure: InjectedFailure) {
        self.lock().failures.push(failure);
    }

    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    pub fn add_process(&self, p: GpuProcess) -> Result<(), GpuError> {
        self.lock().machine.add_process(p)
    }

    pub fn remove_process(&self, pid: u32) -> bool {
        self.lock().machine.remove_process(pid)
    }

    /// Memory used on a GPU besides its processes'.
    pub fn set_base_memory(&self, gpu: u32, mib: u64) {
        if let Some(g) = self.lock().machine.gpu_mut(gpu) {
            g.base_used_mib = mib;
        }
    }

    fn emit(&self, e: Option<HealthEvent>) {
        if let Some(e) = e {
            // No receivers is fine: nobody is watching.
            let _ = self.health.send(e);
        }
    }

    /// An XID on a GPU (or one of its MIG instances). Unless it is one of the
    /// application XIDs, the GPU then needs a reset to recover.
    pub fn inject_xid(&self, gpu: u32, xid: u64, gpu_instance: Option<u32>, compute_instance: Option<u32>) {
        let e = {
            let mut inner = self.lock();
            if let Some(g) = inner.machine.gpu_mut(gpu) {
                g.recovery_action = g.recovery_action.max(default_recovery_action(xid));
            }
            inner.tracker.on_xid(gpu, xid, gpu_instance, compute_instance)
        };
        self.emit(e);
    }

    /// The GPU falls off the bus: every call on it answers `GpuLost`.
    pub fn set_lost(&self, gpu: u32) {
        let e = {
            let mut inner = self.lock();
            if let Some(g) = inner.machine.gpu_mut(gpu) {
                g.lost = true;
            }
            inner.tracker.on_lost(gpu)
        };
        self.emit(e);
    }

    /// The GPU was reset: it answers again and needs no recovery action.
    /// Refuses the GPU reset an Ampere MIG mode change needs (a pass-through
    /// VM): `set_mig_mode` then leaves the change pending, as NVML reports
    /// "pending enable … reboot".
    pub fn refuse_gpu_reset(&self, gpu: u32, refused: bool) {
        if let Some(g) = self.lock().machine.gpu_mut(gpu) {
            g.reset_refused = refused;
        }
    }

    pub fn recover(&self, gpu: u32) {
        let e = {
            let mut inner = self.lock();
            if let Some(g) = inner.machine.gpu_mut(gpu) {
                g.lost = false;
                g.recovery_action = 0;
            }
            inner.tracker.on_probe(gpu, true)
        };
        self.emit(e);
    }
}

impl GpuBackend for SimBackend {
    fn inventory(&self) -> BackendFuture<'_, NodeInventory> {
        let r = self.with(Op::Inventory, None, |m| m.inventory());
        Box::pin(async move { r })
    }

    fn memory(&self, gpu: u32) -> BackendFuture<'_, MemoryUsage> {
        let r = self.with(Op::Memory, Some(gpu), |m| m.memory(gpu));
        Box::pin(async move { r })
    }

    fn processes(&self, gpu: u32) -> BackendFuture<'_, Vec<GpuProcess>> {
        let r = self.with(Op::Processes, Some(gpu), |m| m.processes(gpu));
        Box::pin(async move { r })
    }

    fn set_mig_mode(&self, gpu: u32, enabled: bool) -> BackendFuture<'_, MigMode> {
        let r = self.with(Op::SetMigMode, Some(gpu), |m| m.set_mig_mode(gpu, enabled));
        Box::pin(async move { r })
    }

    fn possible_placements(&self, gpu: u32, kind: ProfileKind) -> BackendFuture<'_, Vec<Placement>> {
        let r = self.with(Op::PossiblePlacements, Some(gpu), |m| m.possible_placements(gpu, kind));
        Box::pin(async move { r })
    }

    fn mig_instances(&self, gpu: u32) -> BackendFuture<'_, Vec<MigInstanceInfo>> {
        let r = self.with(Op::ListMigInstances, Some(gpu), |m| m.mig_instances(gpu));
        Box::pin(async move { r })
    }

    fn create_mig_instance(&self, gpu: u32, instance: MigInstance) -> BackendFuture<'_, MigInstanceInfo> {
        let r = self
            .with(Op::CreateGpuInstance, Some(gpu), |_| Ok(()))
            .and_then(|()| self.with(Op::CreateComputeInstance, Some(gpu), |_| Ok(())))
            .and_then(|()| self.lock().machine.create_mig_instance(gpu, instance));
        Box::pin(async move { r })
    }

    fn destroy_mig_instance(&self, gpu: u32, gpu_instance_id: u32) -> BackendFuture<'_, ()> {
        let r = self
            .with(Op::DestroyComputeInstance, Some(gpu), |_| Ok(()))
            .and_then(|()| self.with(Op::DestroyGpuInstance, Some(gpu), |_| Ok(())))
            .and_then(|()| self.lock().machine.destroy_mig_instance(gpu, gpu_instance_id));
        Box::pin(async move { r })
    }

    fn subscribe_health(&self) -> broadcast::Receiver<HealthEvent> {
        self.health.subscribe()
    }

    fn health(&self) -> BackendFuture<'_, BTreeMap<u32, GpuHealth>> {
        let r = Ok(self.lock().tracker.snapshot());
        Box::pin(async move { r })
    }
}
