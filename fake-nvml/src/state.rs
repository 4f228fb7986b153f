//! The fake driver's state and every exported function's logic, in safe
//! code: [`crate::ffi`] only moves values across the C boundary.
//!
//! Handles are small integers cast to pointers (never dereferenced):
//! kind in bits 28–31, GPU index in 16–23, GPU instance in 8–15, compute
//! instance in 0–7.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nvml_wrapper_sys::bindings as sys;
use railyard_core::machine::MachineProfile;
use railyard_core::mig::{MigFamily, MigInstance, Placement, ProfileKind};
use railyard_gpu::GpuProcess;
use railyard_gpu::health::default_recovery_action;
use railyard_gpu::model::{
    LinkEnd, SimMachine, compute_profile_slices, cpu_affinity, full_compute_profile, has_nvlink, mig_uuid,
    nvlink_table, pci_device_id,
};

pub type Code = u32;
pub type R<T> = Result<T, Code>;

pub const SUCCESS: Code = sys::nvmlReturn_enum_NVML_SUCCESS;
pub const UNINITIALIZED: Code = sys::nvmlReturn_enum_NVML_ERROR_UNINITIALIZED;
pub const INVALID_ARGUMENT: Code = sys::nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
pub const NOT_SUPPORTED: Code = sys::nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
pub const NOT_FOUND: Code = sys::nvmlReturn_enum_NVML_ERROR_NOT_FOUND;
pub const INSUFFICIENT_SIZE: Code = sys::nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE;
pub const DRIVER_NOT_LOADED: Code = sys::nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED;
pub const TIMEOUT: Code = sys::nvmlReturn_enum_NVML_ERROR_TIMEOUT;
pub const UNKNOWN: Code = sys::nvmlReturn_enum_NVML_ERROR_UNKNOWN;

/// Environment variable naming the machine profile (YAML).
pub const PROFILE_ENV: &str = "RAILYARD_FAKE_NVML_PROFILE";
/// Environment variable naming the control file.
pub const CONTROL_ENV: &str = "RAILYARD_FAKE_NVML_CONTROL";
/// Profile file looked for beside the loaded library (before the env var).
pub const PROFILE_FILE: &str = "fake-nvml-profile.yaml";
/// Control file looked for beside the loaded library (before the env var).
pub const CONTROL_FILE: &str = "fake-nvml-control";

/// Event types the fake reports as supported: the seven the wrapper knows
/// plus `SingleBitEccErrorStorm` (0x200), a newer bit.
const SUPPORTED_EVENTS: u64 = (sys::nvmlEventTypeSingleBitEccError
    | sys::nvmlEventTypeDoubleBitEccError
    | sys::nvmlEventTypePState
    | sys::nvmlEventTypeXidCriticalError
    | sys::nvmlEventTypeClock
    | sys::nvmlEventTypeSingleBitEccErrorStorm) as u64;

/// A decoded handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handle {
    Gpu(u32),
    Mig { gpu: u32, gi: u32, ci: u32 },
    GpuInstance { gpu: u32, gi: u32 },
    ComputeInstance { gpu: u32, gi: u32, ci: u32 },
    EventSet(u32),
}

impl Handle {
    pub fn encode(self) -> usize {
        let (kind, gpu, gi, ci) = match self {
            Handle::Gpu(g) => (1, g, 0, 0),
            Handle::Mig { gpu, gi, ci } => (2, gpu, gi, ci),
            Handle::GpuInstance { gpu, gi } => (3, gpu, gi, 0),
            Handle::ComputeInstance { gpu, gi, ci } => (4, gpu, gi, ci),
            Handle::EventSet(n) => (5, n, 0, 0),
        };
        ((kind << 28) | ((gpu & 0xFF) << 16) | ((gi & 0xFF) << 8) | (ci & 0xFF)) as usize
    }

