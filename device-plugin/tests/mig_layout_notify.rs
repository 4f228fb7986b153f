//! MIG layout notifications (issue 14, "No paused clients"): the MIG manager
//! changes the layout through the GPU backend and replaces
//! `<device-plugin-dir>/railyard-mig-layout`; the running plugin re-reads the
//! inventory and advertises the new MIG devices, with no restart. Without a
//! change of that file's content nothing is re-read until a reload.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use railyard_core::mig::{MigInstance, ProfileKind};
use railyard_device_plugin::mig_notify::DEFAULT_FILE_NAME;
use railyard_gpu::{GpuBackend, SimBackend};

const MIXED: &str = "version: v1\nflags:\n  migStrategy: mixed\n";
const BIG: &str = "nvidia.com/mig-3g.40gb";
const SMALL: &str = "nvidia.com/mig-1g.10gb";
const GPU: &str = "nvidia.com/gpu";

/// A DGX H100 whose GPU 0 is in MIG mode with one 3g.40gb (at slice 4); the
/// GPU instance id of that 3g.40gb.
async fn h100_with_one_3g() -> (SimBackend, railyard_core::machine::MachineProfile, u32) {
    let m = machine("dgx-h100");
    let sim = SimBackend::new(m.clone());
    sim.set_mig_mode(0, true).await.unwrap();
    let big = sim
        .create_mig_instance(0, MigInstance::at(ProfileKind::G3, 4))
        .await
        .unwrap();
    (sim, m, big.gpu_instance_id)
}

