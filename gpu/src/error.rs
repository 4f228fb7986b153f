//! Typed GPU errors. Every NVML return code maps to one variant that callers
//! can act on (mark a GPU unhealthy, retry after stopping clients, degrade a
//! feature, …); the simulated backend produces the same variants, and the fake
//! NVML library maps them back to the same return codes.

use std::fmt;

use nvml_wrapper_sys::bindings as sys;

/// The backend operation that failed: the [`crate::GpuBackend`] method, so
/// both backends report the same value for the same failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Init,
    Inventory,
    Memory,
    Processes,
    SetMigMode,
    PossiblePlacements,
    CreateGpuInstance,
    CreateComputeInstance,
    DestroyComputeInstance,
    DestroyGpuInstance,
    ListMigInstances,
    Health,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Op::Init => "init",
            Op::Inventory => "inventory",
            Op::Memory => "memory",
            Op::Processes => "processes",
            Op::SetMigMode => "set MIG mode",
            Op::PossiblePlacements => "possible placements",
            Op::CreateGpuInstance => "create GPU instance",
            Op::CreateComputeInstance => "create compute instance",
            Op::DestroyComputeInstance => "destroy compute instance",
            Op::DestroyGpuInstance => "destroy GPU instance",
            Op::ListMigInstances => "list MIG instances",
            Op::Health => "health",
        };
        f.write_str(s)
    }
}

/// A GPU operation failed. The variants follow NVML's return codes; what a
/// caller should do is in each variant's doc.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// The device or driver lacks the feature: degrade (e.g. no MIG, no NVLink).
    #[error("{op}: not supported by this GPU or driver")]
    NotSupported { op: Op },
    /// The GPU fell off the bus or is otherwise inaccessible: mark it unhealthy.
    #[error("{op}: GPU is lost")]
    GpuLost { op: Op },
    /// Processes or instances still use the resource: stop them, then retry.
    #[error("{op}: resource in use")]
    InUse { op: Op },
    /// The caller lacks the privilege (root / MIG `config` capability).
    #[error("{op}: no permission")]
    NoPermission { op: Op },
    /// The request does not fit (overlapping placement, too many instances).
    #[error("{op}: insufficient resources")]
    InsufficientResources { op: Op },
    /// NVML was not initialized (or was shut down).
    #[error("{op}: NVML is not initialized")]
    Uninitialized { op: Op },
    /// No such GPU, instance or MIG device.
    #[error("{op}: not found")]
    NotFound { op: Op },
    /// An argument was rejected, e.g. a placement that is not legal for the profile.
    #[error("{op}: invalid argument")]
    InvalidArgument { op: Op },
    /// A GPU reset (or reboot) is needed before the change takes effect.
    #[error("{op}: GPU reset required")]
    ResetRequired { op: Op },
    /// The NVIDIA kernel driver is not loaded.
    #[error("{op}: NVIDIA driver not loaded")]
    DriverNotLoaded { op: Op },
    /// The installed libnvidia-ml lacks a function this code needs (old driver).
    #[error("{op}: NVML function {function} not found")]
    FunctionNotFound { op: Op, function: String },
    /// libnvidia-ml could not be loaded.
    #[error("loading NVML: {message}")]
    Library { message: String },
    /// Any other NVML return code.
    #[error("{op}: NVML error {code}")]
    Other { op: Op, code: u32 },
    /// The backend's NVML thread has stopped.
    #[error("the GPU backend has shut down")]
    Shutdown,
}

impl GpuError {
    /// The error an NVML return code means for `op`; `None` for success.
    pub fn from_code(op: Op, code: u32) -> Option<GpuError> {
        Some(match code {
            sys::nvmlReturn_enum_NVML_SUCCESS => return None,
            sys::nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED => GpuError::NotSupported { op },
            sys::nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST => GpuError::GpuLost { op },
            sys::nvmlReturn_enum_NVML_ERROR_IN_USE => GpuError::InUse { op },
            sys::nvmlReturn_enum_NVML_ERROR_NO_PERMISSION => GpuError::NoPermission { op },
            sys::nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_RESOURCES => GpuError::InsufficientResources { op },
            sys::nvmlReturn_enum_NVML_ERROR_UNINITIALIZED => GpuError::Uninitialized { op },
            sys::nvmlReturn_enum_NVML_ERROR_NOT_FOUND => GpuError::NotFound { op },
            sys::nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT => GpuError::InvalidArgument { op },
            sys::nvmlReturn_enum_NVML_ERROR_RESET_REQUIRED => GpuError::ResetRequired { op },
            sys::nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED => GpuError::DriverNotLoaded { op },
            sys::nvmlReturn_enum_NVML_ERROR_FUNCTION_NOT_FOUND => GpuError::FunctionNotFound {
                op,
                function: String::new(),
            },
            code => GpuError::Other { op, code },
        })
    }

