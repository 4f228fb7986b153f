//! One cluster in one process: `railyard-bench cluster` and the end-to-end
//! tests.
//!
//! - [`cluster::Cluster`]: a stateful fake API server (`railyard-test-util`),
//!   N [`node::SimNode`]s, the real extender ([`extender::Extender`]) on a
//!   loopback port and a kube-scheduler loop ([`scheduler::Scheduler`]).
//! - Each node runs the real device plugin on a [`railyard_gpu::SimBackend`]
//!   of a machine profile, against its own fake kubelet, and the kubelet's
//!   part toward the API ([`kubelet`]): Node allocatable from ListAndWatch,
//!   pod admission through GetPreferredAllocation / Allocate, pod phases,
//!   PodResources.
//! - [`script`] and [`run`]: the scripted mix of pods and gangs the command
//!   runs, and its report.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod extender;
pub mod http;
pub mod kubelet;
pub mod node;
pub mod run;
pub mod scheduler;
pub mod script;

pub use cluster::Cluster;