/// What the MIG manager does after a layout change: temp file + rename.
fn notify(dir: &Path, content: &str) {
    let tmp = dir.join(format!(".{DEFAULT_FILE_NAME}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(DEFAULT_FILE_NAME)).unwrap();
}

/// Two 1g.10gb next to the 3g.40gb, through the backend (the MIG manager).
async fn add_two_1g(sim: &SimBackend) {
    for start in [0, 1] {
        sim.create_mig_instance(0, MigInstance::at(ProfileKind::G1, start))
            .await
            .unwrap();
    }
}

/// Waits until the plugin has read the layout file at least three more
/// times than now: at least one whole config check (read, and any re-read
/// it causes) began after the caller's last change. A wait for events, not
/// for a fixed time.
async fn wait_layout_checks(env: &Env) {
    let before = env.plugin.status().mig_layout_checks;
    env.plugin
        .wait_status(T, |s| s.mig_layout_checks >= before + 3)
        .await
        .expect("the plugin reads the MIG layout file at every config check");
}

fn registrations(env: &Env, resource: &str) -> u32 {
    env.kubelet.plugin(resource).unwrap().registrations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_layout_file_re_advertises_the_new_mig_devices_without_a_restart() {
    let (sim, m, big_gi) = h100_with_one_3g().await;
    let env = start(Arc::new(sim.clone()), Some(m), MIXED, |_, _| {}).await;
    env.devices(BIG, 1).await;
    env.devices(GPU, 7).await;
    let dir = env.kubelet.dir().to_path_buf();
    assert!(!dir.join(DEFAULT_FILE_NAME).exists(), "no notification at start");
    let applied = env.plugin.status().applied;

    // The layout changes, the file does not: nothing is re-read.
    add_two_1g(&sim).await;
    wait_layout_checks(&env).await;
    let st = env.plugin.status();
    assert_eq!(st.mig_layout_changes, 0);
    assert_eq!(st.applied, applied, "no config applied: {st:?}");
    assert!(!st.resources.iter().any(|r| r == SMALL), "{st:?}");
    assert!(env.kubelet.plugin(SMALL).is_none());

    // The MIG manager writes the file (it appears): re-read and advertised.
    notify(&dir, "generation=1 gpus=0\n");
    let small = env.devices(SMALL, 2).await;
    assert!(small.iter().all(|d| d.id.starts_with("MIG-")), "{small:?}");
    // The plugin marks it registered once kubelet's Register call returns.
    let st = env
        .plugin
        .wait_status(T, |s| s.registered.contains(SMALL))
        .await
        .unwrap_or_else(|| panic!("1g.10gb not registered: {:?}", env.plugin.status()));
    assert_eq!(st.mig_layout_changes, 1, "{st:?}");
    assert!(
        env.metrics_text()
            .contains("railyard_device_plugin_mig_layout_notifications_total 1"),
        "{}",
        env.metrics_text()
    );

    // The same plugin did it: its old resources were never re-registered and
    // stayed connected, and the control loop still runs.
    assert_eq!(registrations(&env, BIG), 1);
    assert_eq!(registrations(&env, GPU), 1);
    assert!(env.kubelet.plugin(BIG).unwrap().connected);
    assert_eq!(env.kubelet.plugin(BIG).unwrap().devices.len(), 1);
    assert_eq!(registrations(&env, SMALL), 1);
    assert!(st.running && !env.task.is_finished());
    assert_eq!(st.kubelet_restarts, 0);

    // A second change: the 3g.40gb goes away; its server stops.
    sim.destroy_mig_instance(0, big_gi).await.unwrap();
    notify(&dir, "generation=2 gpus=0\n");
    env.plugin
        .wait_status(T, |s| {
            s.mig_layout_changes == 2 && !s.resources.iter().any(|r| r == BIG)
        })
        .await
        .unwrap_or_else(|| panic!("3g.40gb still advertised: {:?}", env.plugin.status()));
    env.kubelet
        .wait_for(T, |p| (!p.get(BIG)?.connected).then_some(()))
        .await
        .expect("the 3g.40gb stream closes");
    assert_eq!(env.devices(SMALL, 2).await.len(), 2);
    assert_eq!(registrations(&env, SMALL), 1);
    assert_eq!(registrations(&env, GPU), 1);
    assert!(!env.task.is_finished());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_at_start_or_rewritten_unchanged_re_reads_nothing_until_a_reload() {
    let (sim, m, _) = h100_with_one_3g().await;
    // The file is there before the plugin starts: only recorded.
    let env = start(Arc::new(sim.clone()), Some(m), MIXED, |o, _| {
        notify(&o.device_plugin_dir, "generation=5 gpus=0\n");
    })
    .await;
    let dir = env.kubelet.dir().to_path_buf();
    env.devices(BIG, 1).await;
    let applied = env.plugin.status().applied;

    // The layout changes; the file is replaced with the same content.
    add_two_1g(&sim).await;
    notify(&dir, "generation=5 gpus=0\n");
    wait_layout_checks(&env).await;
    let st = env.plugin.status();
    assert_eq!((st.mig_layout_changes, st.applied), (0, applied), "{st:?}");
    assert!(env.kubelet.plugin(SMALL).is_none());

    // A reload (SIGHUP) re-reads the inventory: the change was there to see.
    env.plugin.reload().await;
    env.devices(SMALL, 2).await;
    assert_eq!(env.plugin.status().mig_layout_changes, 0);
    assert_eq!(registrations(&env, BIG), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_layout_file_is_no_notification_and_a_later_change_still_is() {
    let (sim, m, _) = h100_with_one_3g().await;
    let env = start(Arc::new(sim.clone()), Some(m), MIXED, |_, _| {}).await;
    env.devices(BIG, 1).await;
    let dir = env.kubelet.dir().to_path_buf();
    // A directory where the file should be: a read error (logged once), no
    // notification, and the plugin keeps serving.
    std::fs::create_dir(dir.join(DEFAULT_FILE_NAME)).unwrap();
    add_two_1g(&sim).await;
    wait_layout_checks(&env).await;
    assert_eq!(env.plugin.status().mig_layout_changes, 0);
    assert!(env.kubelet.plugin(SMALL).is_none());
    std::fs::remove_dir(dir.join(DEFAULT_FILE_NAME)).unwrap();
    notify(&dir, "generation=1 gpus=0\n");
    env.devices(SMALL, 2).await;
    assert_eq!(env.plugin.status().mig_layout_changes, 1);
}