    /// The NVML return code this error stands for (`NVML_ERROR_UNKNOWN` for
    /// errors that did not come from a code).
    pub fn code(&self) -> u32 {
        match self {
            GpuError::NotSupported { .. } => sys::nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED,
            GpuError::GpuLost { .. } => sys::nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST,
            GpuError::InUse { .. } => sys::nvmlReturn_enum_NVML_ERROR_IN_USE,
            GpuError::NoPermission { .. } => sys::nvmlReturn_enum_NVML_ERROR_NO_PERMISSION,
            GpuError::InsufficientResources { .. } => sys::nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_RESOURCES,
            GpuError::Uninitialized { .. } => sys::nvmlReturn_enum_NVML_ERROR_UNINITIALIZED,
            GpuError::NotFound { .. } => sys::nvmlReturn_enum_NVML_ERROR_NOT_FOUND,
            GpuError::InvalidArgument { .. } => sys::nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT,
            GpuError::ResetRequired { .. } => sys::nvmlReturn_enum_NVML_ERROR_RESET_REQUIRED,
            GpuError::DriverNotLoaded { .. } => sys::nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED,
            GpuError::FunctionNotFound { .. } => sys::nvmlReturn_enum_NVML_ERROR_FUNCTION_NOT_FOUND,
            GpuError::Other { code, .. } => *code,
            GpuError::Library { .. } => sys::nvmlReturn_enum_NVML_ERROR_LIBRARY_NOT_FOUND,
            GpuError::Shutdown => sys::nvmlReturn_enum_NVML_ERROR_UNKNOWN,
        }
    }

    /// The same error, reported for another operation.
    pub fn with_op(self, op: Op) -> GpuError {
        match GpuError::from_code(op, self.code()) {
            Some(GpuError::FunctionNotFound { op, .. }) => match self {
                GpuError::FunctionNotFound { function, .. } => GpuError::FunctionNotFound { op, function },
                _ => GpuError::FunctionNotFound {
                    op,
                    function: String::new(),
                },
            },
            Some(e) if !matches!(self, GpuError::Library { .. } | GpuError::Shutdown) => e,
            _ => self,
        }
    }

    /// The operation that failed, where there is one.
    pub fn op(&self) -> Option<Op> {
        match self {
            GpuError::NotSupported { op }
            | GpuError::GpuLost { op }
            | GpuError::InUse { op }
            | GpuError::NoPermission { op }
            | GpuError::InsufficientResources { op }
            | GpuError::Uninitialized { op }
            | GpuError::NotFound { op }
            | GpuError::InvalidArgument { op }
            | GpuError::ResetRequired { op }
            | GpuError::DriverNotLoaded { op }
            | GpuError::FunctionNotFound { op, .. }
            | GpuError::Other { op, .. } => Some(*op),
            GpuError::Library { .. } | GpuError::Shutdown => None,
        }
    }
}

/// The variants that tests inject, with the NVML code each one stands for.
pub const TYPED_ERROR_CODES: &[u32] = &[
    sys::nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED,
    sys::nvmlReturn_enum_NVML_ERROR_GPU_IS_LOST,
    sys::nvmlReturn_enum_NVML_ERROR_IN_USE,
    sys::nvmlReturn_enum_NVML_ERROR_NO_PERMISSION,
    sys::nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_RESOURCES,
    sys::nvmlReturn_enum_NVML_ERROR_UNINITIALIZED,
    sys::nvmlReturn_enum_NVML_ERROR_NOT_FOUND,
    sys::nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT,
    sys::nvmlReturn_enum_NVML_ERROR_RESET_REQUIRED,
    sys::nvmlReturn_enum_NVML_ERROR_DRIVER_NOT_LOADED,
    sys::nvmlReturn_enum_NVML_ERROR_FUNCTION_NOT_FOUND,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for &code in TYPED_ERROR_CODES.iter().chain(&[26u32, 999]) {
            let e = GpuError::from_code(Op::Inventory, code).unwrap();
            assert_eq!(e.code(), code, "{e}");
            assert_eq!(e.op(), Some(Op::Inventory));
            assert_eq!(e.clone().with_op(Op::Memory).op(), Some(Op::Memory));
        }
        assert_eq!(GpuError::from_code(Op::Init, 0), None);
        assert_eq!(
            GpuError::from_code(Op::CreateGpuInstance, 23).unwrap().to_string(),
            "create GPU instance: insufficient resources"
        );
    }
}
