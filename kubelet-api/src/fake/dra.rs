//! The fake kubelet's plugin watcher and DRA manager.
//!
//! Kubelet's plugin watcher (`pkg/kubelet/pluginmanager`) watches
//! `plugins_registry/` for sockets, calls the plugin's `Registration`
//! service (`GetInfo`, then `NotifyRegistrationStatus`), and hands DRA
//! plugins to the DRA manager, which calls `NodePrepareResources` /
//! `NodeUnprepareResources` on the endpoint the plugin advertised, over the
//! newest API version both sides support.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::Channel;

use super::kubelet::TempDir;
use crate::dra::health::v1alpha1 as health;
use crate::dra::{v1, v1beta1};
use crate::pluginregistration::v1::registration_client::RegistrationClient;
use crate::pluginregistration::v1::{DRA_PLUGIN, InfoRequest, PluginInfo, RegistrationStatus};
use crate::unix;

/// How often `plugins_registry/` is scanned.
const POLL: Duration = Duration::from_millis(50);
/// An upper bound on each registration call, so a stuck plugin cannot stall
/// the watcher.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A DRA API version kubelet speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DraVersion {
    V1,
    V1beta1,
}

impl DraVersion {
    /// The service name as listed in `PluginInfo.supported_versions`.
    pub fn service_name(self) -> &'static str {
        match self {
            DraVersion::V1 => v1::SERVICE_NAME,
            DraVersion::V1beta1 => v1beta1::SERVICE_NAME,
        }
    }

    /// The newest version in `versions` (v1 over v1beta1), if any.
    pub fn choose(versions: &[String]) -> Option<DraVersion> {
        [DraVersion::V1, DraVersion::V1beta1]
            .into_iter()
            .find(|v| versions.iter().any(|s| s == v.service_name()))
    }
}

/// A registered DRA driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraPlugin {
    pub name: String,
    /// The DRA service socket (`PluginInfo.endpoint`).
    pub endpoint: PathBuf,
    /// The registration socket under `plugins_registry/`.
    pub registry_socket: PathBuf,
    pub supported_versions: Vec<String>,
    /// The version kubelet uses for this plugin.
    pub version: DraVersion,
    /// Successful registrations of this driver since the fake started
    /// (restarts included); this one is the `registrations`-th.
    pub registrations: u32,
}

impl DraPlugin {
    /// Whether the plugin advertised the resource health service.
    pub fn has_health(&self) -> bool {
        self.supported_versions.iter().any(|v| v == health::SERVICE_NAME)
    }
}

/// One registration attempt: `GetInfo` answered, then validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationAttempt {
    /// The registration socket.
    pub socket: PathBuf,
    pub plugin_type: String,
    pub name: String,
    pub endpoint: String,
    pub supported_versions: Vec<String>,
    /// `None` when accepted, else the error sent to the plugin.
    pub error: Option<String>,
}

impl RegistrationAttempt {
    pub fn accepted(&self) -> bool {
        self.error.is_none()
    }
}

/// A claim as kubelet passes it to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ClaimRef {
    pub fn new(namespace: &str, name: &str, uid: &str) -> ClaimRef {
        ClaimRef {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
        }
    }
}

/// A prepared device, the same for v1 and v1beta1 (`share_id` is v1 only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreparedDevice {
    pub request_names: Vec<String>,
    pub pool_name: String,
    pub device_name: String,
    pub cdi_device_ids: Vec<String>,
    pub share_id: Option<String>,
}

/// Which DRA call the fake made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DraMethod {
    NodePrepareResources,
    NodeUnprepareResources,
    NodeWatchResources,
}

/// One DRA call made by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraCall {
    pub driver: String,
    pub method: DraMethod,
    /// The service used (`v1.DRAPlugin`, `v1beta1.DRAPlugin`,
    /// `v1alpha1.DRAResourceHealth`).
    pub version: &'static str,
    pub claim_uids: Vec<String>,
}

/// Per-claim prepare results, keyed by claim uid.
pub type PrepareResults = BTreeMap<String, Result<Vec<PreparedDevice>, String>>;
/// Per-claim unprepare results, keyed by claim uid.
pub type UnprepareResults = BTreeMap<String, Result<(), String>>;

