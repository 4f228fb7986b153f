//! Executing one GPU's plan through the [`GpuBackend`], with explicit
//! placements, then reading the GPU back: "applied successfully" with
//! missing instances is what NVIDIA's users report, so success here means
//! the GPU really holds the planned layout.
//!
//! A failed step rolls back what this run created on that GPU (destroyed
//! idle instances are not re-created: nothing used them) and reports what
//! the GPU holds afterwards.

use std::ops::ControlFlow;

use railyard_core::mig::{GpuPlan, MigInstance, MigStep};
use railyard_gpu::{GpuBackend, GpuError, MigInstanceInfo};

use crate::observe::describe_instances;

/// Counts of what one GPU's apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    pub created: u32,
    pub destroyed: u32,
    pub mode_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("{step}: {error}; rolled back {rolled_back} created instance(s); GPU {gpu} now holds {now}")]
    Step {
        gpu: u32,
        step: MigStep,
        error: GpuError,
        rolled_back: u32,
        now: String,
    },
    /// The MIG mode change is pending a GPU reset or a reboot (Ampere in a
    /// VM that refuses the reset).
    #[error("GPU {gpu}: the MIG mode change to {} is pending a GPU reset or reboot", if *enabled { "enabled" } else { "disabled" })]
    ResetRequired { gpu: u32, enabled: bool },
    #[error("GPU {gpu}: after applying, the GPU holds {got}, not the planned {want}")]
    Verify { gpu: u32, want: String, got: String },
    /// The run stopped before this step (see [`apply_gpu`]'s `before_step`).
    #[error("stopped before {step}")]
    Stopped { step: MigStep },
}

/// Applies `plan` (one GPU's steps, in order). `current` is the GPU's
/// instances as read before planning (for the ids of instances to destroy).
/// `before_step` is called before every step; `Break` stops there without a
/// rollback, as a killed process would (tests use it to kill at every step).
pub async fn apply_gpu(
    backend: &dyn GpuBackend,
    plan: &GpuPlan,
    current: &[MigInstanceInfo],
    before_step: &mut (dyn FnMut(&MigStep) -> ControlFlow<()> + Send),
) -> Result<Applied, ApplyError> {
    let gpu = plan.gpu;
    let mut applied = Applied::default();
    let mut created: Vec<u32> = Vec::new();
    for step in &plan.steps {
        if before_step(step).is_break() {
            return Err(ApplyError::Stopped { step: *step });
        }
        let r = match *step {
            MigStep::SetMigMode { enabled, .. } => match backend.set_mig_mode(gpu, enabled).await {
                Ok(mode) if mode.current == enabled => {
                    applied.mode_changed = true;
                    Ok(())
                }
                Ok(_) | Err(GpuError::ResetRequired { .. }) => return Err(ApplyError::ResetRequired { gpu, enabled }),
                Err(e) => Err(e),
            },
            MigStep::Destroy { profile, placement, .. } => {
                match current
                    .iter()
                    .find(|i| i.kind == profile.kind && i.placement == placement)
                {
                    Some(i) => backend.destroy_mig_instance(gpu, i.gpu_instance_id).await.map(|()| {
                        applied.destroyed += 1;
                    }),
                    None => Err(GpuError::NotFound {
                        op: railyard_gpu::Op::DestroyGpuInstance,
                    }),
                }
            }
            MigStep::Create { profile, placement, .. } => backend
                .create_mig_instance(
                    gpu,
                    MigInstance {
                        kind: profile.kind,
                        placement,
                    },
                )
                .await
                .map(|info| {
                    applied.created += 1;
                    created.push(info.gpu_instance_id);
                }),
        };
        if let Err(error) = r {
            let mut rolled_back = 0;
            for id in created.iter().rev() {
                match backend.destroy_mig_instance(gpu, *id).await {
                    Ok(()) => rolled_back += 1,
                    Err(e) => {
                        tracing::warn!(gpu, gpu_instance_id = id, error = %e, "rolling back a created instance failed")
                    }
                }
            }
            let now = match backend.mig_instances(gpu).await {
                Ok(list) => describe_instances(&list),
                Err(e) => format!("(unreadable: {e})"),
            };
            return Err(ApplyError::Step {
                gpu,
                step: *step,
                error,
                rolled_back,
                now,
            });
        }
    }
    verify(backend, plan).await?;
    Ok(applied)
}

/// Reads the GPU back and compares mode and instances with the plan's
/// result; every instance must have its compute instance (a MIG device).
async fn verify(backend: &dyn GpuBackend, plan: &GpuPlan) -> Result<(), ApplyError> {
    let gpu = plan.gpu;
    let want = &plan.result;
    let mut want_set: Vec<(u8, u8, railyard_core::mig::ProfileKind)> = want
        .instances
        .iter()
        .map(|i| (i.placement.start, i.placement.size, i.kind))
        .collect();
    want_set.sort();
    let read = async {
        let inv = backend.inventory().await?;
        let g = inv.gpus.into_iter().find(|g| g.index == gpu);
        Ok::<_, GpuError>(g.and_then(|g| g.mig))
    };
    let got = read.await.map_err(|e| ApplyError::Verify {
        gpu,
        want: describe_want(plan),
        got: format!("(unreadable: {e})"),
    })?;
    let (mode, instances) = match &got {
        Some(m) => (m.mode.current, m.instances.clone()),
        None => (false, Vec::new()),
    };
    let mut got_set: Vec<(u8, u8, railyard_core::mig::ProfileKind)> = instances
        .iter()
        .filter(|i| i.compute_instance_id.is_some())
        .map(|i| (i.placement.start, i.placement.size, i.kind))
        .collect();
    got_set.sort();
    if mode != want.mig_enabled || got_set != want_set || got_set.len() != instances.len() {
        let got = if mode {
            format!("MIG on {}", describe_instances(&instances))
        } else {
            "MIG off".to_string()
        };
        return Err(ApplyError::Verify {
            gpu,
            want: describe_want(plan),
            got,
        });
    }
    Ok(())
}

fn describe_want(plan: &GpuPlan) -> String {
    if !plan.result.mig_enabled {
        return "MIG off".into();
    }
    match plan.family {
        Some(f) => format!(
            "MIG on {}",
            railyard_core::mig::MigLayout::new(f, plan.result.instances.clone())
        ),
        None => "MIG on".into(),
    }
}
