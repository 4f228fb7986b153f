//! The node agent: watches its Node, reconciles toward the desired layout,
//! and reports NVIDIA's state label (`nvidia.com/mig.config.state`), a
//! reason annotation and Events on the Node.
//!
//! State per run ([`decide`], pure):
//!
//! | run outcome | state label | next run |
//! |---|---|---|
//! | reached and read back | `success` | resync interval, or a label change |
//! | blocked by busy instances / busy sources unreadable | `pending` (reason says who) | retry interval; completes by itself |
//! | mode change pending a reset, `--reboot-command` set, not just rebooted | `rebooting` | the reboot |
//! | mode still wrong after that reboot, or no reboot configured | `failed` | backoff |
//! | config invalid, backend step failed (rolled back) | `failed` | backoff up to the maximum |
//!
//! `pending` is also written before a run that has steps to take.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use railyard_core::config::MigPartedConfig;
use railyard_gpu::GpuBackend;
use railyard_watchdog::podresources::PodResourcesClient;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::desired::{self, CONFIG_LABEL, LAYOUT_ANNOTATION, STATE_LABEL};
use crate::http::Health;
use crate::kube::{self as kapi, NodeView, NodeWatch};
use crate::metrics::Metrics;
use crate::observe::Observed;
use crate::reconcile::{self, Outcome, PodResources, Prepared, Report};

/// State label values.
pub const PENDING: &str = "pending";
pub const SUCCESS: &str = "success";
pub const FAILED: &str = "failed";
pub const REBOOTING: &str = "rebooting";

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: String,
    /// mig-parted config file (a mounted ConfigMap); `None`: the generated
    /// default names. Re-read at every run, so ConfigMap updates apply.
    pub config_file: Option<PathBuf>,
    pub pod_resources_socket: PathBuf,
    pub pod_resources_timeout: Duration,
    /// DRA driver whose claims on this node's pool hold GPUs.
    pub dra_driver: String,
    /// The device plugin's notification file; `None`: not written.
    pub layout_file: Option<PathBuf>,
    /// Next run after a blocked (pending) one.
    pub retry_interval: Duration,
    /// Next run after a success: re-checks that the layout is still there.
    pub resync_interval: Duration,
    /// Failed runs back off from `retry_interval` doubling up to this.
    pub max_backoff: Duration,
    /// Run when a MIG mode change needs a reboot (Ampere without a GPU
    /// reset); `None`: report `failed` instead.
    pub reboot_command: Option<Vec<String>>,
}

/// What one run leads to: the label, the reason, the Event, when to run next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub state: &'static str,
    pub reason: String,
    /// (warning, Event reason)
    pub event: (bool, &'static str),
    pub reboot: bool,
}

/// The pure part of a run's end: from the outcome to the state.
/// `after_reboot`: this process started with the state `rebooting`.
pub fn decide(source: &str, report: &Report, reboot_configured: bool, after_reboot: bool) -> Decision {
    let d = |state, reason: String, event| Decision {
        state,
        reason,
        event,
        reboot: false,
    };
    match &report.outcome {
        Outcome::Success if report.created + report.destroyed == 0 && report.changed_gpus.is_empty() => {
            d(SUCCESS, String::new(), (false, "MigConfigUnchanged"))
        }
        Outcome::Success => d(SUCCESS, String::new(), (false, "MigConfigApplied")),
        Outcome::Waiting { reason } => d(PENDING, reason.clone(), (false, "MigConfigWaiting")),
        Outcome::ResetRequired { reason, .. } if after_reboot => d(
            FAILED,
            format!("{reason}; the MIG mode is still wrong after a reboot, not rebooting again"),
            (true, "MigConfigFailed"),
        ),
        Outcome::ResetRequired { reason, .. } if reboot_configured => Decision {
            state: REBOOTING,
            reason: format!("{reason}; rebooting the node"),
            event: (false, "MigConfigRebooting"),
            reboot: true,
        },
        Outcome::ResetRequired { reason, .. } => d(
            FAILED,
            format!("{reason}; reboot the node, or run the manager with --reboot-command"),
            (true, "MigConfigFailed"),
        ),
        Outcome::Failed { reason } => d(FAILED, format!("{source}: {reason}"), (true, "MigConfigFailed")),
    }
}

