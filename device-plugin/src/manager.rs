//! The control loop: one task owns every piece of state (config, inventory,
//! health, resource servers) and reacts to ticks (socket checks, config
//! polls with the MIG layout file, see `mig_notify`), reload requests
//! (SIGHUP), backend health events and shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use railyard_core::allocation::ReplicaPolicy;
use railyard_core::config::DevicePluginConfig;
use railyard_core::machine::MachineProfile;
use railyard_core::resources::{AdvertisedResource, advertised_resources};
use railyard_core::topology::NodeTopology;
use railyard_gpu::{GpuBackend, GpuHealth, HealthEventKind, NodeInventory};
use railyard_kubelet_api::deviceplugin::v1beta1::device_plugin_server::DevicePluginServer;
use railyard_kubelet_api::deviceplugin::v1beta1::registration_client::RegistrationClient;
use railyard_kubelet_api::deviceplugin::v1beta1::{HEALTHY, KUBELET_SOCKET_NAME, RegisterRequest, VERSION};
use railyard_kubelet_api::unix;
use railyard_watchdog::events::EventRecorder;
use railyard_watchdog::policy::Mode;
use railyard_watchdog::{NodeView, Watchdog};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{self, ConfigSource, NodeLabels};
use crate::edits::{Settings, cdi_spec, write_cdi_spec};
use crate::metrics::{Metrics, labels};
use crate::mig_notify::LayoutWatch;
use crate::nvcaps;
use crate::options::Options;
use crate::service::{PluginService, Snapshot, options};
use crate::topology::{self, NodeAnnotator};

/// How long a Register call may take.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// Wait before retrying a failed registration.
const REGISTER_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("GPU inventory: {0}")]
    Inventory(railyard_gpu::GpuError),
    #[error("{0}")]
    Config(config::ConfigError),
    #[error("resources under config {config}: {message}")]
    Resources { config: String, message: String },
    #[error("writing the CDI spec: {0}")]
    Cdi(std::io::Error),
}

/// What the plugin is doing, for tests, /healthz and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The config in force (`describe()` of its source).
    pub config: Option<String>,
    /// Resources being served.
    pub resources: Vec<String>,
    /// The last rejected config change and why.
    pub last_error: Option<String>,
    /// Configs applied / rejected so far.
    pub applied: u64,
    pub rejected: u64,
    /// Resources currently registered with kubelet.
    pub registered: BTreeSet<String>,
    /// Kubelet restarts seen.
    pub kubelet_restarts: u64,
    /// The control loop has finished starting.
    pub running: bool,
    /// Reads of the MIG layout file (one per config check while it is
    /// enabled), and the changes among them that re-read the inventory.
    pub mig_layout_checks: u64,
    pub mig_layout_changes: u64,
}

/// Everything the plugin is built from.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    pub options: Options,
    pub backend: Arc<dyn GpuBackend>,
    pub labels: Arc<dyn NodeLabels>,
    pub annotator: Arc<dyn NodeAnnotator>,
    /// Topology source; `None`: derived from the inventory.
    pub machine: Option<MachineProfile>,
    pub metrics: Metrics,
    /// Where the watchdog's pod Events go: the API with `--kube-api`, else
    /// the log.
    pub events: Arc<dyn EventRecorder>,
    /// The extender's decisions from the pod watch (API access on):
    /// `kubepods::start`. `None`: the plugin's own rule, nothing written back.
    pub decisions: Option<Arc<crate::follow::Follower>>,
}

/// Talks to a running plugin.
#[derive(Debug, Clone)]
pub struct PluginHandle {
    reload: mpsc::Sender<()>,
    shutdown: watch::Sender<bool>,
    status: watch::Receiver<Status>,
}

impl PluginHandle {
    /// Re-reads config and inventory now (what SIGHUP does).
    pub async fn reload(&self) {
        let _ = self.reload.send(()).await;
    }

