//! The watchdog loop a node agent runs: every interval, read GPU processes
//! from the backend, the allocations from PodResources and the container
//! names from CRI, build a snapshot, apply the [`Enforcer`], send its
//! signals, and report every decision as a log line, a pod Event and
//! metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_gpu::GpuBackend;
use tokio::sync::watch;

use crate::cri::CriResolver;
use crate::devices::NodeView;
use crate::events::{EventRecorder, PodEvent, REASON_OVER_SHARE, REASON_SIGNALLED};
use crate::metrics::{WatchdogMetrics, labels};
use crate::podresources::{PodResourcesClient, container_devices};
use crate::policy::{Action, ContainerKey, Enforcer, Mode, Owner, PolicyConfig, Report, Skipped, Usage};
use crate::procfs::ProcFs;
use crate::scan::{AttributionCache, ContainerDevices, GpuProcessInfo, build_snapshot, execute};
use crate::signal::{Sig, SignalOutcome};

#[derive(Debug, Clone)]
pub struct WatchdogConfig {
    pub policy: PolicyConfig,
    /// Between scans.
    pub interval: Duration,
    /// Kubelet's PodResources socket.
    pub pod_resources_socket: PathBuf,
    /// The runtime's CRI socket; `None`: containerd's, else CRI-O's.
    pub cri_socket: Option<PathBuf>,
    /// `/proc`, or a test's stand-in.
    pub proc_root: PathBuf,
    /// Limit on each call to kubelet, the runtime and the GPU backend.
    pub call_timeout: Duration,
    /// Least time between two CRI listings caused by unknown containers.
    pub cri_min_refresh: Duration,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            policy: PolicyConfig::default(),
            interval: Duration::from_secs(1),
            pod_resources_socket: PathBuf::from(railyard_kubelet_api::podresources::v1::SOCKET_PATH),
            cri_socket: None,
            proc_root: PathBuf::from("/proc"),
            call_timeout: Duration::from_secs(5),
            cri_min_refresh: Duration::from_secs(2),
        }
    }
}

/// What one scan did, for callers and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// `Some` when the scan acted on nothing for this reason.
    pub skipped: Option<&'static str>,
    pub report: Report,
    pub signals: Vec<(Action, SignalOutcome)>,
}

/// The watchdog's state between scans.
#[derive(Debug)]
pub struct Watchdog {
    cfg: WatchdogConfig,
    backend: Arc<dyn GpuBackend>,
    view: watch::Receiver<Arc<NodeView>>,
    events: Arc<dyn EventRecorder>,
    metrics: WatchdogMetrics,
    procfs: ProcFs,
    pod_resources: PodResourcesClient,
    resolver: CriResolver,
    enforcer: Enforcer,
    cache: AttributionCache,
    started: Instant,
    /// (container, device) over their share in the last scan.
    over: BTreeSet<(ContainerKey, String)>,
    /// Last reason a scan was skipped, and last source error, logged once each.
    last_skip: Option<&'static str>,
    last_error: BTreeMap<&'static str, String>,
}

fn skip_word(s: Skipped) -> &'static str {
    match s {
        Skipped::ModeOff => "mode_off",
        Skipped::GpuDataMissing => "gpu_data_missing",
        Skipped::GpuDataStale => "gpu_data_stale",
        Skipped::PodResourcesUnavailable => "pod_resources_unavailable",
    }
}

fn outcome_word(o: &SignalOutcome) -> &'static str {
    match o {
        SignalOutcome::Sent => "sent",
        SignalOutcome::Gone => "gone",
        SignalOutcome::PidReused { .. } => "pid_reused",
        SignalOutcome::Failed(_) => "failed",
    }
}

fn mode_word(m: Mode) -> &'static str {
    match m {
        Mode::Enforce => "enforce",
        Mode::Warn => "warn",
        Mode::Off => "off",
    }
}

