//! [`NvmlBackend`]: the [`GpuBackend`] over NVML, through `nvml-wrapper`.
//!
//! Every NVML call runs on one dedicated thread that owns the `Nvml` handle;
//! async callers send it a job and await a oneshot, so they never block. The
//! same thread drains NVML events and probes GPU health every
//! [`HealthConfig::poll_interval`] between jobs. A panic inside a job (the
//! wrapper panics on some missing symbols) fails that call only.

mod raw;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::TopologyLevel as NvmlLevel;
use nvml_wrapper::enums::device::{SampleValue, UsedGpuMemory};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::event::EventSet;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings as sys;
use railyard_core::catalog;
use railyard_core::mig::{MigFamily, MigInstance, Placement, ProfileKind};
use tokio::sync::{broadcast, oneshot};

use crate::error::{GpuError, Op};
use crate::health::{GpuHealth, HealthConfig, HealthTracker};
use crate::model::full_compute_profile;
use crate::sysfs;
use crate::types::{
    GpuInfo, GpuProcess, HealthEvent, MemoryUsage, MigInfo, MigInstanceInfo, MigMode, NodeInventory, NvLinkInfo,
    TopologyLevel,
};
use crate::{BackendFuture, GpuBackend, HEALTH_CHANNEL_CAPACITY};

const MIB: u64 = 1024 * 1024;
/// `unsigned long` words asked for in `nvmlDeviceGetCpuAffinity` (4096 CPUs).
const CPU_AFFINITY_WORDS: usize = 64;

/// Where NVML and sysfs are, and how health is watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlConfig {
    /// `libnvidia-ml.so.1` to load; `None`: the system's (`libnvidia-ml.so`).
    pub lib_path: Option<PathBuf>,
    /// Root of sysfs (`/sys`), for NICs and PCI NUMA nodes.
    pub sysfs_root: PathBuf,
    pub health: HealthConfig,
}

impl Default for NvmlConfig {
    fn default() -> Self {
        NvmlConfig {
            lib_path: None,
            sysfs_root: PathBuf::from("/sys"),
            health: HealthConfig::default(),
        }
    }
}

/// Maps an `nvml-wrapper` error to a [`GpuError`] for `op`.
pub fn map_nvml_error(op: Op, e: NvmlError) -> GpuError {
    match e {
        NvmlError::FailedToLoadSymbol(function) => GpuError::FunctionNotFound { op, function },
        NvmlError::LibloadingError(e) => GpuError::Library { message: e.to_string() },
        NvmlError::UnexpectedVariant(code) => GpuError::from_code(op, code).unwrap_or(GpuError::Other { op, code }),
        other => {
            let code: sys::nvmlReturn_t = other.into();
            GpuError::from_code(op, code).unwrap_or(GpuError::Other { op, code })
        }
    }
}

/// `(gpu instance, compute instance)` → (MIG UUID, memory MiB).
type MigDevices = BTreeMap<(u32, u32), (String, u64)>;
/// A MIG device handle with its `(gpu instance, compute instance)` ids.
type MigHandle<'n> = (Device<'n>, (u32, u32));

type Job = Box<dyn for<'n> FnOnce(&mut Ctx<'n>) + Send>;

/// State of the NVML thread.
struct Ctx<'n> {
    nvml: &'n Nvml,
    sysfs_root: PathBuf,
    tracker: HealthTracker,
    health_tx: broadcast::Sender<HealthEvent>,
    events: Option<EventSet<'n>>,
    /// NVML index and handle address of each GPU.
    handles: Vec<(u32, usize)>,
}

/// The NVML backend. Dropping it stops the NVML thread (and shuts NVML down)
/// once queued calls are done.
#[derive(Debug)]
pub struct NvmlBackend {
    jobs: mpsc::Sender<Job>,
    health_tx: broadcast::Sender<HealthEvent>,
}

