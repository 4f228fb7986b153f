//! One reconcile run at a time over `SimBackend` (and `NvmlBackend` over
//! `railyard-fake-nvml`), with the fake kubelet's PodResources server as the
//! source of busy instances.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use common::*;
use railyard_core::mig::{GpuGoal, MigStep, MigTarget, WantedInstance};
use railyard_gpu::{GpuBackend, GpuProcess, InjectedFailure, NvmlBackend, Op};
use railyard_mig_manager::parted;
use railyard_mig_manager::reconcile::{Outcome, PodResources, Report, run};

const DRA: &str = "gpu.nvidia.com";
const NODE: &str = "node-a";

async fn run_with(b: &dyn GpuBackend, target: &MigTarget, k: &mut Kubelet) -> Report {
    let mut pr = PodResources::Kubelet {
        client: &mut k.client,
        dra_driver: DRA,
        pool: NODE,
    };
    run(b, target, &mut pr, &mut |_| ControlFlow::Continue(())).await
}

fn config_target(b_obs: &railyard_mig_manager::observe::Observed, name: &str) -> MigTarget {
    let targets = nvidia_config().targets_for(name, &b_obs.config_gpus()).unwrap();
    MigTarget::from_mig_parted(&targets)
}

fn goal(gpu: u32, instances: &[&str]) -> MigTarget {
    MigTarget::default().with(
        gpu,
        GpuGoal::Enabled(instances.iter().map(|p| WantedInstance::anywhere(*p)).collect()),
    )
}

#[tokio::test]
async fn a_named_config_is_applied_at_explicit_placements_and_read_back() {
    let b = sim("dgx-h100-mig");
    let mut k = kubelet();
    let before = observed(&b).await;
    let target = config_target(&before, "all-balanced");
    let r = run_with(&b, &target, &mut k).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    let after = observed(&b).await;
    let targets = nvidia_config()
        .targets_for("all-balanced", &after.config_gpus())
        .unwrap();
    assert_eq!(parted::assert_mismatches(&after, &targets, false), Vec::<String>::new());
    // The planner's placements, as low as they go (GPU 4 keeps its 1g at 0
    // and 1); GPU 5 already had a balanced layout and is untouched.
    for gpu in (0..8).filter(|g| *g != 5) {
        assert_eq!(
            layout(&b, gpu).await,
            [("1g.10gb", 0), ("1g.10gb", 1), ("2g.20gb", 2), ("3g.40gb", 4)].map(|(p, s)| (p.to_string(), s)),
            "GPU {gpu}"
        );
    }
    assert!(!r.changed_gpus.contains(&5), "GPU 5 already matched: {r:?}");
    assert_eq!(before.gpu(5), after.gpu(5));
    // A second run has nothing to do.
    let again = run_with(&b, &target, &mut k).await;
    assert_eq!(
        (again.outcome, again.created, again.destroyed),
        (Outcome::Success, 0, 0)
    );
}

#[tokio::test]
async fn a_busy_instance_survives_a_change_that_keeps_it_and_blocks_one_that_does_not() {
    let b = sim("dgx-h100-mig");
    let mut k = kubelet();
    // GPU 5: 2g@0, 1g@2, 1g@3, 3g@4; the 1g at 3 runs default/train-0.
    let busy_uuid = mig_uuid(&b, 5, 3).await;
    let busy_gi = gi_id(&b, 5, 3).await;
    k.server.handle().add_devices(
        "default",
        "train-0",
        "main",
        "nvidia.com/mig-1g.10gb",
        std::slice::from_ref(&busy_uuid),
    );

    // Seven 1g keep it where it is.
    let r = run_with(&b, &goal(5, &["1g.10gb"; 7]), &mut k).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    assert_eq!(mig_uuid(&b, 5, 3).await, busy_uuid);
    assert_eq!(gi_id(&b, 5, 3).await, busy_gi, "the busy instance was not re-created");
    assert_eq!(layout(&b, 5).await.len(), 7);

    // One 7g needs it gone: wait, with the reason, and touch nothing busy.
    let r = run_with(&b, &goal(5, &["7g.80gb"]), &mut k).await;
    let Outcome::Waiting { reason } = &r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(reason, "waiting: GPU 5 instance 1g.10gb@3 in use by default/train-0");
    assert_eq!(gi_id(&b, 5, 3).await, busy_gi);
    // Other GPUs are not touched by a GPU 5 target.
    assert!(r.changed_gpus.iter().all(|g| *g == 5), "{r:?}");

    // The pod ends: the same target completes on the next run.
    k.server.handle().remove_pod("default", "train-0");
    let r = run_with(&b, &goal(5, &["7g.80gb"]), &mut k).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    assert_eq!(layout(&b, 5).await, vec![("7g.80gb".to_string(), 0)]);
}

