//! Raw NVML calls, for what `nvml-wrapper` 0.13 lacks or gets wrong
//! (PROTOCOLS §11): GPU/compute instance create, list, destroy; placements
//! (`possible_placements` always returns an empty Vec); the NVLink remote
//! device type (`remote_device_type` always returns `Unknown`); supported
//! event types (the wrapper fails on bits above `MIG_CONFIG_CHANGE`); event
//! wait with the MIG instance ids (the wrapper drops them); a MIG device's
//! GPU/compute instance ids.
//!
//! This is the crate's only unsafe code. Every function here:
//! - takes the symbol from the wrapper's own `NvmlLib` (`nvml.lib().nvmlX.as_ref()`),
//!   never the panicking `NvmlLib` methods, so a missing symbol is
//!   `GpuError::FunctionNotFound`;
//! - passes only handles NVML gave us (from the wrapper or from a call here)
//!   and pointers to locals or to Vecs sized to the count passed, which NVML
//!   writes at most `count` elements into;
//! - runs on the backend's NVML thread (raw handles never leave it).
#![allow(unsafe_code)]

use std::ptr;

use nvml_wrapper::event::EventSet;
use nvml_wrapper::{Device, Nvml};
use nvml_wrapper_sys::bindings as sys;
use railyard_core::mig::Placement;

use crate::error::{GpuError, Op};

/// An NVML GPU instance handle; valid while the instance exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GpuInstance(sys::nvmlGpuInstance_t);

/// An NVML compute instance handle; valid while the instance exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ComputeInstance(sys::nvmlComputeInstance_t);

fn sym<'a, T, E>(s: &'a Result<T, E>, name: &str, op: Op) -> Result<&'a T, GpuError> {
    s.as_ref().map_err(|_| GpuError::FunctionNotFound {
        op,
        function: name.to_string(),
    })
}

