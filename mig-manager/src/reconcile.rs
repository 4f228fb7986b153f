//! One reconcile run: read the GPUs, find what is busy, plan, apply one GPU
//! at a time, read back. Every run starts from the real state, so a run
//! killed at any step is finished by the next one.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use railyard_core::mig::{InstanceRef, MigStep, MigTarget, Plan, plan};
use railyard_gpu::GpuBackend;
use railyard_watchdog::podresources::PodResourcesClient;

use crate::apply::{self, Applied, ApplyError};
use crate::busy::{self, Busy};
use crate::observe::Observed;

/// Where busy instances come from.
#[derive(Debug)]
pub enum PodResources<'a> {
    /// kubelet's PodResources socket (the node agent, `apply` by default).
    Kubelet {
        client: &'a mut PodResourcesClient,
        /// DRA driver whose claims hold GPUs, e.g. `gpu.nvidia.com`.
        dra_driver: &'a str,
        /// This node's pool (the node name).
        pool: &'a str,
    },
    /// Not consulted (`apply --ignore-pod-resources` on a host without
    /// kubelet); running processes still count.
    Ignored,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The node holds the target, read back.
    Success,
    /// Busy instances or GPUs block part of the target, or the busy sources
    /// could not be read; what could be done without them was done.
    Waiting {
        reason: String,
    },
    /// A MIG mode change is pending a GPU reset or a reboot.
    ResetRequired {
        gpus: Vec<u32>,
        reason: String,
    },
    Failed {
        reason: String,
    },
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub created: u32,
    pub destroyed: u32,
    /// GPUs whose layout or mode changed (their MIG devices changed).
    pub changed_gpus: Vec<u32>,
    /// Busy instances and GPUs that block the target.
    pub blockers: Vec<String>,
}

impl Report {
    fn new(outcome: Outcome) -> Report {
        Report {
            outcome,
            created: 0,
            destroyed: 0,
            changed_gpus: Vec::new(),
            blockers: Vec::new(),
        }
    }
}

/// Reads what is busy now: PodResources and processes; everything when a
/// source fails.
pub async fn read_busy(backend: &dyn GpuBackend, observed: &Observed, pr: &mut PodResources<'_>) -> Busy {
    let mut b = match pr {
        PodResources::Kubelet {
            client,
            dra_driver,
            pool,
        } => match client.list().await {
            Ok(resp) => match busy::from_pod_resources(&resp, observed, dra_driver, pool) {
                Ok(b) => b,
                Err(e) => Busy::everything(observed, e.to_string()),
            },
            Err(e) => Busy::everything(observed, format!("PodResources unavailable ({e})")),
        },
        PodResources::Ignored => Busy::default(),
    };
    if b.unknown.is_some() {
        return b;
    }
    let mut processes = BTreeMap::new();
    for g in &observed.gpus {
        match backend.processes(g.index).await {
            Ok(p) => {
                processes.insert(g.index, p);
            }
            Err(e) => {
                return Busy::everything(
                    observed,
                    format!("reading the processes of GPU {} failed ({e})", g.index),
                );
            }
        }
    }
    busy::add_processes(&mut b, observed, &processes);
    b
}

/// What a run found before taking any step: the GPUs, what is busy, the plan.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub observed: Observed,
    pub busy: Busy,
    pub plan: Plan,
}

impl Prepared {
    /// Whether the run will try to change anything (the agent says
    /// `pending` first).
    pub fn has_steps(&self) -> bool {
        self.plan.steps().next().is_some()
    }
}

/// Reads what is busy on `observed` (read just before) and plans toward
/// `target`; a planning error ends the run as [`Outcome::Failed`].
pub async fn prepare(
    backend: &dyn GpuBackend,
    observed: Observed,
    target: &MigTarget,
    pr: &mut PodResources<'_>,
) -> Result<Prepared, Report> {
    let busy = read_busy(backend, &observed, pr).await;
    match plan_for(&observed, &busy, target) {
        Ok(plan) => Ok(Prepared { observed, busy, plan }),
        Err(reason) => Err(Report::new(Outcome::Failed { reason })),
    }
}

/// One run toward `target`: read the GPUs, [`prepare`], [`execute`].
/// `before_step` sees every step before it is taken (`Break` stops the run
/// there, as a kill would).
pub async fn run(
    backend: &dyn GpuBackend,
    target: &MigTarget,
    pr: &mut PodResources<'_>,
    before_step: &mut (dyn FnMut(&MigStep) -> ControlFlow<()> + Send),
) -> Report {
    let observed = match Observed::read(backend).await {
        Ok(o) => o,
        Err(e) => {
            return Report::new(Outcome::Failed {
                reason: format!("reading the GPUs failed: {e}"),
            });
        }
    };
    match prepare(backend, observed, target, pr).await {
        Ok(p) => execute(backend, &p, pr, before_step).await,
        Err(report) => report,
    }
}

