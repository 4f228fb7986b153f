//! CRI container id → (namespace, pod, container), from the labels kubelet
//! puts on every container (`io.kubernetes.pod.{name,namespace,uid}`,
//! `io.kubernetes.container.name`), read with the runtime's
//! `RuntimeService/ListContainers` (PROTOCOLS §9). PodResources names
//! containers by (namespace, pod, container) and the cgroup path gives only
//! the pod UID and container id; these labels join the two.
//!
//! Answers come from a cache of the last `ListContainers`. A lookup that
//! misses is remembered; [`CriResolver::refresh_if_missed`] then lists again
//! (at most once per `min_refresh`), so a new container resolves on the scan
//! it first appears in and a stray id costs one call per `min_refresh`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use railyard_kubelet_api::cri::runtime::v1::runtime_service_client::RuntimeServiceClient;
use railyard_kubelet_api::cri::runtime::v1::{
    CONTAINER_NAME_LABEL, CONTAINERD_SOCKET, CRIO_SOCKET, Container, ListContainersRequest, POD_NAME_LABEL,
    POD_NAMESPACE_LABEL, POD_UID_LABEL,
};
use railyard_kubelet_api::unix;
use tonic::transport::Channel;

use crate::podresources::MAX_MESSAGE_BYTES;
use crate::policy::ContainerKey;
use crate::scan::ContainerResolver;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// Empty when the runtime's labels lack it (then not checked).
    pod_uid: String,
    key: ContainerKey,
}

/// The (pod UID, key) a kubelet-created container's labels give; `None` for
/// containers kubelet did not create.
fn entry(c: &Container) -> Option<Entry> {
    let l = |k: &str| c.labels.get(k).filter(|v| !v.is_empty()).cloned();
    let container = l(CONTAINER_NAME_LABEL).or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))?;
    Some(Entry {
        pod_uid: l(POD_UID_LABEL).unwrap_or_default(),
        key: ContainerKey {
            namespace: l(POD_NAMESPACE_LABEL)?,
            pod: l(POD_NAME_LABEL)?,
            container,
        },
    })
}

/// A [`ContainerResolver`] over the container runtime's CRI socket.
#[derive(Debug)]
pub struct CriResolver {
    /// `None`: containerd's socket, else CRI-O's, whichever exists.
    socket: Option<PathBuf>,
    timeout: Duration,
    min_refresh: Duration,
    by_id: HashMap<String, Entry>,
    misses: Mutex<BTreeSet<String>>,
    last_refresh: Option<Instant>,
    channel: Option<Channel>,
}

impl CriResolver {
    pub fn new(socket: Option<PathBuf>, timeout: Duration, min_refresh: Duration) -> Self {
        CriResolver {
            socket,
            timeout,
            min_refresh,
            by_id: HashMap::new(),
            misses: Mutex::new(BTreeSet::new()),
            last_refresh: None,
            channel: None,
        }
    }

    /// The socket in use: the configured one, else containerd's or CRI-O's.
    pub fn socket(&self) -> PathBuf {
        match &self.socket {
            Some(s) => s.clone(),
            None => [CONTAINERD_SOCKET, CRIO_SOCKET]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from(CONTAINERD_SOCKET)),
        }
    }

    /// Containers known from the last listing.
    pub fn known(&self) -> usize {
        self.by_id.len()
    }

    /// Lists again if a lookup missed since the last listing and the last
    /// listing is at least `min_refresh` old. `Ok(true)` when it listed.
    pub async fn refresh_if_missed(&mut self) -> Result<bool, String> {
        let missed = !std::mem::take(&mut *self.misses.lock().unwrap_or_else(|e| e.into_inner())).is_empty();
        let due = self.last_refresh.is_none_or(|t| t.elapsed() >= self.min_refresh);
        if !(missed && due) {
            return Ok(false);
        }
        self.refresh().await.map(|()| true)
    }

    /// Replaces the cache with the runtime's current containers.
    pub async fn refresh(&mut self) -> Result<(), String> {
        self.last_refresh = Some(Instant::now());
        let socket = self.socket();
        let r = tokio::time::timeout(self.timeout, self.list(&socket)).await;
        let r = r.unwrap_or_else(|_| Err(format!("CRI ListContainers timed out after {:?}", self.timeout)));
        match r {
            Ok(containers) => {
                self.by_id = containers
                    .iter()
                    .filter_map(|c| Some((c.id.clone(), entry(c)?)))
                    .collect();
                Ok(())
            }
            Err(e) => {
                self.channel = None;
                Err(e)
            }
        }
    }

    async fn list(&mut self, socket: &Path) -> Result<Vec<Container>, String> {
        let channel = match &self.channel {
            Some(c) => c.clone(),
            None => {
                let c = unix::dial(socket).await.map_err(|e| e.to_string())?;
                self.channel = Some(c.clone());
                c
            }
        };
        RuntimeServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .list_containers(ListContainersRequest { filter: None })
            .await
            .map(|r| r.into_inner().containers)
            .map_err(|s| format!("CRI ListContainers: {:?}: {}", s.code(), s.message()))
    }
}