fn usage_labels(u: &Usage) -> crate::metrics::Labels {
    labels(&[
        ("namespace", &u.key.namespace),
        ("pod", &u.key.pod),
        ("container", &u.key.container),
        ("device", &u.device),
    ])
}

impl Watchdog {
    /// `view` carries the shares and devices to enforce against; the loop in
    /// [`Watchdog::run`] ends when its sender is dropped.
    pub fn new(
        cfg: WatchdogConfig,
        backend: Arc<dyn GpuBackend>,
        view: watch::Receiver<Arc<NodeView>>,
        events: Arc<dyn EventRecorder>,
        metrics: WatchdogMetrics,
    ) -> Watchdog {
        Watchdog {
            procfs: ProcFs::new(&cfg.proc_root),
            pod_resources: PodResourcesClient::new(&cfg.pod_resources_socket, cfg.call_timeout),
            resolver: CriResolver::new(cfg.cri_socket.clone(), cfg.call_timeout, cfg.cri_min_refresh),
            enforcer: Enforcer::new(cfg.policy),
            cache: AttributionCache::default(),
            started: Instant::now(),
            over: BTreeSet::new(),
            last_skip: None,
            last_error: BTreeMap::new(),
            cfg,
            backend,
            view,
            events,
            metrics,
        }
    }

