//! Railyard's device plugin: a drop-in for NVIDIA's k8s-device-plugin. It
//! advertises whole GPUs, MIG devices and time-sliced / MPS replicas under
//! NVIDIA's resource names, one gRPC server and socket per resource, and
//! answers kubelet's admission calls from `railyard-core`'s pure functions
//! (`resources`, `allocation`, `topology`). See README.md.

pub mod config;
pub mod decisions;
pub mod dry_run;
pub mod edits;
pub mod follow;
pub mod http;
pub mod kubeapi;
pub mod kubepods;
pub mod manager;
pub mod metrics;
pub mod mig_notify;
/// Moved to `railyard-gpu` (the DRA driver needs it too); re-exported so paths stay.
pub use railyard_gpu::nvcaps;
pub mod options;
pub mod service;
pub mod topology;

pub use manager::{PluginConfig, PluginHandle, StartError, Status, spawn};
pub use options::Options;