impl ContainerResolver for CriResolver {
    fn resolve(&self, pod_uid: &str, container_id: &str) -> Option<ContainerKey> {
        match self.by_id.get(container_id) {
            // The cgroup's pod UID must agree with the runtime's label.
            Some(e) => (e.pod_uid.is_empty() || e.pod_uid == pod_uid).then(|| e.key.clone()),
            None => {
                self.misses
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(container_id.to_string());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use railyard_kubelet_api::fake::{FakeRuntimeService, TempDir, kube_container};

    use super::*;

    const UID: &str = "1f6b8c2a-3d4e-4f50-9a1b-2c3d4e5f6a7b";

    fn id(n: u8) -> String {
        format!("{n:x}").repeat(64)
    }

    #[tokio::test]
    async fn resolves_from_labels_and_refreshes_on_miss() {
        let dir = TempDir::new("railyard-cri-resolver").unwrap();
        let path = dir.path().join("containerd.sock");
        let fake = FakeRuntimeService::start(&path).unwrap();
        fake.set_containers(vec![kube_container(&id(1), "ml", "infer-0", UID, "main")]);
        let mut r = CriResolver::new(Some(path), Duration::from_secs(5), Duration::ZERO);
        // Nothing listed yet: a miss, then one listing resolves it.
        assert_eq!(r.resolve(UID, &id(1)), None);
        assert!(r.refresh_if_missed().await.unwrap());
        let key = r.resolve(UID, &id(1)).unwrap();
        assert_eq!(
            (key.namespace.as_str(), key.pod.as_str(), key.container.as_str()),
            ("ml", "infer-0", "main")
        );
        // Hits do not list again.
        assert!(!r.refresh_if_missed().await.unwrap());
        assert_eq!(fake.calls(), 1);
        // A container of another pod than its cgroup says is not trusted.
        assert_eq!(r.resolve("00000000-0000-0000-0000-000000000000", &id(1)), None);
        // A new container resolves after the next listing.
        fake.add_container(kube_container(&id(2), "ml", "infer-1", UID, "side"));
        assert_eq!(r.resolve(UID, &id(2)), None);
        assert!(r.refresh_if_missed().await.unwrap());
        assert_eq!(r.resolve(UID, &id(2)).unwrap().container, "side");
        // Containers without kubelet's labels are skipped.
        let mut bare = kube_container(&id(3), "x", "y", UID, "z");
        bare.labels.clear();
        bare.metadata = None;
        fake.add_container(bare);
        r.refresh().await.unwrap();
        assert_eq!(r.known(), 2);
    }

    #[tokio::test]
    async fn refreshes_at_most_once_per_interval_and_survives_outages() {
        let dir = TempDir::new("railyard-cri-resolver").unwrap();
        let path = dir.path().join("crio.sock");
        let mut r = CriResolver::new(Some(path.clone()), Duration::from_secs(5), Duration::from_secs(3600));
        assert_eq!(r.resolve(UID, &id(1)), None);
        // No runtime socket: an error, nothing cached.
        assert!(r.refresh_if_missed().await.is_err());
        assert_eq!(r.resolve(UID, &id(1)), None);
        let fake = FakeRuntimeService::start(&path).unwrap();
        fake.set_containers(vec![kube_container(&id(1), "ml", "infer-0", UID, "main")]);
        // Within min_refresh of the last try: no call.
        assert!(!r.refresh_if_missed().await.unwrap());
        assert_eq!(fake.calls(), 0);
        r.refresh().await.unwrap();
        assert!(r.resolve(UID, &id(1)).is_some());
        fake.set_unavailable(true);
        assert!(r.refresh().await.is_err());
    }
}
