//! Test doubles that behave like the kubelet (feature `test-util`):
//!
//! - [`FakeKubelet`]: serves device-plugin `Registration` on `kubelet.sock`
//!   in a temp dir, validates each request as kubelet does, dials the
//!   plugin's endpoint, holds its `ListAndWatch` stream, calls
//!   `GetPreferredAllocation` and `Allocate` the way pod admission does, and
//!   restarts like kubelet (every socket in the directory removed,
//!   `kubelet.sock` recreated). `admit_pod` admits a named pod's container
//!   and reports it to a [`FakePodResources`] (`set_pod_resources`): listed
//!   from the start of admission, its devices after `Allocate`; devices are
//!   reserved at commit, so concurrent admissions never share one.
//! - [`FakePodResources`]: the PodResources v1 `List` / `Get` /
//!   `GetAllocatableResources` server over state a test sets.
//! - [`FakeRuntimeService`]: a container runtime's CRI `ListContainers` over
//!   containers a test sets ([`kube_container`] labels them as kubelet does).
//! - [`FakeDraKubelet`]: kubelet's plugin watcher and DRA manager: polls
//!   `plugins_registry/` for sockets, registers DRA plugins (`GetInfo`,
//!   validation, `NotifyRegistrationStatus`), calls `NodePrepareResources` /
//!   `NodeUnprepareResources` over v1 (else v1beta1), and restarts like
//!   kubelet (optionally wiping every socket).

mod cri;
mod dra;
mod kubelet;
mod podresources;
mod socket_server;

pub use cri::{FakeRuntimeService, kube_container};
pub use dra::{
    ClaimRef, DraCall, DraMethod, DraPlugin, DraVersion, FakeDraKubelet, PrepareResults, PreparedDevice,
    RegistrationAttempt, UnprepareResults,
};
pub use kubelet::{Admission, AdmissionError, FakeKubelet, Plugin, PodRef, TempDir, is_extended_resource_name};
pub use podresources::{FakePodResources, PodResourcesHandle};
