//! The exported NVML C functions: the crate's only unsafe code.
//!
//! Each function has NVML's exact C signature (types from
//! `nvml-wrapper-sys`), runs its logic in [`crate::state`] (safe code) inside
//! `catch_unwind` so no panic crosses the FFI boundary (a panic answers
//! `NVML_ERROR_UNKNOWN`), and only writes through the out-pointers the caller
//! passed, after checking them for NULL and, for arrays, against the count
//! the caller gave. Handles are integers cast to pointers and never
//! dereferenced. The safety contract for callers is NVML's own.
#![allow(unsafe_code, non_snake_case, clippy::missing_safety_doc)]

use std::os::raw::{c_char, c_int, c_uint, c_ulong, c_ulonglong};
use std::panic::{AssertUnwindSafe, catch_unwind};

use nvml_wrapper_sys::bindings::*;
use railyard_core::mig::{MigInstance, Placement};
use railyard_gpu::model::LinkEnd;

use crate::state::{self, Handle, INSUFFICIENT_SIZE, INVALID_ARGUMENT, R, SUCCESS, UNKNOWN, gpu_of, with};

fn addr<T>(p: *mut T) -> usize {
    p.addr()
}

fn ptr<T>(v: usize) -> *mut T {
    std::ptr::without_provenance_mut(v)
}

fn run(f: impl FnOnce() -> R<()>) -> nvmlReturn_t {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => UNKNOWN,
    }
}

/// Writes one value through a caller's out-pointer.
unsafe fn put<T>(p: *mut T, v: T) -> R<()> {
    if p.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    // SAFETY: non-NULL out-pointer from the caller, per NVML's contract.
    unsafe { p.write(v) };
    Ok(())
}

/// Writes a NUL-terminated string into a caller's buffer of `len` bytes.
unsafe fn put_str(p: *mut c_char, len: c_uint, s: &str) -> R<()> {
    if p.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    if s.len() + 1 > len as usize {
        return Err(INSUFFICIENT_SIZE);
    }
    for (i, b) in s.bytes().chain([0]).enumerate() {
        // SAFETY: i < s.len() + 1 <= len, the buffer's size.
        unsafe { p.add(i).write(b as c_char) };
    }
    Ok(())
}

/// NVML's array convention: `*count` in = capacity, out = items. A NULL
/// array asks for the count (`query_ok`) or is invalid; a small one is
/// `INSUFFICIENT_SIZE` with the count needed.
unsafe fn put_list<T: Copy>(p: *mut T, count: *mut c_uint, items: &[T], query_ok: bool) -> R<()> {
    if count.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    let n = items.len() as c_uint;
    // SAFETY: non-NULL, from the caller.
    let cap = unsafe { count.read() };
    // SAFETY: as above.
    unsafe { count.write(n) };
    if p.is_null() {
        return if query_ok { Ok(()) } else { Err(INVALID_ARGUMENT) };
    }
    if cap < n {
        return Err(INSUFFICIENT_SIZE);
    }
    for (i, v) in items.iter().enumerate() {
        // SAFETY: i < n <= cap, the array's length.
        unsafe { p.add(i).write(*v) };
    }
    Ok(())
}

