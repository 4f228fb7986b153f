//! The fake kubelet's device manager.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

use super::podresources::PodResourcesHandle;
use crate::deviceplugin::v1beta1::device_plugin_client::DevicePluginClient;
use crate::deviceplugin::v1beta1::registration_server::{Registration, RegistrationServer};
use crate::deviceplugin::v1beta1::{
    AllocateRequest, ContainerAllocateRequest, ContainerAllocateResponse, ContainerPreferredAllocationRequest, Device,
    DevicePluginOptions, Empty, HEALTHY, KUBELET_CHECKPOINT, KUBELET_SOCKET_NAME, PreferredAllocationRequest,
    RegisterRequest, SUPPORTED_VERSIONS,
};
use crate::unix;

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> io::Result<TempDir> {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the fake kubelet knows about one registered resource.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub resource_name: String,
    /// Socket file name, as registered.
    pub endpoint: String,
    pub options: DevicePluginOptions,
    /// The last `ListAndWatch` message's devices.
    pub devices: Vec<Device>,
    /// `ListAndWatch` messages received from this registration.
    pub updates: u64,
    /// Whether the `ListAndWatch` stream is open.
    pub connected: bool,
    /// Registrations accepted for this resource since the kubelet started
    /// (restarts included).
    pub registrations: u32,
    /// Device ids handed to containers and not released.
    pub allocated: BTreeSet<String>,
    generation: u64,
}

impl Plugin {
    /// Healthy device ids, as kubelet counts allocatable.
    pub fn healthy(&self) -> Vec<&str> {
        self.devices
            .iter()
            .filter(|d| d.health == HEALTHY)
            .map(|d| d.id.as_str())
            .collect()
    }
}

#[derive(Debug, Default)]
struct State {
    plugins: BTreeMap<String, Plugin>,
    /// Every `Register` call, accepted or not, with the error if rejected.
    calls: Vec<(RegisterRequest, Option<String>)>,
    /// Kubelet process generation: bumped by [`FakeKubelet::restart`].
    boots: u32,
    next_generation: u64,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    state: watch::Sender<State>,
    holders: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// Where admissions are reported, as kubelet's PodResources API does.
    pod_resources: std::sync::Mutex<Option<PodResourcesHandle>>,
}

/// The container being admitted, for [`FakeKubelet::admit_pod`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub container: String,
}

impl PodRef {
    pub fn new(namespace: &str, name: &str, container: &str) -> PodRef {
        PodRef {
            namespace: namespace.into(),
            name: name.into(),
            container: container.into(),
        }
    }
}

/// A kubelet device manager on `<dir>/kubelet.sock`.
#[derive(Debug)]
pub struct FakeKubelet {
    shared: Arc<Shared>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    _tmp: Option<TempDir>,
}

/// What a simulated pod admission did.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The plugin's preferred ids, when it offers `GetPreferredAllocation`.
    pub preferred: Option<Vec<String>>,
    /// The ids kubelet allocated.
    pub devices: Vec<String>,
    pub response: ContainerAllocateResponse,
}

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("resource {0} is not registered")]
    NotRegistered(String),
    #[error("{resource}: {requested} requested, {available} healthy and free")]
    Insufficient {
        resource: String,
        requested: usize,
        available: usize,
    },
    #[error("dialing the plugin: {0}")]
    Dial(#[from] unix::UnixError),
    #[error("GetPreferredAllocation: {0}")]
    Preferred(Status),
    #[error("Allocate: {0}")]
    Allocate(Status),
    #[error("Allocate returned {0} container responses for 1 container")]
    BadResponse(usize),
}

struct RegistrationService {
    shared: Arc<Shared>,
}

/// Kubelet's checks (`pkg/kubelet/cm/devicemanager/plugin/v1beta1/server.go`):
/// a supported version and an extended resource name.
fn validate(r: &RegisterRequest) -> Result<(), String> {
    if !SUPPORTED_VERSIONS.contains(&r.version.as_str()) {
        return Err(format!(
            "Requested device plugin version {:?} is not supported by kubelet; supported versions: {:?}",
            r.version, SUPPORTED_VERSIONS
        ));
    }
    let name = &r.resource_name;
    let extended = is_extended_resource_name(name);
    if !extended {
        return Err(format!("invalid extended resource name: {name:?}"));
    }
    if r.endpoint.is_empty() || r.endpoint.contains('/') {
        return Err(format!(
            "endpoint {:?} must be a socket file name in the device-plugin dir",
            r.endpoint
        ));
    }
    Ok(())
}

