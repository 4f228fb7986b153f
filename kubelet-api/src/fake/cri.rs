//! A CRI `RuntimeService` (`ListContainers` only) over containers the test sets.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tonic::transport::Server;
use tonic::{Request, Response, Status};

use super::socket_server::SocketServer;
use crate::cri::runtime::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use crate::cri::runtime::v1::{
    CONTAINER_NAME_LABEL, Container, ContainerMetadata, ContainerState, ListContainersRequest, ListContainersResponse,
    POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL,
};

#[derive(Debug, Default)]
struct State {
    containers: Vec<Container>,
    calls: u64,
    unavailable: bool,
}

#[derive(Debug, Clone)]
struct Service(Arc<Mutex<State>>);

#[tonic::async_trait]
impl RuntimeService for Service {
    async fn list_containers(
        &self,
        r: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let filter = r.into_inner().filter.unwrap_or_default();
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.calls += 1;
        if s.unavailable {
            return Err(Status::unavailable("runtime is not ready"));
        }
        // The filter's fields are ANDed, as the runtimes do.
        let containers = s
            .containers
            .iter()
            .filter(|c| filter.id.is_empty() || c.id == filter.id)
            .filter(|c| filter.pod_sandbox_id.is_empty() || c.pod_sandbox_id == filter.pod_sandbox_id)
            .filter(|c| filter.state.as_ref().is_none_or(|st| st.state == c.state))
            .filter(|c| filter.label_selector.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
            .cloned()
            .collect();
        Ok(Response::new(ListContainersResponse { containers }))
    }
}

/// A container as kubelet creates it: running, with kubelet's labels.
pub fn kube_container(id: &str, namespace: &str, pod: &str, pod_uid: &str, container: &str) -> Container {
    Container {
        id: id.to_string(),
        pod_sandbox_id: format!("sandbox-{pod_uid}"),
        metadata: Some(ContainerMetadata {
            name: container.to_string(),
            attempt: 0,
        }),
        state: ContainerState::ContainerRunning as i32,
        labels: HashMap::from([
            (POD_NAME_LABEL.to_string(), pod.to_string()),
            (POD_NAMESPACE_LABEL.to_string(), namespace.to_string()),
            (POD_UID_LABEL.to_string(), pod_uid.to_string()),
            (CONTAINER_NAME_LABEL.to_string(), container.to_string()),
        ]),
    }
}

/// A container runtime's CRI endpoint on a unix socket.
#[derive(Debug)]
pub struct FakeRuntimeService {
    state: Arc<Mutex<State>>,
    server: SocketServer,
}

impl FakeRuntimeService {
    /// Serves on `path` (e.g. `<tmp>/containerd/containerd.sock`).
    pub fn start(path: &Path) -> io::Result<FakeRuntimeService> {
        let state = Arc::new(Mutex::new(State::default()));
        let router = Server::builder().add_service(RuntimeServiceServer::new(Service(state.clone())));
        let server = SocketServer::start(path, router, "fake CRI")?;
        Ok(FakeRuntimeService { state, server })
    }

    pub fn path(&self) -> &Path {
        self.server.path()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Every container the runtime knows (any state).
    pub fn set_containers(&self, containers: Vec<Container>) {
        self.with(|s| s.containers = containers);
    }

    pub fn add_container(&self, c: Container) {
        self.with(|s| s.containers.push(c));
    }

    /// Answers `UNAVAILABLE` while set.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.with(|s| s.unavailable = unavailable);
    }

    /// `ListContainers` calls served so far.
    pub fn calls(&self) -> u64 {
        self.with(|s| s.calls)
    }
}
