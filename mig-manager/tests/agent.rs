//! The node agent against the stateful fake API server (an unmodified
//! `kube::Client` over real HTTP), the fake kubelet's PodResources server
//! and `SimBackend`: the label protocol, the state label and reason, Events,
//! the layout file and the reboot-loop guard.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use prometheus_client::registry::Registry;
use railyard_gpu::SimBackend;
use railyard_mig_manager::agent::{Agent, AgentConfig};
use railyard_mig_manager::http::{self, Health};
use railyard_mig_manager::metrics::Metrics;
use railyard_test_util::FakeApiServer;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

const NODE: &str = "node-a";
/// Generous: a wait, not a timing assertion.
const T: Duration = Duration::from_secs(30);

struct Env {
    api: FakeApiServer,
    kubelet: Kubelet,
    dir: TempDir,
    shutdown: watch::Sender<bool>,
    registry: Arc<Registry>,
    health: watch::Receiver<Health>,
    task: tokio::task::JoinHandle<()>,
}

impl Env {
    fn node(&self) -> Value {
        self.api.get("v1", "Node", "", NODE).unwrap()
    }

    fn state(&self) -> Option<String> {
        self.node()["metadata"]["labels"]["nvidia.com/mig.config.state"]
            .as_str()
            .map(str::to_string)
    }

    fn reason(&self) -> Option<String> {
        self.node()["metadata"]["annotations"]["railyard.dev/mig.config.reason"]
            .as_str()
            .map(str::to_string)
    }

