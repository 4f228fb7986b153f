//! A config that would expand to more device ids than kubelet can take is
//! refused before anything is built, at start and on live reload, and the
//! running config keeps serving (issue 17, finding 9 and 11).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use prometheus_client::registry::Registry;
use railyard_core::machine::MachineProfile;
use railyard_device_plugin::config::{CONFIG_LABEL, FlagOrFileLabels};
use railyard_device_plugin::metrics::Metrics;
use railyard_device_plugin::topology::RecordingAnnotator;
use railyard_device_plugin::{PluginConfig, spawn};
use railyard_gpu::SimBackend;
use railyard_kubelet_api::fake::{FakeKubelet, TempDir};
use railyard_watchdog::events::RecordingEventRecorder;

/// 17 T4s: one GPU more than 16,384 / 1,024, so `replicas: 1024` on every
/// GPU is one GPU over the per-resource bound.
fn seventeen_gpus() -> MachineProfile {
    let gpus: String = (0..17)
        .map(|i| {
            format!(
                "  - {{index: {i}, product_name: \"Tesla T4\", uuid: GPU-{i:08x}-0000-0000-0000-000000000000, pci_bus_id: \"0000:{:02x}:00.0\", numa_node: 0}}\n",
                i + 16
            )
        })
        .collect();
    MachineProfile::from_yaml(&format!(
        "name: m17\nnuma_nodes: [{{id: 0, cpus: \"0-7\"}}]\ngpus:\n{gpus}"
    ))
    .unwrap()
}

fn sliced(key: &str, replicas: u64) -> String {
    format!("version: v1\nsharing:\n  {key}:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: {replicas}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_bombs_are_rejected_on_reload_and_the_running_config_stays() {
    let m = seventeen_gpus();
    let sim = SimBackend::new(m.clone());
    let env = start(Arc::new(sim), Some(m), "version: v1\n", |o, tmp| {
        let dir = tmp.join("configs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("whole.yaml"), "version: v1\n").unwrap();
        std::fs::write(dir.join("bomb.yaml"), sliced("timeSlicing", 2_147_483_648)).unwrap();
        std::fs::write(dir.join("mps-bomb.yaml"), sliced("mps", 2_147_483_648)).unwrap();
        std::fs::write(dir.join("too-many.yaml"), sliced("timeSlicing", 1024)).unwrap();
        std::fs::write(
            dir.join("dup.yaml"),
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 2\n    - name: gpu\n      replicas: 4\n",
        )
        .unwrap();
        o.config_file = None;
        o.config_dir = Some(dir);
        o.default_config = Some("whole".into());
        o.node_labels_file = Some(tmp.join("labels"));
    })
    .await;
    let labels = env.tmp.path().join("labels");
    env.devices("nvidia.com/gpu", 17).await;

    let cases = [
        (
            "bomb",
            "sharing.timeSlicing.resources[0].replicas: invalid value \"2147483648\": 2147483648 is above the maximum of 1024",
        ),
        (
            "mps-bomb",
            "sharing.mps.resources[0].replicas: invalid value \"2147483648\": 2147483648 is above the maximum of 1024",
        ),
        (
            "too-many",
            "sharing.timeSlicing.resources[0].replicas: invalid value \"1024\": 17 devices × 1024 replicas make 17408 nvidia.com/gpu devices on this node, above the maximum of 16384 per resource",
        ),
        (
            "dup",
            "sharing.timeSlicing.resources[1].name: invalid value \"nvidia.com/gpu\": duplicate resource name",
        ),
    ];
    for (name, want) in cases {
        std::fs::write(&labels, format!("{CONFIG_LABEL}=\"{name}\"\n")).unwrap();
        let st = env
            .plugin
            .wait_status(T, |s| {
                s.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains(&format!("config {name}")))
            })
            .await
            .unwrap();
        let e = st.last_error.unwrap();
        assert!(e.contains(want), "{name}: {e}");
        assert_eq!(st.config.as_deref(), Some("whole"), "{name}");
        assert_eq!(st.resources, ["nvidia.com/gpu"], "{name}");
        let p = env.kubelet.plugin("nvidia.com/gpu").unwrap();
        assert!(p.connected && p.devices.len() == 17, "{name}: {p:?}");
    }
    // Still serving: a whole GPU can be admitted.
    env.kubelet.admit("nvidia.com/gpu", 1, &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_bombs_fail_the_start_with_the_field_path() {
    for (config, want) in [
        (
            sliced("timeSlicing", 2_147_483_648),
            "sharing.timeSlicing.resources[0].replicas: invalid value \"2147483648\"",
        ),
        (
            sliced("timeSlicing", 1024),
            "sharing.timeSlicing.resources[0].replicas: invalid value \"1024\": 17 devices × 1024 replicas",
        ),
    ] {
        let kubelet = FakeKubelet::start().await.unwrap();
        let tmp = TempDir::new("railyard-dp-bounds").unwrap();
        let mut o = base_options(&kubelet, tmp.path());
        let path = tmp.path().join("config.yaml");
        std::fs::write(&path, &config).unwrap();
        o.config_file = Some(path);
        let m = seventeen_gpus();
        let mut registry = Registry::default();
        let cfg = PluginConfig {
            events: Arc::new(RecordingEventRecorder::default()),
            labels: Arc::new(FlagOrFileLabels::from_options(&o)),
            options: o,
            backend: Arc::new(SimBackend::new(m.clone())),
            annotator: Arc::new(RecordingAnnotator::default()),
            machine: Some(m),
            metrics: Metrics::new(&mut registry),
            decisions: None,
        };
        let e = match spawn(cfg, false).await {
            Ok(_) => panic!("{config}: started"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(want), "{e}");
    }
}