    /// Scans every interval until the view's sender is dropped.
    pub async fn run(mut self) {
        tracing::info!(
            mode = mode_word(self.cfg.policy.mode),
            grace = ?self.cfg.policy.grace,
            kill_grace = ?self.cfg.policy.kill_grace,
            interval = ?self.cfg.interval,
            pod_resources = %self.cfg.pod_resources_socket.display(),
            cri = %self.resolver.socket().display(),
            proc_root = %self.cfg.proc_root.display(),
            "GPU memory watchdog started"
        );
        let mut tick = tokio::time::interval(self.cfg.interval.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => { self.scan().await; }
                changed = self.view.changed() => if changed.is_err() { break },
            }
        }
        tracing::info!("GPU memory watchdog stopped");
    }

    fn source_error(&mut self, source: &'static str, error: Option<String>) {
        match error {
            Some(e) => {
                if self.last_error.get(source) != Some(&e) {
                    tracing::warn!(source, error = %e, "watchdog input unavailable");
                    self.last_error.insert(source, e);
                }
            }
            None => {
                if self.last_error.remove(source).is_some() {
                    tracing::info!(source, "watchdog input available again");
                }
            }
        }
    }

    /// GPU processes on every GPU with their device; `None` when no GPU
    /// could be read. A GPU that fails is left out: nothing is enforced on it.
    async fn read_gpus(&mut self, view: &NodeView) -> Option<Vec<GpuProcessInfo>> {
        let gpus = view.devices.gpu_indices();
        let mut out = Vec::new();
        let mut failed = Vec::new();
        for gpu in &gpus {
            match tokio::time::timeout(self.cfg.call_timeout, self.backend.processes(*gpu)).await {
                Ok(Ok(procs)) => out.extend(procs.iter().filter_map(|p| {
                    Some(GpuProcessInfo {
                        pid: p.pid,
                        device: view.devices.device_of(p)?,
                        used_mib: p.used_memory_mib,
                    })
                })),
                Ok(Err(e)) => failed.push(format!("GPU {gpu}: {e}")),
                Err(_) => failed.push(format!("GPU {gpu}: timed out")),
            }
        }
        self.source_error("gpu", (!failed.is_empty()).then(|| failed.join("; ")));
        (failed.len() < gpus.len() || gpus.is_empty()).then_some(out)
    }

    /// One scan.
    pub async fn scan(&mut self) -> ScanSummary {
        let view = self.view.borrow_and_update().clone();
        if view.shares.is_empty() {
            // Nothing shared on this node: nothing to read or enforce.
            self.enforcer = Enforcer::new(self.cfg.policy);
            self.over.clear();
            self.metrics.set_usage(&[]);
            return self.finish_skip("no_shares");
        }
        let read_at = Instant::now();
        let gpu = self.read_gpus(&view).await;
        let pods: Option<Vec<ContainerDevices>> = match self.pod_resources.list().await {
            Ok(resp) => {
                self.source_error("pod_resources", None);
                Some(container_devices(&resp, &view.shares))
            }
            Err(e) => {
                self.source_error("pod_resources", Some(e));
                None
            }
        };
        let build = |s: &mut Self, gpu: Option<Vec<GpuProcessInfo>>| {
            build_snapshot(
                s.started.elapsed(),
                gpu.map(|g| (read_at.elapsed(), g)),
                pods.as_deref(),
                &view.shares,
                &s.procfs,
                &s.resolver,
                &mut s.cache,
            )
        };
        let mut snap = build(self, gpu.clone());
        match self.resolver.refresh_if_missed().await {
            Ok(true) => {
                self.source_error("cri", None);
                snap = build(self, gpu);
            }
            Ok(false) => {}
            Err(e) => self.source_error("cri", Some(e)),
        }
        for owner in ["container", "host", "unattributed"] {
            let n = snap
                .processes
                .iter()
                .filter(|p| match &p.owner {
                    Owner::Container(_) => owner == "container",
                    Owner::Host => owner == "host",
                    Owner::Unattributed => owner == "unattributed",
                })
                .count();
            self.metrics
                .processes
                .get_or_create(&labels(&[("owner", owner)]))
                .set(n as i64);
        }
        let report = self.enforcer.apply(&snap);
        let signals = execute(&report, &self.procfs);
        for (a, o) in &signals {
            if let (Action::Signal { pid, .. }, SignalOutcome::PidReused { .. }) = (a, o) {
                self.cache.forget(*pid);
            }
        }
        self.report(&report, &signals);
        match report.skipped {
            Some(s) => {
                self.over.clear();
                let mut summary = self.finish_skip(skip_word(s));
                summary.report = report;
                summary
            }
            None => {
                self.last_skip_changed(None);
                self.metrics
                    .scans
                    .get_or_create(&labels(&[("result", "enforced")]))
                    .inc();
                ScanSummary {
                    skipped: None,
                    report,
                    signals,
                }
            }
        }
    }

    fn last_skip_changed(&mut self, skip: Option<&'static str>) {
        if skip != self.last_skip {
            match skip {
                Some(s) => tracing::info!(reason = s, "watchdog not enforcing"),
                None => tracing::info!("watchdog enforcing"),
            }
            self.last_skip = skip;
        }
    }

    fn finish_skip(&mut self, word: &'static str) -> ScanSummary {
        self.last_skip_changed(Some(word));
        self.metrics.scans.get_or_create(&labels(&[("result", word)])).inc();
        ScanSummary {
            skipped: Some(word),
            ..ScanSummary::default()
        }
    }

    /// Log lines, Events and metrics for a scan's decisions.
    fn report(&mut self, report: &Report, signals: &[(Action, SignalOutcome)]) {
        let rows: Vec<_> = report
            .usage
            .iter()
            .map(|u| (usage_labels(u), u.usage_mib, u.share_mib))
            .collect();
        // Skipped scans have no trustworthy usage: the series go away
        // rather than show old values.
        self.metrics
            .set_usage(if report.skipped.is_none() { &rows } else { &[] });
        // Episodes starting and ending (the grace period runs from here).
        let over_now: BTreeSet<(ContainerKey, String)> = report
            .usage
            .iter()
            .filter(|u| u.usage_mib > u.share_mib)
            .map(|u| (u.key.clone(), u.device.clone()))
            .collect();
        for u in report.usage.iter().filter(|u| u.usage_mib > u.share_mib) {
            if !self.over.contains(&(u.key.clone(), u.device.clone())) {
                tracing::info!(
                    namespace = %u.key.namespace, pod = %u.key.pod, container = %u.key.container,
                    device = %u.device, usage_mib = u.usage_mib, share_mib = u.share_mib,
                    decision = "grace_started", grace = ?self.cfg.policy.grace,
                    "container over its GPU memory share; grace period started"
                );
            }
        }
        for u in report.usage.iter().filter(|u| u.usage_mib <= u.share_mib) {
            if self.over.contains(&(u.key.clone(), u.device.clone())) {
                tracing::info!(
                    namespace = %u.key.namespace, pod = %u.key.pod, container = %u.key.container,
                    device = %u.device, usage_mib = u.usage_mib, share_mib = u.share_mib,
                    decision = "back_within_share",
                    "container back within its GPU memory share"
                );
            }
        }
        self.over = over_now;

        for a in &report.actions {
            if let Action::Violation {
                usage: u,
                over_for,
                mode,
            } = a
            {
                let mode = mode_word(*mode);
                let then = if mode == "enforce" {
                    "sending SIGTERM to its processes on the device"
                } else {
                    "warn mode: no signal"
                };
                tracing::warn!(
                    namespace = %u.key.namespace, pod = %u.key.pod, container = %u.key.container,
                    device = %u.device, usage_mib = u.usage_mib, share_mib = u.share_mib,
                    over_for = ?over_for, mode, decision = "violation",
                    "container over its GPU memory share for the grace period"
                );
                self.metrics.violations.get_or_create(&labels(&[("mode", mode)])).inc();
                self.events.record(PodEvent {
                    namespace: u.key.namespace.clone(),
                    pod: u.key.pod.clone(),
                    container: u.key.container.clone(),
                    warning: true,
                    reason: REASON_OVER_SHARE,
                    message: format!(
                        "container {} uses {} MiB of GPU memory on {}, over its share of {} MiB for {:.1}s; {then}",
                        u.key.container,
                        u.usage_mib,
                        u.device,
                        u.share_mib,
                        over_for.as_secs_f64()
                    ),
                });
            }
        }
        // One Event per (container, device, signal) for the processes it reached.
        let mut sent: BTreeMap<(ContainerKey, String, &'static str), (Usage, Vec<u32>)> = BTreeMap::new();
        for (a, o) in signals {
            let Action::Signal { usage: u, pid, sig, .. } = a else {
                continue;
            };
            let outcome = outcome_word(o);
            let detail = match o {
                SignalOutcome::PidReused { expected, found } => format!("start time {found}, measured {expected}"),
                SignalOutcome::Failed(e) => e.clone(),
                _ => String::new(),
            };
            tracing::warn!(
                namespace = %u.key.namespace, pod = %u.key.pod, container = %u.key.container,
                device = %u.device, usage_mib = u.usage_mib, share_mib = u.share_mib,
                pid, signal = sig.name(), outcome, detail = %detail, decision = "signal",
                "signal to a process of a container over its GPU memory share"
            );
            self.metrics
                .signals
                .get_or_create(&labels(&[("signal", sig.name()), ("outcome", outcome)]))
                .inc();
            if *o == SignalOutcome::Sent {
                sent.entry((u.key.clone(), u.device.clone(), sig.name()))
                    .or_insert_with(|| (u.clone(), Vec::new()))
                    .1
                    .push(*pid);
            }
        }
        for ((key, device, sig), (u, pids)) in sent {
            let why = if sig == Sig::Kill.name() {
                "still running after SIGTERM"
            } else {
                "over its share for the grace period"
            };
            self.events.record(PodEvent {
                namespace: key.namespace.clone(),
                pod: key.pod.clone(),
                container: key.container.clone(),
                warning: true,
                reason: REASON_SIGNALLED,
                message: format!(
                    "sent {sig} to processes {pids:?} of container {} on {device} ({} MiB used, share {} MiB): {why}",
                    key.container, u.usage_mib, u.share_mib
                ),
            });
        }
    }
}
