//! A `libnvidia-ml.so` backed by a Railyard machine profile, so the NVML
//! code path (`railyard_gpu::NvmlBackend` through `nvml-wrapper`) runs
//! unchanged without a GPU.
//!
//! Load it as `libnvidia-ml.so.1` (a library path or `LD_LIBRARY_PATH`). It
//! reads the machine profile from `fake-nvml-profile.yaml` beside the loaded
//! library, else from `$RAILYARD_FAKE_NVML_PROFILE`; and a control file
//! (`fake-nvml-control` beside it, else `$RAILYARD_FAKE_NVML_CONTROL`) to
//! which a test appends lines while the process runs:
//!
//! ```text
//! fail <nvmlFunction|*> <code> [gpu=<index>] [times=<n>]   # inject a return code
//! clear-failures
//! process <gpu> <pid> <used MiB> [gi=<id> ci=<id>]         # start a process
//! kill <pid>
//! memory <gpu> <MiB used besides processes>
//! xid <gpu> <xid> [gi=<id>] [ci=<id>] [action=<recovery action>]
//! lost <gpu>                                                # GPU_IS_LOST from now on
//! recover <gpu>                                             # answers again, no action needed
//! ```
//!
//! State (MIG mode, instances, processes) lives in the loaded library and
//! follows the hardware's rules ([`railyard_gpu::model`]). Each copy of the
//! library file is a separate "machine" when loaded ([`harness::FakeNvml`]
//! makes one per test).
#![deny(unsafe_code)]

mod ffi;
pub mod harness;
pub mod state;