    pub fn decode(v: usize) -> Option<Handle> {
        let v = u32::try_from(v).ok()?;
        let (gpu, gi, ci) = ((v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF);
        Some(match v >> 28 {
            1 => Handle::Gpu(gpu),
            2 => Handle::Mig { gpu, gi, ci },
            3 => Handle::GpuInstance { gpu, gi },
            4 => Handle::ComputeInstance { gpu, gi, ci },
            5 => Handle::EventSet(gpu),
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
struct Failure {
    function: String,
    gpu: Option<u32>,
    code: Code,
    times: Option<u32>,
}

/// One queued event.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub gpu: u32,
    pub event_type: u64,
    pub data: u64,
    pub gi: u32,
    pub ci: u32,
}

#[derive(Debug, Default)]
struct EventSet {
    registered: BTreeMap<u32, u64>,
    queue: VecDeque<Event>,
}

#[derive(Debug)]
pub struct Fake {
    pub machine: SimMachine,
    init_count: u32,
    control: Option<PathBuf>,
    control_offset: u64,
    failures: Vec<Failure>,
    sets: BTreeMap<u32, EventSet>,
    next_set: u32,
}

static STATE: Mutex<Option<Fake>> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Option<Fake>> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Directory of this library, from `/proc/self/maps`.
fn library_dir() -> Option<PathBuf> {
    let me = library_dir as fn() -> Option<PathBuf> as usize;
    let maps = fs::read_to_string("/proc/self/maps").ok()?;
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let range = parts.next()?;
        let (a, b) = range.split_once('-')?;
        let (a, b) = (usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?);
        if (a..b).contains(&me) {
            let path = parts.nth(4)?;
            return Path::new(path).parent().map(Path::to_path_buf);
        }
    }
    None
}

fn config_path(file: &str, env: &str) -> Option<PathBuf> {
    let beside = library_dir().map(|d| d.join(file)).filter(|p| p.exists());
    beside.or_else(|| std::env::var_os(env).map(PathBuf::from))
}

/// `nvmlInit_v2`: loads the profile on first use; state survives shutdown,
/// as the driver's does.
pub fn init() -> R<()> {
    let mut st = lock();
    if st.is_none() {
        let path = config_path(PROFILE_FILE, PROFILE_ENV).ok_or(DRIVER_NOT_LOADED)?;
        let text = fs::read_to_string(path).map_err(|_| DRIVER_NOT_LOADED)?;
        let profile = MachineProfile::from_yaml(&text).map_err(|_| DRIVER_NOT_LOADED)?;
        *st = Some(Fake {
            machine: SimMachine::new(profile),
            init_count: 0,
            control: config_path(CONTROL_FILE, CONTROL_ENV),
            control_offset: 0,
            failures: Vec::new(),
            sets: BTreeMap::new(),
            next_set: 1,
        });
    }
    let fake = st.as_mut().ok_or(UNKNOWN)?;
    fake.refresh();
    fake.check_failure("nvmlInit_v2", None)?;
    fake.init_count += 1;
    Ok(())
}

pub fn shutdown() -> R<()> {
    let mut st = lock();
    let fake = st.as_mut().ok_or(UNINITIALIZED)?;
    if fake.init_count == 0 {
        return Err(UNINITIALIZED);
    }
    fake.init_count -= 1;
    Ok(())
}

/// Runs `f` on the initialized state after applying new control lines and
/// checking injected failures for `function` (on `gpu`).
pub fn with<T>(function: &str, gpu: Option<u32>, f: impl FnOnce(&mut Fake) -> R<T>) -> R<T> {
    let mut st = lock();
    let fake = st.as_mut().ok_or(UNINITIALIZED)?;
    fake.refresh();
    if fake.init_count == 0 {
        return Err(UNINITIALIZED);
    }
    fake.check_failure(function, gpu)?;
    f(fake)
}

/// The GPU a handle belongs to (for failure matching).
pub fn gpu_of(h: usize) -> Option<u32> {
    match Handle::decode(h)? {
        Handle::Gpu(g) | Handle::Mig { gpu: g, .. } => Some(g),
        Handle::GpuInstance { gpu, .. } | Handle::ComputeInstance { gpu, .. } => Some(gpu),
        Handle::EventSet(_) => None,
    }
}

fn parse_kv(words: &[&str], key: &str) -> Option<u64> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

impl Fake {
    /// Applies control lines appended since the last call (complete lines only).
    fn refresh(&mut self) {
        let Some(path) = &self.control else { return };
        let Ok(bytes) = fs::read(path) else { return };
        let len = bytes.len() as u64;
        if len < self.control_offset {
            self.control_offset = 0; // truncated: start over
        }
        let new = &bytes[self.control_offset as usize..];
        let Some(end) = new.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let text = String::from_utf8_lossy(&new[..=end]).into_owned();
        self.control_offset += end as u64 + 1;
        for line in text.lines() {
            self.apply(line);
        }
    }

    fn apply(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
        match words.first().copied() {
            Some("fail") => {
                let (Some(function), Some(code)) = (words.get(1), num(2)) else {
                    return;
                };
                self.failures.push(Failure {
                    function: function.to_string(),
                    gpu: parse_kv(&words, "gpu").map(|g| g as u32),
                    code: code as u32,
                    times: parse_kv(&words, "times").map(|t| t as u32),
                });
            }
            Some("clear-failures") => self.failures.clear(),
            Some("process") => {
                let (Some(gpu), Some(pid), Some(mib)) = (num(1), num(2), num(3)) else {
                    return;
                };
                let _ = self.machine.add_process(GpuProcess {
                    pid: pid as u32,
                    gpu: gpu as u32,
                    used_memory_mib: Some(mib),
                    gpu_instance_id: parse_kv(&words, "gi").map(|v| v as u32),
                    compute_instance_id: parse_kv(&words, "ci").map(|v| v as u32),
                });
            }
            Some("kill") => {
                if let Some(pid) = num(1) {
                    self.machine.remove_process(pid as u32);
                }
            }
            Some("memory") => {
                if let (Some(gpu), Some(mib)) = (num(1), num(2))
                    && let Some(g) = self.machine.gpu_mut(gpu as u32)
                {
                    g.base_used_mib = mib;
                }
            }
            Some("xid") => {
                let (Some(gpu), Some(xid)) = (num(1), num(2)) else {
                    return;
                };
                let gpu = gpu as u32;
                let action = parse_kv(&words, "action").map_or(default_recovery_action(xid), |a| a as u32);
                if let Some(g) = self.machine.gpu_mut(gpu) {
                    g.recovery_action = g.recovery_action.max(action);
                }
                let none = u32::MAX;
                let ev = Event {
                    gpu,
                    event_type: sys::nvmlEventTypeXidCriticalError as u64,
                    data: xid,
                    gi: parse_kv(&words, "gi").map_or(none, |v| v as u32),
                    ci: parse_kv(&words, "ci").map_or(none, |v| v as u32),
                };
                for set in self.sets.values_mut() {
                    if set.registered.get(&gpu).is_some_and(|m| m & ev.event_type != 0) {
                        set.queue.push_back(ev);
                    }
                }
            }
            Some("lost") => {
                if let Some(g) = num(1).and_then(|g| self.machine.gpu_mut(g as u32)) {
                    g.lost = true;
                }
            }
            Some("recover") => {
                if let Some(g) = num(1).and_then(|g| self.machine.gpu_mut(g as u32)) {
                    g.lost = false;
                    g.recovery_action = 0;
                }
            }
            _ => {}
        }
    }

    fn check_failure(&mut self, function: &str, gpu: Option<u32>) -> R<()> {
        let hit = self
            .failures
            .iter()
            .position(|f| (f.function == function || f.function == "*") && (f.gpu.is_none() || f.gpu == gpu));
        let Some(i) = hit else { return Ok(()) };
        let code = self.failures[i].code;
        match &mut self.failures[i].times {
            Some(n) if *n <= 1 => {
                self.failures.remove(i);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Err(code)
    }

    /// A live physical GPU's index.
    pub fn gpu(&self, h: usize) -> R<u32> {
        match Handle::decode(h) {
            Some(Handle::Gpu(g)) => {
                let sim = self.machine.gpu(g).ok_or(INVALID_ARGUMENT)?;
                if sim.lost {
                    return Err(sys::nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST);
                }
                Ok(g)
            }
            _ => Err(INVALID_ARGUMENT),
        }
    }

    /// A live MIG device: (gpu, gi, ci), checked to exist.
    pub fn mig(&self, h: usize) -> R<(u32, u32, u32)> {
        match Handle::decode(h) {
            Some(Handle::Mig { gpu, gi, ci }) => {
                self.gpu(Handle::Gpu(gpu).encode())?;
                let ok = self
                    .machine
                    .gpu(gpu)
                    .and_then(|g| g.instances.get(&gi))
                    .is_some_and(|i| i.compute_instance == Some(ci));
                if ok { Ok((gpu, gi, ci)) } else { Err(INVALID_ARGUMENT) }
            }
            _ => Err(INVALID_ARGUMENT),
        }
    }

    /// A GPU instance handle: (gpu, gi, kind, placement, ci).
    pub fn gpu_instance(&self, h: usize) -> R<(u32, u32, ProfileKind, Placement, Option<u32>)> {
        match Handle::decode(h) {
            Some(Handle::GpuInstance { gpu, gi }) => {
                self.gpu(Handle::Gpu(gpu).encode())?;
                let i = self
                    .machine
                    .gpu(gpu)
                    .and_then(|g| g.instances.get(&gi))
                    .ok_or(INVALID_ARGUMENT)?;
                Ok((gpu, gi, i.kind, i.placement, i.compute_instance))
            }
            _ => Err(INVALID_ARGUMENT),
        }
    }

    pub fn family(&self, gpu: u32) -> R<MigFamily> {
        self.machine.gpu(gpu).and_then(|g| g.family).ok_or(NOT_SUPPORTED)
    }

    pub fn gpu_count(&self) -> u32 {
        self.machine.gpu_indices().len() as u32
    }

    pub fn handle_by_index(&self, index: u32) -> R<usize> {
        let g = *self.machine.gpu_indices().get(index as usize).ok_or(INVALID_ARGUMENT)?;
        Ok(Handle::Gpu(g).encode())
    }

    pub fn spec(&self, gpu: u32) -> R<&railyard_core::machine::GpuSpec> {
        self.machine.profile().gpu(gpu).ok_or(INVALID_ARGUMENT)
    }

    /// UUID of a GPU or MIG device.
    pub fn uuid(&self, h: usize) -> R<String> {
        if let Ok((gpu, gi, _)) = self.mig(h) {
            let family = self.family(gpu)?;
            let i = self
                .machine
                .gpu(gpu)
                .and_then(|g| g.instances.get(&gi))
                .ok_or(INVALID_ARGUMENT)?;
            let inst = MigInstance {
                kind: i.kind,
                placement: i.placement,
            };
            return Ok(mig_uuid(&self.spec(gpu)?.uuid, family, inst));
        }
        Ok(self.spec(self.gpu(h)?)?.uuid.clone())
    }

    pub fn pci_info(&self, gpu: u32) -> R<sys::nvmlPciInfo_t> {
        let spec = self.spec(gpu)?;
        Ok(pci_info(&spec.pci_bus_id, pci_device_id(spec)))
    }

    /// (total, used) bytes of a GPU or MIG device.
    pub fn memory(&self, h: usize) -> R<(u64, u64)> {
        const MIB: u64 = 1024 * 1024;
        if let Ok((gpu, gi, _)) = self.mig(h) {
            let family = self.family(gpu)?;
            let g = self.machine.gpu(gpu).ok_or(INVALID_ARGUMENT)?;
            let kind = g.instances.get(&gi).ok_or(INVALID_ARGUMENT)?.kind;
            let used: u64 = g
                .processes
                .iter()
                .filter(|p| p.gpu_instance_id == Some(gi))
                .filter_map(|p| p.used_memory_mib)
                .sum();
            return Ok((family.profile(kind).memory_mib * MIB, used * MIB));
        }
        let m = self.machine.memory(self.gpu(h)?).map_err(|e| e.code())?;
        Ok((m.total_mib * MIB, m.used_mib * MIB))
    }

    pub fn cpu_affinity(&self, gpu: u32) -> R<Vec<u32>> {
        Ok(cpu_affinity(self.machine.profile(), self.spec(gpu)?))
    }

    /// (active, far end) of an NVLink link.
    pub fn nvlink(&self, gpu: u32, link: u32) -> R<Option<LinkEnd>> {
        if !has_nvlink(self.machine.profile(), gpu) {
            return Err(NOT_SUPPORTED);
        }
        let spec = self.spec(gpu)?;
        let max = railyard_gpu::model::model_of(spec).map_or(0, |m| m.nvlink_links);
        if link >= max || link >= sys::NVML_NVLINK_MAX_LINKS {
            return Err(INVALID_ARGUMENT);
        }
        Ok(nvlink_table(self.machine.profile(), gpu).get(link as usize).copied())
    }

    /// PCI info of an NVLink's far end (a GPU's, or a made-up NVSwitch's).
    pub fn nvlink_remote_pci(&self, gpu: u32, link: u32) -> R<sys::nvmlPciInfo_t> {
        match self.nvlink(gpu, link)? {
            Some(LinkEnd::Gpu(peer)) => self.pci_info(peer),
            Some(LinkEnd::NvSwitch) => Ok(pci_info(&format!("0000:{:02x}:00.0", 0xC0 + link % 4), 0x22A3)),
            None => Err(INVALID_ARGUMENT),
        }
    }

    pub fn topology_level(&self, a: u32, b: u32) -> R<u32> {
        self.machine
            .pcie_level(a, b)
            .map(|l| l.nvml_value())
            .ok_or(INVALID_ARGUMENT)
    }

    /// MIG devices of a GPU in placement order: (gi, ci).
    pub fn mig_devices(&self, gpu: u32) -> R<Vec<(u32, u32)>> {
        let g = self.machine.gpu(gpu).ok_or(INVALID_ARGUMENT)?;
        if g.family.is_none() {
            return Err(NOT_SUPPORTED);
        }
        let mut v: Vec<(Placement, u32, u32)> = g
            .instances
            .values()
            .filter_map(|i| Some((i.placement, i.id, i.compute_instance?)))
            .collect();
        v.sort();
        Ok(v.into_iter().map(|(_, gi, ci)| (gi, ci)).collect())
    }

    /// Processes on a GPU (all) or a MIG device (its own), as NVML structs.
    pub fn processes(&self, h: usize) -> R<Vec<sys::nvmlProcessInfo_t>> {
        let (gpu, only) = match self.mig(h) {
            Ok((gpu, gi, _)) => (gpu, Some(gi)),
            Err(_) => (self.gpu(h)?, None),
        };
        let procs = self.machine.processes(gpu).map_err(|e| e.code())?;
        Ok(procs
            .into_iter()
            .filter(|p| only.is_none() || p.gpu_instance_id == only)
            .map(|p| sys::nvmlProcessInfo_t {
                pid: p.pid,
                usedGpuMemory: p.used_memory_mib.map_or(u64::MAX, |m| m * 1024 * 1024),
                gpuInstanceId: p.gpu_instance_id.unwrap_or(u32::MAX),
                computeInstanceId: p.compute_instance_id.unwrap_or(u32::MAX),
            })
            .collect())
    }

    pub fn profile_info(&self, gpu: u32, index: u32) -> R<sys::nvmlGpuInstanceProfileInfo_t> {
        let family = self.family(gpu)?;
        let p = family
            .profiles()
            .find(|p| p.spec().nvml_index == index)
            .ok_or(INVALID_ARGUMENT)?;
        let s = p.spec();
        Ok(sys::nvmlGpuInstanceProfileInfo_t {
            id: s.profile_id,
            isP2pSupported: 0,
            sliceCount: s.compute_slices as u32,
            instanceCount: s.max_count as u32,
            multiprocessorCount: p.sms,
            copyEngineCount: p.engines.copy as u32,
            decoderCount: p.engines.decoder as u32,
            encoderCount: p.engines.encoder as u32,
            jpegCount: p.engines.jpeg as u32,
            ofaCount: p.engines.ofa as u32,
            memorySizeMB: p.memory_mib,
        })
    }

    pub fn kind_of_profile_id(&self, gpu: u32, id: u32) -> R<ProfileKind> {
        self.family(gpu)?;
        ProfileKind::from_profile_id(id).ok_or(INVALID_ARGUMENT)
    }

    pub fn compute_profile_info(&self, gi: usize, index: u32) -> R<sys::nvmlComputeInstanceProfileInfo_t> {
        let (gpu, _, kind, _, _) = self.gpu_instance(gi)?;
        let slices = compute_profile_slices(index).ok_or(INVALID_ARGUMENT)?;
        let gi_slices = kind.spec().compute_slices as u32;
        if slices > gi_slices {
            return Err(NOT_SUPPORTED);
        }
        let sms = self.family(gpu)?.profile(kind).sms;
        Ok(sys::nvmlComputeInstanceProfileInfo_t {
            id: index,
            sliceCount: slices,
            instanceCount: gi_slices / slices,
            multiprocessorCount: sms * slices / gi_slices,
            sharedCopyEngineCount: 0,
            sharedDecoderCount: 0,
            sharedEncoderCount: 0,
            sharedJpegCount: 0,
            sharedOfaCount: 0,
        })
    }

    /// Compute instances of a GPU instance with a CI profile id.
    pub fn compute_instances(&self, gi: usize, profile_id: u32) -> R<Vec<usize>> {
        let (gpu, id, kind, _, ci) = self.gpu_instance(gi)?;
        Ok(ci
            .filter(|_| profile_id == full_compute_profile(kind))
            .map(|ci| Handle::ComputeInstance { gpu, gi: id, ci }.encode())
            .into_iter()
            .collect())
    }

    pub fn create_event_set(&mut self) -> usize {
        let n = self.next_set;
        self.next_set += 1;
        self.sets.insert(n, EventSet::default());
        Handle::EventSet(n).encode()
    }

    pub fn free_event_set(&mut self, h: usize) -> R<()> {
        match Handle::decode(h) {
            Some(Handle::EventSet(n)) => self.sets.remove(&n).map(|_| ()).ok_or(INVALID_ARGUMENT),
            _ => Err(INVALID_ARGUMENT),
        }
    }

    pub fn supported_events(&self, gpu: u32) -> R<u64> {
        let mig = self.machine.gpu(gpu).is_some_and(|g| g.family.is_some());
        Ok(SUPPORTED_EVENTS | if mig { sys::nvmlEventMigConfigChange as u64 } else { 0 })
    }

    pub fn register_events(&mut self, gpu: u32, types: u64, set: usize) -> R<()> {
        if types & !self.supported_events(gpu)? != 0 {
            return Err(NOT_SUPPORTED);
        }
        let Some(Handle::EventSet(n)) = Handle::decode(set) else {
            return Err(INVALID_ARGUMENT);
        };
        let s = self.sets.get_mut(&n).ok_or(INVALID_ARGUMENT)?;
        *s.registered.entry(gpu).or_insert(0) |= types;
        Ok(())
    }

    fn pop_event(&mut self, set: usize) -> R<Option<Event>> {
        let Some(Handle::EventSet(n)) = Handle::decode(set) else {
            return Err(INVALID_ARGUMENT);
        };
        Ok(self.sets.get_mut(&n).ok_or(INVALID_ARGUMENT)?.queue.pop_front())
    }

    pub fn recovery_action(&self, gpu: u32) -> R<u32> {
        Ok(self.machine.gpu(gpu).ok_or(INVALID_ARGUMENT)?.recovery_action)
    }
}

/// `nvmlEventSetWait_v2`: polls the control file while waiting.
pub fn wait_event(set: usize, timeout_ms: u32) -> R<Event> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms as u64);
    loop {
        if let Some(ev) = with("nvmlEventSetWait_v2", None, |f| f.pop_event(set))? {
            return Ok(ev);
        }
        if Instant::now() >= deadline {
            return Err(TIMEOUT);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn c_chars<const N: usize>(s: &str) -> [std::os::raw::c_char; N] {
    let mut out = [0 as std::os::raw::c_char; N];
    for (o, b) in out.iter_mut().zip(s.bytes().take(N - 1)) {
        *o = b as std::os::raw::c_char;
    }
    out
}

/// NVML's PCI info for a sysfs bus id (`0000:1b:00.0`).
fn pci_info(bus_id: &str, device_id: u16) -> sys::nvmlPciInfo_t {
    let hex = |s: &str| u32::from_str_radix(s, 16).unwrap_or(0);
    let (domain, bus, dev) = (
        hex(bus_id.get(0..4).unwrap_or("0")),
        hex(bus_id.get(5..7).unwrap_or("0")),
        hex(bus_id.get(8..10).unwrap_or("0")),
    );
    sys::nvmlPciInfo_t {
        busIdLegacy: c_chars(&format!("{domain:04X}:{bus:02X}:{dev:02X}.0")),
        domain,
        bus,
        device: dev,
        pciDeviceId: ((device_id as u32) << 16) | 0x10DE,
        pciSubSystemId: 0x16C1_10DE,
        busId: c_chars(&format!("{domain:08X}:{bus:02X}:{dev:02X}.0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip() {
        for h in [
            Handle::Gpu(7),
            Handle::Mig { gpu: 3, gi: 13, ci: 0 },
            Handle::GpuInstance { gpu: 0, gi: 0 },
            Handle::ComputeInstance { gpu: 1, gi: 2, ci: 0 },
            Handle::EventSet(4),
        ] {
            assert_eq!(Handle::decode(h.encode()), Some(h));
            assert_ne!(h.encode(), 0);
        }
        assert_eq!(Handle::decode(0), None);
    }

    #[test]
    fn pci_info_formats() {
        let p = pci_info("0000:1b:00.0", 0x2330);
        assert_eq!((p.domain, p.bus, p.device, p.pciDeviceId), (0, 0x1b, 0, 0x2330_10DE));
        let s: String = p
            .busId
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8 as char)
            .collect();
        assert_eq!(s, "00000000:1B:00.0");
    }
}