impl NvmlBackend {
    /// Loads and initializes NVML on a new thread and waits for it (a
    /// blocking call: make it at startup, or from `spawn_blocking`).
    pub fn new(config: NvmlConfig) -> Result<NvmlBackend, GpuError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (health_tx, _) = broadcast::channel(HEALTH_CHANNEL_CAPACITY);
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), GpuError>>(1);
        let htx = health_tx.clone();
        std::thread::Builder::new()
            .name("railyard-nvml".into())
            .spawn(move || worker(config, rx, htx, ready_tx))
            .map_err(|e| GpuError::Library {
                message: format!("spawning the NVML thread: {e}"),
            })?;
        ready_rx.recv().map_err(|_| GpuError::Shutdown)??;
        Ok(NvmlBackend { jobs, health_tx })
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl for<'n> FnOnce(&mut Ctx<'n>) -> Result<T, GpuError> + Send + 'static,
    ) -> BackendFuture<'_, T> {
        let (tx, rx) = oneshot::channel();
        let sent = self.jobs.send(Box::new(move |ctx: &mut Ctx<'_>| {
            let _ = tx.send(f(ctx));
        }));
        Box::pin(async move {
            sent.map_err(|_| GpuError::Shutdown)?;
            rx.await.map_err(|_| GpuError::Shutdown)?
        })
    }
}

