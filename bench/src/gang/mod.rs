//! `railyard-bench gang`: a distributed-training workload on a
//! rail-optimized cluster, placed by kube-scheduler's default scoring and
//! best fit (pod by pod), Kueue-TAS-like and Volcano-HyperNode-like gang
//! scheduling, and Railyard's gang planner; measured by the estimated
//! all-reduce bandwidth each gang gets (`railyard_core::comm`), queueing
//! delay, job completion time under time-limit-based reservations (a job
//! placed at low bandwidth runs longer), GPU allocation and partial gangs.
//! See bench/README.md.

pub mod backfill;
pub mod cli;
pub mod jct;
pub mod limits;
pub mod policies;
pub mod report;
pub mod sim;
pub mod workload;
