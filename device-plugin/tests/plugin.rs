//! The device plugin against the fake kubelet over real unix sockets, with
//! the simulated GPU backend: registration, ListAndWatch contents, Allocate
//! and CDI per strategy, preferred allocation, health, kubelet restarts,
//! config switches and rejections, shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use railyard_device_plugin::config::CONFIG_LABEL;
use railyard_device_plugin::edits::{MEMORY_LIMIT_ENV, MPS_MEMORY_LIMIT_ENV, VISIBLE_DEVICES_ENV, sorted_envs};
use railyard_device_plugin::topology::TOPOLOGY_ANNOTATION;
use railyard_gpu::SimBackend;
use railyard_kubelet_api::deviceplugin::v1beta1::{HEALTHY, UNHEALTHY, VERSION};
use std::sync::Arc;

fn numa(d: &railyard_kubelet_api::deviceplugin::v1beta1::Device) -> i64 {
    d.topology.as_ref().unwrap().nodes[0].id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_gpus_register_list_and_allocate_by_uuid() {
    let (env, _sim) = start_sim("a100-pcie-4x", "version: v1\n").await;
    let m = machine("a100-pcie-4x");
    let devices = env.devices("nvidia.com/gpu", 4).await;
    let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    let uuids: Vec<&str> = m.gpus.iter().map(|g| g.uuid.as_str()).collect();
    assert_eq!(ids, uuids);
    assert!(devices.iter().all(|d| d.health == HEALTHY));
    assert_eq!(devices.iter().map(numa).collect::<Vec<_>>(), [0, 0, 1, 1]);

    let calls = env.kubelet.register_calls();
    let (req, err) = &calls[0];
    assert!(err.is_none());
    assert_eq!(req.version, VERSION);
    assert_eq!(req.resource_name, "nvidia.com/gpu");
    assert_eq!(req.endpoint, "railyard-nvidia.com-gpu.sock");
    assert!(req.options.unwrap().get_preferred_allocation_available);

    let a = env.kubelet.admit("nvidia.com/gpu", 2, &[]).await.unwrap();
    // NVLink bridge 0-1 wins.
    assert_eq!(a.devices, [uuids[0], uuids[1]]);
    assert_eq!(
        sorted_envs(&a.response)[VISIBLE_DEVICES_ENV],
        format!("{},{}", uuids[0], uuids[1])
    );
    assert!(a.response.cdi_devices.is_empty());
    assert!(!sorted_envs(&a.response).contains_key(MEMORY_LIMIT_ENV));

    // The topology annotation is "published" through the annotator.
    let written = env.annotator.written.lock().unwrap().clone();
    assert_eq!(written[0].0, TOPOLOGY_ANNOTATION);
    let profile: railyard_core::machine::MachineProfile = serde_json::from_str(&written[0].1).unwrap();
    assert_eq!(profile.gpus.len(), 4);

    let text = env.metrics_text();
    assert!(
        text.contains("railyard_device_plugin_devices{resource=\"nvidia.com/gpu\",health=\"Healthy\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("railyard_device_plugin_allocations_total{resource=\"nvidia.com/gpu\"} 1"),
        "{text}"
    );
    assert!(text.contains("railyard_device_plugin_registrations_total{resource=\"nvidia.com/gpu\",result=\"ok\"} 1"));
}

/// Fact: 4×A100-40GB, mig-parted `2x2g.10gb-3x1g.5gb`, mixed → 12 × 1g.5gb, 8 × 2g.10gb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_mig_fact_end_to_end_with_cdi_cri_by_index() {
    let m = machine("a100-pcie-4x");
    let sim = SimBackend::new(m.clone());
    apply_mig(&sim, &m, "2x2g.10gb-3x1g.5gb").await;
    let cfg = "version: v1\nflags:\n  migStrategy: mixed\n  plugin:\n    deviceListStrategy: cdi-cri\n    deviceIDStrategy: index\n";
    let env = start(Arc::new(sim.clone()), Some(m.clone()), cfg, |_, _| {}).await;
    let small = env.devices("nvidia.com/mig-1g.5gb", 12).await;
    let big = env.devices("nvidia.com/mig-2g.10gb", 8).await;
    assert!(
        small
            .iter()
            .chain(&big)
            .all(|d| d.id.starts_with("MIG-") && d.health == HEALTHY)
    );
    assert_eq!(
        env.kubelet.resources(),
        ["nvidia.com/mig-1g.5gb", "nvidia.com/mig-2g.10gb"]
    );
    assert!(env.kubelet.plugin("nvidia.com/gpu").is_none());

    let a = env.kubelet.admit("nvidia.com/mig-2g.10gb", 1, &[]).await.unwrap();
    assert_eq!(a.response.cdi_devices.len(), 1);
    let name = &a.response.cdi_devices[0].name;
    assert!(name.starts_with("railyard.dev/gpu=0:"), "{name}");
    assert!(!sorted_envs(&a.response).contains_key(VISIBLE_DEVICES_ENV));

    // The CDI spec names every MIG device by UUID and index, plus `all`.
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.cdi_dir().join("railyard.dev-gpu.json")).unwrap()).unwrap();
    assert_eq!(spec["kind"], "railyard.dev/gpu");
    assert_eq!(spec["cdiVersion"], "0.3.0");
    let names: BTreeSet<String> = spec["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 20 * 2 + 1);
    assert!(names.contains(name.split_once('=').unwrap().1));
    assert!(names.contains(&a.devices[0]));
    assert!(names.contains("all"));
    assert_eq!(spec["containerEdits"]["env"][0], "NVIDIA_VISIBLE_DEVICES=void");
    let left: Vec<_> = std::fs::read_dir(env.cdi_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "no temp files left: {left:?}");
}