/// Takes a prepared plan's steps, one GPU at a time.
pub async fn execute(
    backend: &dyn GpuBackend,
    prepared: &Prepared,
    pr: &mut PodResources<'_>,
    before_step: &mut (dyn FnMut(&MigStep) -> ControlFlow<()> + Send),
) -> Report {
    let Prepared {
        observed,
        busy,
        plan: p,
    } = prepared;
    let mut report = Report::new(Outcome::Success);
    report.blockers = blockers(observed, busy, p);
    let mut reset = Vec::new();
    for gp in &p.gpus {
        if gp.steps.is_empty() {
            continue;
        }
        // A GPU in use as a whole, or while nothing can be trusted: no step.
        if busy.gpus.contains_key(&gp.gpu) {
            continue;
        }
        // A pod may have been given an idle instance since the plan: look again.
        let now = read_busy(backend, observed, pr).await;
        let raced = gp.steps.iter().any(|s| match (s, s.instance()) {
            (MigStep::Destroy { .. }, Some(instance)) => {
                now.instances.contains_key(&InstanceRef { gpu: gp.gpu, instance })
            }
            _ => false,
        });
        if raced || now.gpus.contains_key(&gp.gpu) {
            report.blockers.push(format!(
                "GPU {}: an instance to destroy was taken while planning; re-planning",
                gp.gpu
            ));
            continue;
        }
        let current = observed.gpu(gp.gpu).map(|g| g.instances.clone()).unwrap_or_default();
        match apply::apply_gpu(backend, gp, &current, before_step).await {
            Ok(Applied {
                created,
                destroyed,
                mode_changed,
            }) => {
                report.created += created;
                report.destroyed += destroyed;
                if created + destroyed > 0 || mode_changed {
                    report.changed_gpus.push(gp.gpu);
                }
            }
            Err(ApplyError::ResetRequired { gpu, enabled }) => {
                reset.push(gpu);
                report.blockers.push(format!(
                    "GPU {gpu}: MIG mode change to {} pending a GPU reset or reboot",
                    if enabled { "enabled" } else { "disabled" }
                ));
            }
            Err(e) => {
                report.changed_gpus.push(gp.gpu);
                report.outcome = Outcome::Failed { reason: e.to_string() };
                return report;
            }
        }
    }
    report.outcome = if !reset.is_empty() {
        Outcome::ResetRequired {
            gpus: reset,
            reason: report.blockers.join("; "),
        }
    } else if !report.blockers.is_empty() {
        Outcome::Waiting {
            reason: format!("waiting: {}", report.blockers.join("; ")),
        }
    } else {
        Outcome::Success
    };
    report
}

/// The plan from what was read. A busy instance the planner does not know
/// (it vanished between reads) cannot happen: busy sets are built from the
/// same observation.
pub fn plan_for(observed: &Observed, busy: &Busy, target: &MigTarget) -> Result<Plan, String> {
    let busy_list: Vec<InstanceRef> = busy.instances.keys().copied().collect();
    plan(&observed.states(), &busy_list, target).map_err(|e| format!("planning failed: {e}"))
}

/// `GPU 2 instance 1g.10gb@3 in use by default/train-0`, for every blocker:
/// planner blockers, and GPUs in use as a whole whose plan has steps.
fn blockers(observed: &Observed, busy: &Busy, p: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(why) = &busy.unknown {
        if p.steps().next().is_some() || p.is_blocked() {
            out.push(format!("{why}; changing nothing"));
        }
        return out;
    }
    for gp in &p.gpus {
        let family = observed.gpu(gp.gpu).and_then(|g| g.family);
        if let Some(who) = busy.gpus.get(&gp.gpu)
            && (!gp.steps.is_empty() || gp.is_blocked())
        {
            out.push(format!("GPU {} in use by {who}", gp.gpu));
            continue;
        }
        for b in &gp.blocked_by {
            let who = busy.instances.get(b).map(String::as_str).unwrap_or("?");
            let what = match family {
                Some(f) => b.describe(f),
                None => format!("GPU {}", b.gpu),
            };
            out.push(format!("{what} in use by {who}"));
        }
    }
    out
}