/// A socket file's identity: re-created sockets get a new one.
type SocketId = (u64, u64, i64, i64);

#[derive(Debug, Default)]
struct State {
    plugins: BTreeMap<String, DraPlugin>,
    attempts: Vec<RegistrationAttempt>,
    calls: Vec<DraCall>,
    successes: BTreeMap<String, u32>,
    /// Sockets handled by the watcher since the last (re)start.
    seen: BTreeMap<PathBuf, SocketId>,
    boots: u32,
}

#[derive(Debug)]
struct Shared {
    registry: PathBuf,
    plugins: PathBuf,
    state: watch::Sender<State>,
    /// Held by each scan, so a restart never interleaves with one.
    scan: tokio::sync::Mutex<()>,
}

/// Kubelet's plugin watcher and DRA manager over `<dir>/plugins_registry`
/// and `<dir>/plugins`.
#[derive(Debug)]
pub struct FakeDraKubelet {
    shared: Arc<Shared>,
    watcher: JoinHandle<()>,
    _tmp: Option<TempDir>,
}

/// Kubelet's checks (plugin watcher handler lookup, then the DRA
/// handler's `ValidatePlugin`); the version to use when accepted.
fn validate(info: &PluginInfo) -> Result<DraVersion, String> {
    if info.r#type != DRA_PLUGIN {
        return Err(format!("no handler registered for plugin type: {}", info.r#type));
    }
    if info.name.is_empty() {
        return Err("plugin name is empty".into());
    }
    let endpoint = Path::new(&info.endpoint);
    let is_socket = std::fs::metadata(endpoint).map(|m| m.file_type().is_socket());
    if info.endpoint.is_empty() || !matches!(is_socket, Ok(true)) {
        return Err(format!("endpoint {:?} is not an existing socket", info.endpoint));
    }
    DraVersion::choose(&info.supported_versions).ok_or_else(|| {
        format!(
            "none of the versions supported by the plugin ({:?}) are supported by kubelet ({:?})",
            info.supported_versions,
            [v1::SERVICE_NAME, v1beta1::SERVICE_NAME]
        )
    })
}

/// Every socket under `dir`, recursively, with its metadata.
fn sockets_under(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => sockets_under(&path, out),
            Ok(m) if m.file_type().is_socket() => out.push((path, m)),
            _ => {}
        }
    }
}

/// Every `*.sock` socket under `dir` that the plugin watcher considers (it
/// skips hidden files).
fn find_sockets(dir: &Path) -> Vec<(PathBuf, SocketId)> {
    let mut all = Vec::new();
    sockets_under(dir, &mut all);
    all.into_iter()
        .filter(|(p, _)| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            !name.starts_with('.') && name.ends_with(".sock")
        })
        .map(|(p, m)| (p, (m.dev(), m.ino(), m.mtime(), m.mtime_nsec())))
        .collect()
}