    /// Stops serving and removes the plugin's sockets.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Waits up to `timeout` for a status satisfying `f`.
    pub async fn wait_status(&self, timeout: Duration, mut f: impl FnMut(&Status) -> bool) -> Option<Status> {
        let mut rx = self.status.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|s| f(s))).await {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        }
    }
}

type SockId = (u64, u64, i64, i64);

fn sock_id(path: &Path) -> Option<SockId> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

struct ResourceServer {
    name: String,
    socket_name: String,
    path: PathBuf,
    snapshot: watch::Sender<Arc<Snapshot>>,
    stopping: watch::Sender<bool>,
    task: JoinHandle<()>,
    sock: Option<SockId>,
    /// The kubelet socket this resource is registered with.
    registered_with: Option<SockId>,
    retry_at: Instant,
}

impl ResourceServer {
    fn stop(&mut self) {
        let _ = self.stopping.send(true);
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        // Give in-flight calls a moment, then make sure the server is gone.
        tokio::spawn(async move {
            let mut task = task;
            if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
                task.abort();
            }
        });
        if self.sock.is_some() && sock_id(&self.path) == self.sock {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

struct Manager {
    cfg: PluginConfig,
    dir: PathBuf,
    kubelet_sock: PathBuf,
    inventory: NodeInventory,
    topology: Option<Arc<NodeTopology>>,
    /// By GPU index; a GPU not in it is healthy.
    health: BTreeMap<u32, GpuHealth>,
    source: Option<ConfigSource>,
    rejected_source: Option<ConfigSource>,
    resources: Vec<AdvertisedResource>,
    settings: Arc<Settings>,
    servers: BTreeMap<String, ResourceServer>,
    kubelet_id: Option<SockId>,
    /// The last kubelet socket that existed.
    kubelet_seen: Option<SockId>,
    status: watch::Sender<Status>,
    /// Shares and devices for the watchdog; dropping it stops the watchdog.
    watchdog_view: watch::Sender<Arc<NodeView>>,
    /// Keeps the topology annotation written (`--publish-topology`).
    publisher: Option<topology::Publisher>,
    /// MIG cap problems already logged, so each is logged once, not at every
    /// config check.
    caps_logged: BTreeSet<String>,
    /// The MIG manager's layout notify file (`--mig-layout-file`).
    layout: Option<LayoutWatch>,
}

/// Starts the plugin: enumerates GPUs, loads the config (an invalid one at
/// start is an error), starts one server per resource and registers them,
/// then runs the control loop in a task. `signals`: also reload on SIGHUP
/// and stop on SIGTERM / SIGINT.
pub async fn spawn(cfg: PluginConfig, signals: bool) -> Result<(PluginHandle, JoinHandle<()>), StartError> {
    let dir = cfg.options.device_plugin_dir.clone();
    // Read before the inventory, so a layout change made while starting is
    // either in the inventory or notified at the first config check.
    let layout = cfg.options.mig_layout_path().map(|p| {
        tracing::info!(path = %p.display(), "watching the MIG layout file");
        LayoutWatch::new(p)
    });
    let mut health = cfg.backend.subscribe_health();
    let inventory = cfg.backend.inventory().await.map_err(StartError::Inventory)?;
    let profile = match &cfg.machine {
        Some(p) => p.clone(),
        None => topology::profile_from_inventory(cfg.options.node_name.as_deref().unwrap_or("node"), &inventory),
    };
    let topology = topology::build(&profile).map(Arc::new);
    let mut publisher = None;
    if cfg.options.publish_topology {
        match topology::annotation_value(&profile) {
            Ok(v) => publisher = Some(topology::Publisher::start(cfg.annotator.clone(), v).await),
            Err(e) => tracing::warn!(error = %e, "encoding the topology annotation failed"),
        }
    }
    let gpu_health = match cfg.backend.health().await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "reading GPU health failed; assuming healthy until events say otherwise");
            BTreeMap::new()
        }
    };
    let (status, status_rx) = watch::channel(Status::default());
    let (watchdog_view, view_rx) = watch::channel(Arc::new(NodeView::default()));
    let mut m = Manager {
        publisher,
        watchdog_view,
        kubelet_sock: dir.join(KUBELET_SOCKET_NAME),
        dir,
        inventory,
        topology,
        health: gpu_health,
        source: None,
        rejected_source: None,
        resources: Vec::new(),
        settings: Arc::new(Settings::new(&DevicePluginConfig::default(), "", BTreeMap::new())),
        servers: BTreeMap::new(),
        kubelet_id: None,
        kubelet_seen: None,
        status,
        cfg,
        caps_logged: BTreeSet::new(),
        layout,
    };
    let source = config::select(&m.cfg.options, m.cfg.labels.as_ref()).map_err(StartError::Config)?;
    let config = config::load(&source, &m.cfg.options).map_err(StartError::Config)?;
    m.apply(source, &config)?;
    m.check_sockets().await;
    m.status.send_modify(|s| s.running = true);
    let wd = m.cfg.options.watchdog();
    if wd.policy.mode == Mode::Off {
        tracing::info!("GPU memory watchdog off (--watchdog-mode off)");
    } else {
        let watchdog = Watchdog::new(
            wd,
            m.cfg.backend.clone(),
            view_rx,
            m.cfg.events.clone(),
            m.cfg.metrics.watchdog.clone(),
        );
        tokio::spawn(watchdog.run());
    }

    let (reload_tx, mut reload_rx) = mpsc::channel::<()>(4);
    let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
    let handle = PluginHandle {
        reload: reload_tx,
        shutdown: shutdown_tx,
        status: status_rx,
    };
    let task = tokio::spawn(async move {
        let mut hup = None;
        let mut term = None;
        if signals {
            use tokio::signal::unix::{SignalKind, signal};
            hup = signal(SignalKind::hangup()).ok();
            term = signal(SignalKind::terminate()).ok();
        }
        let mut socket_tick = tokio::time::interval(Duration::from_millis(m.cfg.options.socket_poll_ms.max(10)));
        socket_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut config_tick = tokio::time::interval(Duration::from_millis(m.cfg.options.config_poll_ms.max(10)));
        config_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut health_open = true;
        // Node label changes seen by a watching `NodeLabels` (API access):
        // checked at once rather than at the next poll.
        let mut label_changes = m.cfg.labels.changes();
        loop {
            tokio::select! {
                _ = socket_tick.tick() => m.check_sockets().await,
                _ = config_tick.tick() => m.config_tick().await,
                r = async { match label_changes.as_mut() { Some(rx) => rx.changed().await, None => std::future::pending().await } } => match r {
                    Ok(()) => {
                        tracing::debug!("node labels changed; checking the config");
                        m.check_config(false).await;
                    }
                    Err(_) => label_changes = None,
                },
                Some(()) = reload_rx.recv() => m.check_config(true).await,
                Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading config and inventory");
                    m.check_config(true).await;
                }
                ev = health.recv(), if health_open => match ev {
                    Ok(e) => m.on_health(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "health events lagged; re-reading GPU health");
                        m.resync_health().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => health_open = false,
                },
                _ = async { let _ = shutdown_rx.wait_for(|s| *s).await; } => break,
                Some(_) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => break,
                _ = tokio::signal::ctrl_c(), if signals => break,
            }
        }
        m.shutdown();
    });
    Ok((handle, task))
}

