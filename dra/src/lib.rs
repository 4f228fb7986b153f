//! Railyard's DRA model, free of I/O.
#![forbid(unsafe_code)]

pub mod alloc;
pub mod api;
pub mod cel;
pub mod claim;
pub mod classes;
pub mod config;
pub mod device;
pub mod inventory;
pub mod names;
pub mod opaque;
pub mod quantity;
pub mod semver;
pub mod slices;
