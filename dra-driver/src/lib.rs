//! Railyard's DRA kubelet plugin for GPUs (PROTOCOLS §3, §12): publishes the
//! node's ResourceSlices and prepares / unprepares the ResourceClaims kubelet
//! hands it. The model (inventory, slices, claims, allocation) lives in
//! `railyard-dra`; this crate is the node's I/O around it.
#![forbid(unsafe_code)]

pub mod cdi;
pub mod checkpoint;
pub mod fsutil;
pub mod publish;
pub mod resolve;