/// Fact: 4 GPUs, timeSlicing replicas 4, renameByDefault → 16 × gpu.shared and no nvidia.com/gpu.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_slicing_fact_end_to_end_with_memory_share() {
    let (env, _sim) = start_sim("a100-pcie-4x", &dp_config("time-slicing-4")).await;
    let d = env.devices("nvidia.com/gpu.shared", 16).await;
    assert!(d[0].id.ends_with("::0") && d[15].id.ends_with("::3"));
    assert_eq!(env.kubelet.resources(), ["nvidia.com/gpu.shared"]);

    // Distributed: two single-replica pods land on different GPUs.
    let a = env.kubelet.admit("nvidia.com/gpu.shared", 1, &[]).await.unwrap();
    let b = env.kubelet.admit("nvidia.com/gpu.shared", 1, &[]).await.unwrap();
    let gpu = |id: &str| id.split("::").next().unwrap().to_string();
    assert_ne!(gpu(&a.devices[0]), gpu(&b.devices[0]));
    let envs = sorted_envs(&a.response);
    assert_eq!(envs[VISIBLE_DEVICES_ENV], gpu(&a.devices[0]));
    assert_eq!(envs[MEMORY_LIMIT_ENV], "0=10240M");
    assert!(!envs.contains_key(MPS_MEMORY_LIMIT_ENV));
    // Without failRequestsGreaterThanOne, two replicas are allowed.
    let c = env.kubelet.admit("nvidia.com/gpu.shared", 2, &[]).await.unwrap();
    assert_eq!(c.devices.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_requests_greater_than_one_is_enforced() {
    let cfg = "version: v1\nsharing:\n  timeSlicing:\n    failRequestsGreaterThanOne: true\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 2\n";
    let (env, _sim) = start_sim("t4-2x", cfg).await;
    env.devices("nvidia.com/gpu", 4).await;
    let e = env.kubelet.admit("nvidia.com/gpu", 2, &[]).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("request for 'nvidia.com/gpu: 2' too large: maximum request size for shared resources is 1"),
        "{e}"
    );
    env.kubelet.admit("nvidia.com/gpu", 1, &[]).await.unwrap();
    assert!(
        env.metrics_text()
            .contains("allocation_errors_total{resource=\"nvidia.com/gpu\",call=\"Allocate\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mps_sets_limits_and_cdi_annotations_and_volume_mounts_by_flag() {
    let m = machine("a100-pcie-4x");
    let sim = SimBackend::new(m.clone());
    let env = start(Arc::new(sim), Some(m.clone()), &dp_config("mps-shared"), |o, _| {
        o.nvidia_dev_root = Some("/run/nvidia/driver".into());
    })
    .await;
    env.devices("nvidia.com/gpu.shared", 16).await;
    let a = env.kubelet.admit("nvidia.com/gpu.shared", 1, &[]).await.unwrap();
    let envs = sorted_envs(&a.response);
    assert_eq!(envs[MPS_MEMORY_LIMIT_ENV], "0=10240M");
    assert_eq!(envs[MEMORY_LIMIT_ENV], "0=10240M");
    assert_eq!(envs["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"], "25");
    assert_eq!(envs[VISIBLE_DEVICES_ENV], m.gpus[0].uuid);
    assert_eq!(
        a.response.cdi_devices[0].name,
        format!("railyard.dev/gpu={}", m.gpus[0].uuid)
    );
    assert!(a.response.mounts.iter().any(|x| x.container_path == "/mps/pipe"));
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.cdi_dir().join("railyard.dev-gpu.json")).unwrap()).unwrap();
    // hostPath under a driver root needs CDI 0.5.0.
    assert_eq!(spec["cdiVersion"], "0.5.0");
    assert_eq!(
        spec["devices"][0]["containerEdits"]["deviceNodes"][0]["hostPath"],
        "/run/nvidia/driver/dev/nvidia0"
    );
    assert_eq!(
        spec["devices"][0]["containerEdits"]["mounts"][0]["containerPath"],
        "/mps/pipe"
    );
    // MPS defaults failRequestsGreaterThanOne to true.
    assert!(env.kubelet.admit("nvidia.com/gpu.shared", 2, &[]).await.is_err());

    // Flags override the file: cdi-annotations and volume-mounts.
    let (env2, _sim2) = {
        let m = machine("t4-2x");
        let sim = SimBackend::new(m.clone());
        let env = start(Arc::new(sim.clone()), Some(m), "version: v1\n", |o, _| {
            o.device_list_strategy = Some(vec!["volume-mounts".into(), "cdi-annotations".into()]);
            o.device_id_strategy = Some(railyard_core::config::device_plugin::DeviceIdStrategy::Index);
            o.pass_device_specs = Some(true);
        })
        .await;
        (env, sim)
    };
    env2.devices("nvidia.com/gpu", 2).await;
    let a = env2.kubelet.admit("nvidia.com/gpu", 1, &[]).await.unwrap();
    let envs = sorted_envs(&a.response);
    assert_eq!(envs[VISIBLE_DEVICES_ENV], "/var/run/nvidia-container-devices");
    assert_eq!(
        a.response.mounts[0].container_path,
        "/var/run/nvidia-container-devices/0"
    );
    assert_eq!(a.response.mounts[0].host_path, "/dev/null");
    let (k, v) = a.response.annotations.iter().next().unwrap();
    assert!(k.starts_with("cdi.k8s.io/railyard-device-plugin_nvidia.com_gpu"), "{k}");
    assert_eq!(v, "railyard.dev/gpu=0");
    let nodes: Vec<&str> = a.response.devices.iter().map(|d| d.container_path.as_str()).collect();
    assert!(
        nodes.contains(&"/dev/nvidiactl") && nodes.contains(&"/dev/nvidia0"),
        "{nodes:?}"
    );
    assert!(env2.cdi_dir().join("railyard.dev-gpu.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_allocation_on_dgx_h100_is_numa_and_nic_aligned() {
    let (env, _sim) = start_sim("dgx-h100", "version: v1\n").await;
    let m = machine("dgx-h100");
    let uuid = |i: usize| m.gpus[i].uuid.clone();
    env.devices("nvidia.com/gpu", 8).await;
    // A pod on GPU 1 only: the next 4-GPU pod takes all of NUMA node 1
    // (each with its own rail NIC) rather than the 3 left on node 0 plus one.
    let first = env.kubelet.admit("nvidia.com/gpu", 1, &[&uuid(1)]).await.unwrap();
    assert_eq!(first.devices, [uuid(1)]);
    let a = env.kubelet.admit("nvidia.com/gpu", 4, &[]).await.unwrap();
    assert_eq!(a.preferred.as_deref(), Some(&[uuid(4), uuid(5), uuid(6), uuid(7)][..]));
    assert_eq!(a.devices, [uuid(4), uuid(5), uuid(6), uuid(7)]);
    // must_include respected: 2 GPUs including GPU 2 stay on node 0.
    let b = env.kubelet.admit("nvidia.com/gpu", 2, &[&uuid(2)]).await.unwrap();
    assert_eq!(b.devices[0], uuid(2));
    assert!([uuid(0), uuid(3)].contains(&b.devices[1]), "{:?}", b.devices);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xid_marks_devices_replicas_and_mig_unhealthy_and_recovery_heals() {
    // One MIG device, then every MIG device of a failed parent.
    let m = machine("a100-pcie-4x");
    let sim = SimBackend::new(m.clone());
    apply_mig(&sim, &m, "2x2g.10gb-3x1g.5gb").await;
    let env = start(
        Arc::new(sim.clone()),
        Some(m.clone()),
        &dp_config("mig-mixed"),
        |_, _| {},
    )
    .await;
    env.devices("nvidia.com/mig-1g.5gb", 12).await;
    let unhealthy =
        |d: &[railyard_kubelet_api::deviceplugin::v1beta1::Device]| d.iter().filter(|d| d.health == UNHEALTHY).count();
    let unhealthy_ids = |d: &[railyard_kubelet_api::deviceplugin::v1beta1::Device]| -> Vec<String> {
        d.iter()
            .filter(|d| d.health == UNHEALTHY)
            .map(|d| d.id.clone())
            .collect()
    };
    // An XID NVML attributes to one MIG instance (GI and CI given) marks only
    // that MIG device, as NVIDIA's plugin does; its neighbours on GPU 1 stay.
    let inv = railyard_gpu::GpuBackend::inventory(&sim).await.unwrap();
    let small = inv.gpus[1]
        .mig
        .as_ref()
        .unwrap()
        .instances
        .iter()
        .find(|i| i.profile == "1g.5gb")
        .unwrap();
    let target = small.uuid.clone().unwrap();
    sim.inject_xid(1, 79, Some(small.gpu_instance_id), small.compute_instance_id);
    env.kubelet
        .wait_devices("nvidia.com/mig-1g.5gb", T, |d| unhealthy_ids(d) == [target.clone()])
        .await
        .unwrap();
    let big = env.kubelet.plugin("nvidia.com/mig-2g.10gb").unwrap();
    assert_eq!(unhealthy(&big.devices), 0);
    // Kubelet would not offer it: a 12-device admission no longer fits, 11 do.
    assert!(env.kubelet.admit("nvidia.com/mig-1g.5gb", 12, &[]).await.is_err());
    let a = env.kubelet.admit("nvidia.com/mig-1g.5gb", 11, &[]).await.unwrap();
    assert!(!a.devices.contains(&target));
    env.kubelet.release("nvidia.com/mig-1g.5gb", &a.devices);
    assert!(
        env.metrics_text()
            .contains("railyard_device_plugin_devices{resource=\"nvidia.com/mig-1g.5gb\",health=\"Unhealthy\"} 1")
    );
    // An XID NVML cannot attribute (no GI/CI) marks the whole GPU: all 5 MIG
    // devices on GPU 1.
    sim.inject_xid(1, 79, None, None);
    env.kubelet
        .wait_devices("nvidia.com/mig-1g.5gb", T, |d| unhealthy(d) == 3)
        .await
        .unwrap();
    env.kubelet
        .wait_devices("nvidia.com/mig-2g.10gb", T, |d| unhealthy(d) == 2)
        .await
        .unwrap();
    sim.recover(1);
    env.kubelet
        .wait_devices("nvidia.com/mig-1g.5gb", T, |d| unhealthy(d) == 0)
        .await
        .unwrap();
    env.kubelet
        .wait_devices("nvidia.com/mig-2g.10gb", T, |d| unhealthy(d) == 0)
        .await
        .unwrap();

    // Replicas of a lost GPU.
    let (env, sim) = start_sim("a100-pcie-4x", &dp_config("time-slicing-4")).await;
    env.devices("nvidia.com/gpu.shared", 16).await;
    let gpu2 = machine("a100-pcie-4x").gpus[2].uuid.clone();
    sim.set_lost(2);
    let d = env
        .kubelet
        .wait_devices("nvidia.com/gpu.shared", T, |d| unhealthy(d) == 4)
        .await
        .unwrap();
    assert!(
        d.iter()
            .filter(|d| d.health == UNHEALTHY)
            .all(|d| d.id.starts_with(&gpu2))
    );
    assert!(env.metrics_text().contains("health=\"Unhealthy\"} 4"));
    sim.recover(2);
    env.kubelet
        .wait_devices("nvidia.com/gpu.shared", T, |d| unhealthy(d) == 0)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_restart_is_survived() {
    let (mut env, _sim) = start_sim("t4-2x", "version: v1\n").await;
    env.devices("nvidia.com/gpu", 2).await;
    env.kubelet.restart().await.unwrap();
    let p = env.kubelet.wait_registrations("nvidia.com/gpu", 2, T).await.unwrap();
    assert_eq!(p.devices.len(), 2);
    assert!(env.kubelet.dir().join("railyard-nvidia.com-gpu.sock").exists());
    env.kubelet.admit("nvidia.com/gpu", 2, &[]).await.unwrap();
    // Counted, and registered again (the status may be read between the two).
    env.plugin
        .wait_status(T, |s| {
            s.kubelet_restarts >= 1 && s.registered.contains("nvidia.com/gpu")
        })
        .await
        .unwrap();
    // And a second time.
    env.kubelet.restart().await.unwrap();
    env.kubelet.wait_registrations("nvidia.com/gpu", 3, T).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_switches_named_config_and_bad_config_is_rejected() {
    let m = machine("a100-pcie-4x");
    let sim = SimBackend::new(m.clone());
    let env = start(Arc::new(sim), Some(m), "version: v1\n", |o, tmp| {
        let dir = tmp.join("configs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("whole.yaml"), "version: v1\n").unwrap();
        std::fs::write(dir.join("sliced.yaml"), dp_config("time-slicing-4")).unwrap();
        std::fs::write(
            dir.join("bad.yaml"),
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 1\n",
        )
        .unwrap();
        o.config_file = None;
        o.config_dir = Some(dir);
        o.default_config = Some("whole".into());
        o.node_labels_file = Some(tmp.join("labels"));
    })
    .await;
    let labels = env.tmp.path().join("labels");
    env.devices("nvidia.com/gpu", 4).await;
    assert_eq!(env.plugin.status().config.as_deref(), Some("whole"));

    write_atomically(&labels, format!("{CONFIG_LABEL}=\"sliced\"\n")).unwrap();
    env.devices("nvidia.com/gpu.shared", 16).await;
    // The whole-GPU resource is withdrawn: its stream ends.
    env.kubelet
        .wait_for(T, |p| (!p["nvidia.com/gpu"].connected).then_some(()))
        .await
        .unwrap();
    let st = env
        .plugin
        .wait_status(T, |s| s.config.as_deref() == Some("sliced"))
        .await
        .unwrap();
    assert_eq!(st.resources, ["nvidia.com/gpu.shared"]);

    // A bad config is rejected with a clear error; the old one keeps serving.
    write_atomically(&labels, format!("{CONFIG_LABEL}=\"bad\"\n")).unwrap();
    let st = env.plugin.wait_status(T, |s| s.last_error.is_some()).await.unwrap();
    let e = st.last_error.unwrap();
    assert!(
        e.contains("config bad") && e.contains("sharing.timeSlicing.resources[0].replicas") && e.contains("at least 2"),
        "{e}"
    );
    assert_eq!(st.config.as_deref(), Some("sliced"));
    assert!(env.kubelet.plugin("nvidia.com/gpu.shared").unwrap().connected);
    env.kubelet.admit("nvidia.com/gpu.shared", 1, &[]).await.unwrap();

    // A label naming no config is rejected too.
    write_atomically(&labels, format!("{CONFIG_LABEL}=\"nope\"\n")).unwrap();
    let st = env
        .plugin
        .wait_status(T, |s| s.last_error.as_deref().is_some_and(|e| e.contains("\"nope\"")))
        .await
        .unwrap();
    assert!(st.last_error.unwrap().contains("available: bad, sliced, whole"));

    // Back to the default when the label goes.
    write_atomically(&labels, "").unwrap();
    env.plugin
        .wait_status(T, |s| s.config.as_deref() == Some("whole"))
        .await
        .unwrap();
    env.kubelet
        .wait_for(T, |p| {
            let g = p.get("nvidia.com/gpu")?;
            (g.connected && g.registrations == 2 && g.devices.len() == 4).then_some(())
        })
        .await
        .unwrap();
    assert!(
        env.metrics_text()
            .contains("config_reloads_total{result=\"rejected\"} 2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reenumerates_and_shutdown_removes_sockets() {
    let m = machine("a100-pcie-4x");
    let sim = SimBackend::new(m.clone());
    let env = start(
        Arc::new(sim.clone()),
        Some(m.clone()),
        &dp_config("mig-mixed"),
        |_, _| {},
    )
    .await;
    env.devices("nvidia.com/gpu", 4).await;
    // The MIG manager changes the layout, then asks for a re-enumeration (SIGHUP).
    apply_mig(&sim, &m, "2x2g.10gb-3x1g.5gb").await;
    env.plugin.reload().await;
    env.devices("nvidia.com/mig-2g.10gb", 8).await;
    let sock = env.kubelet.dir().join("railyard-nvidia.com-mig-2g.10gb.sock");
    assert!(sock.exists());
    env.plugin.shutdown();
    env.task.await.unwrap();
    env.kubelet
        .wait_for(T, |p| p.values().all(|p| !p.connected).then_some(()))
        .await
        .unwrap();
    let left: Vec<String> = std::fs::read_dir(env.kubelet.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(left, ["kubelet.sock"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_healthz_over_http() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (env, _sim) = start_sim("t4-2x", "version: v1\n").await;
    env.devices("nvidia.com/gpu", 2).await;
    env.plugin
        .wait_status(T, |s| s.registered.contains("nvidia.com/gpu"))
        .await
        .unwrap();
    let Env { registry, plugin, .. } = env;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = railyard_device_plugin::http::router(Arc::new(registry), plugin.clone());
    tokio::spawn(railyard_device_plugin::http::serve_on(listener, app));
    let get = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let h = get("/healthz").await;
    assert!(h.starts_with("HTTP/1.1 200") && h.ends_with("ok"), "{h}");
    let m = get("/metrics").await;
    assert!(
        m.contains("railyard_device_plugin_registrations_total{resource=\"nvidia.com/gpu\",result=\"ok\"} 1"),
        "{m}"
    );
    plugin.shutdown();
    plugin.wait_status(T, |s| !s.running).await.unwrap();
    let h = get("/healthz").await;
    assert!(h.starts_with("HTTP/1.1 503"), "{h}");
}

/// The driver's `mig-minors` for 8 MIG-capable GPUs, by GPU minor: every
/// possible GPU instance (0..15) and compute instance (0..8), numbered in
/// order as the driver does. Returns the text and the line → minor map.
fn mig_minors_file(gpu_minors: &[u32]) -> (String, std::collections::BTreeMap<String, u32>) {
    let mut text = String::from("config 1\nmonitor 2\n");
    let mut map = std::collections::BTreeMap::new();
    let mut next = 3;
    for g in gpu_minors {
        for gi in 0..15 {
            let mut caps = vec![format!("gpu{g}/gi{gi}/access")];
            caps.extend((0..8).map(|ci| format!("gpu{g}/gi{gi}/ci{ci}/access")));
            for c in caps {
                text.push_str(&format!("{c} {next}\n"));
                map.insert(c, next);
                next += 1;
            }
        }
    }
    (text, map)
}

fn spec_nodes(spec: &serde_json::Value, name: &str) -> Vec<String> {
    let d = spec["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no CDI device {name}"));
    d["containerEdits"]["deviceNodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].as_str().unwrap().to_string())
        .collect()
}

/// Fact (MIG user guide, "Device Nodes and Capabilities"; NVIDIA's container
/// toolkit `nvcaps`): a container needs, for a MIG device, its parent's
/// `/dev/nvidia<minor>` and `/dev/nvidia-caps/nvidia-cap<M>` for the GPU
/// instance's and the compute instance's access, whose minors `M` the driver
/// lists in `/proc/driver/nvidia-caps/mig-minors` under the GPU's minor
/// number. Whole GPUs get no caps; a missing or malformed file, or a missing
/// entry, leaves a MIG device with only its parent's node and never fails
/// Allocate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mig_devices_get_their_nvidia_caps_nodes_in_cdi_and_device_specs() {
    use railyard_gpu::GpuBackend;
    let mut m = machine("dgx-h100");
    // Minors unlike the indices, so the file is looked up by minor.
    for g in &mut m.gpus {
        g.minor = Some(g.index + 10);
    }
    let sim = SimBackend::new(m.clone());
    apply_mig(&sim, &m, "half-1g.10gb").await;
    let inv = sim.inventory().await.unwrap();
    // MIG device UUID → (GPU minor, GI, CI).
    let mut migs = Vec::new();
    for g in &inv.gpus {
        for i in g.mig.iter().filter(|m| m.mode.current).flat_map(|m| &m.instances) {
            migs.push((
                i.uuid.clone().unwrap(),
                g.minor,
                i.gpu_instance_id,
                i.compute_instance_id.unwrap(),
            ));
        }
    }
    assert_eq!(migs.len(), 28);
    let (file, table) = mig_minors_file(&inv.gpus.iter().map(|g| g.minor).collect::<Vec<_>>());
    let minors_path = |tmp: &std::path::Path| tmp.join("proc/driver/nvidia-caps/mig-minors");
    let cfg = "version: v1\nflags:\n  migStrategy: mixed\n  plugin:\n    passDeviceSpecs: true\n    deviceListStrategy: cdi-cri\n";
    let env = start(Arc::new(sim.clone()), Some(m.clone()), cfg, |_, tmp| {
        std::fs::create_dir_all(minors_path(tmp).parent().unwrap()).unwrap();
        std::fs::write(minors_path(tmp), &file).unwrap();
    })
    .await;
    env.devices("nvidia.com/mig-1g.10gb", 28).await;
    env.devices("nvidia.com/gpu", 4).await;
    let expected = |uuid: &str| -> Vec<String> {
        let (_, minor, gi, ci) = migs.iter().find(|d| d.0 == uuid).unwrap();
        vec![
            format!("/dev/nvidia{minor}"),
            format!(
                "/dev/nvidia-caps/nvidia-cap{}",
                table[&format!("gpu{minor}/gi{gi}/access")]
            ),
            format!(
                "/dev/nvidia-caps/nvidia-cap{}",
                table[&format!("gpu{minor}/gi{gi}/ci{ci}/access")]
            ),
        ]
    };
    let read_spec = |env: &Env| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(env.cdi_dir().join("railyard.dev-gpu.json")).unwrap()).unwrap()
    };
    let paths = |a: &railyard_kubelet_api::fake::Admission| -> Vec<String> {
        a.response.devices.iter().map(|d| d.container_path.clone()).collect()
    };

    // A MIG device on GPU 2 (minor 12), by its UUID.
    let target = migs.iter().find(|d| d.1 == 12).unwrap().0.clone();
    let a = env
        .kubelet
        .admit("nvidia.com/mig-1g.10gb", 1, &[&target])
        .await
        .unwrap();
    assert_eq!(a.devices, [target.as_str()]);
    let want = expected(&target);
    assert_eq!(want[0], "/dev/nvidia12");
    let got = paths(&a);
    assert_eq!(
        got,
        ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]
            .iter()
            .map(|s| s.to_string())
            .chain(want.clone())
            .collect::<Vec<_>>()
    );
    assert!(
        a.response
            .devices
            .iter()
            .all(|d| d.permissions == "rw" && d.host_path == d.container_path)
    );
    assert_eq!(a.response.cdi_devices[0].name, format!("railyard.dev/gpu={target}"));
    // The CDI spec: each MIG device under its UUID and its index, with its
    // three nodes; `all` holds every one of them.
    let spec = read_spec(&env);
    let index = spec["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .filter(|n| n.starts_with("2:"))
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert_eq!(index.len(), 7);
    for (uuid, ..) in &migs {
        assert_eq!(spec_nodes(&spec, uuid), expected(uuid), "{uuid}");
    }
    let by_index: BTreeSet<Vec<String>> = index.iter().map(|n| spec_nodes(&spec, n)).collect();
    let by_uuid: BTreeSet<Vec<String>> = migs.iter().filter(|d| d.1 == 12).map(|d| expected(&d.0)).collect();
    assert_eq!(by_index, by_uuid);
    // 8 GPU nodes (4 whole, 4 MIG parents) and two caps per MIG device.
    assert_eq!(spec_nodes(&spec, "all").len(), 8 + 28 * 2);
    // A whole GPU: its node only, no caps.
    let whole = env
        .kubelet
        .admit("nvidia.com/gpu", 1, &[&m.gpus[5].uuid])
        .await
        .unwrap();
    assert_eq!(paths(&whole)[3..], ["/dev/nvidia15"]);
    assert_eq!(spec_nodes(&spec, &m.gpus[5].uuid), ["/dev/nvidia15"]);
    env.kubelet.release("nvidia.com/mig-1g.10gb", &a.devices);

    // Re-read at every apply (SIGHUP): a malformed file, no file, or a file
    // lacking the device's entries leave it with its parent's node only.
    let reload = |env: &Env| {
        let before = env.plugin.status().applied;
        let plugin = env.plugin.clone();
        async move {
            plugin.reload().await;
            plugin.wait_status(T, |s| s.applied > before).await.unwrap();
        }
    };
    let no_caps = vec![
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia12",
    ];
    let path = minors_path(env.tmp.path());
    std::fs::write(&path, format!("config 1\ngpu12/gi3/access\n{file}")).unwrap();
    reload(&env).await;
    assert_eq!(spec_nodes(&read_spec(&env), &target), ["/dev/nvidia12"]);
    let a = env
        .kubelet
        .admit("nvidia.com/mig-1g.10gb", 1, &[&target])
        .await
        .unwrap();
    assert_eq!(paths(&a), no_caps);
    env.kubelet.release("nvidia.com/mig-1g.10gb", &a.devices);

    std::fs::remove_file(&path).unwrap();
    reload(&env).await;
    assert_eq!(spec_nodes(&read_spec(&env), &target), ["/dev/nvidia12"]);
    let a = env
        .kubelet
        .admit("nvidia.com/mig-1g.10gb", 1, &[&target])
        .await
        .unwrap();
    assert_eq!(paths(&a), no_caps);
    env.kubelet.release("nvidia.com/mig-1g.10gb", &a.devices);

    // Only the target's GPU instance lacks its entry: the others keep theirs.
    let (_, _, gi, _) = migs.iter().find(|d| d.0 == target).unwrap();
    let gi_line = format!("gpu12/gi{gi}/access ");
    let partial: String = file
        .lines()
        .filter(|l| !l.starts_with(&gi_line))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, partial).unwrap();
    reload(&env).await;
    let spec = read_spec(&env);
    assert_eq!(spec_nodes(&spec, &target), ["/dev/nvidia12"]);
    for (uuid, ..) in migs.iter().filter(|d| d.0 != target) {
        assert_eq!(spec_nodes(&spec, uuid), expected(uuid), "{uuid}");
    }
    let a = env
        .kubelet
        .admit("nvidia.com/mig-1g.10gb", 1, &[&target])
        .await
        .unwrap();
    assert_eq!(paths(&a), no_caps);
}

/// Writes as a ConfigMap or the label watcher would: the plugin polls the
/// file and must never read it half-written (a plain write can be seen
/// empty, and the plugin then falls back to its default config).
fn write_atomically(path: &std::path::Path, text: impl AsRef<[u8]>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