/// The Event's note for a decision.
fn event_note(source: &str, report: &Report, decision: &Decision) -> String {
    match decision.state {
        SUCCESS if decision.event.1 == "MigConfigApplied" => format!(
            "applied {source}: created {} and destroyed {} MIG instance(s) on GPU(s) {:?}; read back",
            report.created, report.destroyed, report.changed_gpus
        ),
        SUCCESS => format!("{source} is already applied"),
        _ => format!("{source}: {}", decision.reason),
    }
}

pub struct Agent {
    pub cfg: AgentConfig,
    pub backend: Arc<dyn GpuBackend>,
    pub client: Client,
    pub metrics: Metrics,
    pub health: watch::Sender<Health>,
    pod_resources: PodResourcesClient,
    /// What was last written: (state, reason).
    published: Option<(String, String)>,
    after_reboot: Option<bool>,
    failures: u32,
    generation: u128,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("cfg", &self.cfg)
            .field("published", &self.published)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl Agent {
    pub fn new(
        cfg: AgentConfig,
        backend: Arc<dyn GpuBackend>,
        client: Client,
        metrics: Metrics,
        health: watch::Sender<Health>,
    ) -> Agent {
        let pod_resources = PodResourcesClient::new(cfg.pod_resources_socket.clone(), cfg.pod_resources_timeout);
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Agent {
            cfg,
            backend,
            client,
            metrics,
            health,
            pod_resources,
            published: None,
            after_reboot: None,
            failures: 0,
            generation,
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let watch = NodeWatch::start(self.client.clone(), &self.cfg.node);
        let mut rx = watch.rx.clone();
        let mut inputs: Option<(Option<String>, Option<String>)> = None;
        let mut deadline = Instant::now();
        loop {
            let view = rx.borrow_and_update().clone();
            if let Some(view) = view {
                let now_inputs = (
                    view.labels.get(CONFIG_LABEL).cloned(),
                    view.annotations.get(LAYOUT_ANNOTATION).cloned(),
                );
                // Our own label writes change the Node too: only a changed
                // label or annotation, or the timer, starts a run.
                if inputs.as_ref() != Some(&now_inputs) || Instant::now() >= deadline {
                    inputs = Some(now_inputs);
                    let wait = self.reconcile_once(&view).await;
                    deadline = Instant::now() + wait;
                }
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        self.health.send_modify(|h| h.running = false);
    }

    /// One run for the Node as seen; returns how long to wait for the next.
    pub async fn reconcile_once(&mut self, view: &NodeView) -> Duration {
        self.health.send_modify(|h| h.running = true);
        let after_reboot = *self
            .after_reboot
            .get_or_insert_with(|| view.labels.get(STATE_LABEL).map(String::as_str) == Some(REBOOTING));
        if self.published.is_none() {
            self.published = view.labels.get(STATE_LABEL).map(|s| {
                (
                    s.clone(),
                    view.annotations
                        .get(desired::REASON_ANNOTATION)
                        .cloned()
                        .unwrap_or_default(),
                )
            });
        }
        let observed = match Observed::read(self.backend.as_ref()).await {
            Ok(o) => o,
            Err(e) => return self.fail("reading the GPUs", &e.to_string(), view).await,
        };
        let config = match &self.cfg.config_file {
            None => None,
            Some(path) => match std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| MigPartedConfig::from_yaml(&t).map_err(|e| e.to_string()))
            {
                Ok(c) => Some(c),
                Err(e) => {
                    return self
                        .fail(&format!("mig-parted config {}", path.display()), &e, view)
                        .await;
                }
            },
        };
        let wanted = match desired::desired(
            &view.labels,
            &view.annotations,
            config.as_ref(),
            &observed.config_gpus(),
        ) {
            Ok(Some(d)) => d,
            Ok(None) => return self.cfg.resync_interval,
            Err(e) => return self.fail("desired layout", &e.to_string(), view).await,
        };
        let started = Instant::now();
        let prepared = {
            let mut pr = PodResources::Kubelet {
                client: &mut self.pod_resources,
                dra_driver: &self.cfg.dra_driver,
                pool: &self.cfg.node,
            };
            reconcile::prepare(self.backend.as_ref(), observed, &wanted.target, &mut pr).await
        };
        let has_steps = prepared.as_ref().is_ok_and(Prepared::has_steps);
        if has_steps {
            // Say `pending` before taking steps, as NVIDIA's manager does.
            let reason = format!("applying {}", wanted.source);
            self.publish(PENDING, &reason, None, view).await;
        }
        let report = match &prepared {
            Ok(p) => {
                let mut pr = PodResources::Kubelet {
                    client: &mut self.pod_resources,
                    dra_driver: &self.cfg.dra_driver,
                    pool: &self.cfg.node,
                };
                reconcile::execute(self.backend.as_ref(), p, &mut pr, &mut |_| {
                    std::ops::ControlFlow::Continue(())
                })
                .await
            }
            Err(report) => report.clone(),
        };
        let decision = decide(&wanted.source, &report, self.cfg.reboot_command.is_some(), after_reboot);
        self.account(&report, &decision, has_steps, started.elapsed());
        if !report.changed_gpus.is_empty() {
            self.notify(&report.changed_gpus);
        }
        let note = event_note(&wanted.source, &report, &decision);
        self.publish(
            decision.state,
            &decision.reason,
            Some((decision.event.0, decision.event.1, note)),
            view,
        )
        .await;
        self.after_reboot = Some(false);
        if decision.reboot {
            self.reboot().await;
        }
        match decision.state {
            SUCCESS => {
                self.failures = 0;
                self.cfg.resync_interval
            }
            PENDING | REBOOTING => {
                self.failures = 0;
                self.cfg.retry_interval
            }
            _ => self.backoff(),
        }
    }

    fn account(&self, report: &Report, decision: &Decision, had_steps: bool, took: Duration) {
        let m = &self.metrics;
        m.instances_created.inc_by(u64::from(report.created));
        m.instances_destroyed.inc_by(u64::from(report.destroyed));
        m.blocking_instances.set(report.blockers.len() as i64);
        let outcome = match decision.state {
            PENDING => "waiting",
            s => s,
        };
        if had_steps || decision.state != SUCCESS {
            m.outcome(outcome);
            m.duration_seconds.observe(took.as_secs_f64());
        }
        if matches!(report.outcome, Outcome::Waiting { .. }) {
            m.blocked_targets.inc();
        }
    }

    async fn fail(&mut self, what: &str, error: &str, view: &NodeView) -> Duration {
        let reason = format!("{what}: {error}");
        self.metrics.outcome("failed");
        self.publish(FAILED, &reason, Some((true, "MigConfigFailed", reason.clone())), view)
            .await;
        self.backoff()
    }

    fn backoff(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32 << self.failures.saturating_sub(1).min(16);
        (self.cfg.retry_interval * factor).min(self.cfg.max_backoff)
    }

    /// Writes the state and reason when they changed, with the Event.
    async fn publish(&mut self, state: &str, reason: &str, event: Option<(bool, &str, String)>, view: &NodeView) {
        let now = (state.to_string(), reason.to_string());
        if self.published.as_ref() == Some(&now) {
            return;
        }
        match kapi::publish_state(&self.client, &self.cfg.node, state, reason).await {
            Ok(()) => {
                self.published = Some(now);
                self.health.send_modify(|h| h.last_error = None);
            }
            Err(e) => {
                tracing::warn!(node = %self.cfg.node, state, error = %e, "writing the MIG config state failed; retrying at the next run");
                self.health
                    .send_modify(|h| h.last_error = Some(format!("writing the Node: {e}")));
            }
        }
        tracing::info!(node = %self.cfg.node, state, reason, "MIG config state");
        if let Some((warning, reason, note)) = event {
            let ev = kapi::node_event(
                &self.cfg.node,
                view.uid.clone(),
                warning,
                reason,
                &note,
                Timestamp::now(),
            );
            if let Err(e) = kapi::create_event(&self.client, &ev).await {
                tracing::warn!(node = %self.cfg.node, error = %e, "writing the Node Event failed");
            }
        }
    }

    fn notify(&mut self, gpus: &[u32]) {
        let Some(path) = &self.cfg.layout_file else { return };
        self.generation += 1;
        if let Err(e) = crate::notify::write_layout_file(path, self.generation, gpus) {
            tracing::warn!(path = %path.display(), error = %e, "writing the MIG layout file failed; the device plugin sees the change at its next reload");
        }
    }

    async fn reboot(&self) {
        let Some(cmd) = self.cfg.reboot_command.as_ref().filter(|c| !c.is_empty()) else {
            return;
        };
        tracing::warn!(command = ?cmd, "rebooting for a MIG mode change");
        match tokio::process::Command::new(&cmd[0]).args(&cmd[1..]).status().await {
            Ok(s) if s.success() => {}
            Ok(s) => tracing::error!(status = %s, "the reboot command failed"),
            Err(e) => tracing::error!(error = %e, "the reboot command could not run"),
        }
    }
}