impl Manager {
    fn minors(&self) -> BTreeMap<u32, u32> {
        self.inventory.gpus.iter().map(|g| (g.index, g.minor)).collect()
    }

    /// The nvidia-caps minors of the advertised MIG devices, read at every
    /// apply: a MIG re-layout (SIGHUP) brings new instances and new minors.
    /// Whatever is missing is logged once and leaves the device with only its
    /// parent's node, as before; it never fails the apply.
    fn mig_caps(&mut self, resources: &[AdvertisedResource]) -> BTreeMap<String, [u32; 2]> {
        let proc_root = self.cfg.options.proc_root.clone();
        let path = nvcaps::minors_path(&proc_root);
        let (caps, problems) = nvcaps::device_caps(
            &nvcaps::mig_placements(&self.inventory),
            resources.iter().flat_map(|r| &r.devices).map(|d| d.device.id.as_str()),
            || nvcaps::MigMinors::read(&proc_root),
            &path,
        );
        if problems.is_empty() {
            // A problem that comes back later is logged again.
            self.caps_logged.clear();
        }
        for p in problems {
            if self.caps_logged.insert(p.clone()) {
                tracing::warn!(problem = %p, "MIG device without its nvidia-caps device nodes");
            }
        }
        caps
    }

    /// Computes resources for `config` over the current inventory and
    /// serves them; on error nothing changes.
    fn apply(&mut self, source: ConfigSource, config: &DevicePluginConfig) -> Result<(), StartError> {
        let name = source.describe();
        let resources =
            advertised_resources(&self.inventory.gpu_inventory(), config).map_err(|e| StartError::Resources {
                config: name.clone(),
                message: e.to_string(),
            })?;
        let settings = Arc::new(
            Settings::new(config, &self.cfg.options.cdi_kind, self.minors()).with_mig_caps(self.mig_caps(&resources)),
        );
        if settings.uses_cdi() {
            let path =
                write_cdi_spec(&self.cfg.options.cdi_dir, &cdi_spec(&settings, &resources)).map_err(StartError::Cdi)?;
            tracing::info!(path = %path.display(), "CDI spec written");
        }
        if let Some(f) = &self.cfg.decisions {
            f.set_resources(
                &resources,
                self.inventory.gpus.iter().map(|g| (g.uuid.clone(), g.index)),
            );
        }
        self.resources = resources;
        self.settings = settings;
        self.source = Some(source);
        self.watchdog_view
            .send_replace(Arc::new(NodeView::new(&self.inventory, &self.resources)));
        self.rejected_source = None;
        // Stop servers of resources that went away.
        let keep: BTreeSet<String> = self.resources.iter().map(|r| r.name.clone()).collect();
        let gone: Vec<String> = self.servers.keys().filter(|k| !keep.contains(*k)).cloned().collect();
        for g in gone {
            if let Some(mut s) = self.servers.remove(&g) {
                tracing::info!(resource = %g, "resource no longer advertised; stopping its server");
                s.stop();
            }
        }
        for r in self.resources.clone() {
            let snap = Arc::new(self.snapshot(&r));
            match self.servers.get(&r.name) {
                Some(s) => {
                    s.snapshot.send_replace(snap);
                }
                None => match self.start_server(&r.name, watch::channel(snap).0) {
                    Ok(s) => {
                        self.servers.insert(r.name.clone(), s);
                    }
                    Err(e) => tracing::error!(resource = %r.name, error = %e, "starting the resource server failed"),
                },
            }
        }
        self.update_device_metrics();
        tracing::info!(config = %name, resources = ?keep, "config applied");
        self.status.send_modify(|s| {
            s.config = Some(name);
            s.resources = keep.into_iter().collect();
            s.applied += 1;
        });
        Ok(())
    }