fn worker(
    config: NvmlConfig,
    rx: mpsc::Receiver<Job>,
    health_tx: broadcast::Sender<HealthEvent>,
    ready: mpsc::SyncSender<Result<(), GpuError>>,
) {
    let mut builder = Nvml::builder();
    if let Some(p) = &config.lib_path {
        builder.lib_path(p.as_os_str());
    }
    let nvml = match builder.init() {
        Ok(n) => n,
        Err(e) => {
            let _ = ready.send(Err(map_nvml_error(Op::Init, e)));
            return;
        }
    };
    let mut ctx = match catch_unwind(AssertUnwindSafe(|| Ctx::new(&nvml, &config, health_tx))) {
        Ok(Ok(ctx)) => ctx,
        Ok(Err(e)) => {
            let _ = ready.send(Err(e));
            return;
        }
        Err(_) => {
            let _ = ready.send(Err(GpuError::Other {
                op: Op::Init,
                code: sys::nvmlReturn_enum_NVML_ERROR_UNKNOWN,
            }));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let poll = config.health.poll_interval.max(Duration::from_millis(1));
    let mut next_poll = Instant::now() + poll;
    loop {
        match rx.recv_timeout(next_poll.saturating_duration_since(Instant::now())) {
            Ok(job) => {
                // A panicking job drops its oneshot: that caller gets `Shutdown`.
                let _ = catch_unwind(AssertUnwindSafe(|| job(&mut ctx)));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_poll {
            if !config.health.disabled {
                let _ = catch_unwind(AssertUnwindSafe(|| ctx.poll_health()));
            }
            next_poll = Instant::now() + poll;
        }
    }
    drop(ctx);
    let _ = nvml.shutdown();
}

fn level(l: NvmlLevel) -> TopologyLevel {
    match l {
        NvmlLevel::Internal => TopologyLevel::Internal,
        NvmlLevel::Single => TopologyLevel::Single,
        NvmlLevel::Multiple => TopologyLevel::Multiple,
        NvmlLevel::HostBridge => TopologyLevel::HostBridge,
        NvmlLevel::Node => TopologyLevel::Node,
        NvmlLevel::System => TopologyLevel::System,
    }
}

/// `%08X:%02X:%02X.0` → sysfs `dddd:bb:dd.0`.
fn sysfs_bus_id(domain: u32, bus: u32, device: u32) -> String {
    format!("{:04x}:{:02x}:{:02x}.0", domain, bus, device)
}

fn cpus_of(words: &[std::os::raw::c_ulong]) -> Vec<u32> {
    let bits = std::os::raw::c_ulong::BITS;
    let mut out = Vec::new();
    for (w, word) in words.iter().enumerate() {
        for b in 0..bits {
            if word & (1 << b) != 0 {
                out.push(w as u32 * bits + b);
            }
        }
    }
    out
}

fn sample_u64(v: &SampleValue) -> Option<u64> {
    match *v {
        SampleValue::U32(x) => Some(x as u64),
        SampleValue::U64(x) => Some(x),
        SampleValue::I64(x) => u64::try_from(x).ok(),
        SampleValue::F64(_) => None,
    }
}

impl<'n> Ctx<'n> {
    fn new(nvml: &'n Nvml, config: &NvmlConfig, health_tx: broadcast::Sender<HealthEvent>) -> Result<Self, GpuError> {
        let op = Op::Init;
        let e = |e| map_nvml_error(op, e);
        let count = nvml.device_count().map_err(e)?;
        let mut handles = Vec::new();
        let mut uuids = Vec::new();
        for i in 0..count {
            let d = nvml.device_by_index(i).map_err(e)?;
            uuids.push((i, d.uuid().map_err(e)?));
            handles.push((i, raw::handle_addr(&d)));
        }
        let events = if config.health.disabled {
            None
        } else {
            Self::register_events(nvml, count)
        };
        Ok(Ctx {
            nvml,
            sysfs_root: config.sysfs_root.clone(),
            tracker: HealthTracker::new(config.health.clone(), uuids),
            health_tx,
            events,
            handles,
        })
    }

    /// An event set with critical XIDs of every GPU that supports them. The
    /// supported mask is read raw (the wrapper rejects newer bits) and
    /// applied before registering, because `register_events` frees the set
    /// on any error; if a registration still fails, a fresh set is made.
    fn register_events(nvml: &'n Nvml, count: u32) -> Option<EventSet<'n>> {
        let mut set = nvml.create_event_set().ok()?;
        for i in 0..count {
            let Ok(d) = nvml.device_by_index(i) else { continue };
            let supported = raw::supported_event_types(nvml, &d, Op::Health).unwrap_or(0);
            let mask = supported & sys::nvmlEventTypeXidCriticalError as u64;
            if mask == 0 {
                continue;
            }
            set = match d.register_events(EventTypes::from_bits_truncate(mask), set) {
                Ok(s) => s,
                Err(_) => nvml.create_event_set().ok()?,
            };
        }
        Some(set)
    }

    fn emit(&self, e: Option<HealthEvent>) {
        if let Some(e) = e {
            let _ = self.health_tx.send(e);
        }
    }

    fn device(&self, index: u32, op: Op) -> Result<Device<'n>, GpuError> {
        self.nvml.device_by_index(index).map_err(|e| map_nvml_error(op, e))
    }

    /// Drains pending events, then probes every GPU: `GPU_IS_LOST` marks it
    /// unhealthy; an unhealthy GPU that answers and needs no recovery action
    /// recovers.
    fn poll_health(&mut self) {
        if let Some(set) = &self.events {
            while let Ok(Some(ev)) = raw::wait_event(self.nvml, set, 0, Op::Health) {
                if ev.event_type & sys::nvmlEventTypeXidCriticalError as u64 == 0 {
                    continue;
                }
                let Some(&(gpu, _)) = self.handles.iter().find(|(_, h)| *h == ev.device) else {
                    continue;
                };
                let id = |v: u32| (v != u32::MAX).then_some(v);
                let e = self
                    .tracker
                    .on_xid(gpu, ev.data, id(ev.gpu_instance_id), id(ev.compute_instance_id));
                self.emit(e);
            }
        }
        let unhealthy = self.tracker.unhealthy();
        for (gpu, _) in self.handles.clone() {
            let probe = self.device(gpu, Op::Health).and_then(|d| {
                d.memory_info().map_err(|e| map_nvml_error(Op::Health, e))?;
                Ok(d)
            });
            match probe {
                Err(GpuError::GpuLost { .. }) => {
                    let e = self.tracker.on_lost(gpu);
                    self.emit(e);
                }
                Ok(d) if unhealthy.contains(&gpu) => {
                    let recovered = Self::recovery_action(&d) == Some(0);
                    let e = self.tracker.on_probe(gpu, recovered);
                    self.emit(e);
                }
                _ => {}
            }
        }
    }

    /// `NVML_FI_DEV_GET_GPU_RECOVERY_ACTION`, where the driver reports it.
    fn recovery_action(d: &Device<'_>) -> Option<u64> {
        let samples = d
            .field_values_for(&[FieldId(sys::field_id::NVML_FI_DEV_GET_GPU_RECOVERY_ACTION)])
            .ok()?;
        let sample = samples.into_iter().next()?.ok()?;
        sample.value.ok().as_ref().and_then(sample_u64)
    }

    fn inventory(&self) -> Result<NodeInventory, GpuError> {
        let op = Op::Inventory;
        let e = |e| map_nvml_error(op, e);
        let driver_version = self.nvml.sys_driver_version().map_err(e)?;
        let cuda_driver_version = self.nvml.sys_cuda_driver_version().map_err(e)?;
        let count = self.nvml.device_count().map_err(e)?;
        let mut gpus = Vec::new();
        let mut remote_bus_ids: Vec<Vec<String>> = Vec::new();
        for i in 0..count {
            let d = self.device(i, op)?;
            let (info, peers) = self.gpu_info(&d, op)?;
            gpus.push(info);
            remote_bus_ids.push(peers);
        }
        for (g, peers) in gpus.clone().iter().zip(remote_bus_ids) {
            for bdf in peers {
                let Some(peer) = gpus.iter().find(|p| p.pci_bus_id == bdf).map(|p| p.index) else {
                    continue;
                };
                if let Some(me) = gpus.iter_mut().find(|x| x.index == g.index) {
                    *me.nvlink.peer_links.entry(peer).or_insert(0) += 1;
                }
            }
        }
        let mut pcie_levels = BTreeMap::new();
        for a in 0..count {
            for b in a + 1..count {
                let (da, db) = (self.device(a, op)?, self.device(b, op)?);
                let (ia, ib) = (da.index().map_err(e)?, db.index().map_err(e)?);
                let l = da.topology_common_ancestor(db).map_err(e)?;
                pcie_levels.insert((ia.min(ib), ia.max(ib)), level(l));
            }
        }
        Ok(NodeInventory {
            driver_version,
            cuda_driver_version: u32::try_from(cuda_driver_version).unwrap_or(0),
            gpus,
            pcie_levels,
            nics: sysfs::read_nics(&self.sysfs_root),
        })
    }

    /// One GPU, and the PCI bus ids at the far end of its NVLinks to GPUs.
    fn gpu_info(&self, d: &Device<'n>, op: Op) -> Result<(GpuInfo, Vec<String>), GpuError> {
        let e = |e| map_nvml_error(op, e);
        let index = d.index().map_err(e)?;
        let uuid = d.uuid().map_err(e)?;
        let product_name = d.name().map_err(e)?;
        let pci = d.pci_info().map_err(e)?;
        let pci_bus_id = sysfs_bus_id(pci.domain, pci.bus, pci.device);
        let pci_device_id = (pci.pci_device_id >> 16) as u16;
        let minor = d.minor_number().map_err(e)?;
        let memory_mib = d.memory_info().map_err(e)?.total / MIB;
        let numa_node = match d.numa_node_id() {
            Ok(n) => Some(n),
            // x86: GPU memory is no NUMA node; the PCI device's node is in sysfs.
            Err(NvmlError::NotSupported) => sysfs::pci_numa_node(&self.sysfs_root, &pci_bus_id),
            Err(err) => return Err(e(err)),
        };
        let cpu_affinity = match d.cpu_affinity(CPU_AFFINITY_WORDS) {
            Ok(words) => cpus_of(&words),
            Err(NvmlError::NotSupported) => Vec::new(),
            Err(err) => return Err(e(err)),
        };
        let identified = catalog::identify(&product_name, Some(pci_device_id));
        let mig = match identified.mig_family() {
            None => None,
            Some(family) => {
                let m = d.mig_mode().map_err(e)?;
                let mode = MigMode {
                    current: m.current == sys::NVML_DEVICE_MIG_ENABLE,
                    pending: m.pending == sys::NVML_DEVICE_MIG_ENABLE,
                };
                let instances = if mode.current {
                    self.instances(d, family, op)?
                } else {
                    Vec::new()
                };
                Some(MigInfo {
                    family,
                    mode,
                    instances,
                })
            }
        };
        let mut nvlink = NvLinkInfo::default();
        let mut peers = Vec::new();
        for l in 0..sys::NVML_NVLINK_MAX_LINKS {
            let link = d.link_wrapper_for(l);
            match link.is_active() {
                Ok(true) => {}
                Ok(false) => continue,
                // No NVLink on this GPU, or past its last link.
                Err(NvmlError::NotSupported | NvmlError::InvalidArg) => break,
                Err(err) => return Err(e(err)),
            }
            let t = raw::nvlink_remote_device_type(self.nvml, d, l, op)?;
            if t == sys::nvmlIntNvLinkDeviceType_enum_NVML_NVLINK_DEVICE_TYPE_SWITCH {
                nvlink.nvswitch_links += 1;
            } else {
                let r = link.remote_pci_info().map_err(e)?;
                peers.push(sysfs_bus_id(r.domain, r.bus, r.device));
            }
        }
        let info = GpuInfo {
            index,
            uuid,
            product_name,
            model: identified.model().map(|m| m.id),
            pci_bus_id,
            pci_device_id,
            minor,
            memory_mib,
            numa_node,
            cpu_affinity,
            mig,
            nvlink,
        };
        Ok((info, peers))
    }

    /// MIG device handles of a GPU with their `(gi, ci)` ids. NVML's MIG
    /// index space has gaps (NOT_FOUND), which are skipped.
    fn mig_handles(&self, d: &Device<'n>, op: Op) -> Result<Vec<MigHandle<'n>>, GpuError> {
        let e = |e| map_nvml_error(op, e);
        let mut out = Vec::new();
        for k in 0..d.mig_device_count().map_err(e)? {
            let m = match d.mig_device_by_index(k) {
                Ok(m) => m,
                Err(NvmlError::NotFound) => continue,
                Err(err) => return Err(e(err)),
            };
            let ids = raw::mig_device_instance_ids(self.nvml, &m, op)?;
            out.push((m, ids));
        }
        Ok(out)
    }

    /// MIG devices of a GPU: `(gi, ci)` → (UUID, memory MiB).
    fn mig_devices(&self, d: &Device<'n>, op: Op) -> Result<MigDevices, GpuError> {
        let e = |e| map_nvml_error(op, e);
        let mut out = BTreeMap::new();
        for (m, ids) in self.mig_handles(d, op)? {
            let uuid = m.uuid().map_err(e)?;
            let mem = m.memory_info().map_err(e)?.total / MIB;
            out.insert(ids, (uuid, mem));
        }
        Ok(out)
    }

    /// Every GPU instance of every profile, with its compute instance and
    /// MIG device, by placement.
    fn instances(&self, d: &Device<'n>, family: MigFamily, op: Op) -> Result<Vec<MigInstanceInfo>, GpuError> {
        let e = |e| map_nvml_error(op, e);
        let devices = self.mig_devices(d, op)?;
        let mut out = Vec::new();
        for profile in family.profiles() {
            let info = match d.profile_info(profile.spec().nvml_index) {
                Ok(i) => i,
                Err(NvmlError::NotSupported | NvmlError::InvalidArg) => continue,
                Err(err) => return Err(e(err)),
            };
            for gi in raw::gpu_instances(self.nvml, d, info.id, info.instance_count, op)? {
                let (id, _, placement) = raw::gpu_instance_info(self.nvml, gi, op)?;
                let ci_profile =
                    raw::compute_instance_profile_id(self.nvml, gi, full_compute_profile(profile.kind), op)?;
                let ci = match raw::compute_instances(self.nvml, gi, ci_profile, op)?.first() {
                    Some(&ci) => Some(raw::compute_instance_id(self.nvml, ci, op)?),
                    None => None,
                };
                let dev = ci.and_then(|ci| devices.get(&(id, ci)));
                out.push(MigInstanceInfo {
                    gpu_instance_id: id,
                    compute_instance_id: ci,
                    kind: profile.kind,
                    profile: profile.name,
                    placement,
                    uuid: dev.map(|(u, _)| u.clone()),
                    memory_mib: dev.map_or(profile.memory_mib, |(_, m)| *m),
                });
            }
        }
        out.sort_by_key(|i| i.placement);
        Ok(out)
    }

    fn family(&self, d: &Device<'n>, op: Op) -> Result<MigFamily, GpuError> {
        let e = |e| map_nvml_error(op, e);
        let name = d.name().map_err(e)?;
        let id = (d.pci_info().map_err(e)?.pci_device_id >> 16) as u16;
        catalog::identify(&name, Some(id))
            .mig_family()
            .ok_or(GpuError::NotSupported { op })
    }

    fn mig_instances(&self, gpu: u32) -> Result<Vec<MigInstanceInfo>, GpuError> {
        let op = Op::ListMigInstances;
        let d = self.device(gpu, op)?;
        let family = self.family(&d, op)?;
        let mode = d.mig_mode().map_err(|e| map_nvml_error(op, e))?;
        if mode.current != sys::NVML_DEVICE_MIG_ENABLE {
            return Ok(Vec::new());
        }
        self.instances(&d, family, op)
    }

    fn memory(&self, gpu: u32) -> Result<MemoryUsage, GpuError> {
        let op = Op::Memory;
        let m = self.device(gpu, op)?.memory_info().map_err(|e| map_nvml_error(op, e))?;
        Ok(MemoryUsage {
            total_mib: m.total / MIB,
            used_mib: m.used / MIB,
        })
    }

    fn processes(&self, gpu: u32) -> Result<Vec<GpuProcess>, GpuError> {
        let op = Op::Processes;
        let e = |e| map_nvml_error(op, e);
        let d = self.device(gpu, op)?;
        let mig_on = match d.mig_mode() {
            Ok(m) => m.current == sys::NVML_DEVICE_MIG_ENABLE,
            Err(NvmlError::NotSupported) => false,
            Err(err) => return Err(e(err)),
        };
        let convert = |p: nvml_wrapper::struct_wrappers::device::ProcessInfo, ids: Option<(u32, u32)>| GpuProcess {
            pid: p.pid,
            gpu,
            used_memory_mib: match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => Some(b / MIB),
                UsedGpuMemory::Unavailable => None,
            },
            gpu_instance_id: ids.map(|i| i.0).or(p.gpu_instance_id),
            compute_instance_id: ids.map(|i| i.1).or(p.compute_instance_id),
        };
        let mut out = Vec::new();
        if mig_on {
            // Per MIG device: works without the privilege the parent's
            // aggregated list needs.
            for (m, ids) in self.mig_handles(&d, op)? {
                for p in m.running_compute_processes().map_err(e)? {
                    out.push(convert(p, Some(ids)));
                }
            }
        } else {
            for p in d.running_compute_processes().map_err(e)? {
                out.push(convert(p, None));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn set_mig_mode(&self, gpu: u32, enabled: bool) -> Result<MigMode, GpuError> {
        let op = Op::SetMigMode;
        let e = |e| map_nvml_error(op, e);
        let d = self.device(gpu, op)?;
        let status = d.set_mig_mode(enabled).map_err(e)?;
        if let Some(err) = GpuError::from_code(op, status) {
            return Err(err);
        }
        let m = d.mig_mode().map_err(e)?;
        Ok(MigMode {
            current: m.current == sys::NVML_DEVICE_MIG_ENABLE,
            pending: m.pending == sys::NVML_DEVICE_MIG_ENABLE,
        })
    }

    fn possible_placements(&self, gpu: u32, kind: ProfileKind) -> Result<Vec<Placement>, GpuError> {
        let op = Op::PossiblePlacements;
        let d = self.device(gpu, op)?;
        let info = d
            .profile_info(kind.spec().nvml_index)
            .map_err(|e| map_nvml_error(op, e))?;
        raw::possible_placements(self.nvml, &d, info.id, op)
    }

    fn create_mig_instance(&self, gpu: u32, inst: MigInstance) -> Result<MigInstanceInfo, GpuError> {
        let op = Op::CreateGpuInstance;
        let d = self.device(gpu, op)?;
        let info = d
            .profile_info(inst.kind.spec().nvml_index)
            .map_err(|e| map_nvml_error(op, e))?;
        let gi = raw::create_gpu_instance(self.nvml, &d, info.id, inst.placement, op)?;
        let cop = Op::CreateComputeInstance;
        let ci = raw::compute_instance_profile_id(self.nvml, gi, full_compute_profile(inst.kind), cop)
            .and_then(|p| raw::create_compute_instance(self.nvml, gi, p, cop));
        if let Err(err) = ci {
            let _ = raw::destroy_gpu_instance(self.nvml, gi, Op::DestroyGpuInstance);
            return Err(err);
        }
        let (id, _, _) = raw::gpu_instance_info(self.nvml, gi, op)?;
        let family = self.family(&d, op)?;
        self.instances(&d, family, op)?
            .into_iter()
            .find(|i| i.gpu_instance_id == id)
            .ok_or(GpuError::NotFound { op })
    }

    fn destroy_mig_instance(&self, gpu: u32, gpu_instance_id: u32) -> Result<(), GpuError> {
        let op = Op::DestroyGpuInstance;
        let cop = Op::DestroyComputeInstance;
        let d = self.device(gpu, op)?;
        let gi = raw::gpu_instance_by_id(self.nvml, &d, gpu_instance_id, op)?;
        for index in 0..=4 {
            let profile = match raw::compute_instance_profile_id(self.nvml, gi, index, cop) {
                Ok(p) => p,
                Err(GpuError::NotSupported { .. } | GpuError::InvalidArgument { .. }) => continue,
                Err(err) => return Err(err),
            };
            for ci in raw::compute_instances(self.nvml, gi, profile, cop)? {
                raw::destroy_compute_instance(self.nvml, ci, cop)?;
            }
        }
        raw::destroy_gpu_instance(self.nvml, gi, op)
    }
}

impl GpuBackend for NvmlBackend {
    fn inventory(&self) -> BackendFuture<'_, NodeInventory> {
        self.call(|c| c.inventory())
    }

    fn memory(&self, gpu: u32) -> BackendFuture<'_, MemoryUsage> {
        self.call(move |c| c.memory(gpu))
    }

    fn processes(&self, gpu: u32) -> BackendFuture<'_, Vec<GpuProcess>> {
        self.call(move |c| c.processes(gpu))
    }

    fn set_mig_mode(&self, gpu: u32, enabled: bool) -> BackendFuture<'_, MigMode> {
        self.call(move |c| c.set_mig_mode(gpu, enabled))
    }

    fn possible_placements(&self, gpu: u32, kind: ProfileKind) -> BackendFuture<'_, Vec<Placement>> {
        self.call(move |c| c.possible_placements(gpu, kind))
    }

    fn mig_instances(&self, gpu: u32) -> BackendFuture<'_, Vec<MigInstanceInfo>> {
        self.call(move |c| c.mig_instances(gpu))
    }

    fn create_mig_instance(&self, gpu: u32, instance: MigInstance) -> BackendFuture<'_, MigInstanceInfo> {
        self.call(move |c| c.create_mig_instance(gpu, instance))
    }

    fn destroy_mig_instance(&self, gpu: u32, gpu_instance_id: u32) -> BackendFuture<'_, ()> {
        self.call(move |c| c.destroy_mig_instance(gpu, gpu_instance_id))
    }

    fn subscribe_health(&self) -> broadcast::Receiver<HealthEvent> {
        self.health_tx.subscribe()
    }

    fn health(&self) -> BackendFuture<'_, BTreeMap<u32, GpuHealth>> {
        self.call(|c| Ok(c.tracker.snapshot()))
    }
}