/// Kubelet's `IsExtendedResourceName`: a qualified `domain/name` outside
/// the `kubernetes.io` domains, and not a quota name (`requests.` prefix).
pub fn is_extended_resource_name(name: &str) -> bool {
    match name.split_once('/') {
        Some((domain, rest)) => {
            !domain.is_empty()
                && !rest.is_empty()
                && !rest.contains('/')
                && domain != "kubernetes.io"
                && !domain.ends_with(".kubernetes.io")
                && !name.starts_with("requests.")
        }
        None => false,
    }
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let r = request.into_inner();
        let reject = |msg: String| {
            self.shared
                .state
                .send_modify(|s| s.calls.push((r.clone(), Some(msg.clone()))));
            Err(Status::invalid_argument(msg))
        };
        if let Err(msg) = validate(&r) {
            return reject(msg);
        }
        let path = self.shared.dir.join(&r.endpoint);
        let channel = match unix::dial(&path).await {
            Ok(c) => c,
            Err(e) => return reject(format!("failed to dial device plugin: {e}")),
        };
        let mut generation = 0;
        self.shared.state.send_modify(|s| {
            s.calls.push((r.clone(), None));
            s.next_generation += 1;
            generation = s.next_generation;
            let registrations = s.plugins.get(&r.resource_name).map(|p| p.registrations).unwrap_or(0) + 1;
            let allocated = s
                .plugins
                .get(&r.resource_name)
                .map(|p| p.allocated.clone())
                .unwrap_or_default();
            s.plugins.insert(
                r.resource_name.clone(),
                Plugin {
                    resource_name: r.resource_name.clone(),
                    endpoint: r.endpoint.clone(),
                    options: r.options.unwrap_or_default(),
                    devices: Vec::new(),
                    updates: 0,
                    connected: true,
                    registrations,
                    allocated,
                    generation,
                },
            );
        });
        let holder = tokio::spawn(hold_list_and_watch(
            self.shared.clone(),
            r.resource_name.clone(),
            generation,
            channel,
        ));
        if let Ok(mut h) = self.shared.holders.lock() {
            h.retain(|t| !t.is_finished());
            h.push(holder);
        }
        Ok(Response::new(Empty {}))
    }
}

/// Holds the plugin's `ListAndWatch` stream, as kubelet's endpoint does,
/// recording every device list until the stream ends.
async fn hold_list_and_watch(shared: Arc<Shared>, resource: String, generation: u64, channel: Channel) {
    let mut client = DevicePluginClient::new(channel);
    let stream = client.list_and_watch(Empty {}).await;
    let mut stream = match stream {
        Ok(s) => s.into_inner(),
        Err(e) => {
            tracing::warn!(%resource, error = %e, "fake kubelet: ListAndWatch failed");
            mark_disconnected(&shared, &resource, generation);
            return;
        }
    };
    while let Some(msg) = stream.next().await {
        let Ok(msg) = msg else { break };
        shared.state.send_modify(|s| {
            if let Some(p) = s.plugins.get_mut(&resource).filter(|p| p.generation == generation) {
                p.devices = msg.devices;
                p.updates += 1;
            }
        });
    }
    mark_disconnected(&shared, &resource, generation);
}

fn mark_disconnected(shared: &Shared, resource: &str, generation: u64) {
    shared.state.send_modify(|s| {
        if let Some(p) = s.plugins.get_mut(resource).filter(|p| p.generation == generation) {
            p.connected = false;
        }
    });
}

impl FakeKubelet {
    /// A kubelet in a fresh temp dir.
    pub async fn start() -> io::Result<FakeKubelet> {
        let tmp = TempDir::new("railyard-fake-kubelet")?;
        let mut k = FakeKubelet::start_in(tmp.path()).await?;
        k._tmp = Some(tmp);
        Ok(k)
    }