    async fn wait_state(&self, state: &str) {
        let deadline = tokio::time::Instant::now() + T;
        while self.state().as_deref() != Some(state) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "state never became {state}: {:?} ({:?})",
                self.state(),
                self.reason()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn label(&self, key: &str, value: &str) {
        let mut n = self.node();
        n["metadata"]["labels"][key] = json!(value);
        self.api.put(n).unwrap();
    }

    /// The states the agent wrote, in order.
    fn written_states(&self) -> Vec<String> {
        self.api
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with(&format!("/nodes/{NODE}")))
            .filter_map(|r| {
                r.body.as_ref()?["metadata"]["labels"]["nvidia.com/mig.config.state"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    fn events(&self) -> Vec<(String, String, String)> {
        self.api
            .list("events.k8s.io/v1", "Event")
            .iter()
            .filter(|e| e["regarding"]["kind"] == "Node" && e["regarding"]["name"] == NODE)
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("").to_string(),
                    e["reason"].as_str().unwrap_or("").to_string(),
                    e["note"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    async fn stop(self) {
        self.shutdown.send(true).unwrap();
        self.task.await.unwrap();
    }
}

async fn start(b: SimBackend, labels: Value, config_file: bool, reboot: Option<Vec<String>>) -> Env {
    let api = FakeApiServer::start().await.unwrap();
    api.create(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": labels}}))
        .unwrap();
    let kubelet = kubelet();
    let dir = TempDir::new("agent");
    let cfg = AgentConfig {
        node: NODE.into(),
        config_file: config_file.then(|| repo("configs/mig-parted/config.yaml")),
        pod_resources_socket: kubelet.dir.join("kubelet.sock"),
        pod_resources_timeout: Duration::from_secs(5),
        dra_driver: "gpu.nvidia.com".into(),
        layout_file: Some(dir.join("railyard-mig-layout")),
        retry_interval: Duration::from_millis(50),
        resync_interval: Duration::from_millis(200),
        max_backoff: Duration::from_millis(400),
        reboot_command: reboot,
    };
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let (health_tx, health) = watch::channel(Health::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let agent = Agent::new(cfg, Arc::new(b), api.client().unwrap(), metrics, health_tx);
    let task = tokio::spawn(agent.run(shutdown_rx));
    Env {
        api,
        kubelet,
        dir,
        shutdown,
        registry: Arc::new(registry),
        health,
        task,
    }
}

async fn get(app: axum::Router, path: &str) -> (u16, String) {
    let resp = app
        .oneshot(
            ::http::Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_change_applies_the_layout_pending_then_success() {
    let b = sim("dgx-h100-mig");
    let env = start(b.clone(), json!({"nvidia.com/mig.config": "all-1g.10gb"}), true, None).await;
    env.wait_state("success").await;
    for gpu in 0..8 {
        assert_eq!(layout(&b, gpu).await.len(), 7, "GPU {gpu}");
    }
    assert_eq!(env.written_states(), ["pending", "success"]);
    assert_eq!(env.reason(), None, "no reason on success");
    let events = env.events();
    assert!(
        events.iter().any(|(t, r, n)| t == "Normal"
            && r == "MigConfigApplied"
            && n.starts_with("applied config all-1g.10gb: created ")
            && n.ends_with("; read back")),
        "{events:?}"
    );
    let notified = std::fs::read_to_string(env.dir.join("railyard-mig-layout")).unwrap();
    assert!(notified.contains(" gpus=0,1,2,3,5,6,7\n"), "{notified}");

    // Relabel: a new run, again pending then success.
    env.label("nvidia.com/mig.config", "all-3g.40gb");
    let deadline = tokio::time::Instant::now() + T;
    while env.written_states().len() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", env.written_states());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.wait_state("success").await;
    assert_eq!(env.written_states(), ["pending", "success", "pending", "success"]);
    assert_eq!(
        layout(&b, 3).await,
        [("3g.40gb".to_string(), 0), ("3g.40gb".to_string(), 4)]
    );

    // /healthz and /metrics.
    let app = http::app(env.registry.clone(), env.health.clone());
    assert_eq!(get(app.clone(), "/healthz").await, (200, "ok".to_string()));
    let (code, text) = get(app, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        text.contains("railyard_mig_manager_reconfigurations_total{outcome=\"success\"} 2"),
        "{text}"
    );
    assert!(text.contains("railyard_mig_manager_instances_created_total"), "{text}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_target_stays_pending_with_the_reason_and_completes_by_itself() {
    let b = sim("dgx-h100-mig");
    let busy = mig_uuid(&b, 5, 3).await;
    // The generated names (no config file).
    let env = start(b.clone(), json!({}), false, None).await;
    env.kubelet.server.handle().add_devices(
        "default",
        "train-0",
        "main",
        "nvidia.com/mig-1g.10gb",
        std::slice::from_ref(&busy),
    );
    env.label("nvidia.com/mig.config", "all-7g.80gb");
    env.wait_state("pending").await;
    let deadline = tokio::time::Instant::now() + T;
    while !env.reason().is_some_and(|r| r.starts_with("waiting:")) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", env.reason());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reason = env.reason().unwrap();
    assert!(
        reason.contains("GPU 5 instance 1g.10gb@3 in use by default/train-0"),
        "{reason}"
    );
    // Every other GPU went ahead; GPU 5 keeps the busy instance.
    assert_eq!(layout(&b, 0).await, [("7g.80gb".to_string(), 0)]);
    assert_eq!(mig_uuid(&b, 5, 3).await, busy);
    assert!(env.events().iter().any(|(_, r, _)| r == "MigConfigWaiting"));

    // The pod finishes; no label change needed.
    env.kubelet.server.handle().remove_pod("default", "train-0");
    env.wait_state("success").await;
    assert_eq!(layout(&b, 5).await, [("7g.80gb".to_string(), 0)]);
    assert_eq!(env.reason(), None);
    assert!(!env.written_states().contains(&"failed".to_string()));
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_fails_with_the_label_and_value_named() {
    let env = start(
        sim("dgx-h100-mig"),
        json!({"nvidia.com/mig.config": "all-9g.1tb"}),
        true,
        None,
    )
    .await;
    env.wait_state("failed").await;
    let reason = env.reason().unwrap();
    assert!(
        reason.starts_with("desired layout: label nvidia.com/mig.config=\"all-9g.1tb\": mig-parted config: mig-configs: invalid value \"all-9g.1tb\": no such config; known: "),
        "{reason}"
    );
    assert!(
        env.events()
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "MigConfigFailed")
    );
    // Fixing the label recovers without a restart.
    env.label("nvidia.com/mig.config", "all-disabled");
    env.wait_state("success").await;
    env.stop().await;
}

/// Ampere in a VM that refuses the GPU reset: `rebooting` once, with the
/// configured command; after the reboot (state still `rebooting`) a mode
/// that is still wrong is `failed`, not another reboot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ampere_mode_change_reboots_once_and_a_reboot_loop_is_refused() {
    let b = sim("dgx-a100");
    b.refuse_gpu_reset(0, true);
    let marks = TempDir::new("reboot");
    let log = marks.join("reboots");
    let cmd = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!("echo reboot >> {}", log.display()),
    ];
    let env = start(
        b.clone(),
        json!({"nvidia.com/mig.config": "all-1g.5gb"}),
        true,
        Some(cmd.clone()),
    )
    .await;
    env.wait_state("rebooting").await;
    let deadline = tokio::time::Instant::now() + T;
    while std::fs::read_to_string(&log).unwrap_or_default().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the reboot command never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let node = env.node();
    env.stop().await;

    // "After the reboot": a new agent on a Node still labelled rebooting,
    // the mode still pending.
    let env = start(b.clone(), node["metadata"]["labels"].clone(), true, Some(cmd)).await;
    env.wait_state("failed").await;
    let reason = env.reason().unwrap();
    assert!(
        reason.contains("still wrong after a reboot, not rebooting again"),
        "{reason}"
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "reboot\n", "rebooted once");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reboot_command_an_ampere_reset_is_failed_with_what_to_do() {
    let b = sim("dgx-a100");
    b.refuse_gpu_reset(0, true);
    let env = start(b, json!({"nvidia.com/mig.config": "all-1g.5gb"}), true, None).await;
    env.wait_state("failed").await;
    let reason = env.reason().unwrap();
    assert!(
        reason.contains("GPU 0: MIG mode change to enabled pending a GPU reset or reboot"),
        "{reason}"
    );
    assert!(
        reason.ends_with("reboot the node, or run the manager with --reboot-command"),
        "{reason}"
    );
    env.stop().await;
}
