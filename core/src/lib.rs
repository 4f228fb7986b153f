//! Railyard's domain model, free of I/O: the GPU catalog, MIG geometry, the
//! resources a node advertises, NVIDIA-compatible config parsers, node
//! topology and cluster fabric. Binaries translate I/O into calls on this
//! crate and back; anything that decides belongs here and is tested as pure
//! functions.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod mig;
pub mod machine;
pub mod yaml;