fn dev(d: nvmlDevice_t) -> Option<u32> {
    gpu_of(addr(d))
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    run(state::init)
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> nvmlReturn_t {
    run(state::init)
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    run(state::shutdown)
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> nvmlReturn_t {
    run(|| {
        let v = with("nvmlSystemGetDriverVersion", None, |f| {
            Ok(f.machine.profile().driver_version.clone())
        })?;
        unsafe { put_str(version, length, &v) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(v: *mut c_int) -> nvmlReturn_t {
    run(|| {
        let c = with("nvmlSystemGetCudaDriverVersion_v2", None, |f| {
            Ok(f.machine.profile().cuda_driver_version as c_int)
        })?;
        unsafe { put(v, c) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> nvmlReturn_t {
    run(|| {
        let n = with("nvmlDeviceGetCount_v2", None, |f| Ok(f.gpu_count()))?;
        unsafe { put(count, n) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut nvmlDevice_t) -> nvmlReturn_t {
    run(|| {
        let h = with("nvmlDeviceGetHandleByIndex_v2", Some(index), |f| {
            f.handle_by_index(index)
        })?;
        unsafe { put(device, ptr(h)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetUUID(device: nvmlDevice_t, uuid: *mut c_char, length: c_uint) -> nvmlReturn_t {
    run(|| {
        let u = with("nvmlDeviceGetUUID", dev(device), |f| f.uuid(addr(device)))?;
        unsafe { put_str(uuid, length, &u) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetName(device: nvmlDevice_t, name: *mut c_char, length: c_uint) -> nvmlReturn_t {
    run(|| {
        let n = with("nvmlDeviceGetName", dev(device), |f| {
            Ok(f.spec(f.gpu(addr(device))?)?.product_name.clone())
        })?;
        unsafe { put_str(name, length, &n) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetIndex(device: nvmlDevice_t, index: *mut c_uint) -> nvmlReturn_t {
    run(|| {
        let i = with("nvmlDeviceGetIndex", dev(device), |f| {
            let g = f.gpu(addr(device))?;
            f.machine
                .gpu_indices()
                .iter()
                .position(|x| *x == g)
                .ok_or(INVALID_ARGUMENT)
        })?;
        unsafe { put(index, i as c_uint) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMinorNumber(device: nvmlDevice_t, minor: *mut c_uint) -> nvmlReturn_t {
    run(|| {
        let m = with("nvmlDeviceGetMinorNumber", dev(device), |f| {
            let g = f.gpu(addr(device))?;
            Ok(f.spec(g)?.minor.unwrap_or(g))
        })?;
        unsafe { put(minor, m) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(device: nvmlDevice_t, pci: *mut nvmlPciInfo_t) -> nvmlReturn_t {
    run(|| {
        let p = with("nvmlDeviceGetPciInfo_v3", dev(device), |f| {
            f.pci_info(f.gpu(addr(device))?)
        })?;
        unsafe { put(pci, p) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    run(|| {
        let (total, used) = with("nvmlDeviceGetMemoryInfo_v2", dev(device), |f| f.memory(addr(device)))?;
        if memory.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        // SAFETY: non-NULL; the caller set `version`, which we keep.
        let version = unsafe { (*memory).version };
        let m = nvmlMemory_v2_t {
            version,
            total,
            reserved: 0,
            free: total.saturating_sub(used),
            used,
        };
        unsafe { put(memory, m) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetNumaNodeId(device: nvmlDevice_t, _node: *mut c_uint) -> nvmlReturn_t {
    // As on x86: GPU memory is not a NUMA node; the node is in sysfs.
    run(|| {
        with("nvmlDeviceGetNumaNodeId", dev(device), |f| f.gpu(addr(device)))?;
        Err(state::NOT_SUPPORTED)
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetCpuAffinity(
    device: nvmlDevice_t,
    size: c_uint,
    set: *mut c_ulong,
) -> nvmlReturn_t {
    run(|| {
        let cpus = with("nvmlDeviceGetCpuAffinity", dev(device), |f| {
            f.cpu_affinity(f.gpu(addr(device))?)
        })?;
        if set.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let bits = c_ulong::BITS;
        for w in 0..size as usize {
            let word = cpus
                .iter()
                .filter(|c| (**c / bits) as usize == w)
                .fold(0 as c_ulong, |acc, c| acc | (1 << (c % bits)));
            // SAFETY: w < size, the array's length.
            unsafe { set.add(w).write(word) };
        }
        Ok(())
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetTopologyCommonAncestor(
    device1: nvmlDevice_t,
    device2: nvmlDevice_t,
    path: *mut nvmlGpuTopologyLevel_t,
) -> nvmlReturn_t {
    run(|| {
        let l = with("nvmlDeviceGetTopologyCommonAncestor", dev(device1), |f| {
            f.topology_level(f.gpu(addr(device1))?, f.gpu(addr(device2))?)
        })?;
        unsafe { put(path, l) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetNvLinkState(
    device: nvmlDevice_t,
    link: c_uint,
    active: *mut nvmlEnableState_t,
) -> nvmlReturn_t {
    run(|| {
        let end = with("nvmlDeviceGetNvLinkState", dev(device), |f| {
            f.nvlink(f.gpu(addr(device))?, link)
        })?;
        unsafe { put(active, end.is_some() as nvmlEnableState_t) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetNvLinkRemotePciInfo_v2(
    device: nvmlDevice_t,
    link: c_uint,
    pci: *mut nvmlPciInfo_t,
) -> nvmlReturn_t {
    run(|| {
        let p = with("nvmlDeviceGetNvLinkRemotePciInfo_v2", dev(device), |f| {
            f.nvlink_remote_pci(f.gpu(addr(device))?, link)
        })?;
        unsafe { put(pci, p) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetNvLinkRemoteDeviceType(
    device: nvmlDevice_t,
    link: c_uint,
    t: *mut nvmlIntNvLinkDeviceType_t,
) -> nvmlReturn_t {
    run(|| {
        let end = with("nvmlDeviceGetNvLinkRemoteDeviceType", dev(device), |f| {
            f.nvlink(f.gpu(addr(device))?, link)
        })?;
        let v = match end {
            Some(LinkEnd::Gpu(_)) => nvmlIntNvLinkDeviceType_enum_NVML_NVLINK_DEVICE_TYPE_GPU,
            Some(LinkEnd::NvSwitch) => nvmlIntNvLinkDeviceType_enum_NVML_NVLINK_DEVICE_TYPE_SWITCH,
            None => nvmlIntNvLinkDeviceType_enum_NVML_NVLINK_DEVICE_TYPE_UNKNOWN,
        };
        unsafe { put(t, v) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: nvmlDevice_t,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> nvmlReturn_t {
    run(|| {
        let m = with("nvmlDeviceGetMigMode", dev(device), |f| {
            f.machine.mig_mode(f.gpu(addr(device))?).map_err(|e| e.code())
        })?;
        unsafe { put(current, m.current as c_uint)? };
        unsafe { put(pending, m.pending as c_uint) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceSetMigMode(
    device: nvmlDevice_t,
    mode: c_uint,
    status: *mut nvmlReturn_t,
) -> nvmlReturn_t {
    run(|| {
        if status.is_null() || mode > NVML_DEVICE_MIG_ENABLE {
            return Err(INVALID_ARGUMENT);
        }
        let r = with("nvmlDeviceSetMigMode", dev(device), |f| {
            let g = f.gpu(addr(device))?;
            let before = f.machine.mig_mode(g).map_err(|e| e.code())?;
            match f.machine.set_mig_mode(g, mode == NVML_DEVICE_MIG_ENABLE) {
                Ok(_) => Ok(SUCCESS),
                // The change was accepted but not activated: report it in
                // the activation status, as the driver does.
                Err(e)
                    if f.machine
                        .mig_mode(g)
                        .is_ok_and(|m| m.pending != before.pending || m.pending != m.current) =>
                {
                    Ok(e.code())
                }
                Err(e) => Err(e.code()),
            }
        })?;
        unsafe { put(status, r) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceProfileInfo(
    device: nvmlDevice_t,
    profile: c_uint,
    info: *mut nvmlGpuInstanceProfileInfo_t,
) -> nvmlReturn_t {
    run(|| {
        let i = with("nvmlDeviceGetGpuInstanceProfileInfo", dev(device), |f| {
            f.profile_info(f.gpu(addr(device))?, profile)
        })?;
        unsafe { put(info, i) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstancePossiblePlacements_v2(
    device: nvmlDevice_t,
    profile_id: c_uint,
    placements: *mut nvmlGpuInstancePlacement_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    run(|| {
        let list = with("nvmlDeviceGetGpuInstancePossiblePlacements_v2", dev(device), |f| {
            let g = f.gpu(addr(device))?;
            let kind = f.kind_of_profile_id(g, profile_id)?;
            f.machine.possible_placements(g, kind).map_err(|e| e.code())
        })?;
        let list: Vec<nvmlGpuInstancePlacement_t> = list
            .into_iter()
            .map(|p| nvmlGpuInstancePlacement_t {
                start: p.start as c_uint,
                size: p.size as c_uint,
            })
            .collect();
        unsafe { put_list(placements, count, &list, true) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceCreateGpuInstanceWithPlacement(
    device: nvmlDevice_t,
    profile_id: c_uint,
    placement: *const nvmlGpuInstancePlacement_t,
    gpu_instance: *mut nvmlGpuInstance_t,
) -> nvmlReturn_t {
    run(|| {
        if placement.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        // SAFETY: non-NULL pointer from the caller.
        let p = unsafe { placement.read() };
        let h = with("nvmlDeviceCreateGpuInstanceWithPlacement", dev(device), |f| {
            let g = f.gpu(addr(device))?;
            let kind = f.kind_of_profile_id(g, profile_id)?;
            let (start, size) = (u8::try_from(p.start), u8::try_from(p.size));
            let (Ok(start), Ok(size)) = (start, size) else {
                return Err(INVALID_ARGUMENT);
            };
            let inst = MigInstance {
                kind,
                placement: Placement { start, size },
            };
            let gi = f.machine.create_gpu_instance(g, inst).map_err(|e| e.code())?;
            Ok(Handle::GpuInstance { gpu: g, gi }.encode())
        })?;
        unsafe { put(gpu_instance, ptr(h)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstances(
    device: nvmlDevice_t,
    profile_id: c_uint,
    instances: *mut nvmlGpuInstance_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    run(|| {
        let list = with("nvmlDeviceGetGpuInstances", dev(device), |f| {
            let g = f.gpu(addr(device))?;
            let kind = f.kind_of_profile_id(g, profile_id)?;
            let sim = f.machine.gpu(g).ok_or(INVALID_ARGUMENT)?;
            if !sim.mig.current {
                return Err(state::NOT_SUPPORTED);
            }
            Ok(sim
                .instances
                .values()
                .filter(|i| i.kind == kind)
                .map(|i| Handle::GpuInstance { gpu: g, gi: i.id }.encode())
                .collect::<Vec<_>>())
        })?;
        let list: Vec<nvmlGpuInstance_t> = list.into_iter().map(ptr).collect();
        unsafe { put_list(instances, count, &list, false) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceById(
    device: nvmlDevice_t,
    id: c_uint,
    gpu_instance: *mut nvmlGpuInstance_t,
) -> nvmlReturn_t {
    run(|| {
        let h = with("nvmlDeviceGetGpuInstanceById", dev(device), |f| {
            let g = f.gpu(addr(device))?;
            f.family(g)?;
            let sim = f.machine.gpu(g).ok_or(INVALID_ARGUMENT)?;
            sim.instances.get(&id).ok_or(state::NOT_FOUND)?;
            Ok(Handle::GpuInstance { gpu: g, gi: id }.encode())
        })?;
        unsafe { put(gpu_instance, ptr(h)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpuInstanceGetInfo(
    gi: nvmlGpuInstance_t,
    info: *mut nvmlGpuInstanceInfo_t,
) -> nvmlReturn_t {
    run(|| {
        let (gpu, id, kind, p, _) = with("nvmlGpuInstanceGetInfo", gpu_of(addr(gi)), |f| f.gpu_instance(addr(gi)))?;
        let i = nvmlGpuInstanceInfo_t {
            device: ptr(Handle::Gpu(gpu).encode()),
            id,
            profileId: kind.spec().profile_id,
            placement: nvmlGpuInstancePlacement_t {
                start: p.start as c_uint,
                size: p.size as c_uint,
            },
        };
        unsafe { put(info, i) }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlGpuInstanceDestroy(gi: nvmlGpuInstance_t) -> nvmlReturn_t {
    run(|| {
        with("nvmlGpuInstanceDestroy", gpu_of(addr(gi)), |f| {
            let (gpu, id, ..) = f.gpu_instance(addr(gi))?;
            f.machine.destroy_gpu_instance(gpu, id).map_err(|e| e.code())
        })
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstanceProfileInfo(
    gi: nvmlGpuInstance_t,
    profile: c_uint,
    _eng_profile: c_uint,
    info: *mut nvmlComputeInstanceProfileInfo_t,
) -> nvmlReturn_t {
    run(|| {
        let i = with("nvmlGpuInstanceGetComputeInstanceProfileInfo", gpu_of(addr(gi)), |f| {
            f.compute_profile_info(addr(gi), profile)
        })?;
        unsafe { put(info, i) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpuInstanceCreateComputeInstance(
    gi: nvmlGpuInstance_t,
    profile_id: c_uint,
    ci: *mut nvmlComputeInstance_t,
) -> nvmlReturn_t {
    run(|| {
        let h = with("nvmlGpuInstanceCreateComputeInstance", gpu_of(addr(gi)), |f| {
            let (gpu, id, kind, ..) = f.gpu_instance(addr(gi))?;
            // Only compute instances spanning the whole GPU instance are modelled.
            if profile_id != railyard_gpu::model::full_compute_profile(kind) {
                return Err(state::NOT_SUPPORTED);
            }
            let c = f.machine.create_compute_instance(gpu, id).map_err(|e| e.code())?;
            Ok(Handle::ComputeInstance { gpu, gi: id, ci: c }.encode())
        })?;
        unsafe { put(ci, ptr(h)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlGpuInstanceGetComputeInstances(
    gi: nvmlGpuInstance_t,
    profile_id: c_uint,
    cis: *mut nvmlComputeInstance_t,
    count: *mut c_uint,
) -> nvmlReturn_t {
    run(|| {
        let list = with("nvmlGpuInstanceGetComputeInstances", gpu_of(addr(gi)), |f| {
            f.compute_instances(addr(gi), profile_id)
        })?;
        let list: Vec<nvmlComputeInstance_t> = list.into_iter().map(ptr).collect();
        unsafe { put_list(cis, count, &list, false) }
    })
}

fn compute_instance(f: &state::Fake, ci: usize) -> R<(u32, u32, u32)> {
    match Handle::decode(ci) {
        Some(Handle::ComputeInstance { gpu, gi, ci }) => {
            let (.., cur) = f.gpu_instance(Handle::GpuInstance { gpu, gi }.encode())?;
            if cur == Some(ci) {
                Ok((gpu, gi, ci))
            } else {
                Err(INVALID_ARGUMENT)
            }
        }
        _ => Err(INVALID_ARGUMENT),
    }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlComputeInstanceGetInfo_v2(
    ci: nvmlComputeInstance_t,
    info: *mut nvmlComputeInstanceInfo_t,
) -> nvmlReturn_t {
    run(|| {
        let i = with("nvmlComputeInstanceGetInfo_v2", gpu_of(addr(ci)), |f| {
            let (gpu, gi, id) = compute_instance(f, addr(ci))?;
            let (.., kind, _, _) = f.gpu_instance(Handle::GpuInstance { gpu, gi }.encode())?;
            Ok(nvmlComputeInstanceInfo_t {
                device: ptr(Handle::Gpu(gpu).encode()),
                gpuInstance: ptr(Handle::GpuInstance { gpu, gi }.encode()),
                id,
                profileId: railyard_gpu::model::full_compute_profile(kind),
                placement: nvmlComputeInstancePlacement_t {
                    start: 0,
                    size: kind.spec().compute_slices as c_uint,
                },
            })
        })?;
        unsafe { put(info, i) }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlComputeInstanceDestroy(ci: nvmlComputeInstance_t) -> nvmlReturn_t {
    run(|| {
        with("nvmlComputeInstanceDestroy", gpu_of(addr(ci)), |f| {
            let (gpu, gi, id) = compute_instance(f, addr(ci))?;
            f.machine.destroy_compute_instance(gpu, gi, id).map_err(|e| e.code())
        })
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(device: nvmlDevice_t, count: *mut c_uint) -> nvmlReturn_t {
    run(|| {
        with("nvmlDeviceGetMaxMigDeviceCount", dev(device), |f| {
            f.family(f.gpu(addr(device))?)
        })?;
        unsafe { put(count, 7) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: nvmlDevice_t,
    index: c_uint,
    mig: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    run(|| {
        let h = with("nvmlDeviceGetMigDeviceHandleByIndex", dev(device), |f| {
            let g = f.gpu(addr(device))?;
            let &(gi, ci) = f.mig_devices(g)?.get(index as usize).ok_or(state::NOT_FOUND)?;
            Ok(Handle::Mig { gpu: g, gi, ci }.encode())
        })?;
        unsafe { put(mig, ptr(h)) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(device: nvmlDevice_t, is_mig: *mut c_uint) -> nvmlReturn_t {
    run(|| {
        let m = with("nvmlDeviceIsMigDeviceHandle", dev(device), |f| {
            Ok(f.mig(addr(device)).is_ok())
        })?;
        unsafe { put(is_mig, m as c_uint) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    mig: nvmlDevice_t,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    run(|| {
        let (gpu, ..) = with("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", dev(mig), |f| {
            f.mig(addr(mig))
        })?;
        unsafe { put(device, ptr(Handle::Gpu(gpu).encode())) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(device: nvmlDevice_t, id: *mut c_uint) -> nvmlReturn_t {
    run(|| {
        let (_, gi, _) = with("nvmlDeviceGetGpuInstanceId", dev(device), |f| {
            f.mig(addr(device)).map_err(|_| state::NOT_SUPPORTED)
        })?;
        unsafe { put(id, gi) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(device: nvmlDevice_t, id: *mut c_uint) -> nvmlReturn_t {
    run(|| {
        let (.., ci) = with("nvmlDeviceGetComputeInstanceId", dev(device), |f| {
            f.mig(addr(device)).map_err(|_| state::NOT_SUPPORTED)
        })?;
        unsafe { put(id, ci) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetComputeRunningProcesses_v3(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut nvmlProcessInfo_t,
) -> nvmlReturn_t {
    run(|| {
        let list = with("nvmlDeviceGetComputeRunningProcesses_v3", dev(device), |f| {
            f.processes(addr(device))
        })?;
        match unsafe { put_list(infos, count, &list, true) } {
            // A count query with processes present answers INSUFFICIENT_SIZE.
            Ok(()) if infos.is_null() && !list.is_empty() => Err(INSUFFICIENT_SIZE),
            r => r,
        }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetCreate(set: *mut nvmlEventSet_t) -> nvmlReturn_t {
    run(|| {
        let h = with("nvmlEventSetCreate", None, |f| Ok(f.create_event_set()))?;
        unsafe { put(set, ptr(h)) }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlEventSetFree(set: nvmlEventSet_t) -> nvmlReturn_t {
    run(|| with("nvmlEventSetFree", None, |f| f.free_event_set(addr(set))))
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetSupportedEventTypes(
    device: nvmlDevice_t,
    types: *mut c_ulonglong,
) -> nvmlReturn_t {
    run(|| {
        let t = with("nvmlDeviceGetSupportedEventTypes", dev(device), |f| {
            f.supported_events(f.gpu(addr(device))?)
        })?;
        unsafe { put(types, t) }
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn nvmlDeviceRegisterEvents(
    device: nvmlDevice_t,
    types: c_ulonglong,
    set: nvmlEventSet_t,
) -> nvmlReturn_t {
    run(|| {
        with("nvmlDeviceRegisterEvents", dev(device), |f| {
            let g = f.gpu(addr(device))?;
            f.register_events(g, types, addr(set))
        })
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlEventSetWait_v2(
    set: nvmlEventSet_t,
    data: *mut nvmlEventData_t,
    timeout_ms: c_uint,
) -> nvmlReturn_t {
    run(|| {
        let ev = state::wait_event(addr(set), timeout_ms)?;
        let d = nvmlEventData_t {
            device: ptr(Handle::Gpu(ev.gpu).encode()),
            eventType: ev.event_type,
            eventData: ev.data,
            gpuInstanceId: ev.gi,
            computeInstanceId: ev.ci,
        };
        unsafe { put(data, d) }
    })
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn nvmlDeviceGetFieldValues(
    device: nvmlDevice_t,
    count: c_int,
    values: *mut nvmlFieldValue_t,
) -> nvmlReturn_t {
    run(|| {
        let action = with("nvmlDeviceGetFieldValues", dev(device), |f| {
            f.recovery_action(f.gpu(addr(device))?)
        })?;
        if values.is_null() || count < 0 {
            return Err(INVALID_ARGUMENT);
        }
        for i in 0..count as usize {
            // SAFETY: i < count, the array's length.
            let v = unsafe { &mut *values.add(i) };
            if v.fieldId == field_id::NVML_FI_DEV_GET_GPU_RECOVERY_ACTION {
                v.valueType = nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_INT;
                v.value = nvmlValue_t { uiVal: action };
                v.nvmlReturn = SUCCESS;
            } else {
                v.nvmlReturn = state::NOT_SUPPORTED;
            }
        }
        Ok(())
    })
}
