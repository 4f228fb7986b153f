//! A PodResources v1 server over state the test sets.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tonic::transport::Server;
use tonic::{Request, Response, Status};

use super::socket_server::SocketServer;
use crate::podresources::v1::pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer};
use crate::podresources::v1::{
    AllocatableResourcesRequest, AllocatableResourcesResponse, ContainerDevices, ContainerResources,
    GetPodResourcesRequest, GetPodResourcesResponse, ListPodResourcesRequest, ListPodResourcesResponse, PodResources,
};

#[derive(Debug, Default)]
struct State {
    pods: Vec<PodResources>,
    allocatable: AllocatableResourcesResponse,
    get_disabled: bool,
    calls: u64,
}

#[derive(Debug, Clone)]
struct Service(Arc<Mutex<State>>);

impl Service {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.calls += 1;
        f(&mut s)
    }
}

#[tonic::async_trait]
impl PodResourcesLister for Service {
    async fn list(&self, _: Request<ListPodResourcesRequest>) -> Result<Response<ListPodResourcesResponse>, Status> {
        Ok(Response::new(ListPodResourcesResponse {
            pod_resources: self.with(|s| s.pods.clone()),
        }))
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<AllocatableResourcesRequest>,
    ) -> Result<Response<AllocatableResourcesResponse>, Status> {
        Ok(Response::new(self.with(|s| s.allocatable.clone())))
    }

    async fn get(&self, r: Request<GetPodResourcesRequest>) -> Result<Response<GetPodResourcesResponse>, Status> {
        let r = r.into_inner();
        self.with(|s| {
            if s.get_disabled {
                return Err(Status::unknown("PodResources API Get method disabled"));
            }
            s.pods
                .iter()
                .find(|p| p.name == r.pod_name && p.namespace == r.pod_namespace)
                .map(|p| {
                    Response::new(GetPodResourcesResponse {
                        pod_resources: Some(p.clone()),
                    })
                })
                .ok_or_else(|| {
                    Status::unknown(format!("pod {} in namespace {} not found", r.pod_name, r.pod_namespace))
                })
        })
    }
}

/// Kubelet's PodResources endpoint on a unix socket.
#[derive(Debug)]
pub struct FakePodResources {
    state: Arc<Mutex<State>>,
    server: SocketServer,
}

impl FakePodResources {
    /// Serves on `path` (e.g. `<tmp>/pod-resources/kubelet.sock`).
    pub fn start(path: &Path) -> io::Result<FakePodResources> {
        let state = Arc::new(Mutex::new(State::default()));
        let router = Server::builder().add_service(PodResourcesListerServer::new(Service(state.clone())));
        let server = SocketServer::start(path, router, "fake PodResources")?;
        Ok(FakePodResources { state, server })
    }

    pub fn path(&self) -> &Path {
        self.server.path()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Active pods, as `List` returns them.
    pub fn set_pods(&self, pods: Vec<PodResources>) {
        self.with(|s| s.pods = pods);
    }

    pub fn set_allocatable(&self, a: AllocatableResourcesResponse) {
        self.with(|s| s.allocatable = a);
    }

    /// `Get` fails as with the `KubeletPodResourcesGet` gate off.
    pub fn disable_get(&self, disabled: bool) {
        self.with(|s| s.get_disabled = disabled);
    }

    /// Calls served so far.
    pub fn calls(&self) -> u64 {
        self.with(|s| s.calls)
    }

    /// A handle on the same state, for the fake kubelet's admissions
    /// ([`super::FakeKubelet::set_pod_resources`]).
    pub fn handle(&self) -> PodResourcesHandle {
        PodResourcesHandle(self.state.clone())
    }
}

/// Edits a [`FakePodResources`]' pods as kubelet's pod manager and device
/// manager would: a pod is listed from the start of its admission, its
/// devices once `Allocate` has answered.
#[derive(Debug, Clone)]
pub struct PodResourcesHandle(Arc<Mutex<State>>);

impl PodResourcesHandle {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Lists `namespace/name` with `container` (no devices yet), if it is
    /// not listed already.
    pub fn add_pod(&self, namespace: &str, name: &str, container: &str) {
        self.with(|s| {
            let pod = match s
                .pods
                .iter_mut()
                .position(|p| p.name == name && p.namespace == namespace)
            {
                Some(i) => &mut s.pods[i],
                None => {
                    s.pods.push(PodResources {
                        name: name.into(),
                        namespace: namespace.into(),
                        ..PodResources::default()
                    });
                    let Some(p) = s.pods.last_mut() else { return };
                    p
                }
            };
            if !pod.containers.iter().any(|c| c.name == container) {
                pod.containers.push(ContainerResources {
                    name: container.into(),
                    ..ContainerResources::default()
                });
            }
        });
    }

    /// Adds `ids` of `resource` to the pod's container (listing both first).
    pub fn add_devices(&self, namespace: &str, name: &str, container: &str, resource: &str, ids: &[String]) {
        self.add_pod(namespace, name, container);
        self.with(|s| {
            let Some(c) = s
                .pods
                .iter_mut()
                .find(|p| p.name == name && p.namespace == namespace)
                .and_then(|p| p.containers.iter_mut().find(|c| c.name == container))
            else {
                return;
            };
            match c.devices.iter_mut().find(|d| d.resource_name == resource) {
                Some(d) => d.device_ids.extend(ids.iter().cloned()),
                None => c.devices.push(ContainerDevices {
                    resource_name: resource.into(),
                    device_ids: ids.to_vec(),
                    topology: None,
                }),
            }
        });
    }

    /// The pod is gone (deleted or finished).
    pub fn remove_pod(&self, namespace: &str, name: &str) {
        self.with(|s| s.pods.retain(|p| !(p.name == name && p.namespace == namespace)));
    }

    /// The pods as `List` returns them.
    pub fn pods(&self) -> Vec<PodResources> {
        self.with(|s| s.pods.clone())
    }
}
