//! The memory watchdog: time-sliced replicas share a GPU's memory with no
//! hardware isolation, so one process past its share makes every neighbour
//! fail. The watchdog attributes each GPU process to its container
//! ([`attribution`]), sums memory per container and device against the
//! shares it was allocated, and after a grace period signals the offender
//! ([`policy`], then [`signal`] with a PID-reuse check).
//!
//! [`policy::Enforcer`] is a pure state machine driven by snapshots with an
//! explicit clock, so every rule is tested without sleeping.
#![forbid(unsafe_code)]

pub mod attribution;
pub mod policy;
pub mod procfs;
pub mod scan;
pub mod signal;