/// Deletes every socket under `dir`, recursively.
fn remove_sockets(dir: &Path) -> io::Result<()> {
    let mut found = Vec::new();
    sockets_under(dir, &mut found);
    for (p, _) in found {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// One pass of the plugin watcher: deregisters removed sockets and
/// registers new or re-created ones.
async fn scan(shared: &Shared) {
    let _guard = shared.scan.lock().await;
    scan_locked(shared).await;
}

/// [`scan`] with the scan lock held.
async fn scan_locked(shared: &Shared) {
    let found = find_sockets(&shared.registry);
    let present: BTreeSet<&PathBuf> = found.iter().map(|(p, _)| p).collect();
    // A removed socket deregisters its plugin, as kubelet does.
    shared.state.send_if_modified(|s| {
        let gone: Vec<PathBuf> = s.seen.keys().filter(|p| !present.contains(p)).cloned().collect();
        for p in &gone {
            s.seen.remove(p);
            s.plugins.retain(|_, plugin| &plugin.registry_socket != p);
        }
        !gone.is_empty()
    });
    for (path, id) in found {
        if shared.state.borrow().seen.get(&path) == Some(&id) {
            continue;
        }
        if register(shared, &path).await {
            shared.state.send_modify(|s| {
                s.seen.insert(path, id);
            });
        }
    }
}

/// Registers the plugin on `socket`. False when it could not be reached
/// (retried on the next scan); true when it answered `GetInfo`.
async fn register(shared: &Shared, socket: &Path) -> bool {
    // A socket not serving yet is retried on the next scan.
    let Ok(channel) = unix::dial(socket).await else {
        return false;
    };
    let mut client = RegistrationClient::new(channel);
    let Ok(Ok(info)) = tokio::time::timeout(CALL_TIMEOUT, client.get_info(InfoRequest {})).await else {
        return false;
    };
    let info = info.into_inner();
    let verdict = validate(&info);
    let error = verdict.as_ref().err().cloned();
    shared.state.send_modify(|s| {
        s.attempts.push(RegistrationAttempt {
            socket: socket.to_path_buf(),
            plugin_type: info.r#type.clone(),
            name: info.name.clone(),
            endpoint: info.endpoint.clone(),
            supported_versions: info.supported_versions.clone(),
            error: error.clone(),
        });
        let Ok(version) = verdict else { return };
        let n = s.successes.entry(info.name.clone()).or_insert(0);
        *n += 1;
        let plugin = DraPlugin {
            name: info.name.clone(),
            endpoint: PathBuf::from(&info.endpoint),
            registry_socket: socket.to_path_buf(),
            supported_versions: info.supported_versions.clone(),
            version,
            registrations: *n,
        };
        s.plugins.insert(info.name.clone(), plugin);
    });
    let status = RegistrationStatus {
        plugin_registered: error.is_none(),
        error: error.unwrap_or_default(),
    };
    let notified = tokio::time::timeout(CALL_TIMEOUT, client.notify_registration_status(status)).await;
    if !matches!(notified, Ok(Ok(_))) {
        tracing::warn!(plugin = %info.name, "fake DRA kubelet: NotifyRegistrationStatus failed");
    }
    true
}

fn missing(uid: &str) -> String {
    format!("plugin did not return a result for claim {uid}")
}

/// One DRA call over the version the plugin registered with: builds the
/// `$req` request from `$claims`, calls `$rpc` and maps each returned claim
/// `$r` to `(value, error)` with `$each`, keyed by claim uid.
macro_rules! dra_call {
    ($version:expr, $ch:expr, $claims:expr, $req:ident, $rpc:ident, |$r:ident| $each:expr) => {
        match $version {
            DraVersion::V1 => dra_call!(@ v1, $ch, $claims, $req, $rpc, |$r| $each),
            DraVersion::V1beta1 => dra_call!(@ v1beta1, $ch, $claims, $req, $rpc, |$r| $each),
        }
    };
    (@ $m:ident, $ch:expr, $claims:expr, $req:ident, $rpc:ident, |$r:ident| $each:expr) => {{
        let claims = $claims
            .iter()
            .map(|c| $m::Claim {
                namespace: c.namespace.clone(),
                uid: c.uid.clone(),
                name: c.name.clone(),
            })
            .collect();
        let resp = $m::dra_plugin_client::DraPluginClient::new($ch)
            .$rpc($m::$req { claims })
            .await?;
        let got: BTreeMap<_, _> = resp.into_inner().claims.into_iter().map(|(uid, $r)| (uid, $each)).collect();
        got
    }};
}

/// `PreparedDevice` from either version's device (`share_id` is v1 only).
macro_rules! prepared_device_from {
    ($t:ty, |$d:ident| $share:expr) => {
        impl From<$t> for PreparedDevice {
            fn from($d: $t) -> PreparedDevice {
                PreparedDevice {
                    share_id: $share,
                    request_names: $d.request_names,
                    pool_name: $d.pool_name,
                    device_name: $d.device_name,
                    cdi_device_ids: $d.cdi_device_ids,
                }
            }
        }
    };
}
prepared_device_from!(v1::Device, |d| d.share_id.clone());
prepared_device_from!(v1beta1::Device, |d| None);

/// Kubelet's reading of a response: per requested claim, its value, its
/// error, or an error when the plugin left it out.
fn per_claim<T>(claims: &[ClaimRef], mut got: BTreeMap<String, (T, String)>) -> BTreeMap<String, Result<T, String>> {
    claims
        .iter()
        .map(|c| {
            let r = match got.remove(&c.uid) {
                None => Err(missing(&c.uid)),
                Some((_, e)) if !e.is_empty() => Err(e),
                Some((v, _)) => Ok(v),
            };
            (c.uid.clone(), r)
        })
        .collect()
}

impl FakeDraKubelet {
    /// A fake in a fresh temp dir.
    pub async fn start() -> io::Result<FakeDraKubelet> {
        let tmp = TempDir::new("railyard-fake-dra")?;
        let mut k = FakeDraKubelet::start_in(tmp.path()).await?;
        k._tmp = Some(tmp);
        Ok(k)
    }

    /// A fake whose kubelet root is `dir` (`plugins_registry/` and
    /// `plugins/` are created in it).
    pub async fn start_in(dir: &Path) -> io::Result<FakeDraKubelet> {
        let registry = dir.join("plugins_registry");
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&registry)?;
        std::fs::create_dir_all(&plugins)?;
        let shared = Arc::new(Shared {
            registry,
            plugins,
            state: watch::channel(State::default()).0,
            scan: tokio::sync::Mutex::new(()),
        });
        let s = shared.clone();
        let watcher = tokio::spawn(async move {
            loop {
                scan(&s).await;
                tokio::time::sleep(POLL).await;
            }
        });
        Ok(FakeDraKubelet {
            shared,
            watcher,
            _tmp: None,
        })
    }

    /// `<dir>/plugins_registry`: where plugins put registration sockets.
    pub fn registry_dir(&self) -> &Path {
        &self.shared.registry
    }

    /// `<dir>/plugins`: where DRA drivers put their service sockets.
    pub fn plugins_dir(&self) -> &Path {
        &self.shared.plugins
    }

    /// How often the kubelet has been (re)started: 1 after `start`.
    pub fn boots(&self) -> u32 {
        self.shared.state.borrow().boots + 1
    }

    /// A kubelet restart: registrations are forgotten and the registry is
    /// scanned again, so every socket still there registers anew.
    pub async fn restart(&self) {
        let _guard = self.shared.scan.lock().await;
        self.forget();
        scan_locked(&self.shared).await;
    }

    /// A restart after the kubelet's data was wiped (a node reboot): every
    /// socket under `plugins_registry/` and `plugins/` is deleted, then the
    /// (empty) registry is scanned. Plugins must re-create their sockets.
    pub async fn restart_wiping_sockets(&self) -> io::Result<()> {
        let _guard = self.shared.scan.lock().await;
        remove_sockets(&self.shared.registry)?;
        remove_sockets(&self.shared.plugins)?;
        self.forget();
        scan_locked(&self.shared).await;
        Ok(())
    }

    fn forget(&self) {
        self.shared.state.send_modify(|s| {
            s.boots += 1;
            s.plugins.clear();
            s.seen.clear();
        });
    }

    /// The registered driver `name`, if any.
    pub fn plugin(&self, name: &str) -> Option<DraPlugin> {
        self.shared.state.borrow().plugins.get(name).cloned()
    }

    /// Every registered driver.
    pub fn plugins(&self) -> Vec<DraPlugin> {
        self.shared.state.borrow().plugins.values().cloned().collect()
    }

    /// Every registration attempt so far, accepted or not.
    pub fn registrations(&self) -> Vec<RegistrationAttempt> {
        self.shared.state.borrow().attempts.clone()
    }

    /// Every DRA call so far.
    pub fn calls(&self) -> Vec<DraCall> {
        self.shared.state.borrow().calls.clone()
    }

    /// Waits up to `timeout` until `f` returns `Some` for the registered
    /// drivers and the registration attempts, re-checking on every change.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&BTreeMap<String, DraPlugin>, &[RegistrationAttempt]) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.shared.state.subscribe();
        let mut out = None;
        let wait = rx.wait_for(|s| {
            out = f(&s.plugins, &s.attempts);
            out.is_some()
        });
        tokio::time::timeout(timeout, wait).await.ok()?.ok()?;
        out
    }

    /// Waits until `driver` is registered by its `n`-th successful
    /// registration (or a later one).
    pub async fn wait_registered(&self, driver: &str, n: u32, timeout: Duration) -> Option<DraPlugin> {
        self.wait_for(timeout, |plugins, _| {
            plugins.get(driver).filter(|p| p.registrations >= n).cloned()
        })
        .await
    }

    /// Waits until at least `n` registration attempts have been made.
    pub async fn wait_attempts(&self, n: usize, timeout: Duration) -> Option<Vec<RegistrationAttempt>> {
        self.wait_for(timeout, |_, attempts| (attempts.len() >= n).then(|| attempts.to_vec()))
            .await
    }

    /// Dials `driver` for `method` and records the call.
    async fn connect(
        &self,
        driver: &str,
        method: DraMethod,
        claims: &[ClaimRef],
    ) -> Result<(DraVersion, Channel), Status> {
        let p = self
            .plugin(driver)
            .ok_or_else(|| Status::failed_precondition(format!("DRA driver {driver} is not registered")))?;
        let version = match method {
            DraMethod::NodeWatchResources if !p.has_health() => {
                let msg = format!("DRA driver {driver} does not offer {}", health::SERVICE_NAME);
                return Err(Status::unimplemented(msg));
            }
            DraMethod::NodeWatchResources => health::SERVICE_NAME,
            _ => p.version.service_name(),
        };
        let ch = unix::dial(&p.endpoint)
            .await
            .map_err(|e| Status::unavailable(format!("connecting to DRA driver {driver}: {e}")))?;
        let claim_uids = claims.iter().map(|c| c.uid.clone()).collect();
        self.shared.state.send_modify(|s| {
            s.calls.push(DraCall {
                driver: driver.into(),
                method,
                version,
                claim_uids,
            })
        });
        Ok((p.version, ch))
    }

    /// `NodePrepareResources` for `claims`, as kubelet's DRA manager calls
    /// it; per claim uid the devices or the error (a claim the plugin did
    /// not answer for is an error).
    pub async fn prepare(&self, driver: &str, claims: &[ClaimRef]) -> Result<PrepareResults, Status> {
        let (version, ch) = self.connect(driver, DraMethod::NodePrepareResources, claims).await?;
        let got = dra_call!(
            version,
            ch,
            claims,
            NodePrepareResourcesRequest,
            node_prepare_resources,
            |r| (r.devices.into_iter().map(PreparedDevice::from).collect(), r.error)
        );
        Ok(per_claim(claims, got))
    }

    /// `NodeUnprepareResources` for `claims`; per claim uid `Ok` or the
    /// error.
    pub async fn unprepare(&self, driver: &str, claims: &[ClaimRef]) -> Result<UnprepareResults, Status> {
        let (version, ch) = self.connect(driver, DraMethod::NodeUnprepareResources, claims).await?;
        let got = dra_call!(
            version,
            ch,
            claims,
            NodeUnprepareResourcesRequest,
            node_unprepare_resources,
            |r| ((), r.error)
        );
        Ok(per_claim(claims, got))
    }

    /// Opens the plugin's `NodeWatchResources` stream, when it advertised
    /// `v1alpha1.DRAResourceHealth` (else `Unimplemented`).
    pub async fn watch_resources(
        &self,
        driver: &str,
    ) -> Result<tonic::Streaming<health::NodeWatchResourcesResponse>, Status> {
        let (_, ch) = self.connect(driver, DraMethod::NodeWatchResources, &[]).await?;
        let resp = health::dra_resource_health_client::DraResourceHealthClient::new(ch)
            .node_watch_resources(health::NodeWatchResourcesRequest {})
            .await?;
        Ok(resp.into_inner())
    }
}

impl Drop for FakeDraKubelet {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}
