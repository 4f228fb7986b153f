//! The GPU memory watchdog through the real device plugin: real child
//! processes (`sleep`) under a fake proc root laid out like real cgroup
//! paths, reported as GPU processes by `SimBackend` or by `NvmlBackend` over
//! `railyard-fake-nvml`, with a fake kubelet, a fake PodResources server and
//! a fake CRI runtime. Tests wait for outcomes (a child's exit, a metric's
//! value) with generous timeouts and never assert on timing.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use railyard_core::machine::MachineProfile;
use railyard_device_plugin::Options;
use railyard_fake_nvml::harness::FakeNvml;
use railyard_gpu::{
    BackendFuture, GpuBackend, GpuHealth, GpuProcess, HealthEvent, InjectedFailure, MemoryUsage, MigInstanceInfo,
    MigMode, NodeInventory, NvmlBackend, Op, SimBackend,
};
use railyard_kubelet_api::fake::{FakePodResources, FakeRuntimeService, kube_container};
use railyard_kubelet_api::podresources::v1 as pr;
use railyard_watchdog::events::{REASON_OVER_SHARE, REASON_SIGNALLED};
use railyard_watchdog::policy::Mode;

const TS4: &str = "time-slicing-4";
const SHARED: &str = "nvidia.com/gpu.shared";

/// A pod with one container, as cgroups, CRI and PodResources know it.
#[derive(Clone)]
struct Pod {
    uid: String,
    name: String,
    container_id: String,
}

fn pod(n: u8) -> Pod {
    Pod {
        uid: format!("{n:08x}-3d4e-4f50-9a1b-2c3d4e5f6a7b"),
        name: format!("infer-{n}"),
        container_id: format!("{:064x}", n as u128 * 0x1111_1111_1111_1111),
    }
}

fn pod_cgroup(p: &Pod) -> String {
    format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope\n",
        p.uid.replace('-', "_"),
        p.container_id
    )
}

const HOST_CGROUP: &str = "0::/system.slice/ollama.service\n";

/// The plugin plus the node around it.
struct Node {
    env: Env,
    proc_root: PathBuf,
    podres: Option<FakePodResources>,
    cri: FakeRuntimeService,
    children: Vec<Child>,
}

fn podres_path(tmp: &Path) -> PathBuf {
    tmp.join("pod-resources/kubelet.sock")
}

/// Watchdog flags for tests: fast scans, short grace, everything in the temp dir.
fn watchdog_options(o: &mut Options, tmp: &Path, grace_ms: u64, kill_grace_ms: u64) {
    o.watchdog_mode = Mode::Enforce;
    o.watchdog_interval = Duration::from_millis(40);
    o.watchdog_grace = Duration::from_millis(grace_ms);
    o.watchdog_kill_grace = Duration::from_millis(kill_grace_ms);
    o.pod_resources_socket = podres_path(tmp);
    o.cri_socket = Some(tmp.join("containerd/containerd.sock"));
    o.proc_root = tmp.join("proc");
}

impl Node {
    async fn start(
        backend: Arc<dyn GpuBackend>,
        machine: Option<MachineProfile>,
        config: &str,
        edit: impl FnOnce(&mut Options, &Path),
        with_pod_resources: bool,
    ) -> Node {
        let env = start(backend, machine, config, edit).await;
        let tmp = env.tmp.path().to_path_buf();
        let cri = FakeRuntimeService::start(&tmp.join("containerd/containerd.sock")).unwrap();
        let podres = with_pod_resources.then(|| FakePodResources::start(&podres_path(&tmp)).unwrap());
        Node {
            proc_root: tmp.join("proc"),
            env,
            podres,
            cri,
            children: Vec::new(),
        }
    }

