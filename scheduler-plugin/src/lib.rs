//! `railyard-scheduler`: Railyard's kube-scheduler extender.
//!
//! [`app`] serves the extender v1 verbs (`filter`, `prioritize`, `bind`,
//! `preempt`) over HTTP/JSON; [`watch`] keeps the cluster view current from
//! the API (Nodes, Pods, PodGroups, and the upstream Workload API where the
//! cluster serves it); [`owners`] infers gangs from the training workloads
//! that own pods without a PodGroup (Indexed Jobs, JobSets, PyTorchJobs,
//! MPIJobs, LeaderWorkerSets); [`binder::KubeBinder`] creates Bindings. Every
//! decision is made by `railyard_core::extender`. [`serve`] is the accept
//! loop (header timeout, connection limit) of plain HTTP and, in `tls`,
//! HTTPS.

pub mod app;
pub mod bind;
pub mod binder;
pub mod decision;
pub mod k8s;
pub mod metrics;
pub mod owners;
pub mod serve;
#[cfg(feature = "rustls-tls")]
pub mod tls;
pub mod watch;
pub mod wire;

pub use app::{AppState, BindRequest, Binder, Config, GangIndex, RecordingBinder, app};