    fn snapshot(&self, r: &AdvertisedResource) -> Snapshot {
        Snapshot {
            resource: r.clone(),
            unhealthy: self.unhealthy_devices(r),
            settings: self.settings.clone(),
            topology: self.topology.clone(),
            policy: self.policy(),
        }
    }

    /// The devices of `r` (GPU or MIG UUIDs) to report `Unhealthy`: a MIG
    /// device when its GPU or itself is; a whole GPU when anything on it is.
    fn unhealthy_devices(&self, r: &AdvertisedResource) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if self.health.values().all(|h| *h == GpuHealth::Healthy) {
            return out;
        }
        let migs = mig_devices(&self.inventory);
        for d in &r.devices {
            let Some(h) = self.health.get(&d.device.gpu) else {
                continue;
            };
            let unhealthy = match migs.get(d.device.id.as_str()) {
                Some(&(gi, ci)) => h.mig_device_unhealthy(gi, ci),
                None => *h != GpuHealth::Healthy,
            };
            if unhealthy {
                out.insert(d.device.id.clone());
            }
        }
        out
    }

    fn policy(&self) -> ReplicaPolicy {
        self.cfg.options.replica_policy
    }

    fn start_server(
        &self,
        name: &str,
        snapshot: watch::Sender<Arc<Snapshot>>,
    ) -> Result<ResourceServer, unix::UnixError> {
        let socket_name = format!("railyard-{}.sock", name.replace('/', "-"));
        let path = self.dir.join(&socket_name);
        let listener = unix::bind(&path)?;
        let sock = sock_id(&path);
        let (stopping, stop_rx) = watch::channel(false);
        let service = PluginService {
            snapshot: snapshot.subscribe(),
            stopping: stop_rx.clone(),
            metrics: self.cfg.metrics.clone(),
            decisions: self.cfg.decisions.clone(),
        };
        let router = tonic::transport::Server::builder().add_service(DevicePluginServer::new(service));
        let resource = name.to_string();
        let task = tokio::spawn(async move {
            let mut stop_rx = stop_rx;
            let stop = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = unix::serve(router, listener, stop).await {
                tracing::error!(%resource, error = %e, "device plugin server failed");
            }
        });
        tracing::info!(resource = name, socket = %path.display(), "serving");
        Ok(ResourceServer {
            name: name.to_string(),
            socket_name,
            path,
            snapshot,
            stopping,
            task,
            sock,
            registered_with: None,
            retry_at: Instant::now(),
        })
    }

    /// Recreates sockets that disappeared and registers every resource with
    /// the current kubelet socket.
    async fn check_sockets(&mut self) {
        let kubelet = sock_id(&self.kubelet_sock);
        if kubelet != self.kubelet_id {
            // Compared with the last socket seen, so a restart is counted
            // even when a check fell between removal and recreation.
            if let (Some(seen), Some(now)) = (self.kubelet_seen, kubelet)
                && seen != now
            {
                tracing::info!("kubelet.sock was recreated: kubelet restarted");
                self.cfg.metrics.kubelet_restarts.inc();
                self.status.send_modify(|s| s.kubelet_restarts += 1);
            }
            self.kubelet_id = kubelet;
            self.kubelet_seen = kubelet.or(self.kubelet_seen);
        }
        let names: Vec<String> = self.servers.keys().cloned().collect();
        for name in names {
            let Some(s) = self.servers.get(&name) else { continue };
            if sock_id(&s.path) != s.sock {
                tracing::info!(resource = %name, "own socket removed; recreating it");
                let snapshot = s.snapshot.clone();
                let Some(mut old) = self.servers.remove(&name) else {
                    continue;
                };
                old.sock = None; // not ours any more: do not remove whatever is there
                old.stop();
                match self.start_server(&name, snapshot) {
                    Ok(new) => {
                        self.servers.insert(name.clone(), new);
                    }
                    Err(e) => {
                        tracing::error!(resource = %name, error = %e, "recreating the socket failed");
                        continue;
                    }
                }
                self.status.send_modify(|st| {
                    st.registered.remove(&name);
                });
            }
            let Some(kubelet) = kubelet else { continue };
            let Some(s) = self.servers.get_mut(&name) else { continue };
            if s.registered_with == Some(kubelet) || Instant::now() < s.retry_at {
                continue;
            }
            let result = register(&self.kubelet_sock, &s.socket_name, &s.name).await;
            let ok = result.is_ok();
            self.cfg
                .metrics
                .registrations
                .get_or_create(&labels(&[
                    ("resource", &name),
                    ("result", if ok { "ok" } else { "error" }),
                ]))
                .inc();
            match result {
                Ok(()) => {
                    tracing::info!(resource = %name, "registered with kubelet");
                    s.registered_with = Some(kubelet);
                    self.status.send_modify(|st| {
                        st.registered.insert(name.clone());
                    });
                }
                Err(e) => {
                    tracing::warn!(resource = %name, error = %e, "registration failed; retrying");
                    s.retry_at = Instant::now() + REGISTER_RETRY;
                }
            }
        }
    }

    /// A config check: a changed MIG layout file re-reads the inventory and
    /// re-applies the config (as SIGHUP does), else the config is checked for
    /// changes.
    async fn config_tick(&mut self) {
        if self.check_mig_layout() {
            self.check_config(true).await;
        } else {
            self.check_config(false).await;
        }
    }

    /// Reads the MIG layout file; true when it changed (see `mig_notify`).
    fn check_mig_layout(&mut self) -> bool {
        let Some(w) = self.layout.as_mut() else {
            return false;
        };
        let changed = w.poll();
        if changed {
            tracing::info!(path = %w.path().display(), "MIG layout changed; re-reading the GPU inventory");
            self.cfg.metrics.mig_layout_notifications.inc();
        }
        self.status.send_modify(|s| {
            s.mig_layout_checks += 1;
            s.mig_layout_changes += u64::from(changed);
        });
        changed
    }

    /// Re-reads the selected config; applies it when it changed (always
    /// when `force`, re-reading the inventory too). A bad config is
    /// rejected and the running one stays.
    async fn check_config(&mut self, force: bool) {
        let source = match config::select(&self.cfg.options, self.cfg.labels.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                self.reject(None, e.to_string());
                return;
            }
        };
        if !force && (Some(&source) == self.source.as_ref() || Some(&source) == self.rejected_source.as_ref()) {
            return;
        }
        let config = match config::load(&source, &self.cfg.options) {
            Ok(c) => c,
            Err(e) => {
                self.reject(Some(source), e.to_string());
                return;
            }
        };
        match self.cfg.backend.inventory().await {
            Ok(inv) => {
                self.inventory = inv;
                self.republish_topology();
            }
            Err(e) => tracing::warn!(error = %e, "re-reading the GPU inventory failed; keeping the last one"),
        }
        if let Err(e) = self.apply(source.clone(), &config) {
            self.reject(Some(source), e.to_string());
            return;
        }
        self.cfg
            .metrics
            .config_reloads
            .get_or_create(&labels(&[("result", "applied")]))
            .inc();
        self.status.send_modify(|s| s.last_error = None);
    }

    /// With no `--machine` profile the annotation is derived from the
    /// inventory: a re-read may change it (the publisher writes only a
    /// changed value).
    fn republish_topology(&self) {
        let (Some(p), None) = (&self.publisher, &self.cfg.machine) else {
            return;
        };
        let node = self.cfg.options.node_name.as_deref().unwrap_or("node");
        match topology::annotation_value(&topology::profile_from_inventory(node, &self.inventory)) {
            Ok(v) => p.set(v),
            Err(e) => tracing::warn!(error = %e, "encoding the topology annotation failed"),
        }
    }

    fn reject(&mut self, source: Option<ConfigSource>, error: String) {
        if self.status.borrow().last_error.as_deref() == Some(error.as_str()) {
            return; // already reported
        }
        tracing::error!(
            error = %error,
            running = self.source.as_ref().map(|s| s.describe()).unwrap_or_default(),
            "config change rejected; the running config stays"
        );
        self.cfg
            .metrics
            .config_reloads
            .get_or_create(&labels(&[("result", "rejected")]))
            .inc();
        self.rejected_source = source;
        self.status.send_modify(|s| {
            s.last_error = Some(error);
            s.rejected += 1;
        });
    }

    fn on_health(&mut self, e: railyard_gpu::HealthEvent) {
        let h = self.health.entry(e.gpu).or_insert(GpuHealth::Healthy);
        let kind = match (&e.kind, e.mig_device) {
            (HealthEventKind::Unhealthy(reason), None) => {
                tracing::warn!(gpu = e.gpu, uuid = %e.uuid, ?reason, "GPU unhealthy");
                *h = GpuHealth::Unhealthy(*reason);
                "unhealthy"
            }
            (HealthEventKind::Unhealthy(reason), Some((gi, ci))) => {
                tracing::warn!(gpu = e.gpu, uuid = %e.uuid, gi, ci, ?reason, "MIG device unhealthy");
                match h {
                    GpuHealth::Unhealthy(_) => {}
                    GpuHealth::MigDevicesUnhealthy(m) => {
                        m.insert((gi, ci), *reason);
                    }
                    GpuHealth::Healthy => *h = GpuHealth::MigDevicesUnhealthy(BTreeMap::from([((gi, ci), *reason)])),
                }
                "unhealthy"
            }
            // Recovery is per GPU (the driver's recovery action is): the GPU
            // and every MIG device on it.
            (HealthEventKind::Recovered, _) => {
                tracing::info!(gpu = e.gpu, uuid = %e.uuid, "GPU recovered");
                *h = GpuHealth::Healthy;
                "recovered"
            }
        };
        self.cfg
            .metrics
            .health_events
            .get_or_create(&labels(&[("kind", kind)]))
            .inc();
        self.publish_health();
    }

    async fn resync_health(&mut self) {
        if let Ok(h) = self.cfg.backend.health().await {
            self.health = h;
            self.publish_health();
        }
    }

    /// Pushes the new health to every resource whose devices it changes.
    fn publish_health(&mut self) {
        for r in &self.resources {
            let Some(s) = self.servers.get(&r.name) else { continue };
            let snap = self.snapshot(r);
            s.snapshot.send_if_modified(|cur| {
                if cur.devices() == snap.devices() {
                    return false;
                }
                *cur = Arc::new(snap);
                true
            });
        }
        self.update_device_metrics();
    }

    fn update_device_metrics(&self) {
        self.cfg.metrics.devices.clear();
        for r in &self.resources {
            let snap = self.snapshot(r);
            let healthy = snap.devices().iter().filter(|d| d.health == HEALTHY).count() as i64;
            let total = r.devices.len() as i64;
            let m = &self.cfg.metrics.devices;
            m.get_or_create(&labels(&[("resource", &r.name), ("health", "Healthy")]))
                .set(healthy);
            m.get_or_create(&labels(&[("resource", &r.name), ("health", "Unhealthy")]))
                .set(total - healthy);
        }
    }

    fn shutdown(&mut self) {
        for (name, mut s) in std::mem::take(&mut self.servers) {
            tracing::info!(resource = %name, "stopping");
            s.stop();
        }
        self.status.send_modify(|s| {
            s.running = false;
            s.registered.clear();
        });
    }
}

/// Every MIG device of the inventory by MIG UUID: its (GPU instance id,
/// compute instance id) on its GPU.
fn mig_devices(inv: &NodeInventory) -> BTreeMap<&str, (u32, u32)> {
    inv.gpus
        .iter()
        .filter_map(|g| g.mig.as_ref())
        .flat_map(|m| &m.instances)
        .filter_map(|i| Some((i.uuid.as_deref()?, (i.gpu_instance_id, i.compute_instance_id?))))
        .collect()
}

async fn register(kubelet: &Path, endpoint: &str, resource: &str) -> Result<(), String> {
    let call = async {
        let channel = unix::dial(kubelet).await.map_err(|e| e.to_string())?;
        RegistrationClient::new(channel)
            .register(RegisterRequest {
                version: VERSION.into(),
                endpoint: endpoint.into(),
                resource_name: resource.into(),
                options: Some(options()),
            })
            .await
            .map(|_| ())
            .map_err(|s| format!("kubelet refused: {}", s.message()))
    };
    tokio::time::timeout(REGISTER_TIMEOUT, call)
        .await
        .map_err(|_| "Register timed out".to_string())?
}