fn check(op: Op, code: sys::nvmlReturn_t) -> Result<(), GpuError> {
    match GpuError::from_code(op, code) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

fn placement(p: sys::nvmlGpuInstancePlacement_t) -> Placement {
    Placement {
        start: p.start.min(255) as u8,
        size: p.size.min(255) as u8,
    }
}

/// The device handle's address, to match event data to a GPU.
pub(crate) fn handle_addr(dev: &Device<'_>) -> usize {
    // SAFETY: reading the handle value; it is not used to create a new Device.
    unsafe { dev.handle() as usize }
}

/// `nvmlDeviceGetGpuInstancePossiblePlacements_v2` (takes the profile id).
pub(crate) fn possible_placements(
    nvml: &Nvml,
    dev: &Device<'_>,
    profile_id: u32,
    op: Op,
) -> Result<Vec<Placement>, GpuError> {
    let f = sym(
        &nvml.lib().nvmlDeviceGetGpuInstancePossiblePlacements_v2,
        "nvmlDeviceGetGpuInstancePossiblePlacements_v2",
        op,
    )?;
    let mut count: u32 = 0;
    // SAFETY: a NULL array asks for the count only.
    check(op, unsafe { f(dev.handle(), profile_id, ptr::null_mut(), &mut count) })?;
    let mut buf = vec![sys::nvmlGpuInstancePlacement_t { start: 0, size: 0 }; count as usize];
    // SAFETY: `buf` holds `count` elements.
    check(op, unsafe { f(dev.handle(), profile_id, buf.as_mut_ptr(), &mut count) })?;
    buf.truncate(count as usize);
    Ok(buf.into_iter().map(placement).collect())
}

/// `nvmlDeviceGetNvLinkRemoteDeviceType`: 0 GPU, 1 IBM NPU, 2 NVSwitch, 0xFF unknown.
pub(crate) fn nvlink_remote_device_type(nvml: &Nvml, dev: &Device<'_>, link: u32, op: Op) -> Result<u32, GpuError> {
    let f = sym(
        &nvml.lib().nvmlDeviceGetNvLinkRemoteDeviceType,
        "nvmlDeviceGetNvLinkRemoteDeviceType",
        op,
    )?;
    let mut t: sys::nvmlIntNvLinkDeviceType_t = sys::nvmlIntNvLinkDeviceType_enum_NVML_NVLINK_DEVICE_TYPE_UNKNOWN;
    // SAFETY: out-pointer to a local.
    check(op, unsafe { f(dev.handle(), link, &mut t) })?;
    Ok(t)
}

/// `nvmlDeviceGetSupportedEventTypes`, all bits.
pub(crate) fn supported_event_types(nvml: &Nvml, dev: &Device<'_>, op: Op) -> Result<u64, GpuError> {
    let f = sym(
        &nvml.lib().nvmlDeviceGetSupportedEventTypes,
        "nvmlDeviceGetSupportedEventTypes",
        op,
    )?;
    let mut bits: u64 = 0;
    // SAFETY: out-pointer to a local.
    check(op, unsafe { f(dev.handle(), &mut bits) })?;
    Ok(bits)
}

/// A MIG device handle's GPU and compute instance ids.
pub(crate) fn mig_device_instance_ids(nvml: &Nvml, mig: &Device<'_>, op: Op) -> Result<(u32, u32), GpuError> {
    let gi_f = sym(&nvml.lib().nvmlDeviceGetGpuInstanceId, "nvmlDeviceGetGpuInstanceId", op)?;
    let ci_f = sym(
        &nvml.lib().nvmlDeviceGetComputeInstanceId,
        "nvmlDeviceGetComputeInstanceId",
        op,
    )?;
    let (mut gi, mut ci) = (0u32, 0u32);
    // SAFETY: out-pointers to locals.
    check(op, unsafe { gi_f(mig.handle(), &mut gi) })?;
    // SAFETY: as above.
    check(op, unsafe { ci_f(mig.handle(), &mut ci) })?;
    Ok((gi, ci))
}

/// `nvmlDeviceCreateGpuInstanceWithPlacement`.
pub(crate) fn create_gpu_instance(
    nvml: &Nvml,
    dev: &Device<'_>,
    profile_id: u32,
    at: Placement,
    op: Op,
) -> Result<GpuInstance, GpuError> {
    let f = sym(
        &nvml.lib().nvmlDeviceCreateGpuInstanceWithPlacement,
        "nvmlDeviceCreateGpuInstanceWithPlacement",
        op,
    )?;
    let p = sys::nvmlGpuInstancePlacement_t {
        start: at.start as u32,
        size: at.size as u32,
    };
    let mut gi: sys::nvmlGpuInstance_t = ptr::null_mut();
    // SAFETY: pointer to a local placement and an out-pointer to a local.
    check(op, unsafe { f(dev.handle(), profile_id, &p, &mut gi) })?;
    Ok(GpuInstance(gi))
}

/// `nvmlDeviceGetGpuInstances` for one GPU-instance profile id.
pub(crate) fn gpu_instances(
    nvml: &Nvml,
    dev: &Device<'_>,
    profile_id: u32,
    capacity: u32,
    op: Op,
) -> Result<Vec<GpuInstance>, GpuError> {
    let f = sym(&nvml.lib().nvmlDeviceGetGpuInstances, "nvmlDeviceGetGpuInstances", op)?;
    let mut count = capacity.max(1);
    let mut buf: Vec<sys::nvmlGpuInstance_t> = vec![ptr::null_mut(); count as usize];
    // SAFETY: `buf` holds `count` elements.
    check(op, unsafe { f(dev.handle(), profile_id, buf.as_mut_ptr(), &mut count) })?;
    buf.truncate(count as usize);
    Ok(buf.into_iter().map(GpuInstance).collect())
}

/// `nvmlDeviceGetGpuInstanceById`.
pub(crate) fn gpu_instance_by_id(nvml: &Nvml, dev: &Device<'_>, id: u32, op: Op) -> Result<GpuInstance, GpuError> {
    let f = sym(
        &nvml.lib().nvmlDeviceGetGpuInstanceById,
        "nvmlDeviceGetGpuInstanceById",
        op,
    )?;
    let mut gi: sys::nvmlGpuInstance_t = ptr::null_mut();
    // SAFETY: out-pointer to a local.
    check(op, unsafe { f(dev.handle(), id, &mut gi) })?;
    Ok(GpuInstance(gi))
}

/// `nvmlGpuInstanceGetInfo`: id, profile id, placement.
pub(crate) fn gpu_instance_info(nvml: &Nvml, gi: GpuInstance, op: Op) -> Result<(u32, u32, Placement), GpuError> {
    let f = sym(&nvml.lib().nvmlGpuInstanceGetInfo, "nvmlGpuInstanceGetInfo", op)?;
    let mut info = sys::nvmlGpuInstanceInfo_t {
        device: ptr::null_mut(),
        id: 0,
        profileId: 0,
        placement: sys::nvmlGpuInstancePlacement_t { start: 0, size: 0 },
    };
    // SAFETY: `gi` came from NVML; out-pointer to a local.
    check(op, unsafe { f(gi.0, &mut info) })?;
    Ok((info.id, info.profileId, placement(info.placement)))
}

/// `nvmlGpuInstanceDestroy`.
pub(crate) fn destroy_gpu_instance(nvml: &Nvml, gi: GpuInstance, op: Op) -> Result<(), GpuError> {
    let f = sym(&nvml.lib().nvmlGpuInstanceDestroy, "nvmlGpuInstanceDestroy", op)?;
    // SAFETY: `gi` came from NVML.
    check(op, unsafe { f(gi.0) })
}

/// `nvmlGpuInstanceGetComputeInstanceProfileInfo` (engine profile shared):
/// the id of compute-instance profile `index`.
pub(crate) fn compute_instance_profile_id(nvml: &Nvml, gi: GpuInstance, index: u32, op: Op) -> Result<u32, GpuError> {
    let f = sym(
        &nvml.lib().nvmlGpuInstanceGetComputeInstanceProfileInfo,
        "nvmlGpuInstanceGetComputeInstanceProfileInfo",
        op,
    )?;
    let mut info = sys::nvmlComputeInstanceProfileInfo_t {
        id: 0,
        sliceCount: 0,
        instanceCount: 0,
        multiprocessorCount: 0,
        sharedCopyEngineCount: 0,
        sharedDecoderCount: 0,
        sharedEncoderCount: 0,
        sharedJpegCount: 0,
        sharedOfaCount: 0,
    };
    let shared = sys::NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED;
    // SAFETY: `gi` came from NVML; out-pointer to a local.
    check(op, unsafe { f(gi.0, index, shared, &mut info) })?;
    Ok(info.id)
}

/// `nvmlGpuInstanceCreateComputeInstance`.
pub(crate) fn create_compute_instance(
    nvml: &Nvml,
    gi: GpuInstance,
    profile_id: u32,
    op: Op,
) -> Result<ComputeInstance, GpuError> {
    let f = sym(
        &nvml.lib().nvmlGpuInstanceCreateComputeInstance,
        "nvmlGpuInstanceCreateComputeInstance",
        op,
    )?;
    let mut ci: sys::nvmlComputeInstance_t = ptr::null_mut();
    // SAFETY: `gi` came from NVML; out-pointer to a local.
    check(op, unsafe { f(gi.0, profile_id, &mut ci) })?;
    Ok(ComputeInstance(ci))
}

/// `nvmlGpuInstanceGetComputeInstances` for one compute-instance profile id.
pub(crate) fn compute_instances(
    nvml: &Nvml,
    gi: GpuInstance,
    profile_id: u32,
    op: Op,
) -> Result<Vec<ComputeInstance>, GpuError> {
    let f = sym(
        &nvml.lib().nvmlGpuInstanceGetComputeInstances,
        "nvmlGpuInstanceGetComputeInstances",
        op,
    )?;
    // At most 7 compute instances fit in a GPU instance.
    let mut count: u32 = 8;
    let mut buf: Vec<sys::nvmlComputeInstance_t> = vec![ptr::null_mut(); count as usize];
    // SAFETY: `buf` holds `count` elements.
    check(op, unsafe { f(gi.0, profile_id, buf.as_mut_ptr(), &mut count) })?;
    buf.truncate(count as usize);
    Ok(buf.into_iter().map(ComputeInstance).collect())
}

/// `nvmlComputeInstanceGetInfo_v2`: the compute instance's id.
pub(crate) fn compute_instance_id(nvml: &Nvml, ci: ComputeInstance, op: Op) -> Result<u32, GpuError> {
    let f = sym(
        &nvml.lib().nvmlComputeInstanceGetInfo_v2,
        "nvmlComputeInstanceGetInfo_v2",
        op,
    )?;
    let mut info = sys::nvmlComputeInstanceInfo_t {
        device: ptr::null_mut(),
        gpuInstance: ptr::null_mut(),
        id: 0,
        profileId: 0,
        placement: sys::nvmlComputeInstancePlacement_t { start: 0, size: 0 },
    };
    // SAFETY: `ci` came from NVML; out-pointer to a local.
    check(op, unsafe { f(ci.0, &mut info) })?;
    Ok(info.id)
}

/// `nvmlComputeInstanceDestroy`.
pub(crate) fn destroy_compute_instance(nvml: &Nvml, ci: ComputeInstance, op: Op) -> Result<(), GpuError> {
    let f = sym(&nvml.lib().nvmlComputeInstanceDestroy, "nvmlComputeInstanceDestroy", op)?;
    // SAFETY: `ci` came from NVML.
    check(op, unsafe { f(ci.0) })
}

/// One event as `nvmlEventSetWait_v2` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawEvent {
    pub device: usize,
    pub event_type: u64,
    pub data: u64,
    pub gpu_instance_id: u32,
    pub compute_instance_id: u32,
}

/// `nvmlEventSetWait_v2`; `Ok(None)` on timeout.
pub(crate) fn wait_event(
    nvml: &Nvml,
    set: &EventSet<'_>,
    timeout_ms: u32,
    op: Op,
) -> Result<Option<RawEvent>, GpuError> {
    let f = sym(&nvml.lib().nvmlEventSetWait_v2, "nvmlEventSetWait_v2", op)?;
    let mut d = sys::nvmlEventData_t {
        device: ptr::null_mut(),
        eventType: 0,
        eventData: 0,
        gpuInstanceId: 0,
        computeInstanceId: 0,
    };
    // SAFETY: the set is alive (borrowed); out-pointer to a local.
    let code = unsafe { f(set.handle(), &mut d, timeout_ms) };
    if code == sys::nvmlReturn_enum_NVML_ERROR_TIMEOUT {
        return Ok(None);
    }
    check(op, code)?;
    Ok(Some(RawEvent {
        device: d.device as usize,
        event_type: d.eventType,
        data: d.eventData,
        gpu_instance_id: d.gpuInstanceId,
        compute_instance_id: d.computeInstanceId,
    }))
}