#[tokio::test]
async fn dra_claims_and_processes_hold_their_instances_too() {
    use railyard_kubelet_api::podresources::v1 as pr;
    let b = sim("dgx-h100-mig");
    let mut k = kubelet();
    // A DRA claim on GPU 5's 3g@4 (NVIDIA's device name), another driver's
    // claim (ignored), and a process in GPU 4's instance at 6.
    let gpu5_minor = observed(&b).await.gpu(5).unwrap().minor;
    k.server.set_pods(vec![pr::PodResources {
        name: "infer-0".into(),
        namespace: "serving".into(),
        containers: vec![pr::ContainerResources {
            name: "main".into(),
            dynamic_resources: vec![pr::DynamicResource {
                claim_name: "gpu".into(),
                claim_namespace: "serving".into(),
                claim_resources: vec![
                    pr::ClaimResource {
                        driver_name: DRA.into(),
                        pool_name: NODE.into(),
                        device_name: format!("gpu-{gpu5_minor}-mig-3g40gb-9-4"),
                        ..Default::default()
                    },
                    pr::ClaimResource {
                        driver_name: "net.example.com".into(),
                        pool_name: NODE.into(),
                        device_name: "nic-0".into(),
                        ..Default::default()
                    },
                ],
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let gi = gi_id(&b, 4, 6).await;
    b.add_process(GpuProcess {
        pid: 4242,
        gpu: 4,
        used_memory_mib: Some(100),
        gpu_instance_id: Some(gi),
        compute_instance_id: Some(0),
    })
    .unwrap();
    let target = goal(4, &["7g.80gb"]).with(5, GpuGoal::Enabled(vec![WantedInstance::anywhere("7g.80gb")]));
    let r = run_with(&b, &target, &mut k).await;
    let Outcome::Waiting { reason } = &r.outcome else {
        panic!("{r:?}")
    };
    assert!(
        reason.contains("GPU 4 instance 1g.10gb@6 in use by pid 4242"),
        "{reason}"
    );
    assert!(
        reason.contains("GPU 5 instance 3g.40gb@4 in use by serving/infer-0 (claim serving/gpu)"),
        "{reason}"
    );
    assert_eq!(gi_id(&b, 4, 6).await, gi);
    assert!(layout(&b, 5).await.contains(&("3g.40gb".to_string(), 4)));
}

#[tokio::test]
async fn a_backend_failure_mid_plan_is_rolled_back_and_reported_failed() {
    let b = sim("dgx-h100-mig");
    let mut k = kubelet();
    // GPU 7 (MIG on, empty) to the balanced layout: four creates; the third fails.
    let target = goal(7, &["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]);
    let mut n = 0;
    let sim2 = b.clone();
    let mut pr = PodResources::Kubelet {
        client: &mut k.client,
        dra_driver: DRA,
        pool: NODE,
    };
    let r = run(&b, &target, &mut pr, &mut |step| {
        if matches!(step, MigStep::Create { .. }) {
            n += 1;
            if n == 3 {
                sim2.inject_failure(InjectedFailure {
                    op: Op::CreateGpuInstance,
                    gpu: Some(7),
                    code: 2, // NVML_ERROR_INVALID_ARGUMENT
                    times: Some(1),
                });
            }
        }
        ControlFlow::Continue(())
    })
    .await;
    let Outcome::Failed { reason } = &r.outcome else {
        panic!("{r:?}")
    };
    assert!(reason.starts_with("GPU 7: create 1g.10gb@0 (0:1): create GPU instance: invalid argument; rolled back 2 created instance(s); GPU 7 now holds []"), "{reason}");
    assert_eq!(layout(&b, 7).await, Vec::<(String, u8)>::new());
    // Nothing else changed, and the next run (the failure gone) completes.
    let r = run_with(&b, &target, &mut k).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
}

/// A process killed before any step of a plan: the next run starts from
/// what the GPU holds and reaches the same target, busy instance intact.
#[tokio::test]
async fn a_kill_at_every_step_converges_after_restart() {
    let reference = sim("dgx-h100-mig");
    let target = goal(5, &["1g.10gb"; 7]).with(4, GpuGoal::Enabled(vec![WantedInstance::anywhere("3g.40gb"); 2]));
    let mut k = kubelet();
    let full = run_with(&reference, &target, &mut k).await;
    let steps = (full.created + full.destroyed) as usize;
    assert!(steps >= 10, "a plan worth killing: {full:?}");
    for kill_at in 0..steps {
        let b = sim("dgx-h100-mig");
        let mut k = kubelet();
        let busy = mig_uuid(&b, 5, 2).await;
        let busy_gi = gi_id(&b, 5, 2).await;
        k.server.handle().add_devices(
            "default",
            "keep",
            "main",
            "nvidia.com/mig-1g.10gb",
            std::slice::from_ref(&busy),
        );
        let mut seen = 0;
        let mut pr = PodResources::Kubelet {
            client: &mut k.client,
            dra_driver: DRA,
            pool: NODE,
        };
        let killed = run(&b, &target, &mut pr, &mut |_| {
            seen += 1;
            if seen > kill_at {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await;
        assert!(
            matches!(killed.outcome, Outcome::Failed { .. }),
            "kill at {kill_at}: {killed:?}"
        );
        // Restart: a new run, from the real state only.
        let r = run_with(&b, &target, &mut k).await;
        assert_eq!(r.outcome, Outcome::Success, "kill at {kill_at}: {r:?}");
        assert_eq!(
            gi_id(&b, 5, 2).await,
            busy_gi,
            "kill at {kill_at}: the busy instance survived"
        );
        let after = observed(&b).await;
        let mut counts4 = BTreeMap::new();
        for i in &after.gpu(4).unwrap().instances {
            *counts4.entry(i.profile).or_insert(0) += 1;
        }
        assert_eq!(counts4, BTreeMap::from([("3g.40gb", 2)]), "kill at {kill_at}");
        assert_eq!(after.gpu(5).unwrap().instances.len(), 7, "kill at {kill_at}");
    }
}

#[tokio::test]
async fn an_unavailable_pod_resources_changes_nothing() {
    let b = sim("dgx-h100-mig");
    let mut k = kubelet();
    let before = observed(&b).await;
    let target = config_target(&before, "all-1g.10gb");
    // No kubelet socket at all.
    let mut gone = railyard_watchdog::podresources::PodResourcesClient::new(
        k.dir.join("missing.sock"),
        std::time::Duration::from_secs(1),
    );
    let mut pr = PodResources::Kubelet {
        client: &mut gone,
        dra_driver: DRA,
        pool: NODE,
    };
    let r = run(&b, &target, &mut pr, &mut |_| ControlFlow::Continue(())).await;
    let Outcome::Waiting { reason } = &r.outcome else {
        panic!("{r:?}")
    };
    assert!(reason.starts_with("waiting: PodResources unavailable ("), "{reason}");
    assert!(reason.ends_with("; changing nothing"), "{reason}");
    assert_eq!((r.created, r.destroyed), (0, 0));
    assert_eq!(observed(&b).await, before);

    // A device id that matches nothing here (e.g. the `index` id strategy):
    // the same.
    k.server
        .handle()
        .add_devices("default", "odd", "main", "nvidia.com/mig-1g.10gb", &["4:1".to_string()]);
    let r = run_with(&b, &target, &mut k).await;
    let Outcome::Waiting { reason } = &r.outcome else {
        panic!("{r:?}")
    };
    assert!(
        reason.contains("PodResources lists device \"4:1\" of nvidia.com/mig-1g.10gb for default/odd, which matches no GPU or MIG instance on this node"),
        "{reason}"
    );
    assert_eq!(observed(&b).await, before);
}

#[tokio::test]
async fn hopper_mode_changes_need_no_reset_and_wait_for_idle_gpus() {
    let b = sim("dgx-h100-mig");
    let mut k = kubelet();
    // GPU 0 (MIG off) goes to MIG on directly; GPU 1 has a process; GPU 2 is
    // allocated whole to a pod.
    b.add_process(GpuProcess {
        pid: 42,
        gpu: 1,
        used_memory_mib: Some(10),
        gpu_instance_id: None,
        compute_instance_id: None,
    })
    .unwrap();
    let gpu2 = observed(&b).await.gpu(2).unwrap().uuid.clone();
    k.server
        .handle()
        .add_devices("ml", "whole", "main", "nvidia.com/gpu", &[gpu2]);
    let target = goal(0, &["3g.40gb"; 2])
        .with(1, GpuGoal::Enabled(vec![WantedInstance::anywhere("7g.80gb")]))
        .with(2, GpuGoal::Enabled(vec![]))
        .with(6, GpuGoal::Disabled);
    let r = run_with(&b, &target, &mut k).await;
    let Outcome::Waiting { reason } = &r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(reason, "waiting: GPU 1 in use by pid 42; GPU 2 in use by ml/whole");
    let o = observed(&b).await;
    assert!(o.gpu(0).unwrap().mode.current, "GPU 0 enabled without a reset");
    assert_eq!(layout(&b, 0).await.len(), 2);
    assert!(!o.gpu(1).unwrap().mode.current && !o.gpu(2).unwrap().mode.current);
    // GPU 6 had one idle 7g: destroyed, then MIG off.
    assert!(!o.gpu(6).unwrap().mode.current);
    b.remove_process(42);
    k.server.handle().remove_pod("ml", "whole");
    assert_eq!(run_with(&b, &target, &mut k).await.outcome, Outcome::Success);
}

#[tokio::test]
async fn ampere_mode_changes_report_a_pending_reset() {
    let b = sim("dgx-a100");
    let mut k = kubelet();
    let target = goal(0, &["3g.20gb"; 2]);
    // Bare metal: NVML resets the GPU itself; the change takes effect.
    let r = run_with(&b, &target, &mut k).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    // A VM that refuses the reset: pending until a reboot.
    b.refuse_gpu_reset(1, true);
    let r = run_with(&b, &goal(1, &["7g.40gb"]), &mut k).await;
    let Outcome::ResetRequired { gpus, reason } = &r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(gpus, &[1]);
    assert_eq!(
        reason,
        "GPU 1: MIG mode change to enabled pending a GPU reset or reboot"
    );
    assert!(observed(&b).await.gpu(1).unwrap().mode.pending);
}

#[tokio::test]
async fn nvidias_example_configs_and_the_generated_defaults_apply_on_h100_and_a100() {
    for machine in ["dgx-h100-mig", "dgx-a100"] {
        let fresh = observed(&sim(machine)).await;
        let generated = railyard_core::config::generated_config(&fresh.config_gpus());
        for (source, config) in [("nvidia", nvidia_config()), ("generated", generated)] {
            for name in config.names() {
                let Ok(targets) = config.targets_for(name, &fresh.config_gpus()) else {
                    continue; // a config for other models
                };
                let b = sim(machine);
                let mut k = kubelet();
                let r = run_with(&b, &MigTarget::from_mig_parted(&targets), &mut k).await;
                assert_eq!(r.outcome, Outcome::Success, "{machine} {source} {name}: {r:?}");
                let after = observed(&b).await;
                assert_eq!(
                    parted::assert_mismatches(&after, &targets, false),
                    Vec::<String>::new(),
                    "{machine} {source} {name}"
                );
            }
        }
    }
}

/// The real NVML code path: `NvmlBackend` over the fake libnvidia-ml.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvml_backend_applies_exports_and_asserts() {
    let fake = railyard_fake_nvml::harness::FakeNvml::from_file(&repo("configs/machines/dgx-h100-mig.yaml")).unwrap();
    let b = NvmlBackend::new(fake.config()).unwrap();
    let mut k = kubelet();
    let before = observed(&b).await;
    let targets = nvidia_config()
        .targets_for("all-balanced", &before.config_gpus())
        .unwrap();
    assert!(!parted::assert_mismatches(&before, &targets, false).is_empty());
    let r = run_with(&b, &MigTarget::from_mig_parted(&targets), &mut k).await;
    assert_eq!(r.outcome, Outcome::Success, "{r:?}");
    let after = observed(&b).await;
    assert_eq!(parted::assert_mismatches(&after, &targets, false), Vec::<String>::new());
    assert_eq!(
        parted::export_yaml(&after),
        "version: v1\nmig-configs:\n  current:\n  - devices: [0, 1, 2, 3, 4, 5, 6, 7]\n    mig-enabled: true\n    mig-devices:\n      \"1g.10gb\": 2\n      \"2g.20gb\": 1\n      \"3g.40gb\": 1\n"
    );
    // Every instance has its MIG device (compute instance and UUID).
    assert!(after.gpus.iter().flat_map(|g| &g.instances).all(|i| i.uuid.is_some()));
}
