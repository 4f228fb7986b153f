//! Railyard's MIG manager: a drop-in for NVIDIA's `nvidia.com/mig.config`
//! label protocol and mig-parted config format that never destroys a MIG
//! instance in use.
//!
//! - [`desired`]: the layout the Node asks for (label, config, annotation);
//! - [`observe`], [`busy`]: what the GPUs hold and what is in use;
//! - [`reconcile`], [`apply`]: one run: plan (`railyard_core::mig::plan`),
//!   apply at explicit placements, read back;
//! - [`agent`]: the node agent loop, state label, reason, Events;
//! - [`notify`]: the file that tells the device plugin to re-read.
#![forbid(unsafe_code)]

pub mod agent;
pub mod apply;
pub mod busy;
pub mod desired;
pub mod http;
pub mod kube;
pub mod metrics;
pub mod notify;
pub mod observe;
pub mod parted;
pub mod reconcile;
