//! Railyard's DRA model, free of I/O.
#![forbid(unsafe_code)]

pub mod cel;
pub mod device;
pub mod opaque;
pub mod quantity;
pub mod semver;