    /// A kubelet whose device-plugin dir is `dir`.
    pub async fn start_in(dir: &Path) -> io::Result<FakeKubelet> {
        std::fs::create_dir_all(dir)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            state: watch::channel(State::default()).0,
            holders: std::sync::Mutex::new(Vec::new()),
            pod_resources: std::sync::Mutex::new(None),
        });
        let mut k = FakeKubelet {
            shared,
            server: None,
            _tmp: None,
        };
        k.serve()?;
        Ok(k)
    }

    fn serve(&mut self) -> io::Result<()> {
        let listener = unix::bind(&self.socket()).map_err(io::Error::other)?;
        let (tx, rx) = oneshot::channel::<()>();
        let router = Server::builder().add_service(RegistrationServer::new(RegistrationService {
            shared: self.shared.clone(),
        }));
        let task = tokio::spawn(async move {
            if let Err(e) = unix::serve(router, listener, async {
                let _ = rx.await;
            })
            .await
            {
                tracing::warn!(error = %e, "fake kubelet: registration server failed");
            }
        });
        self.server = Some((tx, task));
        Ok(())
    }

    /// The device-plugin dir.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// `<dir>/kubelet.sock`.
    pub fn socket(&self) -> PathBuf {
        self.shared.dir.join(KUBELET_SOCKET_NAME)
    }

    /// How often the kubelet has been (re)started: 1 after `start`.
    pub fn boots(&self) -> u32 {
        self.shared.state.borrow().boots + 1
    }

    /// A restart: the registration server stops, every plugin stream is
    /// dropped, every socket in the directory is removed (the checkpoint
    /// file stays) and a new `kubelet.sock` is served. Plugins must notice
    /// and register again.
    pub async fn restart(&mut self) -> io::Result<()> {
        if let Some((tx, task)) = self.server.take() {
            let _ = tx.send(());
            task.abort();
            let _ = task.await;
        }
        if let Ok(mut h) = self.shared.holders.lock() {
            for t in h.drain(..) {
                t.abort();
            }
        }
        for entry in std::fs::read_dir(&self.shared.dir)? {
            let entry = entry?;
            if entry.file_name() == KUBELET_CHECKPOINT || entry.file_type()?.is_dir() {
                continue;
            }
            std::fs::remove_file(entry.path())?;
        }
        self.shared.state.send_modify(|s| {
            s.boots += 1;
            for p in s.plugins.values_mut() {
                p.connected = false;
                p.generation = 0;
            }
        });
        self.serve()
    }

    /// The registered plugin for `resource`, if any.
    pub fn plugin(&self, resource: &str) -> Option<Plugin> {
        self.shared.state.borrow().plugins.get(resource).cloned()
    }

    /// Every resource registered so far.
    pub fn resources(&self) -> Vec<String> {
        self.shared.state.borrow().plugins.keys().cloned().collect()
    }

    /// Every `Register` call so far with its rejection, if any.
    pub fn register_calls(&self) -> Vec<(RegisterRequest, Option<String>)> {
        self.shared.state.borrow().calls.clone()
    }

    /// Waits up to `timeout` until `f` returns `Some` for the set of
    /// registered plugins, re-checking on every change.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&BTreeMap<String, Plugin>) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.shared.state.subscribe();
        let mut out = None;
        let found = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| {
                out = f(&s.plugins);
                out.is_some()
            }),
        )
        .await;
        match found {
            Ok(Ok(_)) => out,
            _ => None,
        }
    }

    /// Waits until `resource` is registered, connected, and has sent a
    /// device list satisfying `f`.
    pub async fn wait_devices(
        &self,
        resource: &str,
        timeout: Duration,
        mut f: impl FnMut(&[Device]) -> bool,
    ) -> Option<Vec<Device>> {
        self.wait_for(timeout, |plugins| {
            let p = plugins.get(resource)?;
            (p.connected && p.updates > 0 && f(&p.devices)).then(|| p.devices.clone())
        })
        .await
    }

    /// Waits until `resource` has been registered `n` times in all and the
    /// latest registration's stream has delivered a device list.
    pub async fn wait_registrations(&self, resource: &str, n: u32, timeout: Duration) -> Option<Plugin> {
        self.wait_for(timeout, |plugins| {
            let p = plugins.get(resource)?;
            (p.registrations >= n && p.connected && p.updates > 0).then(|| p.clone())
        })
        .await
    }

    /// A client on the plugin's socket for `resource`.
    pub async fn client(&self, resource: &str) -> Result<DevicePluginClient<Channel>, AdmissionError> {
        let p = self
            .plugin(resource)
            .ok_or_else(|| AdmissionError::NotRegistered(resource.to_string()))?;
        let ch = unix::dial(self.shared.dir.join(&p.endpoint)).await?;
        Ok(DevicePluginClient::new(ch))
    }

    /// Reports every [`FakeKubelet::admit_pod`] to a fake PodResources
    /// server, as kubelet's pod manager and device manager feed its
    /// PodResources API: the pod is listed (without devices) from the start
    /// of its admission, and its devices once `Allocate` has answered.
    pub fn set_pod_resources(&self, handle: PodResourcesHandle) {
        if let Ok(mut p) = self.shared.pod_resources.lock() {
            *p = Some(handle);
        }
    }

    fn pod_resources(&self) -> Option<PodResourcesHandle> {
        self.shared.pod_resources.lock().ok().and_then(|p| p.clone())
    }

    /// Admits one container asking for `n` of `resource`, as kubelet's
    /// device manager does: candidates are the healthy devices not yet
    /// allocated; `must_include` (kubelet passes devices it reuses from init
    /// containers) must be among them; the plugin's preferred allocation is
    /// used when it is valid (right size, only free devices, includes
    /// `must_include`), else the first free devices; then `Allocate`. The
    /// devices stay allocated until [`FakeKubelet::release`].
    pub async fn admit(&self, resource: &str, n: usize, must_include: &[&str]) -> Result<Admission, AdmissionError> {
        self.admit_as(None, resource, n, must_include).await
    }

    /// [`FakeKubelet::admit`] for a named pod's container, reported to the
    /// PodResources server set with [`FakeKubelet::set_pod_resources`].
    ///
    /// The devices are reserved when kubelet commits to them, after
    /// `GetPreferredAllocation` and before `Allocate` (kubelet's
    /// `devicesToAllocate` marks them allocated before the `Allocate`
    /// call), and the preference is checked against what is free at that
    /// moment, so admissions run concurrently never share a device.
    pub async fn admit_pod(
        &self,
        pod: &PodRef,
        resource: &str,
        n: usize,
        must_include: &[&str],
    ) -> Result<Admission, AdmissionError> {
        self.admit_as(Some(pod), resource, n, must_include).await
    }

    async fn admit_as(
        &self,
        pod: Option<&PodRef>,
        resource: &str,
        n: usize,
        must_include: &[&str],
    ) -> Result<Admission, AdmissionError> {
        let pr = pod.and(self.pod_resources());
        if let (Some(pr), Some(pod)) = (&pr, pod) {
            pr.add_pod(&pod.namespace, &pod.name, &pod.container);
        }
        let p = self
            .plugin(resource)
            .ok_or_else(|| AdmissionError::NotRegistered(resource.to_string()))?;
        let available: Vec<String> = p
            .healthy()
            .into_iter()
            .filter(|d| !p.allocated.contains(*d))
            .map(str::to_string)
            .collect();
        if available.len() < n {
            return Err(AdmissionError::Insufficient {
                resource: resource.to_string(),
                requested: n,
                available: available.len(),
            });
        }
        let mut client = self.client(resource).await?;
        let must: Vec<String> = must_include.iter().map(|s| s.to_string()).collect();
        let mut preferred = None;
        if p.options.get_preferred_allocation_available {
            let resp = client
                .get_preferred_allocation(PreferredAllocationRequest {
                    container_requests: vec![ContainerPreferredAllocationRequest {
                        available_device_i_ds: available.clone(),
                        must_include_device_i_ds: must.clone(),
                        allocation_size: n as i32,
                    }],
                })
                .await
                .map_err(AdmissionError::Preferred)?
                .into_inner();
            preferred = resp.container_responses.into_iter().next().map(|r| r.device_i_ds);
        }
        // Commit: what is free now (another admission may have taken some).
        let mut devices = Vec::new();
        self.shared.state.send_modify(|s| {
            let Some(p) = s.plugins.get_mut(resource) else { return };
            let free: Vec<String> = available
                .iter()
                .filter(|d| !p.allocated.contains(*d))
                .cloned()
                .collect();
            let valid = |ids: &Vec<String>| {
                let set: BTreeSet<&String> = ids.iter().collect();
                ids.len() == n
                    && set.len() == n
                    && ids.iter().all(|d| free.contains(d))
                    && must.iter().all(|m| set.contains(m))
            };
            devices = match &preferred {
                Some(ids) if valid(ids) => ids.clone(),
                _ => {
                    let mut d: Vec<String> = must.iter().filter(|m| free.contains(m)).cloned().collect();
                    d.extend(free.iter().filter(|a| !must.contains(a)).cloned());
                    d.truncate(n);
                    d
                }
            };
            if devices.len() == n {
                p.allocated.extend(devices.iter().cloned());
            }
        });
        if devices.len() != n {
            return Err(AdmissionError::Insufficient {
                resource: resource.to_string(),
                requested: n,
                available: devices.len(),
            });
        }
        let resp = client
            .allocate(AllocateRequest {
                container_requests: vec![ContainerAllocateRequest {
                    devices_ids: devices.clone(),
                }],
            })
            .await;
        let mut resp = match resp {
            Ok(r) => r.into_inner(),
            Err(e) => {
                self.release(resource, &devices);
                return Err(AdmissionError::Allocate(e));
            }
        };
        if resp.container_responses.len() != 1 {
            self.release(resource, &devices);
            return Err(AdmissionError::BadResponse(resp.container_responses.len()));
        }
        let response = resp.container_responses.remove(0);
        if let (Some(pr), Some(pod)) = (&pr, pod) {
            pr.add_devices(&pod.namespace, &pod.name, &pod.container, resource, &devices);
        }
        Ok(Admission {
            preferred,
            devices,
            response,
        })
    }

    /// Frees devices, as when their pod is deleted.
    pub fn release(&self, resource: &str, ids: &[String]) {
        self.shared.state.send_modify(|s| {
            if let Some(p) = s.plugins.get_mut(resource) {
                for id in ids {
                    p.allocated.remove(id);
                }
            }
        });
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some((tx, task)) = self.server.take() {
            let _ = tx.send(());
            task.abort();
        }
        if let Ok(mut h) = self.shared.holders.lock() {
            for t in h.drain(..) {
                t.abort();
            }
        }
    }
}