    /// Kubelet's view: each pod's container holds these replica ids.
    fn set_allocations(&self, pods: &[(&Pod, &[String], &str)]) {
        let list = pods
            .iter()
            .map(|(p, ids, resource)| pr::PodResources {
                name: p.name.clone(),
                namespace: "ml".into(),
                containers: vec![pr::ContainerResources {
                    name: "main".into(),
                    devices: vec![pr::ContainerDevices {
                        resource_name: resource.to_string(),
                        device_ids: ids.to_vec(),
                        topology: None,
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        self.podres.as_ref().unwrap().set_pods(list);
        self.cri.set_containers(
            pods.iter()
                .map(|(p, _, _)| kube_container(&p.container_id, "ml", &p.name, &p.uid, "main"))
                .collect(),
        );
    }

    /// Spawns `cmd` and lays out `<proc>/<pid>/{cgroup,stat}` as the real
    /// /proc shows it; returns the child's index and pid.
    fn spawn(&mut self, cgroup: &str, ignore_term: bool) -> (usize, u32) {
        let child = if ignore_term {
            Command::new("sh")
                .args(["-c", "trap '' TERM; exec sleep 600"])
                .spawn()
                .unwrap()
        } else {
            Command::new("sleep").arg("600").spawn().unwrap()
        };
        let pid = child.id();
        if ignore_term {
            // SIGTERM is ignored once the shell has exec'd sleep.
            let deadline = Instant::now() + T;
            while std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim()
                != "sleep"
            {
                assert!(Instant::now() < deadline, "sh never exec'd sleep");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let dir = self.proc_root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup"), cgroup).unwrap();
        std::fs::write(
            dir.join("stat"),
            std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap(),
        )
        .unwrap();
        self.children.push(child);
        (self.children.len() - 1, pid)
    }

    /// Removes a process's fake /proc entry, as its exit would.
    fn forget(&self, pid: u32) {
        let _ = std::fs::remove_dir_all(self.proc_root.join(pid.to_string()));
    }

    fn alive(&mut self, i: usize) -> bool {
        self.children[i].try_wait().unwrap().is_none()
    }

    /// Waits for child `i` to exit (reaping it).
    async fn wait_exit(&mut self, i: usize) {
        let deadline = Instant::now() + T;
        while self.alive(i) {
            assert!(Instant::now() < deadline, "child {i} was not terminated");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn metric(&self, series: &str) -> f64 {
        metric_value(&self.env.metrics_text(), series)
    }

    async fn wait_metric(&self, series: &str, at_least: f64) {
        let deadline = Instant::now() + T;
        loop {
            let text = self.env.metrics_text();
            if metric_value(&text, series) >= at_least {
                return;
            }
            assert!(Instant::now() < deadline, "{series} never reached {at_least}:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The value of one series in the text format (`0` when absent).
fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn scans(result: &str) -> String {
    format!("railyard_watchdog_scans_total{{result=\"{result}\"}}")
}

fn signals(sig: &str, outcome: &str) -> String {
    format!("railyard_watchdog_signals_total{{signal=\"{sig}\",outcome=\"{outcome}\"}}")
}

fn usage(p: &Pod, device: &str) -> String {
    format!(
        "railyard_watchdog_container_gpu_memory_used_mib{{namespace=\"ml\",pod=\"{}\",container=\"main\",device=\"{device}\"}}",
        p.name
    )
}

fn proc_(pid: u32, gpu: u32, mib: u64) -> GpuProcess {
    GpuProcess {
        pid,
        gpu,
        used_memory_mib: Some(mib),
        gpu_instance_id: None,
        compute_instance_id: None,
    }
}

async fn sim_node(grace_ms: u64, kill_grace_ms: u64) -> (Node, SimBackend, String) {
    let m = machine("a100-pcie-4x");
    let sim = SimBackend::new(m.clone());
    let node = Node::start(
        Arc::new(sim.clone()),
        Some(m.clone()),
        &dp_config(TS4),
        |o, tmp| watchdog_options(o, tmp, grace_ms, kill_grace_ms),
        true,
    )
    .await;
    node.env.devices(SHARED, 16).await;
    (node, sim, m.gpus[0].uuid.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_offender_is_terminated_and_neighbours_host_and_strays_survive() {
    // Long kill grace: this test is about SIGTERM.
    let (mut node, sim, gpu0) = sim_node(300, 600_000).await;
    let (a, b) = (pod(1), pod(2));
    // 4-way time-slicing of a 40 GiB A100: 10240 MiB per replica.
    node.set_allocations(&[
        (&a, &[format!("{gpu0}::0")], SHARED),
        (&b, &[format!("{gpu0}::1")], SHARED),
    ]);
    let (a1, a1_pid) = node.spawn(&pod_cgroup(&a), false);
    let (a2, a2_pid) = node.spawn(&pod_cgroup(&a), false);
    let (b1, b1_pid) = node.spawn(&pod_cgroup(&b), false);
    let (host, host_pid) = node.spawn(HOST_CGROUP, false);
    // In a pod's cgroup, but neither CRI nor PodResources knows the container.
    let (stray, stray_pid) = node.spawn(&pod_cgroup(&pod(9)), false);
    for (pid, mib) in [
        (a1_pid, 6000),
        (a2_pid, 6000),
        (b1_pid, 8000),
        (host_pid, 30000),
        (stray_pid, 30000),
    ] {
        sim.add_process(proc_(pid, 0, mib)).unwrap();
    }

    node.wait_exit(a1).await;
    node.wait_exit(a2).await;
    for pid in [a1_pid, a2_pid] {
        sim.remove_process(pid);
        node.forget(pid);
    }
    assert!(node.alive(b1) && node.alive(host) && node.alive(stray));
    assert_eq!(node.metric(&signals("SIGTERM", "sent")), 2.0);
    assert_eq!(node.metric("railyard_watchdog_violations_total{mode=\"enforce\"}"), 1.0);
    assert_eq!(node.metric(&usage(&b, &gpu0)), 8000.0);
    assert_eq!(
        node.metric(&format!(
            "railyard_watchdog_container_gpu_memory_share_mib{{namespace=\"ml\",pod=\"{}\",container=\"main\",device=\"{gpu0}\"}}",
            b.name
        )),
        10240.0
    );
    assert_eq!(node.metric("railyard_watchdog_gpu_processes{owner=\"host\"}"), 1.0);
    assert_eq!(
        node.metric("railyard_watchdog_gpu_processes{owner=\"unattributed\"}"),
        1.0
    );
    let events = node.env.events.events();
    assert!(
        events
            .iter()
            .any(|e| e.reason == REASON_OVER_SHARE && e.pod == a.name && e.message.contains("12000 MiB")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.reason == REASON_SIGNALLED && e.pod == a.name && e.message.contains("SIGTERM"))
    );
    assert!(events.iter().all(|e| e.pod == a.name), "{events:?}");
    // B stays within its share and is never reported.
    assert!(node.alive(b1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_sigterm_then_sigkill_for_a_process_that_ignores_sigterm() {
    let (mut node, sim, gpu0) = sim_node(200, 300).await;
    let a = pod(1);
    node.set_allocations(&[(&a, &[format!("{gpu0}::0")], SHARED)]);
    let (stubborn, pid) = node.spawn(&pod_cgroup(&a), true);
    sim.add_process(proc_(pid, 0, 20000)).unwrap();
    node.wait_exit(stubborn).await;
    sim.remove_process(pid);
    node.forget(pid);
    assert_eq!(node.metric(&signals("SIGTERM", "sent")), 1.0);
    assert_eq!(node.metric(&signals("SIGKILL", "sent")), 1.0);
}

/// Delays `processes` while `delay_ms` is set, so the data arrives stale.
#[derive(Debug, Clone)]
struct SlowBackend {
    inner: SimBackend,
    delay_ms: Arc<AtomicU64>,
}

impl GpuBackend for SlowBackend {
    fn inventory(&self) -> BackendFuture<'_, NodeInventory> {
        self.inner.inventory()
    }
    fn memory(&self, gpu: u32) -> BackendFuture<'_, MemoryUsage> {
        self.inner.memory(gpu)
    }
    fn processes(&self, gpu: u32) -> BackendFuture<'_, Vec<GpuProcess>> {
        let delay = Duration::from_millis(self.delay_ms.load(Ordering::SeqCst));
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            self.inner.processes(gpu).await
        })
    }
    fn set_mig_mode(&self, gpu: u32, enabled: bool) -> BackendFuture<'_, MigMode> {
        self.inner.set_mig_mode(gpu, enabled)
    }
    fn possible_placements(
        &self,
        gpu: u32,
        kind: railyard_core::mig::ProfileKind,
    ) -> BackendFuture<'_, Vec<railyard_core::mig::Placement>> {
        self.inner.possible_placements(gpu, kind)
    }
    fn mig_instances(&self, gpu: u32) -> BackendFuture<'_, Vec<MigInstanceInfo>> {
        self.inner.mig_instances(gpu)
    }
    fn create_mig_instance(
        &self,
        gpu: u32,
        instance: railyard_core::mig::MigInstance,
    ) -> BackendFuture<'_, MigInstanceInfo> {
        self.inner.create_mig_instance(gpu, instance)
    }
    fn destroy_mig_instance(&self, gpu: u32, gpu_instance_id: u32) -> BackendFuture<'_, ()> {
        self.inner.destroy_mig_instance(gpu, gpu_instance_id)
    }
    fn subscribe_health(&self) -> tokio::sync::broadcast::Receiver<HealthEvent> {
        self.inner.subscribe_health()
    }
    fn health(&self) -> BackendFuture<'_, std::collections::BTreeMap<u32, GpuHealth>> {
        self.inner.health()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_signal_on_pod_resources_outage_stale_or_missing_gpu_data() {
    let m = machine("a100-pcie-4x");
    let sim = SimBackend::new(m.clone());
    let slow = SlowBackend {
        inner: sim.clone(),
        delay_ms: Arc::new(AtomicU64::new(0)),
    };
    let gpu0 = m.gpus[0].uuid.clone();
    // No PodResources server yet: an outage from the start.
    let mut node = Node::start(
        Arc::new(slow.clone()),
        Some(m),
        &dp_config(TS4),
        |o, tmp| {
            watchdog_options(o, tmp, 200, 600_000);
            o.watchdog_max_staleness = Duration::from_millis(100);
        },
        false,
    )
    .await;
    node.env.devices(SHARED, 16).await;
    let a = pod(1);
    let (offender, pid) = node.spawn(&pod_cgroup(&a), false);
    sim.add_process(proc_(pid, 0, 30000)).unwrap();

    // 1. PodResources unavailable: many scans, each longer than nothing, no signal.
    let n = node.metric(&scans("pod_resources_unavailable"));
    node.wait_metric(&scans("pod_resources_unavailable"), n + 15.0).await;
    assert!(node.alive(offender));

    // 2. Stale GPU data (each read takes longer than the staleness limit).
    slow.delay_ms.store(250, Ordering::SeqCst);
    node.podres = Some(FakePodResources::start(&podres_path(node.env.tmp.path())).unwrap());
    node.set_allocations(&[(&a, &[format!("{gpu0}::0")], SHARED)]);
    node.wait_metric(&scans("gpu_data_stale"), 4.0).await;
    let n = node.metric(&scans("gpu_data_stale"));
    node.wait_metric(&scans("gpu_data_stale"), n + 4.0).await;
    assert!(node.alive(offender));

    // 3. Missing GPU data (NVML calls fail).
    sim.inject_failure(InjectedFailure {
        op: Op::Processes,
        gpu: None,
        code: 999,
        times: None,
    });
    slow.delay_ms.store(0, Ordering::SeqCst);
    node.wait_metric(&scans("gpu_data_missing"), 15.0).await;
    assert!(node.alive(offender));
    assert_eq!(node.metric(&signals("SIGTERM", "sent")), 0.0);
    assert_eq!(node.metric("railyard_watchdog_violations_total{mode=\"enforce\"}"), 0.0);

    // With good data back, the same process is enforced: the guards above
    // were what kept it alive.
    sim.clear_failures();
    node.wait_exit(offender).await;
    sim.remove_process(pid);
    node.forget(pid);
    assert_eq!(node.metric(&signals("SIGTERM", "sent")), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_pid_is_not_signalled() {
    // A grace long enough for the test to swap the process in between.
    let (mut node, sim, gpu0) = sim_node(1500, 600_000).await;
    let a = pod(1);
    node.set_allocations(&[(&a, &[format!("{gpu0}::0")], SHARED)]);
    let (victim, pid) = node.spawn(&pod_cgroup(&a), false);
    sim.add_process(proc_(pid, 0, 30000)).unwrap();
    // Attributed (and its start time cached) once its usage shows.
    node.wait_metric(&usage(&a, &gpu0), 30000.0).await;
    // The PID now names another process: a host process that started later.
    let dir = node.proc_root.join(pid.to_string());
    std::fs::write(dir.join("cgroup"), HOST_CGROUP).unwrap();
    let real = std::fs::read_to_string(dir.join("stat")).unwrap();
    let (head, tail) = real.rsplit_once(')').unwrap();
    let mut fields: Vec<String> = tail.split_whitespace().map(str::to_string).collect();
    let start: u64 = fields[19].parse().unwrap();
    fields[19] = (start + 500).to_string();
    std::fs::write(dir.join("stat"), format!("{head}) {}", fields.join(" "))).unwrap();

    node.wait_metric(&signals("SIGTERM", "pid_reused"), 1.0).await;
    // Attributed afresh: a host process, never acted on.
    node.wait_metric("railyard_watchdog_gpu_processes{owner=\"host\"}", 1.0)
        .await;
    assert!(node.alive(victim));
    assert_eq!(node.metric(&signals("SIGTERM", "sent")), 0.0);
    assert!(node.env.events.events().iter().all(|e| e.reason != REASON_SIGNALLED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_sliced_mig_replica_is_enforced_on_its_mig_device() {
    let m = machine("a100-pcie-4x");
    let sim = SimBackend::new(m.clone());
    apply_mig(&sim, &m, "2x2g.10gb-3x1g.5gb").await;
    let cfg = "version: v1\nflags:\n  migStrategy: mixed\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/mig-1g.5gb\n      replicas: 2\n";
    let mut node = Node::start(
        Arc::new(sim.clone()),
        Some(m),
        cfg,
        |o, tmp| watchdog_options(o, tmp, 200, 600_000),
        true,
    )
    .await;
    let devices = node.env.devices("nvidia.com/mig-1g.5gb", 24).await;
    // The first 1g.5gb MIG device on GPU 0 and its GPU instance.
    let mig_uuid = devices[0].id.split_once("::").unwrap().0.to_string();
    let (gpu, inst) = {
        let mut found = None;
        for g in 0..4 {
            for i in sim.mig_instances(g).await.unwrap() {
                if i.uuid.as_deref() == Some(mig_uuid.as_str()) {
                    found = Some((g, i));
                }
            }
        }
        found.unwrap()
    };
    let share = inst.memory_mib / 2;
    let (a, b) = (pod(1), pod(2));
    node.set_allocations(&[
        (&a, &[format!("{mig_uuid}::0")], "nvidia.com/mig-1g.5gb"),
        (&b, &[format!("{mig_uuid}::1")], "nvidia.com/mig-1g.5gb"),
    ]);
    let (a1, a1_pid) = node.spawn(&pod_cgroup(&a), false);
    let (b1, b1_pid) = node.spawn(&pod_cgroup(&b), false);
    let in_mig = |pid, mib| GpuProcess {
        pid,
        gpu,
        used_memory_mib: Some(mib),
        gpu_instance_id: Some(inst.gpu_instance_id),
        compute_instance_id: inst.compute_instance_id,
    };
    sim.add_process(in_mig(a1_pid, share + 500)).unwrap();
    sim.add_process(in_mig(b1_pid, share - 500)).unwrap();
    node.wait_exit(a1).await;
    sim.remove_process(a1_pid);
    node.forget(a1_pid);
    assert!(node.alive(b1));
    // Usage is counted on the MIG device, not the physical GPU.
    assert_eq!(node.metric(&usage(&b, &mig_uuid)), (share - 500) as f64);
    assert_eq!(node.metric(&signals("SIGTERM", "sent")), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvml_backend_offender_is_terminated_and_others_survive() {
    let fake = FakeNvml::from_file(&repo("configs/machines/a100-pcie-4x.yaml")).unwrap();
    let backend = NvmlBackend::new(fake.config()).unwrap();
    let gpu0 = fake.profile.gpus[0].uuid.clone();
    let mut node = Node::start(
        Arc::new(backend),
        None,
        &dp_config(TS4),
        |o, tmp| watchdog_options(o, tmp, 300, 600_000),
        true,
    )
    .await;
    node.env.devices(SHARED, 16).await;
    let (a, b) = (pod(1), pod(2));
    node.set_allocations(&[
        (&a, &[format!("{gpu0}::0")], SHARED),
        (&b, &[format!("{gpu0}::1")], SHARED),
    ]);
    let (a1, a1_pid) = node.spawn(&pod_cgroup(&a), false);
    let (b1, b1_pid) = node.spawn(&pod_cgroup(&b), false);
    let (host, host_pid) = node.spawn(HOST_CGROUP, false);
    let (stray, stray_pid) = node.spawn(&pod_cgroup(&pod(9)), false);
    for (pid, mib) in [(b1_pid, 9000), (host_pid, 20000), (stray_pid, 20000), (a1_pid, 11000)] {
        fake.control(&format!("process 0 {pid} {mib}")).unwrap();
    }
    node.wait_exit(a1).await;
    fake.control(&format!("kill {a1_pid}")).unwrap();
    node.forget(a1_pid);
    assert!(node.alive(b1) && node.alive(host) && node.alive(stray));
    assert_eq!(node.metric(&signals("SIGTERM", "sent")), 1.0);
    assert_eq!(node.metric("railyard_watchdog_violations_total{mode=\"enforce\"}"), 1.0);
    node.wait_metric(&usage(&b, &gpu0), 9000.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_mode_reports_and_never_signals() {
    let m = machine("a100-pcie-4x");
    let sim = SimBackend::new(m.clone());
    let gpu0 = m.gpus[0].uuid.clone();
    let mut node = Node::start(
        Arc::new(sim.clone()),
        Some(m),
        &dp_config(TS4),
        |o, tmp| {
            watchdog_options(o, tmp, 200, 300);
            o.watchdog_mode = Mode::Warn;
        },
        true,
    )
    .await;
    node.env.devices(SHARED, 16).await;
    let a = pod(1);
    node.set_allocations(&[(&a, &[format!("{gpu0}::0")], SHARED)]);
    let (offender, pid) = node.spawn(&pod_cgroup(&a), false);
    sim.add_process(proc_(pid, 0, 30000)).unwrap();
    node.wait_metric("railyard_watchdog_violations_total{mode=\"warn\"}", 1.0)
        .await;
    let n = node.metric(&scans("enforced"));
    node.wait_metric(&scans("enforced"), n + 20.0).await;
    assert!(node.alive(offender));
    assert_eq!(node.metric("railyard_watchdog_violations_total{mode=\"warn\"}"), 1.0);
    assert!(node.env.events.events().iter().any(|e| e.reason == REASON_OVER_SHARE));
}
