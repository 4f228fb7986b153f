//! Railyard's domain model, free of I/O: the GPU catalog, MIG geometry, the
//! resources a node advertises, NVIDIA-compatible config parsers, node
//! topology, cluster fabric and placement. Binaries translate I/O into calls
//! on this crate and back; anything that decides belongs here and is tested
//! as pure functions.
#![forbid(unsafe_code)]

pub mod allocation;
pub mod catalog;
pub mod cdi;
pub mod comm;
pub mod config;
pub mod extender;
pub mod fabric;
pub mod gang;
pub mod machine;
pub mod mig;
pub mod packing;
pub mod resources;
pub mod topology;
pub mod yaml;
