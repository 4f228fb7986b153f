//! A PodResources v1 server over state the test sets.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tonic::transport::Server;
use tonic::{Request, Response, Status};

use super::socket_server::SocketServer;
use crate::podresources::v1::pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer};
use crate::podresources::v1::{
    AllocatableResourcesRequest, AllocatableResourcesResponse, GetPodResourcesRequest, GetPodResourcesResponse,
    ListPodResourcesRequest, ListPodResourcesResponse, PodResources,
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
}
